"""Synthetic scenes with known objects for RSVQA-style questions, and the true answer from the scene.

A :class:`Scene` is a blank tile (``TILE_PX`` square at ``GSD_M`` metres per pixel) holding objects
of known class, size, shape and position, drawn one per cell of a grid. :class:`SceneScorer` scores
1.0 on the pixels of every object a query names (``"building"`` also names residential and
commercial buildings) and 0.0 elsewhere, so ``find`` recovers the objects exactly. The truth of a
question comes from the scene's object list, not from any program and not from RSVQA's answers:
``scene_for(question, seed)`` builds a scene that makes the question non-trivial and
``truth(question, scene)`` answers it from the objects.

Questions are RSVQA-LR's four types (presence, count, comp, rural_urban). Noun phrases are
``[size] [shape] noun [relation [size] [shape] noun]``, parsed with the project's grammar; relations
use the ``ImagePatch`` semantics (box centres; "next to" = outlines at most 2 px apart, which in a
scene happens only for pairs placed 1 px apart on purpose, every other pair being at least 8 px apart).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace

import numpy as np

from graft_vqa.planner.grammar import NounPhrase, parse_noun_phrase, singular_noun

GSD_M = 1.5  # metres per pixel: small < 222 px, medium < 4,444 px, large above
CELL_PX = 136  # one object per cell
GRID = 7  # cells per side
TILE_PX = CELL_PX * GRID  # 952
SIZES = ("small", "medium", "large")
SHAPES = ("square", "rectangular", "circular", "irregular")
# (height, width) of the drawn bounding box per (size, shape); odd sides so centres fall on pixels.
# At 1.5 m: small 281-425 m2, medium 2,531-3,782 m2, large 17,111-22,952 m2 (tests/test_scenes.py checks
# them against ImagePatch.size and .shape).
DIMS = {
    ("small", "square"): (13, 13), ("small", "rectangular"): (9, 21), ("small", "circular"): (15, 15),
    ("small", "irregular"): (15, 15),
    ("medium", "square"): (41, 41), ("medium", "rectangular"): (27, 61), ("medium", "circular"): (45, 45),
    ("medium", "irregular"): (45, 45),
    ("large", "square"): (101, 101), ("large", "rectangular"): (71, 121), ("large", "circular"): (111, 111),
    ("large", "irregular"): (117, 117),
}
# a query for the key also finds the classes listed (RSVQA's "building" covers both kinds)
SUPERCLASSES = {"building": ("residential building", "commercial building")}
_RELATION_TEST = {
    "is_left_of": lambda a, b: a.cx < b.cx, "is_right_of": lambda a, b: a.cx > b.cx,
    "is_above": lambda a, b: a.cy < b.cy, "is_below": lambda a, b: a.cy > b.cy,  # cy: rows from the top
}
_IN_IMAGE = re.compile(r"\s+in the image$")
_TEMPLATES: list[tuple[str, str]] = [  # (regex on the normalised question, type); comp before presence
    (r"^is it a rural or an urban area$", "rural_urban"),
    (r"^are there (?P<op>more|less) (?P<a>.+) than (?P<b>.+)$", "comp"),
    (r"^is the number of (?P<a>.+) (?P<op>equal to|larger than|smaller than) the number of (?P<b>.+)$", "comp"),
    (r"^how many (?P<a>.+) are there$", "count"),
    (r"^what is the (?:number|amount) of (?P<a>.+)$", "count"),
    (r"^is there an? (?P<a>.+)$", "presence"),
    (r"^is an? (?P<a>.+) present$", "presence"),
]
_OPS = {"more": ">", "larger than": ">", "less": "<", "smaller than": "<", "equal to": "=="}
EXPECTED_KIND = {"presence": "bool", "comp": "bool", "count": "count", "rural_urban": "text"}


@dataclass(frozen=True)
class SceneObject:
    """One drawn object."""

    cls: str  # class name, e.g. "residential building"
    size: str  # designed size label
    shape: str  # designed shape label
    top: int  # bounding box in pixels from the top-left corner, ends exclusive
    left: int
    bottom: int
    right: int
    partner: int | None = None  # index of the object placed 1 px from this one ("next to"), if any

    @property
    def cx(self) -> float:
        return (self.left + self.right) / 2

    @property
    def cy(self) -> float:
        return (self.top + self.bottom) / 2

    def mask_into(self, canvas: np.ndarray) -> None:
        """Draw this object's pixels (True) into ``canvas``."""
        h, w = self.bottom - self.top, self.right - self.left
        yy, xx = np.mgrid[0:h, 0:w]
        if self.shape == "circular":
            r = (min(h, w) - 1) / 2
            inside = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 <= r * r + 0.5
        elif self.shape == "irregular":  # a plus sign, arms a third of the side wide
            third = h // 3
            inside = ((yy >= third) & (yy < h - third)) | ((xx >= third) & (xx < w - third))
        else:
            inside = np.ones((h, w), dtype=bool)
        canvas[self.top:self.bottom, self.left:self.right] |= inside


