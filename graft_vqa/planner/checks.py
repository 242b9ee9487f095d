"""Checks of a candidate program against its question: the nouns it searches for, the kind it returns.

A small model writes programs that run but answer another question: it searches for ``"house"``
when asked about residential buildings, puts an attribute into the name (``find("small road")``),
or returns a count for a yes/no question. These checks catch that before the program is accepted,
so the planner can re-ask with a precise message.

- :func:`noun_problem`: the nouns passed to ``find``/``exists``/``count``/``coverage_m2`` must be the
  nouns the question names (in the singular). When the rule grammar parses the question, the nouns
  are known exactly and a mismatch is a hard error; otherwise each searched noun must at least
  appear in the question, and a mismatch is only a suspicion (``Problem.hard`` is False).
- :func:`kind_problem`: a yes/no question needs a bool, "how many" a count, "what area" an area.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache

from graft_vqa.core.errors import QuestionNotUnderstoodError
from graft_vqa.planner.grammar import SHAPES, SIZES, singular_noun
from graft_vqa.planner.program import normalise_question

SEARCH_METHODS = frozenset({"find", "exists", "count", "coverage_m2"})  # ImagePatch methods taking a noun
_KIND_WORDS = {"bool": "a bool (True or False)", "count": "an int (a count)", "area_m2": "a float (square metres)",
               "text": "a str (one of the options)"}
_AUX = r"(?:is|are|does|do|can|could|was|were|has|have)"
_COUNT = re.compile(r"^(?:how many|(?:what is|what's) the (?:total )?(?:number|amount|count|quantity) of"
                    r"|(?:count|number of) )")
_AREA = re.compile(r"^(?:(?:what is|what's) the (?:total )?(?:area|surface)|how (?:much|large an?|big an?) area)")
_CHOICE = re.compile(rf"^{_AUX} (?:it|this|the image|this image|the area|this area|the tile|this tile|the scene)"
                     r" (?:an? )?\w+(?: \w+)? or (?:an? )?\w+")


@dataclass(frozen=True)
class Problem:
    """What is wrong with a program, for the feedback message."""

    message: str  # says what to change
    hard: bool = True  # False: only suspect (the program may be accepted, with a warning)


def searched_nouns(source: str) -> list[str]:
    """The string literals passed as first argument to ``find``/``exists``/``count``/``coverage_m2``."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    nouns = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SEARCH_METHODS
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            nouns.append(node.args[0].value)
    return nouns


RELATION_METHODS = frozenset({"is_left_of", "is_right_of", "is_above", "is_below", "is_next_to"})
_RELATION_WORDS = {"is_left_of": "on the left of", "is_right_of": "on the right of", "is_above": "at the top of",
                   "is_below": "at the bottom of", "is_next_to": "next to"}


