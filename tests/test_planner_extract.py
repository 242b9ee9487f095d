"""Program extraction from LLM replies, static validation, prompts and the program cache."""
from __future__ import annotations

from pathlib import Path

import json
from graft_vqa.core.resources import data_path

import pytest

from graft_vqa.planner import prompts
from graft_vqa.core.errors import PlannerError, ProgramError
from graft_vqa.planner import (Program, ProgramCache, RulePlanner, UnusableReplyError, extract_program,
                               normalise_question, plan_cached, validate_program)

GOOD = 'def execute_command(image_patch):\n    return len(image_patch.find("road"))\n'


def run(source: str, counts: dict[str, int]):
    class Patch:
        def find(self, name):
            return [object()] * counts.get(name, 0)

        def exists(self, name):
            return counts.get(name, 0) > 0

    namespace: dict = {}
    exec(compile(source, "<program>", "exec"), namespace)
    return namespace["execute_command"](Patch())


@pytest.mark.parametrize("reply", [
    f"```python\n{GOOD}```",
    f"Here is the program:\n\n```python\n{GOOD}```\nIt counts roads.",
    f"```\n{GOOD}```",
    f"```py\n{GOOD}\n```",
    GOOD,
    "Sure! Here you go:\ndef execute_command(image_patch):\n    return len(image_patch.find('road'))\nThis counts roads.",
    f"```python\nprint('example')\n```\nand the answer:\n```python\n{GOOD}```",
    "```python\nreturn len(image_patch.find('road'))\n```",
    "len(image_patch.find('road'))",
    "```python\ndef solve(image_patch):\n    return len(image_patch.find('road'))\n```",
    f"```python\n    {GOOD.replace(chr(10), chr(10) + '    ')}```",
    f"```python\n{GOOD}",  # unterminated fence (reply cut off after the code)
    f"<think>maybe\n```python\ndef execute_command(image_patch):\n    return 0\n```\n</think>\n```python\n{GOOD}```",
])
def test_extract_finds_a_working_program(reply):
    source = extract_program(reply)
    validate_program(source)
    assert run(source, {"road": 3}) == 3


def test_extract_wraps_a_multiline_body_and_returns_its_last_expression():
    reply = "```python\nroads = image_patch.find('road')\nlen(roads) > 1\n```"
    source = extract_program(reply)
    assert source.startswith("def execute_command(image_patch):\n    roads =")
    assert run(source, {"road": 2}) is True and run(source, {"road": 1}) is False


@pytest.mark.parametrize("reply", [
    "", "I cannot answer that.", "Sure", "```text\nno code here\n```",
    "```python\ndef a(x):\n    return 1\ndef b(y):\n    return 2\n```",
])
def test_extract_rejects_replies_without_a_usable_program(reply):
    with pytest.raises(UnusableReplyError) as info:
        extract_program(reply)
    assert isinstance(info.value, PlannerError) and "execute_command" in str(info.value)
    assert info.value.reply == reply


@pytest.mark.parametrize("source,quoted", [
    ("def execute_command(image_patch):\n    return len(image_patch.find('road')\n", "return len("),
    ("import os\ndef execute_command(image_patch):\n    return 1\n", "import os"),
    ("def execute_command(image_patch):\n    from subprocess import run\n    return 1\n", "from subprocess"),
    ("def execute_command(image_patch):\n    x = 1\n", "def execute_command"),
    ("def execute_command(image_patch, other):\n    return 1\n", "def execute_command"),
    ("def execute_command(image_patch):\n    def inner():\n        return 1\n    inner()\n", "def execute_command"),
])
def test_validate_rejects_bad_programs_quoting_the_line(source, quoted):
    with pytest.raises(ProgramError) as info:
        validate_program(source)
    assert quoted in str(info.value)


