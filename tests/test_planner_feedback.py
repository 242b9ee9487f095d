"""Feedback attempts keep each program with its own error; validation never lets a parser crash out;
the planner shares its import list, line quoting and question normalisation with the rest."""
from __future__ import annotations

import pytest

from graft_vqa.core.errors import PlannerError, ProgramError
from graft_vqa.planner import Program, RulePlanner, UnusableReplyError, plan_with_feedback, validate_program
from graft_vqa.planner import extract, rules
from graft_vqa.planner.program import normalise_question
from graft_vqa.sandbox import policy

BROKEN = "def execute_command(image_patch):\n    return len(image_patch.find('road')\n"


class ScriptedPlanner:
    """Answers each ``plan`` call with the next scripted item (a source, or an exception to raise)."""

    planner_id = "scripted"
    prompt_version = "v1"

    def __init__(self, script: list) -> None:
        self.script = list(script)
        self.feedback: list[str | None] = []

    def plan(self, question: str, feedback: str | None = None) -> Program:
        self.feedback.append(feedback)
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return Program(item, self.planner_id, question)


def test_an_unusable_last_reply_does_not_blame_an_earlier_program() -> None:
    planner = ScriptedPlanner([BROKEN, UnusableReplyError("no code in the reply", "just words")])
    with pytest.raises(PlannerError) as info:
        plan_with_feedback(planner, "How many roads?", max_attempts=2)
    failure = info.value
    assert failure.program is None  # the last attempt had no program at all
    (first_program, first_error), (second_program, second_error) = failure.attempts
    assert first_program is not None and first_program.source == BROKEN and "syntax error" in first_error
    assert second_program is None and second_error == "no code in the reply"
    assert failure.errors == [first_error, second_error]
    assert "no code in the reply" in str(failure)


def test_the_last_program_is_kept_when_the_last_attempt_had_one() -> None:
    planner = ScriptedPlanner([UnusableReplyError("no code", "words"), BROKEN])
    with pytest.raises(PlannerError) as info:
        plan_with_feedback(planner, "How many roads?", max_attempts=2)
    assert info.value.program.source == BROKEN
    assert [p is None for p, _ in info.value.attempts] == [True, False]
    assert planner.feedback[0] is None and "no code" in (planner.feedback[1] or "")


@pytest.mark.parametrize("body", ["-" * 4000 + "1", "(" * 300 + "1" + ")" * 300, "not " * 5000 + "x"])
def test_deeply_nested_programs_are_program_errors(body: str) -> None:
    with pytest.raises(ProgramError, match="could not be parsed|syntax error"):
        validate_program(f"def execute_command(image_patch):\n    return {body}\n")


def test_nul_bytes_are_program_errors() -> None:
    with pytest.raises(ProgramError):
        validate_program("def execute_command(image_patch):\n    return 1\0\n")


def test_validation_shares_the_sandbox_import_list_and_line_quoting() -> None:
    assert extract.ALLOWED_IMPORTS is policy.ALLOWED_IMPORTS
    long_line = "    return " + " + ".join(["1"] * 100) + " + os.sep"
    with pytest.raises(ProgramError) as info:
        validate_program("import os\ndef execute_command(image_patch):\n" + long_line + "\n")
    assert str(info.value).startswith("line 1: `import os`: ")
    text = "x = " + "1 + " * 100 + "("
    with pytest.raises(ProgramError) as info:
        validate_program(f"def execute_command(image_patch):\n    {text}\n    return x\n")
    quoted = str(info.value).split("`")[1]
    assert len(quoted) <= 160 and quoted.endswith("...")  # long lines shortened as the sandbox does


def test_rule_planner_normalises_through_normalise_question(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def spy(question: str) -> str:
        seen.append(question)
        return normalise_question(question)

    monkeypatch.setattr(rules, "normalise_question", spy)
    program = RulePlanner().plan("  Please   How many ROADS are there in the image?! ")
    assert seen == ["  Please   How many ROADS are there in the image?! "]
    assert 'find("road")' in program.source
