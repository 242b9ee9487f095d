"""Rule-planner relation programs run through the real sandbox within the default call budget,
on a fake scene with ten instances of each noun; and ``ImagePatch.filter_related`` itself."""
from __future__ import annotations

import random

import numpy as np
import pytest

from graft_vqa import sandbox
from graft_vqa.api import api
from graft_vqa.config import FindConfig
from graft_vqa.image_patch import ImagePatch, PatchContext
from graft_vqa.planner import RulePlanner
from graft_vqa.core.tiles import load_tile

Box = tuple[int, int, int, int]  # (left, lower, right, upper), rows counted from the bottom
SIZES, SHAPES = ("small", "medium", "large"), ("square", "rectangular", "circular")


def make_scene(seed: int, per_noun: int = 10) -> dict[str, list[dict]]:
    """``per_noun`` random boxes per noun, crowded enough that some touch, with attributes."""
    rng = random.Random(seed)
    scene = {}
    for noun in ("building", "road"):
        items = []
        for _ in range(per_noun):
            left, lower = rng.randrange(0, 90), rng.randrange(0, 90)
            width, height = rng.randrange(4, 14), rng.randrange(4, 14)
            items.append({"box": (left, lower, left + width, lower + height), "size": rng.choice(SIZES),
                          "shape": rng.choice(SHAPES), "area": float(width * height * 4)})
        scene[noun] = items
    return scene


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def related(a: Box, b: Box, relation: str) -> bool:
    """The relations, written out independently of the fake's methods."""
    (ax, ay), (bx, by) = centre(a), centre(b)
    gap = max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3], 0)
    return {"is_left_of": ax < bx, "is_right_of": ax > bx, "is_above": ay > by, "is_below": ay < by,
            "is_next_to": gap <= 2}[relation]


class ScenePatch:
    """A fake ImagePatch over a known scene; its relation batching is the real ``filter_related``."""

    def __init__(self, scene: dict[str, list[dict]], item: dict | None = None) -> None:
        self.scene = scene
        self.item = item or {"box": (0, 0, 100, 100), "size": "large", "shape": "square", "area": 40000.0}

    @api
    def find(self, name: str) -> list["ScenePatch"]:
        """Instances of ``name``."""
        return [ScenePatch({}, item) for item in self.scene.get(name, [])]

    @api
    def exists(self, name: str) -> bool:
        """Whether ``name`` is present."""
        return bool(self.scene.get(name))

    @api
    def coverage_m2(self, name: str) -> float:
        """Total area of ``name``."""
        return sum(item["area"] for item in self.scene.get(name, []))

    @property
    @api
    def size(self) -> str:
        """Size label."""
        return self.item["size"]

    @property
    @api
    def shape(self) -> str:
        """Shape label."""
        return self.item["shape"]

    @property
    @api
    def area_m2(self) -> float:
        """Area in m²."""
        return self.item["area"]

    def _gap(self, other: "ScenePatch") -> int:
        a, b = self.item["box"], other.item["box"]
        return max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3], 0)

    @api
    def is_left_of(self, other: "ScenePatch") -> bool:
        """Centre left of ``other``'s."""
        return centre(self.item["box"])[0] < centre(other.item["box"])[0]

    @api
    def is_right_of(self, other: "ScenePatch") -> bool:
        """Centre right of ``other``'s."""
        return centre(self.item["box"])[0] > centre(other.item["box"])[0]

    @api
    def is_above(self, other: "ScenePatch") -> bool:
        """Centre above ``other``'s."""
        return centre(self.item["box"])[1] > centre(other.item["box"])[1]

    @api
    def is_below(self, other: "ScenePatch") -> bool:
        """Centre below ``other``'s."""
        return centre(self.item["box"])[1] < centre(other.item["box"])[1]

    @api
    def is_next_to(self, other: "ScenePatch") -> bool:
        """Boxes at most 2 px apart."""
        return self._gap(other) <= 2

    filter_related = ImagePatch.filter_related


def matching(scene: dict, noun: str, size: str | None = None, shape: str | None = None) -> list[int]:
    return [i for i, item in enumerate(scene[noun])
            if (size is None or item["size"] == size) and (shape is None or item["shape"] == shape)]


def with_relation(scene: dict, subjects: tuple, relation: str, references: tuple) -> list[int]:
    """Indices of the subject instances related to a reference instance other than themselves."""
    noun, chosen = subjects[0], matching(scene, *subjects)
    ref_noun, refs = references[0], matching(scene, *references)
    return [i for i in chosen if any(related(scene[noun][i]["box"], scene[ref_noun][j]["box"], relation)
                                     for j in refs if (ref_noun, j) != (noun, i))]


