"""Contrast mode: probabilities against a background vocabulary, so one cut means the same for every concept."""
from __future__ import annotations

import numpy as np
import pytest

from graft_vqa import Engine, FindConfig
from graft_vqa.core.errors import ConfigError
from graft_vqa.core.resources import data_path
from graft_vqa.core.tiles import load_tile
from graft_vqa.perception.contrast import (ContrastScorer, background_for, contrast_probability, contrast_scorer,
                                          load_vocabulary)
from graft_vqa.segmentation import segment

IMAGE = np.full((64, 64, 3), 90, np.uint8)
BACKGROUND = 0.10  # every background prompt scores this everywhere


class CosineScenes:
    """Cosine-like maps: "building" 0.30 in its box, "water area" only 0.14 in its box, 0 elsewhere;
    background prompts 0.10 everywhere. Counts its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score_maps(self, tile, queries):
        self.calls.append(list(queries))
        maps = np.zeros((len(queries), tile.height, tile.width), dtype=np.float32)
        for i, q in enumerate(queries):
            if q == "building":
                maps[i, 5:15, 5:15] = 0.30
            elif q == "water area":
                maps[i, 30:50, 30:50] = 0.14
            elif q not in ("road",):
                maps[i] = BACKGROUND
        return maps


def _vocabulary(tmp_path):
    path = tmp_path / "bg.txt"
    path.write_text("# land cover\nforest\n\nwater\nbare soil\nforest\n")
    return path


def test_probability_is_the_softmax_with_clips_scale():
    rng = np.random.default_rng(0)
    q, b = rng.normal(0, 0.05, (8, 8)), rng.normal(0, 0.05, (5, 8, 8))
    logits = 100.0 * np.concatenate([q[None], b])
    expected = np.exp(logits[0]) / np.exp(logits).sum(axis=0)
    assert np.allclose(contrast_probability(q, b, 100.0), expected, atol=1e-6)
    assert np.all(contrast_probability(q, b[:0], 100.0) == 1.0)
    extreme = contrast_probability(np.array([[1.0, -1.0]]), np.array([[[-1.0, 1.0]]]), 100.0)  # overflows
    assert extreme.tolist() == [[1.0, 0.0]]


def test_vocabulary_file_and_the_packaged_one(tmp_path):
    assert load_vocabulary(_vocabulary(tmp_path)) == ("forest", "water", "bare soil")
    packaged = load_vocabulary()
    assert "forest" in packaged and len(packaged) >= 10
    assert (data_path("prompts") / "background.txt").read_text().startswith("# Background vocabulary")
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ConfigError, match="lists no prompt"):
        load_vocabulary(empty)
    with pytest.raises(ConfigError, match="cannot read the contrast vocabulary"):
        load_vocabulary(tmp_path / "missing.txt")


def test_a_query_never_competes_with_background_words_it_shares():
    vocabulary = ("water", "building", "bare soil")
    assert background_for("water area", vocabulary) == [1, 2]
    assert background_for("commercial building", vocabulary) == [0, 2]
    assert background_for("forest", vocabulary) == [0, 1, 2]


def test_one_contrast_cut_finds_concepts_at_different_cosine_scales(tmp_path):
    vocab = str(_vocabulary(tmp_path))
    # absolute: a cut that finds the 0.14 water area also takes the 0.10 background everywhere
    absolute = Engine(scorer=CosineScenes(), refine="none", threshold=0.2)
    assert absolute.ask(IMAGE, "Is there a water area?").answer == "no"
    assert absolute.ask(IMAGE, "How many buildings are there?").answer == "1"
    contrast = Engine(scorer=CosineScenes(), refine="none", threshold_mode="contrast", contrast_threshold=0.5,
                      contrast_vocabulary=vocab)
    assert contrast.ask(IMAGE, "Is there a water area?").answer == "yes"
    answer = contrast.ask(IMAGE, "How many buildings are there?")
    assert answer.answer == "1" and answer.detections[0].box == (5, 5, 15, 15)
    assert contrast.ask(IMAGE, "Is there a road?").answer == "no"  # below the background everywhere
    metric = Engine(scorer=CosineScenes(), refine="none", threshold_mode="contrast", contrast_vocabulary=vocab,
                    gsd_m=1.0)
    assert metric.ask(IMAGE, "What is the area covered by water areas?").answer == "400 m2"


def test_contrast_scorer_wraps_any_scorer_and_scores_the_background_once_per_tile(tmp_path):
    inner = CosineScenes()
    scorer = ContrastScorer(inner, load_vocabulary(_vocabulary(tmp_path)))
    tile = load_tile(IMAGE)
    first = scorer.score_maps(tile, ["building"])
    second = scorer.score_maps(tile, ["water area", "road"])
    assert first.shape == (1, 64, 64) and second.shape == (2, 64, 64)
    assert inner.calls == [["building", "forest", "water", "bare soil"], ["water area", "road"]]
    assert first[0, 10, 10] > 0.99 and first[0, 40, 40] < 0.1  # 0.30 vs 0.10 backgrounds; 0 vs 0.10
    # "water area" shares "water" with the vocabulary: only forest and bare soil compete
    expected = 1 / (1 + 2 * np.exp(100 * (BACKGROUND - 0.14)))
    assert second[0, 40, 40] == pytest.approx(expected, rel=1e-5)


def test_segment_thresholds_contrast_probabilities(tmp_path):
    config = FindConfig(threshold_mode="contrast", contrast_threshold=0.5, contrast_vocabulary=str(_vocabulary(tmp_path)))
    result = segment(IMAGE, "water area", scorer=CosineScenes(), method="threshold", config=config)
    assert result.mask.sum() == 400 and result.mask[30:50, 30:50].all()
    assert contrast_scorer(CosineScenes(), config).vocabulary == ("forest", "water", "bare soil")
