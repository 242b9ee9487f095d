"""SAM refinement: the batched path with a random vit_b from the registry, and the mask choice."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from graft_vqa.config import FindConfig
from graft_vqa.core.errors import CheckpointError, WeightsNotFoundError
from graft_vqa.image_patch import ImagePatch, PatchContext
from graft_vqa.perception.components import merge_duplicates
from graft_vqa.perception.instances import Instance, mask_box
from graft_vqa.perception import sam as sam_module
from graft_vqa.perception.sam import SamMasks, SamRefiner, build_sam
from graft_vqa.segmentation import segment_tile
from graft_vqa.core.tiles import load_tile


class Rects:
    """Synthetic scorer: 1.0 inside the given rectangles (top, bottom, left, right)."""

    def __init__(self, rects: dict[str, list[tuple[int, int, int, int]]]) -> None:
        self.rects = rects

    def score_maps(self, tile, queries):
        out = np.zeros((len(queries), tile.height, tile.width), dtype=np.float32)
        for i, q in enumerate(queries):
            for t, b, l, r in self.rects.get(q, []):
                out[i, t:b, l:r] = 1.0
        return out


@pytest.mark.slow
def test_random_vit_b_batched_refinement(shared_data):
    torch.manual_seed(0)
    refiner = SamRefiner(build_sam("vit_b", checkpoint=None))
    batches: list[tuple[int, int]] = []  # (prompts, masks per prompt) of each decoder call
    refiner.sam.mask_decoder.register_forward_hook(
        lambda mod, args, out: batches.append(tuple(out[0].shape[:2])))
    tile = load_tile(shared_data / "tiles" / "rgbn_5m_utm18n.tif")
    scorer = Rects({"tank": [(10, 30, 10, 30), (100, 120, 200, 240), (300, 340, 400, 450)],
                    "field": [(200, 260, 50, 120)]})
    ctx = PatchContext(tile=tile, scorer=scorer, refiner=refiner,
                       config=FindConfig(threshold=0.5, refine="sam", merge_iou=0.7))
    root = ImagePatch(tile, context=ctx)
    tanks = root.find("tank")
    assert batches == [(3, 3)]  # one decoder call for the three components, multimask output
    assert 1 <= len(tanks) <= 3 and not ctx.warnings
    for patch in tanks:
        inst = patch.instance
        left, top, right, bottom = patch.box
        assert inst.scale == 1 and inst.crop.shape == (bottom - top, right - left) and inst.crop.any()
        assert patch.box == mask_box(inst.full_mask((tile.height, tile.width)))  # the crop is tight
    assert root.count("field") == 1
    assert refiner.encoder_calls == 1  # the image embedding is computed once per tile
    assert batches == [(3, 3), (1, 3)]
    # the paper's zero-shot recipe on the same tile reuses the cached embedding
    res = segment_tile(tile, ctx.score_map("field"), refiner=refiner, method="sam-point")
    assert res.point == (56, 200) and res.mask.shape == (tile.height, tile.width)
    assert refiner.encoder_calls == 1 and batches[-1] == (1, 3)


class FakeRefiner(SamRefiner):
    """SamRefiner with the decoder replaced by fixed masks (tests the mask choice only)."""

    def __init__(self, masks: np.ndarray, ious: np.ndarray) -> None:  # noqa: D107 - no SAM needed
        self._out = SamMasks(masks, ious)

    def candidates(self, tile, points, boxes=None):
        assert points.shape == (len(self._out.masks), 2)
        return zip(self._out.masks, self._out.iou_predictions)


def _inst(mask: np.ndarray, score: float) -> Instance:
    rows, cols = np.nonzero(mask)
    return Instance.from_mask(mask, (int(rows[0]), int(cols[0])), score)


def _full(inst: Instance, shape: tuple[int, int] = (20, 20)) -> np.ndarray:
    return inst.full_mask(shape)


def test_mask_choice_tie_break_and_fallback():
    h = w = 20
    comp = np.zeros((h, w), bool)
    comp[5:10, 5:10] = True
    exact, bigger, far = (np.zeros((h, w), bool) for _ in range(3))
    exact[5:10, 5:10] = True
    bigger[4:11, 4:11] = True
    far[15:18, 15:18] = True
    masks = np.stack([np.stack([bigger, exact, far]),       # best IoU wins (exact)
                      np.stack([exact, exact.copy(), far]),  # tie on IoU: higher predicted IoU (2nd)
                      np.stack([far, far, far])])            # nothing overlaps: keep the component
    ious = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [0.9, 0.9, 0.9]], dtype=np.float32)
    tile = type("T", (), {"height": h, "width": w})()
    out = FakeRefiner(masks, ious).refine(tile, [_inst(comp, 0.9), _inst(comp, 0.8), _inst(comp, 0.7)])
    assert out[0].refined and np.array_equal(_full(out[0]), exact) and out[0].sam_iou == pytest.approx(0.1)
    assert out[0].crop.base is None and out[1].crop.base is None  # own copies, not views of all candidates
    assert out[0].crop.shape == (5, 5)  # a crop over the mask's own box, not the whole tile
    assert out[1].refined and out[1].sam_iou == pytest.approx(0.8)
    assert not out[2].refined and np.array_equal(_full(out[2]), comp)


def test_merge_duplicates_by_iou():
    a = np.zeros((10, 10), bool)
    a[0:5, 0:5] = True
    b = np.zeros((10, 10), bool)
    b[0:5, 0:6] = True  # IoU 25/30 = 0.83 with a
    c = np.zeros((10, 10), bool)
    c[6:9, 6:9] = True
    merged = merge_duplicates([_inst(a, 0.5), _inst(b, 0.9), _inst(c, 0.1)], merge_iou=0.7)
    assert len(merged) == 2 and merged[0].score == 0.9 and merged[0].pixels == 30
    assert len(merge_duplicates([_inst(a, 0.5), _inst(b, 0.9)], merge_iou=0.9)) == 2


def test_build_sam_errors(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not found"):
        build_sam("vit_b", checkpoint=str(tmp_path / "missing.pth"))
    with pytest.raises(CheckpointError, match="vit_b, vit_l, vit_h"):
        build_sam("vit_x")


def test_upscale_interpolates_one_prompt_at_a_time(monkeypatch):
    from types import SimpleNamespace

    import torch.nn.functional as F

    refiner = SamRefiner.__new__(SamRefiner)
    refiner.sam = SimpleNamespace(image_encoder=SimpleNamespace(img_size=1024), mask_threshold=0.0)
    torch.manual_seed(0)
    logits = torch.randn(5, 3, 256, 256)
    emb = sam_module._Embedding(None, (1024, 768), (100, 75))  # resized 1024 x 768, tile 100 x 75
    expected = F.interpolate(logits[..., :256, :192], size=(100, 75), mode="bilinear",
                             align_corners=False).numpy() > 0.0
    batches = []
    real = F.interpolate

    def recording(x, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        batches.append(x.shape[0])
        return real(x, *args, **kwargs)

    monkeypatch.setattr(sam_module.F, "interpolate", recording)
    out = refiner._upscale(logits, emb)
    assert out.shape == (5, 3, 100, 75) and np.array_equal(out, expected)
    assert batches and max(batches) == 1  # never N x M full-size float masks at once


SHAPE = (120, 160)


def _reference_merge(instances, merge_iou):
    """Greedy merge with full-tile IoU on every pair (the definition)."""
    kept = []
    for inst in sorted(instances, key=lambda i: -i.score):
        for j, other in enumerate(kept):
            a, b = _full(inst, SHAPE), _full(other, SHAPE)
            union = np.logical_or(a, b).sum()
            if union and np.logical_and(a, b).sum() / union > merge_iou:
                kept[j] = Instance.from_mask(a | b, other.best_pixel, other.score)
                break
        else:
            kept.append(inst)
    return kept


def test_merge_duplicates_matches_full_tile_iou_and_skips_disjoint_boxes(monkeypatch):
    import importlib

    components = importlib.import_module("graft_vqa.perception.components")
    rng = np.random.default_rng(0)
    h, w = 120, 160
    instances = []
    for k in range(40):
        top, left = int(rng.integers(0, h - 20)), int(rng.integers(0, w - 20))
        mask = np.zeros((h, w), bool)
        mask[top:top + int(rng.integers(3, 20)), left:left + int(rng.integers(3, 20))] = True
        instances.append(_inst(mask, float(rng.random())))
    for merge_iou in (0.0, 0.3, 0.7):
        expected = _reference_merge(instances, merge_iou)
        got = merge_duplicates(instances, merge_iou)
        assert [(g.box, g.score) for g in got] == [(e.box, e.score) for e in expected]
        assert all(np.array_equal(_full(g, SHAPE), _full(e, SHAPE)) for g, e in zip(got, expected))
    shapes = []
    real = components.iou
    monkeypatch.setattr(components, "iou", lambda a, b: shapes.append(a.shape) or real(a, b))
    a, b = np.zeros((h, w), bool), np.zeros((h, w), bool)
    a[0:5, 0:5] = True
    b[50:60, 50:60] = True
    assert len(merge_duplicates([_inst(a, 0.9), _inst(b, 0.5)], 0.5)) == 2
    assert (h, w) not in shapes  # disjoint boxes: no full-tile IoU
