"""Prompt templates and few-shot programs for the LLM planner, read from the ``prompts/`` package data.

Templates are ``*.txt`` files rendered with strict ``string.Template`` substitution: a missing or
unknown placeholder is an error, never a silently blank prompt. Few-shot programs live in
``fewshot/*.py``, each starting with a ``# Question: ...`` comment. ``PROMPT_VERSION`` is a hash
of the templates and few-shot files (computed on first use, not at import).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Template

from graft_vqa.core.errors import PlannerError
from graft_vqa.core.resources import data_path

TEMPLATES = ("system", "user", "feedback")
_QUESTION_PREFIX = "# Question:"


@dataclass(frozen=True)
class FewShot:
    """One worked example shown to the LLM."""

    question: str  # the question, from the file's leading "# Question:" comment
    source: str  # the program answering it (the rest of the file)
    name: str  # file name, for error messages


def _package_file(name: str) -> Path:
    return data_path("prompts") / name


def template_text(name: str) -> str:
    """Return the raw text of template ``name`` (one of :data:`TEMPLATES`)."""
    if name not in TEMPLATES:
        raise PlannerError(f"Unknown prompt template {name!r}; known: {', '.join(TEMPLATES)}.")
    return _package_file(f"{name}.txt").read_text(encoding="utf-8")


def render(name: str, **values: str) -> str:
    """Render template ``name`` with exactly its placeholders; raise PlannerError otherwise."""
    template = Template(template_text(name))
    if not template.is_valid():
        raise PlannerError(f"Prompt template {name}.txt has a malformed placeholder; escape '$' as '$$'.")
    wanted = set(template.get_identifiers())
    if wanted != set(values):
        missing, unknown = sorted(wanted - set(values)), sorted(set(values) - wanted)
        raise PlannerError(f"Prompt template {name}.txt: missing values {missing}, unknown values {unknown}.")
    return template.substitute(values)


def fewshot_examples() -> list[FewShot]:
    """Return the few-shot programs in file-name order."""
    folder = _package_file("fewshot")
    examples = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".py"):
            continue
        lines = entry.read_text(encoding="utf-8").strip().split("\n")
        if not lines[0].startswith(_QUESTION_PREFIX):
            raise PlannerError(f"Few-shot file {entry.name} must start with '{_QUESTION_PREFIX} ...'.")
        question = lines[0][len(_QUESTION_PREFIX):].strip()
        examples.append(FewShot(question, "\n".join(lines[1:]).strip() + "\n", entry.name))
    return examples


def format_examples(examples: list[FewShot]) -> str:
    """Render the few-shot examples as question/program pairs for the system prompt."""
    parts = [f"Question: {ex.question}\n```python\n{ex.source}```" for ex in examples]
    return "\n\n".join(parts)


def api_spec_text() -> str:
    """Return the generated ImagePatch API text (``api_spec/image_patch_api.md``)."""
    spec = data_path("api_spec") / "image_patch_api.md"
    if not spec.is_file():
        raise PlannerError(
            "api_spec/image_patch_api.md is missing: generate it with `python -m graft_vqa.planner.api_spec` "
            "or pass api_spec=... to OpenAIPlanner.")
    return spec.read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def prompt_version() -> str:
    """A short hash of every template and few-shot file; changes whenever the prompt does."""
    digest = hashlib.sha256()
    for name in TEMPLATES:
        digest.update(name.encode() + b"\0" + template_text(name).encode() + b"\0")
    for example in fewshot_examples():
        digest.update(example.name.encode() + b"\0" + example.question.encode() + example.source.encode())
    return digest.hexdigest()[:12]


def __getattr__(name: str) -> str:
    """Compute ``PROMPT_VERSION`` lazily, on first access."""
    if name == "PROMPT_VERSION":
        return prompt_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
