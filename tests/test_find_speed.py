"""The faster find internals give what the straightforward ones gave: ndimage labels and in-box best
pixels in components, outlines and shape labels remembered by mask content."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label

from graft_vqa.config import FindConfig
from graft_vqa.core.tiles import load_tile
from graft_vqa.perception import geometry
from graft_vqa.perception.components import components


def _reference(score: np.ndarray, cut: float, min_pixels: int) -> list[tuple]:
    """The former implementation: skimage 8-connected labels and ndimage.maximum_position."""
    labels, n = label(score >= cut, connectivity=2, return_num=True)
    if n == 0:
        return []
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    best = ndimage.maximum_position(score, labels, index=np.arange(1, n + 1))
    out = [(tuple(int(v) for v in best[k - 1]), labels == k) for k in range(1, n + 1) if counts[k] >= min_pixels]
    return sorted(out, key=lambda item: -score[item[0]])


@pytest.mark.parametrize("seed", range(6))
def test_components_equal_the_reference_on_maps_without_ties(seed):
    rng = np.random.default_rng(seed)
    score = ndimage.gaussian_filter(rng.normal(size=(48, 56)), 2).astype(np.float32)
    tile = load_tile(np.zeros((48, 56, 3), np.uint8))
    cut = float(np.quantile(score, 0.7))
    found = components(tile, score, FindConfig(threshold=cut, refine="none", min_pixels=3))
    ref = _reference(score, cut, 3)
    assert len(found) == len(ref) > 0
    for inst, (best, mask) in zip(found, ref):
        assert inst.best_pixel == best and np.array_equal(inst.full_mask(mask.shape), mask)
        assert inst.score == pytest.approx(float(score[best]))


def test_best_pixel_is_the_first_of_tied_maxima():
    score = np.zeros((20, 20), np.float32)
    score[2:6, 3:7] = 0.5
    score[4, 5] = score[3, 6] = score[5, 3] = 0.9
    (inst,) = components(load_tile(np.zeros((20, 20, 3), np.uint8)), score, FindConfig(threshold=0.4, refine="none"))
    assert inst.best_pixel == (3, 6)


def test_remembered_outlines_and_shapes_equal_fresh_ones():
    rng = np.random.default_rng(3)
    for _ in range(5):
        mask = ndimage.gaussian_filter(rng.normal(size=(40, 40)), 3) > 0.05
        assert geometry.mask_polygon(mask).equals(geometry._trace(mask, geometry.Affine.identity()))
        assert geometry.shape_label(mask) == geometry._shape_label(mask)
    a = np.zeros((20, 20), bool)
    a[2:6, 2:14] = True
    b = np.zeros((20, 20), bool)
    b[2:14, 2:6] = True
    moved = np.roll(a, 3, axis=0)
    assert len({geometry.mask_key(m) for m in (a, b, moved)}) == 3
    assert geometry.shape_label(a) == "rectangular" and geometry.mask_polygon(moved).bounds == (2.0, 5.0, 14.0, 9.0)


def test_shapes_are_traced_once_per_mask_content(monkeypatch):
    calls = []
    measure = geometry.shape_measures
    monkeypatch.setattr(geometry, "shape_measures", lambda m: calls.append(1) or measure(m))
    mask = np.zeros((30, 30), bool)
    mask[3:9, 7:22] = True
    labels = {geometry.shape_label(mask.copy()) for _ in range(4)}
    assert labels == {"rectangular"} and len(calls) <= 1  # 0 when an earlier test traced the same mask