def expectations(scene: dict) -> dict[str, object]:
    b, r = ("building",), ("road",)
    return {
        "How many buildings next to a road are there?": len(with_relation(scene, b, "is_next_to", r)),
        "Is there a small building on the left of a road?":
            bool(with_relation(scene, ("building", "small"), "is_left_of", r)),
        "How many buildings next to a building are there?": len(with_relation(scene, b, "is_next_to", b)),
        "Is there a road next to a road?": bool(with_relation(scene, r, "is_next_to", r)),
        "Are there more buildings at the top of a road than roads at the bottom of a building?":
            len(with_relation(scene, b, "is_above", r)) > len(with_relation(scene, r, "is_below", b)),
        "What is the area covered by large buildings on the right of a large road?":
            sum(scene["building"][i]["area"]
                for i in with_relation(scene, ("building", "large"), "is_right_of", ("road", "large"))),
        "How many small square buildings on the left of a large road are there?":
            len(with_relation(scene, ("building", "small", "square"), "is_left_of", ("road", "large"))),
        "Is there a large circular building?": bool(matching(scene, "building", "large", "circular")),
    }


@pytest.mark.parametrize("seed", [3, 11])
def test_relation_programs_answer_right_within_the_default_call_budget(seed: int) -> None:
    scene = make_scene(seed)
    planner = RulePlanner()
    expected = expectations(scene)
    counts = [v for q, v in expected.items() if q.startswith("How many buildings next to")]
    assert 0 < counts[0] < 10  # the scene is crowded but not saturated, so the answer is informative
    for question, value in expected.items():
        result = sandbox.run(planner.plan(question).source, ScenePatch(scene))  # default call_budget
        assert result.status == "ok", (question, result.error)
        assert result.value == pytest.approx(value), question
        assert result.calls <= 3 + 3 * 10, (question, result.calls)  # linear in instances, not quadratic


def test_self_relations_skip_the_instance_itself_but_not_its_twins() -> None:
    twins = {"building": [{"box": (0, 0, 5, 5), "size": "small", "shape": "square", "area": 1.0}] * 2
             + [{"box": (50, 50, 55, 55), "size": "small", "shape": "square", "area": 1.0}],
             "road": []}
    source = RulePlanner().plan("How many buildings next to a building are there?").source
    result = sandbox.run(source, ScenePatch(twins))
    assert (result.status, result.value) == ("ok", 2)  # the two touching copies, not the lone one


def _root() -> ImagePatch:
    class Squares:
        def score_maps(self, tile, queries):
            maps = np.zeros((len(queries), tile.height, tile.width), np.float32)
            maps[:, 10:20, 10:20] = 1.0
            maps[:, 10:20, 21:25] = 1.0  # one column from the first
            maps[:, 40:50, 40:50] = 1.0  # far from both
            return maps

    tile = load_tile(np.full((64, 64, 3), 90, np.uint8))
    return ImagePatch(tile, context=PatchContext(tile=tile, scorer=Squares(),
                                                 config=FindConfig(threshold=0.5, refine="none")))


def test_filter_related_on_real_patches() -> None:
    root = _root()
    found = sorted(root.find("house"), key=lambda p: p.left)
    assert len(found) == 3
    near = root.filter_related(found, "is_next_to", found)
    assert [p.left for p in near] == [10, 21]  # each touches the other, never itself
    left = root.filter_related(found, "is_left_of", found[2:])
    assert left == found[:2]
    assert root.filter_related(found, "is_above", []) == []


def test_an_object_found_twice_is_not_next_to_its_copy() -> None:
    root = _root()
    first = sorted(root.find("house"), key=lambda p: p.left)
    again = sorted(root.find("home"), key=lambda p: p.left)  # another name, the same three masks
    assert [p.box for p in first] == [p.box for p in again] and first[0] is not again[0]
    near = root.filter_related(first, "is_next_to", again)
    assert [p.left for p in near] == [10, 21]  # the far square is next only to its own copy: not counted
    near_self = root.filter_related(first, "is_next_to", root.find("house"))  # the same name, a new list
    assert [p.left for p in near_self] == [10, 21]


@pytest.mark.parametrize("relation", ["is_near", "find", "distance_m", "__class__"])
def test_filter_related_refuses_unknown_relations(relation: str) -> None:
    root = _root()
    with pytest.raises(ValueError, match="is_next_to"):
        root.filter_related(root.find("house"), relation, root.find("house"))


def test_filter_related_takes_lists_of_patches() -> None:
    root = _root()
    with pytest.raises(TypeError, match="ImagePatch"):
        root.filter_related(["house"], "is_next_to", root.find("house"))
