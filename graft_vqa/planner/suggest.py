"""What the rule planner says when it does not understand: two lines, three questions it does understand.

The examples are close to the user's question: they reuse its object ("how many houses r there" ->
"How many houses are there?") and put first the kind of question it looks like (a count, a share of
the image, a comparison). Every example is itself understood by the rule planner (a test checks).
"""
from __future__ import annotations

import re

from graft_vqa.planner.grammar import DETERMINERS, FUNCTION_WORDS, SHAPES, SIZES, plural_noun, singular_noun

# How the rule planner points to an LLM, in the API's words; the CLI and the app say it their own way
# (graft_vqa.interfaces.advice rewrites it to --planner openai or to the Planner field in Settings).
LLM_HINT = "planner=OpenAIPlanner(...)"
DEFAULT_NOUN = "building"  # the object of the examples when the question names none
N_EXAMPLES = 3

# words that separate objects in a question without being one
_NOT_OBJECTS = frozenset(
    "as in on of at to with by for from into over under between near inside around across along behind beside within outside top bottom left right "
    "side middle upper lower half part cover covers covered covering occupy occupies contain contains show shows "
    "have has include includes parked located situated look looks like colour color colours colors "
    "red green blue yellow white black grey gray brown orange sunny cloudy rainy dark bright big bigger "
    "larger smaller greater percent percentage share fraction proportion portion total area surface size "
    "any some all every each other pic pics photo photos view".split())
_KINDS = (  # (kind, words that make a question look like it), tried in this order
    ("compare", r"\b(?:more|less|fewer|than|as many)\b"),
    ("share", r"\b(?:percent|percentage|share|fraction|proportion|portion|how much of)\b"),
    ("count", r"\b(?:how many|count|number|amount)\b"),
    ("area", r"\b(?:area|cover|covered|covers|surface|size|how much|big|large)\b"),
    ("presence", r"\b(?:is there|are there|any|exists?|present|visible|see|contains?)\b"),
)
_DEFAULT_ORDER = ("count", "presence", "area", "share")


def object_words(text: str) -> list[str]:
    """The runs of words in ``text`` that could name an object (singular, at most two words each)."""
    skip = FUNCTION_WORDS | _NOT_OBJECTS | set(DETERMINERS) | set(SIZES) | set(SHAPES)
    runs: list[list[str]] = [[]]
    for word in re.findall(r"[a-z][a-z'-]*|\S", text.lower()):
        if word in skip or len(word) < 2 or not word.isalpha():
            runs.append([])
        else:
            runs[-1].append(word)
    return [singular_noun(" ".join(run[-2:])) for run in runs if run]


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def examples(text: str) -> list[str]:
    """Three questions the rule planner understands, about the objects of ``text``, its kind first."""
    nouns = object_words(text) or [DEFAULT_NOUN]
    first = nouns[0]
    other = next((n for n in nouns[1:] if n != first), None)
    kinds = [kind for kind, pattern in _KINDS if re.search(pattern, text)] + list(_DEFAULT_ORDER)
    templates = {
        "count": f"How many {plural_noun(first)} are there?",
        "presence": f"Is there {_article(first)} {first}?",
        "area": f"What is the area covered by {plural_noun(first)}?",
        "share": f"How much of the image is {first}?",
        "compare": f"Are there more {plural_noun(first)} than {plural_noun(other)}?" if other else "",
    }
    chosen = [templates[kind] for kind in dict.fromkeys(kinds) if templates[kind]]
    return chosen[:N_EXAMPLES]


def not_understood(question: str, text: str) -> str:
    """The two-line message for a question the rule planner cannot parse (``text``: its normalised form)."""
    shown = " ".join(question.split())
    return (f"The rule planner did not understand {shown!r}; rephrase it like one of these, or use an LLM "
            f"planner ({LLM_HINT}).\n"
            "It understands, for example: " + " · ".join(f'"{e}"' for e in examples(text)))
