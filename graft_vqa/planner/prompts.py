"""Prompt templates and few-shot programs for the LLM planner, read from the ``prompts/`` package data.

Templates are ``*.txt`` files rendered with strict ``string.Template`` substitution: a missing or
unknown placeholder is an error, never a silently blank prompt. Few-shot programs live in
``fewshot/*.py``, each starting with a ``# Question: ...`` comment. ``PROMPT_VERSION`` is a hash
of the templates and few-shot files (computed on first use, not at import).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from string import Template

from graft_vqa.core.errors import PlannerError
from graft_vqa.core.resources import data_path

TEMPLATES = ("system", "user", "feedback", "reply_code", "reply_json")
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


_WORD = re.compile(r"[a-z]+")
_STOP_WORDS = frozenset("a an the of in is are there this image it what".split())
# words that decide the program's form (comparison, count, presence, attribute, relation), not its nouns
_FORM_WORDS = frozenset("more less fewer equal larger smaller than number amount many how present covered left "
                        "right top bottom next above below small medium large square rectangular circular rural "
                        "urban largest smallest".split())
# members of the API spec every RSVQA-style question needs; the rest (crop, pixel coordinates,
# distances, verify_property, to_geojson) only when the question talks about them
CORE_MEMBERS = ("find", "exists", "count", "coverage_m2", "best_text_match", "area_m2", "size", "shape",
                "is_left_of", "is_right_of", "is_above", "is_below", "is_next_to", "filter_related")
_GEOMETRY_WORDS = re.compile(r"\b(?:half|halves|corner|crop|pixel|pixels|coordinate|coordinates|distance|far|"
                             r"metres?|meters?|km|within|colou?r|red|green|blue|white|black|geojson|centre|center)\b")


def _words(text: str) -> set[str]:
    """Content words of a question, crudely singular, for example similarity."""
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
            for w in _WORD.findall(text.lower())} - _STOP_WORDS


def select_examples(question: str, examples: list[FewShot], count: int | None) -> list[FewShot]:
    """The ``count`` examples most similar to ``question`` (word overlap), in file order; all when None."""
    if count is None or count >= len(examples):
        return list(examples)
    wanted = _words(question)

    def weight(words: set[str]) -> float:
        return sum(3.0 if w in _FORM_WORDS else 1.0 for w in words)

    def similarity(example: FewShot) -> float:  # weighted Jaccard: the question's form counts most
        words = _words(example.question)
        return weight(wanted & words) / max(1.0, weight(wanted | words))

    ranked = sorted(range(len(examples)), key=lambda i: (-similarity(examples[i]), i))[:max(0, count)]
    return [examples[i] for i in sorted(ranked)]


def spec_sections(spec: str) -> tuple[str, dict[str, str]]:
    """Split the generated API text into its preamble and one section per member (by name)."""
    parts = re.split(r"(?m)^(?=### `)", spec)
    sections = {}
    for part in parts[1:]:
        name = re.match(r"### `(\w+)", part)
        if name:
            sections[name.group(1)] = part.strip()
    return parts[0].strip(), sections


def trim_api_spec(spec: str, question: str | None = None, mode: str = "auto") -> str:
    """The API text to show: ``"full"``; ``"core"`` (:data:`CORE_MEMBERS` only); ``"auto"``: core unless
    the question talks about pixels, halves, distances, colours and the like (then full)."""
    if mode == "full" or (mode == "auto" and question is not None and _GEOMETRY_WORDS.search(question.lower())):
        return spec.strip()
    preamble, sections = spec_sections(spec)
    kept = [sections[name] for name in CORE_MEMBERS if name in sections]
    if not kept:  # not the generated layout: show it as it is
        return spec.strip()
    return "\n\n".join([preamble, *kept])


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
