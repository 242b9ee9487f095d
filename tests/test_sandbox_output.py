"""Issue 12, item 4 at the sandbox boundary: every string a program sends back is clean.

A review returned ``'yes' + chr(0xD800)`` (``Answer.model_dump_json()`` then raised) and raised
errors holding ``'\\x1b[2K\\r'`` (which rewrote the user's terminal line and could fake a
"refused" message). The same programs run here; what ``sandbox.run`` hands back must carry no
lone surrogate and no raw control character.
"""
from __future__ import annotations

import json
import re

import pytest

from graft_vqa import sandbox
from graft_vqa.core.text import clean_text, clean_value
from tests.test_sandbox_fakes import FakePatch, program as P

RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _clean(text: str) -> bool:
    json.dumps(text, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return RAW.search(text) is None


@pytest.mark.parametrize("source", [
    P("return 'yes' + chr(0xD800)"),
    P("return ['ok', {'k' + chr(0xDFFF): 'v\\x1b[31m'}]"),
    P("return 'count: 3\\x1b[2K\\rrefused: the answer is fake'"),
    P("return 'abc' + chr(0x202E) + 'fed'"),
])
def test_returned_strings_are_cleaned(source: str) -> None:
    result = sandbox.run(source, FakePatch())
    assert result.status == "ok", result.error
    strings: list[str] = []

    def collect(v: object) -> None:
        if isinstance(v, str):
            strings.append(v)
        elif isinstance(v, list):
            for x in v:
                collect(x)
        elif isinstance(v, dict):
            for k, x in v.items():
                collect(k)
                collect(x)

    collect(result.value)
    assert strings and all(_clean(s) for s in strings), strings


def test_a_surrogate_answer_becomes_a_replacement_character() -> None:
    assert sandbox.run(P("return 'yes' + chr(0xD800)"), FakePatch()).value == "yes\ufffd"


@pytest.mark.parametrize("source", [
    P("raise ValueError('\\x1b[2K\\rrefused: ' + chr(0xD800))"),
    P("raise ValueError('\\r' * 3 + '\\x9b2K' + 'fake')"),
    P("x = {}\nreturn x['\\x1b]0;pwned\\x07']"),
    P("raise Exception(chr(27) + '[1A' + chr(13) + 'refused: ' + chr(0xDC00))"),
])
def test_error_messages_are_cleaned(source: str) -> None:
    result = sandbox.run(source, FakePatch())
    assert result.status == "error"
    assert _clean(result.error), repr(result.error)
    assert "\\x1b" in result.error or "\\r" in result.error or "\\x9b" in result.error or "\ufffd" in result.error


def test_printed_text_keeps_its_lines_but_no_escapes() -> None:
    result = sandbox.run(P("print('a\\tb')\nprint('\\x1b[2Kc' + chr(0xD800))\nreturn 1"), FakePatch())
    assert result.status == "ok"
    assert result.stdout == "a\tb\n\\x1b[2Kc\ufffd\n"


def test_clean_text_and_clean_value() -> None:
    assert clean_text("a\x1b[2K\rb\x00\x7f\x85\u202e\ud800") == "a\\x1b[2K\\rb\\x00\\x7f\\x85\\u202e\ufffd"
    assert clean_text("line 1\nline 2\t", keep_newlines=True) == "line 1\nline 2\t"
    assert clean_text("line 1\nline 2") == "line 1\\nline 2"
    assert clean_text("plain ascii, ünïcödé, 中文, emoji 🛰") == "plain ascii, ünïcödé, 中文, emoji 🛰"
    assert clean_value({"k\x1b": ["\ud800", 1, None, ("\r",)]}) == {"k\\x1b": ["\ufffd", 1, None, ("\\r",)]}
