"""The app on a scene (a raster above ``scene_pixels``): a decimated preview at upload, answers and
Segment window by window with progress, overlays drawn on the preview, GIS downloads as for tiles.

The raster is small (7.7 megapixels) and ``scene_pixels`` lowered to 4 megapixels, so the scene path
runs in seconds; the synthetic scorer places known rectangles in scene pixels.
"""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from affine import Affine
from PIL import Image

from graft_vqa import Engine
from graft_vqa.interfaces.app.handlers import handle_question, handle_upload
from graft_vqa.interfaces.app.segment_panel import handle_segment
from graft_vqa.interfaces.app.session import EnginePool, UISettings

from .fixtures.scenes import SceneRects, write_scene

HEIGHT, WIDTH = 2400, 3200  # 7.7 megapixels: a scene above SCENE_PIXELS
SCENE_PIXELS = 4_000_000
PREVIEW = 800  # the preview's longer side: the raster decimated 4 times
# (top, bottom, left, right) in scene pixels; window cores meet at 992, 1952, 2912: two buildings cross them
BUILDINGS = [(900, 1300, 900, 1300), (200, 400, 2800, 3100), (2000, 2200, 400, 600)]
WATER = [(1500, 2300, 1600, 2600)]
OBJECTS = {"building": BUILDINGS, "water": WATER, "water area": WATER}


class Recorder:
    """A stand-in for ``gr.Progress``: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple, dict]] = []

    def __call__(self, *args, **kwargs) -> None:
        self.calls.append((args, kwargs))

    def windows(self) -> list[tuple[tuple[int, int], str]]:
        """((done, total), description) of the window-by-window calls."""
        return [(args[0], kwargs["desc"]) for args, kwargs in self.calls if kwargs.get("unit") == "windows"]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    transform = Affine(0.5, 0, 400000.0, 0, -0.5, 3300000.0)
    return write_scene(tmp_path_factory.mktemp("scene") / "scene.tif", HEIGHT, WIDTH, "EPSG:32617", transform)


def _pool() -> tuple[EnginePool, SceneRects]:
    scorer = SceneRects(OBJECTS)
    engine = Engine(scorer=scorer, refine="none", threshold=0.25, feature_cache=False, scene_pixels=SCENE_PIXELS)
    return EnginePool(lambda settings: engine), scorer


def _upload(scene: Path, tmp_path: Path, history=None):
    return handle_upload(str(scene), None, history or [], 50, tmp_path, preview_max_side=PREVIEW,
                         scene_pixels=SCENE_PIXELS)


def test_upload_reads_a_decimated_preview_and_says_it_is_a_scene(scene, tmp_path):
    tracemalloc.start()
    try:
        state, preview, summary, history = _upload(scene, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert preview.shape == (HEIGHT // 4, WIDTH // 4, 3) and preview.dtype == np.uint8
    assert state.rgb is preview and state.tile_size == (HEIGHT, WIDTH) and state.scene
    raster_bytes = HEIGHT * WIDTH * 3
    assert peak < raster_bytes / 4, f"upload allocated {peak / 1e6:.1f} MB for a {raster_bytes / 1e6:.1f} MB raster"
    assert "3200 × 2400 px" in summary and "scene" in summary and "window by window" in summary
    assert "preview 800 × 600" in summary
    assert history[-1]["content"].startswith("Loaded ")


def test_a_tile_keeps_its_full_resolution_preview(tmp_path, shared_data):
    state, preview, summary, _ = handle_upload(str(shared_data / "tiles" / "neon_osbs_029_10cm.tif"), None, [], 50,
                                               tmp_path, preview_max_side=PREVIEW, scene_pixels=SCENE_PIXELS)
    assert preview.shape == (400, 400, 3) and state.tile_size == (400, 400) and not state.scene
    assert "scene" not in summary and "preview" not in summary


def test_upload_limit_is_a_clear_message(scene, tmp_path):
    state, preview, summary, history = handle_upload(str(scene), None, [], 0.01, tmp_path,
                                                     preview_max_side=PREVIEW, scene_pixels=SCENE_PIXELS)
    assert preview is None and state.tile_path is None and "could not be loaded" in summary
    text = history[-1]["content"]
    assert "upload limit of 0.01 MB" in text and "--max-upload-mb" in text and "What to do" in text


def _fill_at(overlay: np.ndarray, preview: np.ndarray, rect: tuple[int, int, int, int]) -> bool:
    """The overlay differs from the preview at the preview pixel of ``rect``'s centre (scene pixels)."""
    top, bottom, left, right = rect
    row, col = (top + bottom) // 2 * preview.shape[0] // HEIGHT, (left + right) // 2 * preview.shape[1] // WIDTH
    return bool(np.any(overlay[row, col] != preview[row, col]))


def test_questions_on_a_scene_count_exactly_with_an_overlay_on_the_preview(scene, tmp_path):
    pool, scorer = _pool()
    state, preview, _, history = _upload(scene, tmp_path)
    progress = Recorder()
    history, _, geojson, state = handle_question("How many buildings are there?", state, history, UISettings(),
                                                 pool, progress)
    text, overlay_message = history[-4]["content"], history[-3]["content"]
    assert text.startswith("**3**"), text
    overlay = np.asarray(Image.open(overlay_message["path"]).convert("RGB"))
    assert overlay.shape[1] == preview.shape[1] and preview.shape[0] < overlay.shape[0] <= preview.shape[0] + 200
    assert all(_fill_at(overlay, preview, rect) for rect in BUILDINGS)
    assert not _fill_at(overlay, preview, (1000, 1010, 2000, 2010))  # nothing there: the preview as it is
    features = json.loads(Path(geojson).read_text())["features"]
    assert len(features) == 3
    lon, lat = features[0]["geometry"]["coordinates"][0][0]
    assert -83 < lon < -81 and 29 < lat < 30.5  # RFC 7946: WGS84 longitude/latitude of the UTM scene
    windows = progress.windows()
    assert windows and windows[-1][0][0] == windows[-1][0][1] == 12  # 4 × 3 windows, each reported
    assert all("scene" in desc for _, desc in windows)
    assert all(w is not None and w[2] <= 1024 and w[3] <= 1024 for w in scorer.windows)  # never the whole raster
    # a second question on the same scene reports to its own progress bar, not to the first one's
    again = Recorder()
    history, _, _, state = handle_question("Is there a water area?", state, history, UISettings(), pool, again)
    assert history[-4]["content"].startswith("**yes**")
    assert again.windows() and len(progress.windows()) == len(windows)


def test_segment_on_a_scene_writes_gis_files_and_an_overlay_on_the_preview(scene, tmp_path):
    pool, _ = _pool()
    state, preview, _, history = _upload(scene, tmp_path)
    progress = Recorder()
    history, files, state = handle_segment("building", state, history, UISettings(refine="none"), pool,
                                           progress=progress)
    mask, vector = (Path(f) for f in files)
    assert "3 instance(s)" in history[-2]["content"]
    overlay = np.asarray(Image.open(history[-1]["content"]["path"]).convert("RGB"))
    assert overlay.shape[1] == preview.shape[1] and all(_fill_at(overlay, preview, r) for r in BUILDINGS)
    assert len(pyogrio.read_dataframe(vector)) == 3 and mask.suffix == ".tif"
    windows = progress.windows()
    assert windows and windows[-1][0] == (12, 12) and all("building" in desc for _, desc in windows)
