"""Every few-shot program shown to the LLM runs in the real sandbox against the real ImagePatch."""
from __future__ import annotations

import pytest

from graft_vqa.planner import prompts
from graft_vqa import sandbox
from graft_vqa.coerce import coerce
from graft_vqa.config import FindConfig
from graft_vqa.image_patch import ImagePatch, PatchContext
from graft_vqa.core.tiles import load_tile

from .synthetic import RectScorer

RECTS = {
    "residential building": [(10, 30, 10, 40), (100, 120, 200, 230)],
    "building": [(10, 30, 10, 40), (100, 120, 200, 230), (300, 320, 400, 420)],
    "road": [(0, 403, 100, 110)],
    "water area": [(200, 260, 300, 400)],
    "commercial building": [(150, 160, 20, 30)],
    "farmland": [(200, 300, 150, 290)],
}


@pytest.fixture(scope="module")
def root(shared_data):
    tile = load_tile(shared_data / "tiles" / "rgbn_5m_utm18n.tif")
    scorer = RectScorer(RECTS, image_scores={"rural": 0.2, "urban": 0.1})
    return ImagePatch(tile, context=PatchContext(tile=tile, scorer=scorer,
                                                 config=FindConfig(threshold=0.25, refine="none")))


@pytest.mark.parametrize("example", prompts.fewshot_examples(), ids=lambda e: e.name)
def test_fewshot_program_runs_and_gives_an_answer(example, root):
    execution = sandbox.run(example.source, root, timeout_s=10)
    assert execution.status == "ok", execution.error
    coerce(execution.value, program=example.source)  # a valid answer, not an error


def test_relation_fewshot_counts_buildings_left_of_the_road(root):
    example = next(e for e in prompts.fewshot_examples() if "left of" in e.question)
    assert sandbox.run(example.source, root).value == 1  # only the building at columns 10-40