def test_validate_requires_the_entry_point_and_allows_math():
    with pytest.raises(ProgramError, match="execute_command"):
        validate_program("def main(image_patch):\n    return 1\n")
    validate_program("import math\nfrom math import sqrt\ndef execute_command(image_patch):\n"
                     "    return math.pi * sqrt(4)\n")


def test_templates_are_strict_and_the_question_lands_in_the_prompt():
    question = "How many wind turbines stand north of the lake?"
    rendered = prompts.render("user", question=question, feedback="")
    assert question in rendered
    with pytest.raises(PlannerError, match="missing"):
        prompts.render("user", question=question)
    with pytest.raises(PlannerError, match="unknown"):
        prompts.render("user", question=question, feedback="", extra="x")
    system = prompts.render("system", api_spec="SPEC-MARKER", examples="EXAMPLES-MARKER", reply_format="REPLY")
    assert "SPEC-MARKER" in system and "EXAMPLES-MARKER" in system and "REPLY" in system and "$" not in system


def test_fewshot_programs_validate_and_carry_their_question():
    examples = prompts.fewshot_examples()
    assert len(examples) >= 5
    folder = data_path("prompts") / "fewshot"
    for example in examples:
        text = folder.joinpath(example.name).read_text()
        assert text.startswith(f"# Question: {example.question}\n") and example.question.endswith("?")
        validate_program(example.source)
    formatted = prompts.format_examples(examples)
    assert all(example.question in formatted for example in examples)


def test_prompt_version_follows_the_prompt_files(monkeypatch):
    before = prompts.prompt_version()
    assert prompts.PROMPT_VERSION == before and len(before) == 12
    original = prompts.template_text
    monkeypatch.setattr(prompts, "template_text", lambda name: original(name) + "\nBe brief.")
    prompts.prompt_version.cache_clear()
    try:
        assert prompts.prompt_version() != before
    finally:
        prompts.prompt_version.cache_clear()


def test_api_spec_text_reads_the_generated_file_or_says_what_is_missing(tmp_path, monkeypatch):
    committed = Path(__file__).resolve().parents[1] / "api_spec" / "image_patch_api.md"
    assert prompts.api_spec_text() == committed.read_text(encoding="utf-8")
    monkeypatch.setattr(prompts, "data_path", lambda folder: tmp_path)  # an install without the spec
    with pytest.raises(PlannerError, match="image_patch_api.md"):
        prompts.api_spec_text()


def test_cache_round_trip_and_keys(tmp_path):
    cache = ProgramCache(tmp_path / "programs")
    program = Program(GOOD, "rules", "How many roads are there?", {"family": "count"})
    assert cache.get(program.question, "rules", "v1") is None
    cache.put(program, "rules", "v1")
    hit = cache.get("  how many ROADS are there ", "rules", "v1")
    assert hit is not None and hit.source == GOOD and hit.meta == {"family": "count", "cached": True}
    assert cache.get(program.question, "rules", "v2") is None
    assert cache.get(program.question, "openai:m", "v1") is None
    assert normalise_question("  How many  ROADS are there?? ") == "how many roads are there"


def test_cache_treats_corrupt_or_invalid_entries_as_misses(tmp_path):
    cache = ProgramCache(tmp_path)
    path = cache.put(Program(GOOD, "rules", "q1", {}), "rules", "v")
    path.write_text("{not json")
    assert cache.get("q1", "rules", "v") is None
    path.write_text(json.dumps({"source": "def f(:\n", "planner": "rules", "meta": {}}))
    assert cache.get("q1", "rules", "v") is None


def test_plan_cached_reuses_programs_across_planner_instances(tmp_path):
    cache = ProgramCache(tmp_path)
    first = plan_cached(RulePlanner(), "How many roads are there?", cache)
    assert "cached" not in first.meta and first.meta["attempts"] == 1
    second = plan_cached(RulePlanner(), "how many roads are there", cache)
    assert second.meta["cached"] is True and second.source == first.source
    assert len(list(tmp_path.glob("*.json"))) == 1
