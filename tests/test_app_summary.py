"""Tile and answer summaries shown in the app."""
from __future__ import annotations

import numpy as np

from graft_vqa.answer import Answer
from graft_vqa.core.tiles import load_tile
from graft_vqa.interfaces.app.summary import answer_text, tile_summary, timings_text, warnings_title


def test_tile_summary_of_real_tiles(shared_data):
    # sizes, CRSs and pixel sizes from ../shared/data/README.md
    neon = tile_summary(load_tile(shared_data / "tiles" / "neon_osbs_029_10cm.tif"), "neon.tif")
    assert "**neon.tif**" in neon and "400 × 400 px" in neon and "EPSG:32617" in neon and "0.1 m/px" in neon
    rgbn = tile_summary(load_tile(shared_data / "tiles" / "rgbn_5m_utm18n.tif"))
    assert "515 × 403 px, 4 bands" in rgbn and "EPSG:32618" in rgbn and "5 m/px" in rgbn and "RGB from 4" in rgbn
    rmnp = tile_summary(load_tile(shared_data / "tiles" / "rmnp_rgb_epsg4326.tif"))
    assert "EPSG:4326" in rmnp and "≈" in rmnp  # degrees: the metre GSD is approximate


def test_tile_summary_without_georeferencing_and_16_bit():
    tile = load_tile(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64))
    text = tile_summary(tile)
    assert "64 × 48 px, 1 band uint16" in text and "stretched" in text
    assert "not georeferenced" in text and "Settings" in text


def test_answer_text_and_timings():
    answer = Answer(answer="1520 m2", value=1520.0, kind="area_m2", timings={"plan_s": 0.5, "run_s": 1.25})
    assert timings_text(answer.timings) == "planning 0.50 s · running 1.25 s"
    assert answer_text(answer).startswith("**1520 m2** (area; 0 detections)")
    title = warnings_title(["word " * 40, "second"])
    assert title.startswith("2 warnings: word") and title.endswith("…") and len(title) < 110