@dataclass
class Question:
    """A parsed RSVQA-LR question."""

    type: str  # presence | count | comp | rural_urban
    phrases: list[NounPhrase] = field(default_factory=list)  # one (presence, count) or two (comp)
    op: str | None = None  # comp: ">", "<" or "=="

    @property
    def plain(self) -> bool:
        """No attribute and no relation anywhere in the question."""
        return all(p.plain for p in self.phrases)


def parse_question(text: str) -> Question:
    """Parse an RSVQA-LR question; ValueError when it is not one of the four templates."""
    norm = _IN_IMAGE.sub("", re.sub(r"\s+", " ", text.strip().lower()).rstrip(" ?"))
    for pattern, kind in _TEMPLATES:
        match = re.match(pattern, norm)
        if match is None:
            continue
        if kind == "rural_urban":
            return Question(kind)
        parts = [match[name] for name in ("a", "b") if name in match.groupdict()]
        phrases = [parse_noun_phrase(p) for p in parts]
        if any(p is None for p in phrases):
            break
        return Question(kind, phrases, _OPS.get(match.groupdict().get("op") or ""))  # type: ignore[arg-type]
    raise ValueError(f"not an RSVQA-LR question template: {text!r}")


def query_name(query: str) -> str:
    """How the scene reads a query: lower case, no article, singular head noun."""
    text = re.sub(r"\s+", " ", query.strip().lower())
    text = re.sub(r"^(?:a|an|the) ", "", text)
    return singular_noun(text) if text else text


@dataclass
class Scene:
    """Objects on a blank tile, and the image-level label for rural/urban."""

    objects: list[SceneObject]
    label: str  # "rural" or "urban"

    def classes_for(self, query: str) -> set[str]:
        name = query_name(query)
        return {name, *SUPERCLASSES.get(name, ())}

    def mask(self, query: str) -> np.ndarray:
        canvas = np.zeros((TILE_PX, TILE_PX), dtype=bool)
        wanted = self.classes_for(query)
        for obj in self.objects:
            if obj.cls in wanted:
                obj.mask_into(canvas)
        return canvas

    def image(self) -> np.ndarray:
        """The tile's pixels (blank: the scorer, not the pixels, carries the scene)."""
        return np.zeros((TILE_PX, TILE_PX, 3), dtype=np.uint8)

    # --- truth ------------------------------------------------------------------------------
    def matching(self, phrase: NounPhrase) -> list[int]:
        """Indices of the objects ``phrase`` describes."""
        found = self._with_attributes(phrase)
        if phrase.relation is None or phrase.reference is None:
            return found
        others = self._with_attributes(phrase.reference)
        return [i for i in found if any(j != i and self._related(i, phrase.relation, j) for j in others)]

    def _with_attributes(self, phrase: NounPhrase) -> list[int]:
        wanted = self.classes_for(phrase.noun)
        return [i for i, o in enumerate(self.objects) if o.cls in wanted
                and (phrase.size is None or o.size == phrase.size)
                and (phrase.shape is None or o.shape == phrase.shape)]

    def _related(self, i: int, relation: str, j: int) -> bool:
        a, b = self.objects[i], self.objects[j]
        if relation == "is_next_to":
            return a.partner == j or b.partner == i
        return _RELATION_TEST[relation](a, b)


