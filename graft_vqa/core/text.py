"""Text from programs made safe to store, serialise and show.

A sandboxed program (or the LLM that wrote it) controls the strings it returns, raises and prints.
Before they reach an ``Answer``, a terminal, the app or an evaluation record, :func:`clean_text`
replaces lone surrogates (which no UTF-8 encoder accepts, so ``model_dump_json`` would fail) with
U+FFFD and shows control characters as visible escapes: ``"\\x1b[2K\\r"`` becomes the ten
characters ``\\x1b[2K\\r``, so a message cannot move the cursor, erase a line, fake another
message or reverse the text around it. Newlines and tabs are kept where text may span lines.
"""
from __future__ import annotations

import re
from typing import Any

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # direction marks, embeddings, overrides, isolates
_UNSAFE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_BIDI}\\ud800-\\udfff]")
_UNSAFE_KEEP_LINES = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_BIDI}\\ud800-\\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if "\ud800" <= char <= "\udfff":
        return "\ufffd"
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def clean_text(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with lone surrogates replaced by U+FFFD and control and bidirectional-override
    characters escaped (``\\x1b``, ``\\r``, ``\\u202e``); ``keep_newlines`` keeps ``\\n`` and ``\\t``."""
    pattern = _UNSAFE_KEEP_LINES if keep_newlines else _UNSAFE
    return pattern.sub(_escape, text)


def clean_value(value: Any, *, keep_newlines: bool = False, _depth: int = 0) -> Any:
    """``value`` with :func:`clean_text` applied to every string in it (dict keys included),
    through lists, tuples and dicts; anything else is returned as it is."""
    if isinstance(value, str):
        return clean_text(value, keep_newlines=keep_newlines)
    if _depth > 64:
        return value
    if isinstance(value, (list, tuple)):
        items = [clean_value(v, keep_newlines=keep_newlines, _depth=_depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {clean_value(k, keep_newlines=keep_newlines, _depth=_depth + 1):
                clean_value(v, keep_newlines=keep_newlines, _depth=_depth + 1) for k, v in value.items()}
    return value
