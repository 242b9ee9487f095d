"""A labelled RSVQA-LR split whose best thresholds per concept are known by construction.

Each tile is 32x32 at 10 m. Per concept, a tile holds either true objects or only decoys:

* "building": true objects score 0.30, decoys 0.20 -> an absolute cut in (0.20, 0.30] answers every
  question right, and no other cut does;
* "water area": true objects score 0.10, decoys 0.05 -> the right cuts are (0.05, 0.10];
* "road": true objects are 5x5 px (2500 m2), decoys 2x2 px (400 m2), both scoring 0.30 -> only a
  minimum area in (400, 2500] m2 (with a cut at or below 0.30) answers every question right;
* "parking": a few questions only (fewer than the calibration's minimum), so it keeps the global cut.

No single absolute cut fits "building" and "water area" at once, and the engine's default (0.12) fits
neither: the decoy buildings pass it, the true water areas do not.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from tests.fixtures.rsvqa_data import _write_tif, write_rsvqa

SIZE = 32
BEST = {"building": (0.20, 0.30), "water area": (0.05, 0.10)}  # open-closed intervals of the right cuts
ROAD_AREA = (400.0, 2500.0)  # open-closed interval of the right minimum areas (m2)
SCORES = {"building": (0.30, 0.20), "water area": (0.10, 0.05), "road": (0.30, 0.30), "parking": (0.15, 0.15)}
SLOTS = [(2, 2), (2, 18), (18, 2), (18, 18)]  # top-left corners of the object places


class SceneScorer:
    """Scores per tile: each concept's objects at their score, 0 elsewhere (background prompts: 0)."""

    weights_id = "synthetic-scenes-v1"

    def __init__(self, scenes: dict[int, dict[str, list[tuple[int, int, int, float]]]]) -> None:
        self.scenes = scenes  # img_id -> concept -> [(top, left, side, score)]
        self.calls: list[tuple[str, tuple[str, ...]]] = []  # (tile path, queries) per call

    def score_maps(self, tile, queries):
        self.calls.append((tile.path, tuple(queries)))
        scene = self.scenes[int(Path(tile.path).stem)]
        maps = np.zeros((len(queries), tile.height, tile.width), dtype=np.float32)
        for i, query in enumerate(queries):
            for top, left, side, score in scene.get(query, []):
                maps[i, top:top + side, left:left + side] = score
        return maps

    def score_image(self, tile, options):
        return np.zeros(len(options), dtype=np.float32)


def _objects(rng: random.Random, concept: str, true: bool) -> list[tuple[int, int, int, float]]:
    high, low = SCORES[concept]
    n = rng.randint(1, 3)
    slots = rng.sample(SLOTS, n)
    if concept == "road":
        return [(t, left, 5 if true else 2, high) for t, left in slots]
    return [(t, left, 4, high if true else low) for t, left in slots]


def write_scenes(root: Path, n_tiles: int = 24, seed: int = 0) -> tuple[Path, SceneScorer, dict]:
    """The split (``test``) under ``root``, its scorer and the truth ``{img_id: {concept: has objects}}``."""
    rng = random.Random(seed)
    items, scenes, truth = [], {}, {}
    for img in range(n_tiles):
        scene, has = {}, {}
        for concept in ("building", "water area", "road"):
            present = rng.random() < 0.6
            # a tile holds either the concept's true objects or only its decoys
            scene[concept] = _objects(rng, concept, present)
            has[concept] = present
            count = len(scene[concept]) if present else 0
            items.append((img, "presence", f"Is there a {concept}?", "yes" if present else "no"))
            items.append((img, "count", f"How many {concept}s are there?", str(count)))
        if img < 3:
            scene["parking"] = _objects(rng, "parking", True)
            items.append((img, "presence", "Is there a parking?", "yes"))
        scenes[img], truth[img] = scene, has
    write_rsvqa(root, "lr", items, write_images=False)
    (root / "Images_LR").mkdir(exist_ok=True)
    for img in range(n_tiles):
        _write_tif(root / "Images_LR" / f"{img}.tif", SIZE, seed=img)
    return root, SceneScorer(scenes), truth
