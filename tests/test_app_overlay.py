"""Overlay rendering of detections (no browser, no models)."""
from __future__ import annotations

import numpy as np
import pytest

from graft_vqa.answer import Detection
from graft_vqa.interfaces.app.overlay import FILL_ALPHA, PALETTE, legend_names, queried_names, render_overlay

PROGRAM = 'def execute_command(image_patch):\n    r = image_patch.find("road")\n' \
          "    b = image_patch.find('building')\n    return len(b) > len(r)\n"


def _square(name: str, left: int, top: int, side: int) -> Detection:
    ring = [(left, top), (left + side, top), (left + side, top + side), (left, top + side)]
    return Detection(name=name, score=0.5, box=(left, top, left + side, top + side), polygon_px=[ring])


def test_queried_names_in_program_order():
    assert queried_names(PROGRAM) == ["road", "building"]
    assert queried_names("def broken(:") == []
    assert legend_names([_square("water", 0, 0, 4)], PROGRAM) == ["road", "building", "water"]


def test_fill_is_translucent_colour_over_the_tile_and_outside_is_untouched():
    base = 100
    rgb = np.full((128, 128, 3), base, np.uint8)  # enlarged x4 to 512
    out = render_overlay(rgb, [_square("building", 40, 40, 40)], "", legend=False)
    assert out.shape == (512, 512, 3)
    colour = np.array(PALETTE[0], float)
    expected = base * (1 - FILL_ALPHA) + colour * FILL_ALPHA
    inside = out[60 * 4, 60 * 4].astype(float)  # centre of the square, display scale
    assert np.allclose(inside, expected, atol=2)
    assert (out[10 * 4, 10 * 4] == base).all()  # far outside
    assert (out[40 * 4, 60 * 4] == PALETTE[0]).all()  # on the outline: opaque colour


def test_hole_is_not_filled_and_box_is_used_without_polygon():
    rgb = np.zeros((512, 512, 3), np.uint8)
    outer = [(100, 100), (300, 100), (300, 300), (100, 300)]
    hole = [(150, 150), (250, 150), (250, 250), (150, 250)]
    ring_det = Detection(name="lake", score=1, box=(100, 100, 300, 300), polygon_px=[outer, hole])
    box_det = Detection(name="field", score=1, box=(400, 400, 450, 450))
    out = render_overlay(rgb, [ring_det, box_det], "", legend=False)
    assert out[120, 120].any() and not out[200, 200].any()  # ring filled, hole clear
    assert out[425, 425].any() and not out[470, 470].any()  # box filled, beyond it clear


def test_legend_has_a_row_per_queried_name_with_its_colour():
    rgb = np.zeros((512, 512, 3), np.uint8)
    out = render_overlay(rgb, [_square("building", 10, 10, 30)], PROGRAM)
    legend = out[512:]
    assert legend.shape[0] >= 2 * 20  # two rows: road (no hits) and building
    for i in range(2):  # both names' swatches appear in the legend, in distinct colours
        assert (legend.reshape(-1, 3) == PALETTE[i]).all(axis=1).any()
    assert PALETTE[0] != PALETTE[1]


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="uint8"):
        render_overlay(np.zeros((10, 10), np.float32), [])


def test_one_composite_per_name_and_overlaps_are_filled_once(monkeypatch):
    from PIL import Image

    calls = []
    real = Image.composite
    monkeypatch.setattr(Image, "composite", lambda *a: calls.append(1) or real(*a))
    base = 100
    rgb = np.full((128, 128, 3), base, np.uint8)
    dets = [_square("building", 10 + 3 * i, 10 + 3 * i, 30) for i in range(40)]  # overlapping
    dets += [_square("road", 90, 90 - i, 20) for i in range(5)]
    out = render_overlay(rgb, dets, "", legend=False)
    assert len(calls) == 2  # once per name, not once per detection
    expected = base * (1 - FILL_ALPHA) + np.array(PALETTE[0], float) * FILL_ALPHA
    # inside several overlapping buildings (away from outlines): one layer of fill, not one per detection
    assert np.allclose(out[int(35.5 * 4), int(35.5 * 4)].astype(float), expected, atol=2)  # 9 squares
    assert (out[5 * 4, 120 * 4] == base).all()


def test_each_polygon_of_a_multipolygon_is_filled_with_its_own_holes():
    rgb = np.zeros((512, 512, 3), np.uint8)

    def square(left: int, top: int, side: int) -> list[tuple[int, int]]:
        return [(left, top), (left + side, top), (left + side, top + side), (left, top + side)]

    first = [square(50, 50, 100), square(80, 80, 40)]  # exterior + hole
    second = [square(300, 300, 100), square(330, 330, 40)]
    det = Detection(name="ponds", score=1, box=(50, 50, 400, 400), polygons_px=[first, second])
    out = render_overlay(rgb, [det], "", legend=False)
    assert out[60, 60].any() and out[310, 310].any()  # both parts filled
    assert not out[100, 100].any() and not out[350, 350].any()  # both holes clear
    assert not out[250, 250].any()  # between the parts: nothing (not one polygon through both)


def test_detections_of_a_larger_raster_are_scaled_onto_its_preview():
    base = 100
    rgb = np.full((600, 800, 3), base, np.uint8)  # a preview of a 2400 × 3200 scene (decimated 4 times)
    square = _square("building", 1600, 1200, 400)  # scene pixels: preview (400, 300) to (500, 400)
    tiny = Detection(name="building", score=0.5, box=(3000, 2000, 3002, 2002))  # a 2-px box: still drawn
    out = render_overlay(rgb, [square, tiny], "", legend=False, source_size=(2400, 3200))
    assert out.shape == rgb.shape
    colour = np.array(PALETTE[0], float)
    assert np.allclose(out[350, 450].astype(float), base * (1 - FILL_ALPHA) + colour * FILL_ALPHA, atol=2)
    assert (out[300, 450] == PALETTE[0]).all() and (out[290, 450] == base).all()  # the outline where it is scaled
    assert (out[250, 350] == base).all()  # where the square would be unscaled: untouched
    assert (out[500, 750] == PALETTE[0]).all()  # the tiny box: one preview pixel, outlined
