"""Issue 12, item 1 on the host: the ImagePatch API charges its work, and ``filter_related`` uses a
spatial index instead of checking every pair.

The review's program built a list of about 1,300 patches and called
``filter_related(big, "is_next_to", big)`` 30 times: 1.7 million pairs a call, 54 s with
``timeout_s=10``. Here it runs through the real sandbox against real patches.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from graft_vqa import sandbox
from graft_vqa.api import CostMeter, metered
from graft_vqa.config import FindConfig
from graft_vqa.core.tiles import load_tile
from graft_vqa.image_patch import COSTS, RELATIONS, ImagePatch, PatchContext
from graft_vqa.perception.instances import Instance

SIDE = 512


class DotScorer:
    """``dot``: rows of 5x5 dots; within a row dots are 2 px apart (next to each other), rows are 15 px
    apart, and every fifth row holds one lone dot. Any other name: nothing."""

    def __init__(self) -> None:
        self.dots: list[tuple[int, int]] = []
        for row in range(0, SIDE - 5, 20):
            cols = [300] if self.lone_row(row) else range(0, 256, 7)
            self.dots.extend((row, col) for col in cols)

    @staticmethod
    def lone_row(row: int) -> bool:
        return (row // 20) % 5 == 4

    def score_maps(self, tile, queries):
        maps = np.zeros((len(queries), tile.height, tile.width), dtype=np.float32)
        for i, name in enumerate(queries):
            if name == "dot":
                for r, c in self.dots:
                    maps[i, r:r + 5, c:c + 5] = 0.5
        return maps


@pytest.fixture(scope="module")
def dots_root() -> ImagePatch:
    tile = load_tile(np.zeros((SIDE, SIDE, 3), np.uint8), gsd_m=1.0)
    return ImagePatch(tile, context=PatchContext(tile=tile, scorer=DotScorer(), config=FindConfig(refine="none")))


REVIEW_PROGRAM = """
def execute_command(image_patch):
    dots = image_patch.find("dot")
    big = dots + image_patch.find("dot")
    n = 0
    for i in range(30):
        n = len(image_patch.filter_related(dots, "is_next_to", dots))
        m = len(image_patch.filter_related(big, "is_next_to", big))
    return [len(big), n, m]
"""


def test_the_review_program_finishes_within_its_limits(dots_root: ImagePatch) -> None:
    dots = dots_root.context.scorer.dots
    lone = sum(1 for r, _ in dots if DotScorer.lone_row(r))
    result = sandbox.run(REVIEW_PROGRAM, dots_root, timeout_s=30.0)
    assert result.status == "ok", result.error
    # every dot has a neighbour in its row but the lone ones; in ``big`` a dot's twin (the same dot from
    # the second find) is the same object, not a neighbour, so the lone ones stay alone there too
    assert result.value == [2 * len(dots), len(dots) - lone, 2 * (len(dots) - lone)]
    assert 2 * len(dots) > 1300
    pairs = (len(dots) ** 2 + (2 * len(dots)) ** 2) * 30
    assert result.cost < 0.1 * pairs * COSTS.pair_checked  # charged for candidates, not for every pair


def test_relating_every_pair_would_be_stopped_by_the_cost_budget(dots_root: ImagePatch) -> None:
    result = sandbox.run(REVIEW_PROGRAM, dots_root, cost_budget=1_000_000)
    assert result.status == "error" and "cost_budget" in result.error
    assert "outlines traced" in result.error  # the message says where the units went


def test_filter_related_charges_before_the_exact_checks(dots_root: ImagePatch) -> None:
    big = dots_root.find("dot")[:60]
    meter = CostMeter(1e12)
    with metered(meter):
        dots_root.filter_related(big, "is_next_to", big)
    kinds = meter.by_kind
    assert kinds["patches related"] == 120 * COSTS.patch_related
    assert 0 < kinds["pairs checked"] <= 60 * 4 * COSTS.pair_checked  # a few neighbours each, not 60
    assert kinds["outlines traced"] > 0


def _random_patches(rng: random.Random, tile, ctx, n: int) -> list[ImagePatch]:
    out = []
    for _ in range(n):
        mask = np.zeros((tile.height, tile.width), bool)
        top, left = rng.randrange(0, tile.height - 10), rng.randrange(0, tile.width - 10)
        mask[top:top + rng.randrange(1, 10), left:left + rng.randrange(1, 10)] = True
        if rng.random() < 0.1:
            mask[:] = False  # an empty instance
        out.append(ImagePatch(tile, Instance.from_mask(mask, (top, left), 0.5), context=ctx))
    return out


def test_filter_related_agrees_with_every_pair_checked_one_by_one() -> None:
    tile = load_tile(np.zeros((120, 160, 3), np.uint8), gsd_m=1.0)
    ctx = PatchContext(tile=tile, scorer=None, config=FindConfig(refine="none"))
    rng = random.Random(12)
    for _ in range(40):
        patches = _random_patches(rng, tile, ctx, rng.randrange(0, 20))
        others = patches[: rng.randrange(0, len(patches) + 1)] + _random_patches(rng, tile, ctx, rng.randrange(0, 8))
        others += others[:2]  # the same patch twice in one list
        for relation in RELATIONS:
            got = ImagePatch(tile, context=ctx).filter_related(patches, relation, others)
            want = [p for p in patches if any(o is not p and getattr(p, relation)(o) for o in others)]
            assert [id(p) for p in got] == [id(p) for p in want], relation


@pytest.mark.parametrize("call, kind", [
    (lambda p: p.find("dot"), "pixels segmented"),
    (lambda p: p.verify_property("dot", "red"), "texts encoded"),
    (lambda p: p.area_m2, "pixels masked"),
    (lambda p: p.coverage_m2("dot"), "pixels masked"),
    (lambda p: p.find("dot")[0].is_next_to(p.find("dot")[1]), "pairs checked"),
    (lambda p: p.find("dot")[0].shape, "pixels masked"),
])
def test_api_members_charge_their_work(call, kind: str) -> None:
    tile = load_tile(np.zeros((SIDE, SIDE, 3), np.uint8), gsd_m=1.0)
    root = ImagePatch(tile, context=PatchContext(tile=tile, scorer=DotScorer(), config=FindConfig(refine="none")))
    meter = CostMeter(1e12)
    with metered(meter):
        call(root)
    assert meter.by_kind.get(kind, 0) > 0, meter.by_kind


def test_a_find_that_would_refine_too_many_instances_stops_before_sam() -> None:
    class CountingRefiner:
        calls = 0

        def refine(self, tile, instances, **kwargs):
            CountingRefiner.calls += 1
            return instances

    tile = load_tile(np.zeros((SIDE, SIDE, 3), np.uint8), gsd_m=1.0)
    root = ImagePatch(tile, context=PatchContext(tile=tile, scorer=DotScorer(), refiner=CountingRefiner(),
                                                 config=FindConfig(refine="sam")))
    result = sandbox.run("def execute_command(image_patch):\n    return len(image_patch.find('dot'))\n", root)
    assert result.status == "error" and "instances refined" in result.error and "cost_budget" in result.error
    assert CountingRefiner.calls == 0
