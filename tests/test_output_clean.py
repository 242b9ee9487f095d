"""Issue 12, item 4 past the sandbox: the Answer, the CLI, the app and evaluation records.

A review's program returned ``'yes' + chr(0xD800)`` (``Answer.model_dump_json()`` raised, the CLI
crashed with a traceback) and raised an error holding ``'\\x1b[2K\\r'`` (which rewrote the user's
terminal line and could fake a "refused" message). The same programs run here end to end.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from graft_vqa import Engine
from graft_vqa.answer import Answer, Detection
from graft_vqa.config import EngineConfig
from graft_vqa.interfaces.app.messages import answer_failure_message, error_message
from graft_vqa.interfaces.app.summary import answer_text
from graft_vqa.interfaces.evaluation.runner import make_record
from graft_vqa.interfaces.evaluation.rsvqa import Question
from graft_vqa.planner.program import Program
from tests.openai_server import ScriptedOpenAIServer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "rgbn_5m_utm18n.tif"
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

SURROGATE = ("def execute_command(image_patch):\n    if image_patch.exists('car'):\n"
             "        return 'yes' + chr(0xD800)\n    return 'no'\n")
ESCAPES = ("def execute_command(image_patch):\n    if image_patch.exists('car'):\n"
           "        raise ValueError(chr(27) + '[2K' + chr(13) + 'refused: the sandbox blocked this question')\n"
           "    return 1\n")
FIND_ESCAPES = ("def execute_command(image_patch):\n"
                "    return len(image_patch.find(chr(27) + ']0;owned' + chr(7) + 'car' + chr(0xDC00)))\n")


class Scripted:
    """A planner whose every program is ``source``."""

    deterministic = True
    prompt_version = "test"

    def __init__(self, source: str) -> None:
        self.source, self.planner_id = source, f"scripted-{abs(hash(source))}"

    def plan(self, question: str, feedback: str | None = None) -> Program:
        return Program(source=self.source, planner=self.planner_id, question=question)


class Everywhere:
    """``score_maps``: 0.5 in one square whatever the name."""

    def score_maps(self, tile, queries):
        maps = np.zeros((len(queries), tile.height, tile.width), dtype=np.float32)
        maps[:, 10:20, 10:20] = 0.5
        return maps


def ask(source: str, tmp_path: Path) -> Answer:
    config = EngineConfig(cache_dir=str(tmp_path / "programs"), gsd_m=1.0)
    config.find.refine = "none"
    return Engine(scorer=Everywhere(), planner=Scripted(source), config=config).ask(
        np.zeros((64, 64, 3), np.uint8), "Is there a car?")


def strings(obj: object) -> list[str]:
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in strings(k) + strings(v)]
    if isinstance(obj, (list, tuple)):
        return [s for v in obj for s in strings(v)]
    return []


@pytest.mark.parametrize("source", [SURROGATE, ESCAPES, FIND_ESCAPES])
def test_an_answer_from_a_hostile_program_dumps_clean_json(source: str, tmp_path: Path) -> None:
    answer = ask(source, tmp_path)
    text = answer.model_dump_json()  # never raises
    assert not RAW.search(text)
    assert all(not RAW.search(s) for s in strings(json.loads(text)))
    json.dumps(answer.to_geojson(), ensure_ascii=False).encode("utf-8")


def test_the_surrogate_answer_is_text_not_yes(tmp_path: Path) -> None:
    answer = ask(SURROGATE, tmp_path)
    assert answer.error is None and answer.answer == "yes\ufffd" and answer.kind == "text"


def test_answer_fields_are_cleaned_when_built_and_when_set() -> None:
    answer = Answer(answer="yes\ud800", value="v\x1b", error="e\x1b[2K\rx", warnings=["w\x07"],
                    detections=[Detection(name="car\x1b", score=0.1, box=(0, 0, 1, 1))])
    assert (answer.answer, answer.value, answer.error, answer.warnings) == ("yes\ufffd", "v\\x1b", "e\\x1b[2K\\rx",
                                                                            ["w\\x07"])
    assert answer.detections[0].name == "car\\x1b"
    answer.error = "later \x1b[1A"
    assert answer.error == "later \\x1b[1A"
    answer.model_dump_json()


def test_the_app_never_renders_program_text_as_markdown(tmp_path: Path) -> None:
    answer = ask("def execute_command(image_patch):\n    if image_patch.exists('car'):\n"
                 "        raise ValueError('**refused** [fix](http://x)')\n    return 1\n", tmp_path)
    assert answer.status == "error"
    message = answer_failure_message(answer)
    assert "```text\n" in message and "**refused** [fix](http://x)" in message.split("```text\n")[1]
    shown = answer_text(Answer(answer="**yes** [x](y)", kind="text"))
    assert shown.startswith("**\\*\\*yes\\*\\* \\[x\\]\\(y\\)**")
    assert "\\x1b" in error_message(ValueError("boom \x1b[2K"))


def test_evaluation_records_are_clean() -> None:
    q = Question(qid=1, img_id=1, type="presence", question="Is there a car?", gt="yes")
    for answer in (Answer(answer="yes\ud800", value="yes\ud800"), None):
        record = make_record(q, "lr", answer, status=None if answer else "exception",
                             error=None if answer else "ValueError: \x1b[2K\udc00")
        text = json.dumps(record, ensure_ascii=False)
        text.encode("utf-8")
        assert not RAW.search(text)


def _cli(server: ScriptedOpenAIServer, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GRAFT_VQA_HOME": str(tmp_path / "home"), "OPENAI_API_KEY": "test"}
    return subprocess.run([sys.executable, "-m", "graft_vqa.interfaces.cli", "ask", str(EXAMPLE), "Is there a car?",
                           "--graft-model", "graft-tiny", "--allow-untrained", "--refine", "none",
                           "--planner", "openai", "--base-url", server.base_url, "--model", "scripted",
                           "--show-program", *extra],
                          capture_output=True, timeout=300, env=env)


SURROGATE_ERROR = ("def execute_command(image_patch):\n    if image_patch.exists('car'):\n"
                   "        raise ValueError('no car ' + chr(0xD800) + chr(27) + '[2K')\n    return True\n")
"""Through the LLM planner a str cannot answer "Is there a car?" (the planner asks for a bool), so
the CLI meets the surrogate in an error: what made it crash on the way out (printing, dumping JSON)."""


@pytest.mark.parametrize("source, json_out", [(SURROGATE_ERROR, False), (SURROGATE_ERROR, True), (ESCAPES, False)])
def test_the_cli_prints_no_raw_escape_and_does_not_crash(source: str, json_out: bool, tmp_path: Path) -> None:
    reply = f"```python\n{source}```"
    with ScriptedOpenAIServer([reply] * 3) as server:
        out = _cli(server, tmp_path, *(["--json"] if json_out else []))
    both = out.stdout + out.stderr
    assert b"Traceback" not in both, both.decode("utf-8", "replace")
    assert b"\x1b" not in both and b"\r" not in both
    both.decode("utf-8")  # valid UTF-8: no lone surrogate made it out
    assert out.returncode == 1
    if json_out:
        assert "no car \ufffd\\x1b[2K" in json.loads(out.stdout)["error"]
    elif source is SURROGATE_ERROR:
        assert "no car \ufffd\\x1b[2K" in out.stderr.decode()
    else:
        assert b"\\x1b[2K\\r" in out.stderr