class SceneScorer:
    """A scorer for one scene: 1.0 on the pixels of the objects a query names, 0.0 elsewhere."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.queries: list[str] = []  # every query seen, in order

    def score_maps(self, tile, queries: list[str]) -> np.ndarray:
        self.queries.extend(queries)
        return np.stack([self.scene.mask(q).astype(np.float32) for q in queries])

    def score_image(self, tile, options: list[str]) -> np.ndarray:
        return np.array([1.0 if query_name(o) == self.scene.label else 0.0 for o in options], dtype=np.float32)


def truth(question: Question, scene: Scene) -> bool | int | str:
    """The answer the scene gives to ``question``."""
    if question.type == "rural_urban":
        return scene.label
    counts = [len(scene.matching(p)) for p in question.phrases]
    if question.type == "count":
        return counts[0]
    if question.type == "presence":
        return counts[0] > 0
    a, b = counts
    return {">": a > b, "<": a < b, "==": a == b}[question.op or "=="]


# --- building scenes ------------------------------------------------------------------------
def _concrete_class(noun: str, rng: random.Random) -> str:
    return rng.choice(SUPERCLASSES[noun]) if noun in SUPERCLASSES else noun


def _spec(phrase: NounPhrase, rng: random.Random, match: bool) -> tuple[str, str, str]:
    """(class, size, shape) of an object that matches the phrase's attributes when ``match``."""
    cls = _concrete_class(phrase.noun, rng)
    size = phrase.size if match and phrase.size else rng.choice(SIZES)
    shape = phrase.shape if match and phrase.shape else rng.choice(SHAPES)
    return cls, size, shape


def _wanted_objects(question: Question, rng: random.Random) -> tuple[list[tuple[str, str, str]], list[tuple]]:
    """Object specs (free) and next-to pairs (subject spec, reference spec) for the question."""
    free: list[tuple[str, str, str]] = []
    pairs: list[tuple] = []
    for phrase in question.phrases:
        empty = question.type == "presence" and rng.random() < 0.35  # some "no" answers
        nouns = [phrase] + ([phrase.reference] if phrase.reference is not None else [])
        if empty:
            nouns = nouns[1:]  # references only: the subject is absent
        for p in nouns:
            free += [_spec(p, rng, match=rng.random() < 0.6) for _ in range(rng.randint(0, 4))]
        if not empty and phrase.relation == "is_next_to" and phrase.reference is not None:
            for _ in range(rng.choice((0, 1, 1, 2))):
                pairs.append((_spec(phrase, rng, True), _spec(phrase.reference, rng, rng.random() < 0.8)))
    return free, pairs


def _place(spec: tuple[str, str, str], cell: tuple[int, int], rng: random.Random, align: str = "centre",
           row_centre: int | None = None) -> SceneObject:
    cls, size, shape = spec
    h, w = DIMS[(size, shape)]
    if shape == "rectangular" and rng.random() < 0.5 and align == "centre":
        h, w = w, h  # upright rectangles too
    r, c = cell
    cy = row_centre if row_centre is not None else r * CELL_PX + CELL_PX // 2 + rng.randint(-3, 3)
    if align == "right":  # right edge on the cell's right edge
        left = (c + 1) * CELL_PX - w
    elif align == "left":  # one pixel after the previous cell's last column
        left = c * CELL_PX + 1
    else:
        left = c * CELL_PX + (CELL_PX - w) // 2 + rng.randint(-3, 3)
    top = cy - h // 2
    return SceneObject(cls, size, shape, top, left, top + h, left + w)


def scene_for(question: Question, seed: int) -> Scene:
    """A random scene (seeded) with objects of every class the question names."""
    rng = random.Random(seed)
    free, pairs = _wanted_objects(question, rng)
    objects: list[SceneObject] = []
    pair_cells = [(r, c) for r in range(GRID) for c in range(0, GRID - 1, 2)]
    rng.shuffle(pair_cells)
    used: set[tuple[int, int]] = set()
    for (subject, reference), (r, c) in zip(pairs, pair_cells):
        row_centre = r * CELL_PX + CELL_PX // 2
        i = len(objects)
        a = _place(subject, (r, c), rng, "right", row_centre)
        b = _place(reference, (r, c + 1), rng, "left", row_centre)
        objects += [replace(a, partner=i + 1), replace(b, partner=i)]
        used |= {(r, c), (r, c + 1)}
    cells = [(r, c) for r in range(GRID) for c in range(GRID) if (r, c) not in used]
    rng.shuffle(cells)
    for spec, cell in zip(free, cells):
        objects.append(_place(spec, cell, rng))
    return Scene(objects, rng.choice(("rural", "urban")))
