"""The offline rule planner: RSVQA question families and everyday phrasings, no LLM.

It writes the same kind of program an LLM would, so everything downstream is shared. A question
it cannot parse raises :class:`QuestionNotUnderstoodError`; it never guesses.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Callable

from graft_vqa.core.errors import QuestionNotUnderstoodError
from graft_vqa.planner import codegen
from graft_vqa.planner.grammar import NounPhrase, parse_noun_phrase
from graft_vqa.planner.program import Program, normalise_question

UNDERSTOOD = (
    "Is there a building? / Is a road present? / Are there any roads?",
    "How many buildings are there? / What is the number of roads?",
    "Are there more buildings than roads? / Is the number of roads equal to the number of buildings?",
    "Is the number of buildings larger than the number of roads?",
    "What is the area covered by water areas?",
    "Is it a rural or an urban area?",
    "with sizes (small, medium, large), shapes (square, rectangular, circular) and relations "
    "(on the left of, on the right of, at the top of, at the bottom of, next to), "
    "e.g. 'How many small buildings on the left of a road are there?'",
)

_IN_IMAGE = re.compile(
    r" (?:in|on|within|inside) (?:the|this) (?:image|picture|photo|photograph|tile|scene|patch)$")
_OPS = {"more": ">", "less": "<", "fewer": "<", "larger": ">", "greater": ">", "bigger": ">",
        "higher": ">", "smaller": "<", "lower": "<"}
_QUANTITY = r"(?:number|amount|count|total number|quantity)"


def _normalise(question: str) -> str:
    """:func:`normalise_question`, then without a polite prefix or a trailing "in the image"."""
    text = normalise_question(question)
    text = re.sub(r"^(?:please |can you tell me |tell me )", "", text)
    return _IN_IMAGE.sub("", text).strip()


def _phrase(text: str) -> NounPhrase:
    """Parse a noun phrase or raise to signal 'no match' to the caller."""
    phrase = parse_noun_phrase(text)
    if phrase is None:
        raise _NoMatch
    return phrase


class _NoMatch(Exception):
    """Internal: this pattern matched the words but not the noun phrases."""


def _rural_urban(m: re.Match[str]) -> tuple[str, str]:
    return "rural_urban", codegen.choice_program(["rural", "urban"])


def _compare(m: re.Match[str]) -> tuple[str, str]:
    operator = _OPS.get(m.groupdict().get("op") or "", "==")
    return "comp", codegen.compare_program(_phrase(m["a"]), operator, _phrase(m["b"]))


def _count(m: re.Match[str]) -> tuple[str, str]:
    return "count", codegen.count_program(_phrase(m["np"]))


def _presence(m: re.Match[str]) -> tuple[str, str]:
    return "presence", codegen.presence_program(_phrase(m["np"]))


def _area(m: re.Match[str]) -> tuple[str, str]:
    return "area", codegen.area_program(_phrase(m["np"]))


_A = r"(?P<a>.+?)"
_B = r"(?P<b>.+)"
_NP = r"(?P<np>.+?)"
_IT = r"(?:it|this|this area|the area|this image|the image|this tile|the tile|this region)"
# (pattern, handler) tried in order; comparisons before presence ("are there more ... than ...")
_PATTERNS: list[tuple[str, Callable[[re.Match[str]], tuple[str, str]]]] = [
    (rf"^is {_IT} (?:an? )?(?:rural|urban) or (?:an? )?(?:rural|urban)(?: area| region| zone)?$",
     _rural_urban),
    (rf"^are there (?P<op>more|less|fewer) {_A} than {_B}$", _compare),
    (rf"^are there as many {_A} as {_B}$", _compare),
    (rf"^is the {_QUANTITY} of {_A} (?:equal to|the same as) the {_QUANTITY} of {_B}$", _compare),
    (rf"^is the {_QUANTITY} of {_A} (?P<op>larger|greater|bigger|higher|smaller|lower|less|more|fewer) "
     rf"than (?:the {_QUANTITY} of |that of )?{_B}$", _compare),
    (rf"^(?:what is|what's) the (?:total )?area (?:covered|occupied) by {_NP}$", _area),
    (rf"^how (?:much|large an?|big an?) area (?:do|does) {_NP} (?:cover|occupy)$", _area),
    (rf"^how much area is (?:covered|occupied) by {_NP}$", _area),
    (rf"^how many {_NP}(?: are there| can be seen| can you see| do you see| are visible| are present"
     rf"| exist| do we have)?$", _count),
    (rf"^(?:what is|what's) the {_QUANTITY} of {_NP}$", _count),
    (rf"^(?:count|number of) {_NP}$", _count),
    (rf"^is there {_NP}$", _presence),
    (rf"^are there {_NP}$", _presence),
    (rf"^(?:is|are) {_NP} (?:present|visible|there|to be seen)$", _presence),
    (rf"^(?:does|do) {_IT} (?:contain|show|have|include) {_NP}$", _presence),
    (rf"^(?:can|do) you see {_NP}$", _presence),
]
_COMPILED = [(re.compile(pattern), handler) for pattern, handler in _PATTERNS]


def rules_version() -> str:
    """A short hash of the rule planner's code, so cached programs expire when the rules change."""
    digest = hashlib.sha256()
    for name in ("rules.py", "grammar.py", "codegen.py"):
        digest.update((Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()[:12]


class RulePlanner:
    """Offline, deterministic planner for RSVQA-style questions."""

    planner_id = "rules"  # the planner id used in cache keys and Program.planner
    deterministic = True  # asking again with feedback gives the same program

    def __init__(self) -> None:
        self.prompt_version = rules_version()

    def plan(self, question: str, feedback: str | None = None) -> Program:
        """Return a program for ``question``; ``feedback`` is accepted and ignored (rules don't learn).

        Raises :class:`QuestionNotUnderstoodError` naming the phrasings it understands.
        """
        text = _normalise(question)
        for pattern, handler in _COMPILED:
            match = pattern.match(text)
            if match is None:
                continue
            try:
                family, source = handler(match)
            except _NoMatch:
                continue
            return Program(source=source, planner=self.planner_id, question=question,
                           meta={"family": family, "rules_version": self.prompt_version})
        raise QuestionNotUnderstoodError(
            f"The rule planner does not understand {question!r}. It understands questions like: "
            + "; ".join(UNDERSTOOD) + ". Rephrase the question, or use the LLM planner (--planner openai).")
