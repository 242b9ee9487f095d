"""Per-concept thresholds and contrast mode on a scene (a raster answered window by window)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from affine import Affine

from graft_vqa import Engine

from .fixtures.scenes import SceneRects, write_scene

SIDE = 2048  # answered as a scene: scene_pixels is lowered below its 4.2 megapixels
BUILDINGS = [(100, 300, 100, 300), (900, 1150, 1500, 1700)]  # the second crosses a window border
WATER = [(1300, 1800, 200, 900)]


class LevelRects(SceneRects):
    """Buildings score 0.5, the water area only 0.14; background prompts 0.10 everywhere; roads nowhere."""

    def score_maps(self, tile, queries):
        maps = super().score_maps(tile, queries)
        for i, q in enumerate(queries):
            if q == "water area":
                maps[i] *= 0.28
            elif q not in self.rects and q != "road":
                maps[i] = 0.10
        return maps


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("scene") / "s.tif", SIDE, SIDE, "EPSG:32617",
                       Affine(1.0, 0, 400000.0, 0, -1.0, 3300000.0))


def _engine(**options):
    return Engine(scorer=LevelRects({"building": BUILDINGS, "water area": WATER}), refine="none",
                  feature_cache=False, scene_pixels=1_000_000, **options)


def test_a_thresholds_file_applies_per_concept_on_a_scene(scene, tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"format": "graft-vqa-thresholds", "version": 1, "model": {"weights_id": "w"},
                                "global": {"mode": "absolute", "value": 0.3},
                                "concepts": {"water area": {"mode": "absolute", "value": 0.1}}}))
    engine = _engine(thresholds=str(path))
    assert engine.ask(scene, "How many buildings are there?").answer == "2"
    water = engine.ask(scene, "What is the area covered by water areas?")
    assert water.value == pytest.approx(500 * 700, rel=0.02)
    assert _engine(threshold=0.3).ask(scene, "Is there a water area?").answer == "no"


def test_contrast_mode_on_a_scene(scene, tmp_path):
    vocabulary = tmp_path / "bg.txt"
    vocabulary.write_text("forest\nwater\nbare soil\n")
    engine = _engine(threshold_mode="contrast", contrast_vocabulary=str(vocabulary))
    count = engine.ask(scene, "How many buildings are there?")
    assert count.answer == "2"
    truth = sorted((left, top, right, bottom) for top, bottom, left, right in BUILDINGS)
    assert np.abs(np.array(sorted(d.box for d in count.detections)) - np.array(truth)).max() <= 16
    assert engine.ask(scene, "Is there a water area?").answer == "yes"
    assert engine.ask(scene, "Is there a road?").answer == "no"
