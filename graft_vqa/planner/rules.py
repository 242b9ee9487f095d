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
from graft_vqa.planner.suggest import not_understood
from graft_vqa.planner.program import Program, normalise_question

_IN_IMAGE = re.compile(
    r" (?:in|on|within|inside|of) (?:the|this) (?:image|picture|photo|photograph|tile|scene|patch)$")
_OPS = {"more": ">", "less": "<", "fewer": "<", "larger": ">", "greater": ">", "bigger": ">",
        "higher": ">", "smaller": "<", "lower": "<"}
_QUANTITY = r"(?:number|amount|count|total number|quantity)"
_WHOLE = r"(?:the |this )?(?:image|picture|photo|photograph|tile|scene|patch|area)"
_SHARE = r"(?:percentage|percent|fraction|proportion|share|part|portion)"
# politeness and filler around a question, removed before parsing (repeatedly, so they combine)
_FILLER = [re.compile(pattern) for pattern in (
    r"^(?:please|pls|plz|kindly|hey|hi|hello|ok|okay|so|well)\b[ ,]*",
    r"^(?:can|could|would|will) you (?:please |kindly )?(?=(?:count|tell me|say)\b)",
    r"^(?:please )?(?:tell|say) (?:me|us)\b[ ,]*",
    r"^(?:i (?:want|would like|'d like) to know|do you know|i wonder)\b[ ,]*",
    r"[ ,]*\b(?:please|pls|plz|kindly|thanks|thank you|thx|for me)$",
    r"(?<= )(?:please|kindly) (?=\w)",
)]


def _normalise(question: str) -> str:
    """:func:`normalise_question`, then without politeness, filler or a trailing "in the image"."""
    text = normalise_question(question).replace(",", " ")
    text = re.sub(r"\s+", " ", text).strip()
    previous = None
    while text != previous:
        previous = text
        for filler in _FILLER:
            text = filler.sub("", text).strip()
        text = _IN_IMAGE.sub("", text).strip().rstrip(" ?.!")
    # "tell me if there is a road" -> "is there a road"; "... how many cars there are" -> "how many cars"
    text = re.sub(r"^(?:if|whether) there (is|are) ", r"\1 there ", text)
    return re.sub(r"^(how many .+?) there (?:are|is)$", r"\1", text)


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


def _share(m: re.Match[str]) -> tuple[str, str]:
    return "share", codegen.share_program(_phrase(m["np"]))


def _area_compare(m: re.Match[str]) -> tuple[str, str]:
    return "area_comp", codegen.area_compare_program(_phrase(m["a"]), _OPS[m["op"]], _phrase(m["b"]))


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
    # areas compared: "is the lake bigger than the forest?", "does water cover more than forest?"
    (rf"^is the (?:area|surface) (?:covered by |occupied by |of )?{_A} (?P<op>larger|greater|bigger|smaller) "
     rf"than (?:the (?:area|surface) (?:covered by |occupied by |of )?|that of )?{_B}$", _area_compare),
    (rf"^(?:is|are) {_A} (?P<op>larger|greater|bigger|smaller) than {_B}$", _area_compare),
    (rf"^(?:does|do) {_A} cover (?P<op>more|less) (?:area |ground |surface )?than {_B}(?: does| do)?$",
     _area_compare),
    (rf"^is there (?P<op>more|less) {_A} than {_B}$", _area_compare),
    # share of the image: "how much of the picture is forest?", "what percentage of the image is water?"
    (rf"^how much of {_WHOLE} (?:is|are) (?:covered (?:by|with|in) |made (?:up )?of |taken up by )?{_NP}$", _share),
    (rf"^how much of {_WHOLE} (?:do|does) {_NP} (?:cover|occupy|take up)$", _share),
    (rf"^(?:what|which) {_SHARE} of {_WHOLE} (?:is|are) (?:covered (?:by|with|in) |made (?:up )?of "
     rf"|taken up by )?{_NP}$", _share),
    (rf"^(?:what|which) {_SHARE} of {_WHOLE} (?:do|does) {_NP} (?:cover|occupy|take up)$", _share),
    (rf"^(?:what is|what's) the {_SHARE} (?:of|covered by) {_NP}$", _share),
    (rf"^how much {_NP} (?:is there|can be seen|do you see|is visible|is present)$", _area),
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

        Raises :class:`QuestionNotUnderstoodError` in two lines: what it did not understand, and three
        questions it does understand, close to this one.
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
        raise QuestionNotUnderstoodError(not_understood(question, text))
