"""The rule planner's grammar: noun phrases with attributes and relations, and singular nouns.

A noun phrase is ``[determiner] [size] [shape] noun [relation determiner [size] [shape] noun]``,
e.g. "small residential buildings on the left of a road". Parsing never guesses: a phrase that
does not fit returns ``None`` and the planner reports the question as not understood.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SIZES = {"small": "small", "little": "small", "tiny": "small", "medium": "medium",
         "medium-sized": "medium", "large": "large", "big": "large"}
SHAPES = {"square": "square", "rectangular": "rectangular", "circular": "circular",
          "round": "circular", "irregular": "irregular"}
# phrase -> ImagePatch relation method; longest phrases first so "to the left of" wins over "left of"
RELATIONS = {
    "on the left of": "is_left_of", "to the left of": "is_left_of", "on the left side of": "is_left_of",
    "left of": "is_left_of", "on the right of": "is_right_of", "to the right of": "is_right_of",
    "on the right side of": "is_right_of", "right of": "is_right_of", "at the top of": "is_above",
    "above": "is_above", "at the bottom of": "is_below", "below": "is_below", "under": "is_below",
    "next to": "is_next_to", "near": "is_next_to", "beside": "is_next_to",
    "adjacent to": "is_next_to", "close to": "is_next_to",
}
DETERMINERS = ("a", "an", "the", "any", "some", "all")
_REL_RE = re.compile(
    r" (?:that (?:are|is) |which (?:are|is) |located |situated )?("
    + "|".join(sorted((re.escape(p) for p in RELATIONS), key=len, reverse=True)) + r") ")
_DET_RE = re.compile(r"^(?:" + "|".join(DETERMINERS) + r") +")
_NOUN_RE = re.compile(r"^[a-z][a-z'-]*(?: [a-z][a-z'-]*){0,4}$")
# words that never belong in a noun: a phrase holding them is a question we do not parse
FUNCTION_WORDS = frozenset(
    "is are was were be been there here what which who whom whose why where when how many much than "
    "and or not no nor do does did can could should would will it its this that these those "
    "more less fewer number amount count image picture photo photograph tile scene "
    # politeness, chat and filler: never part of what to look for ("count the cars please")
    "please pls plz kindly thanks thank thx you me my we us our your i r u ur im "
    "now just really exactly approximately roughly about also visible present seen see".split())

_IRREGULAR = {"people": "person", "men": "man", "women": "woman", "children": "child",
              "leaves": "leaf", "geese": "goose", "mice": "mouse", "feet": "foot",
              "teeth": "tooth", "buses": "bus", "gases": "gas", "knives": "knife",
              "wolves": "wolf", "shelves": "shelf", "lives": "life"}
_UNCHANGED = frozenset({"gas", "series", "species", "news", "lens", "canvas", "chassis",
                        "means", "headquarters", "barracks", "crossroads", "gallows", "sheep",
                        "fish", "deer", "aircraft"})


@dataclass(frozen=True)
class NounPhrase:
    """One object description: what ``find`` looks for and how the results are filtered."""

    noun: str  # singular name passed to ImagePatch.find, e.g. "residential building"
    size: str | None = None  # "small" | "medium" | "large" | None
    shape: str | None = None  # "square" | "rectangular" | "circular" | "irregular" | None
    relation: str | None = None  # ImagePatch relation method, e.g. "is_left_of"
    reference: "NounPhrase | None" = None  # the object the relation points to

    @property
    def plain(self) -> bool:
        """True when the phrase is a bare noun (no attribute, no relation)."""
        return self.size is None and self.shape is None and self.relation is None


def singular_word(word: str) -> str:
    """Return the singular of an English noun (regular rules, a few irregulars, RSVQA's "pitchs")."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _UNCHANGED or len(word) < 3 or word.endswith(("ss", "us", "is", "'s")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes", "zzes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def plural_word(word: str) -> str:
    """The plural of a singular English noun (the inverse of :func:`singular_word` on common nouns)."""
    irregular = {singular: plural for plural, singular in _IRREGULAR.items()}
    if word in irregular:
        return irregular[word]
    if word in _UNCHANGED:
        return word
    if word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def plural_noun(noun: str) -> str:
    """Pluralise the head (last word) of a noun: "parking lot" -> "parking lots"."""
    words = noun.split(" ")
    return " ".join(words[:-1] + [plural_word(words[-1])])


def singular_noun(noun: str) -> str:
    """Singularise the head (last word) of a noun: "residential buildings" -> "residential building"."""
    words = noun.split(" ")
    return " ".join(words[:-1] + [singular_word(words[-1])])


def _simple_phrase(text: str) -> NounPhrase | None:
    """Parse ``[det] [size] [shape] noun`` (attributes in either order); None when it does not fit."""
    words = _DET_RE.sub("", text.strip()).split()
    size = shape = None
    while words and (words[0] in SIZES or words[0] in SHAPES):
        word = words.pop(0)
        if word in SIZES:
            if size is not None:
                return None
            size = SIZES[word]
        else:
            if shape is not None:
                return None
            shape = SHAPES[word]
    noun = " ".join(words)
    if (not _NOUN_RE.match(noun) or FUNCTION_WORDS.intersection(words) or words[0] in DETERMINERS
            or any(len(word) < 2 for word in words)):  # "houses r there": a lone letter is no noun
        return None
    return NounPhrase(noun=singular_noun(noun), size=size, shape=shape)


def parse_noun_phrase(text: str) -> NounPhrase | None:
    """Parse a noun phrase with at most one relation; None when it does not fit the grammar."""
    text = re.sub(r"\s+", " ", text).strip()
    matches = list(_REL_RE.finditer(f" {text} "))
    if len(matches) > 1:
        return None
    if not matches:
        return _simple_phrase(text)
    match = matches[0]
    padded = f" {text} "
    subject = _simple_phrase(padded[: match.start()])
    reference = _simple_phrase(padded[match.end():])
    if subject is None or reference is None:
        return None
    return NounPhrase(subject.noun, subject.size, subject.shape, RELATIONS[match.group(1)], reference)