def _constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def program_form(source: str) -> tuple[set[tuple[str, str]], set[str]]:
    """The attribute tests (``("size", "small")``, ``("shape", "circular")``) and the relations
    (``"is_above"``) a program uses."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set(), set()
    attributes: set[tuple[str, str]] = set()
    relations: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names = [n.attr for n in sides if isinstance(n, ast.Attribute) and n.attr in ("size", "shape")]
            values = [v for v in map(_constant, sides) if v is not None]
            attributes |= {(name, value.lower()) for name in names for value in values}
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in RELATION_METHODS:
                relations.add(node.func.attr)
            elif node.func.attr == "filter_related" and len(node.args) >= 2 and _constant(node.args[1]):
                relations.add(str(_constant(node.args[1])))
    return attributes, relations


@lru_cache(maxsize=512)
def question_form(question: str) -> tuple[frozenset[tuple[str, str]], frozenset[str]] | None:
    """The attribute tests and relations the question asks for, when the rule grammar parses it."""
    from graft_vqa.planner.rules import RulePlanner

    try:
        source = RulePlanner().plan(question).source
    except QuestionNotUnderstoodError:
        return None
    attributes, relations = program_form(source)
    return frozenset(attributes), frozenset(relations)


def form_problem(question: str, source: str) -> Problem | None:
    """A problem when the program's size/shape tests or relations differ from what the question says
    (only for questions the rule grammar parses; others are not judged)."""
    expected = question_form(question)
    if expected is None:
        return None
    want_attributes, want_relations = expected
    attributes, relations = program_form(source)
    parts = []
    for name, value in sorted(attributes - want_attributes):
        parts.append(f'the program keeps only patches with {name} "{value}", which the question does not ask for')
    for name, value in sorted(want_attributes - attributes):
        parts.append(f'the question asks for {name} "{value}": keep the patches with patch.{name} == "{value}"')
    for relation in sorted(relations - want_relations):
        parts.append(f'the program uses the relation "{relation}", which the question does not ask for')
    for relation in sorted(want_relations - relations):
        parts.append(f'the question says "{_RELATION_WORDS.get(relation, relation)}": use '
                     f'image_patch.filter_related(patches, "{relation}", others)')
    return Problem("; ".join(parts)) if parts else None


def noun_form(noun: str) -> str:
    """How nouns are compared: lower case, single spaces, no article, singular head."""
    text = re.sub(r"\s+", " ", noun.strip().lower())
    text = re.sub(r"^(?:a|an|the) ", "", text)
    return singular_noun(text) if text else text


@lru_cache(maxsize=512)
def question_nouns(question: str) -> tuple[str, ...] | None:
    """The nouns the question names, when the rule grammar parses it; None when it does not."""
    from graft_vqa.planner.rules import RulePlanner  # rules -> codegen; imported late to keep this module light

    try:
        source = RulePlanner().plan(question).source
    except QuestionNotUnderstoodError:
        return None
    return tuple(dict.fromkeys(noun_form(n) for n in searched_nouns(source)))


def _quoted(nouns: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f'"{n}"' for n in nouns)


def noun_problem(question: str, source: str) -> Problem | None:
    """A problem when the program searches for nouns the question does not name (or misses one it names)."""
    used = list(dict.fromkeys(noun_form(n) for n in searched_nouns(source)))
    expected = question_nouns(question)
    if expected is None:
        words = f" {' '.join(noun_form(w) for w in normalise_question(question).split())} "
        extra = [n for n in used if f" {n} " not in words]
        if not extra:
            return None
        return Problem(f"the program searches for {_quoted(extra)}, which the question does not name; search for "
                       "the objects with the words the question uses, in the singular", hard=False)
    extra = [n for n in used if n not in expected]
    missing = [n for n in expected if n not in used]
    if not extra and not missing:
        return None
    attributes = [n for n in extra if n.split(" ")[0] in SIZES or n.split(" ")[0] in SHAPES]
    parts = []
    if extra:
        parts.append(f"the program searches for {_quoted(extra)}, which the question does not name")
    if missing:
        parts.append(f"it never searches for {_quoted(missing)}, which the question names")
    advice = f"use exactly these names with find(): {_quoted(expected)}"
    if attributes:
        advice += ('; sizes and shapes are not part of the name: filter with patch.size == "small" or '
                   'patch.shape == "circular"')
    return Problem("; ".join(parts) + "; " + advice)


def expected_kind(question: str) -> str | None:
    """The answer kind the question asks for ("bool", "count", "area_m2", "text"), or None when unclear."""
    text = normalise_question(question)
    if _COUNT.match(text):
        return "count"
    if _AREA.match(text):
        return "area_m2"
    if _CHOICE.match(text):
        return "text"
    if re.match(rf"^{_AUX} ", text):
        return "bool"
    return None


def kind_problem(question: str, kind: str, answer: str) -> Problem | None:
    """A problem when the program's answer (coerced ``kind``, short ``answer``) is not what the question asks."""
    wanted = expected_kind(question)
    if wanted is None or wanted == kind:
        return None
    return Problem(f"the question asks for {_KIND_WORDS[wanted]}, but the program returned {answer!r} "
                   f"({_KIND_WORDS.get(kind, kind)}); return {_KIND_WORDS[wanted]}")
