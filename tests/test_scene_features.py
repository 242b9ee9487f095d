"""Scenes: the on-disk feature cache, SAM per window, progress and interruption, VRT mosaics, and the
same answers as a whole-tile read."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from graft_vqa import Engine
from graft_vqa.core.errors import UnreadableTileError
from graft_vqa.core.tiles import load_tile
from graft_vqa.perception.instances import Instance

from .fixtures.scenes import SceneRects, rect_area_m2, write_scene

UTM = ("EPSG:32617", Affine(1.0, 0, 400000.0, 0, -1.0, 3300000.0))
BUILDINGS = [(896, 1104, 896, 1104), (96, 416, 1504, 1904), (1696, 1984, 192, 608)]  # on the 16-px patch grid
SMALL_SCENE = dict(scene_pixels=1_000_000)  # a 2,048² raster goes through the scene plan too


@pytest.fixture(scope="module")
def raster(tmp_path_factory) -> Path:
    return write_scene(tmp_path_factory.mktemp("s") / "scene.tif", 2048, 2048, *UTM)


class OneHotFeatures:
    """A feature scorer: each 16-px patch's feature is one-hot for the object under its centre, so a
    query's cosine is 1 on its objects and 0 elsewhere; can fail after some windows (Ctrl-C)."""

    patch_size = 16

    def __init__(self, rects, model_id: str = "one-hot:1", interrupt_after: int | None = None) -> None:
        self.names = sorted(rects)
        self.rects = rects
        self.model_id = model_id
        self.interrupt_after = interrupt_after
        self.grids = 0  # patch grids computed (model passes)

    def text_embeddings(self, texts):
        out = np.zeros((len(texts), len(self.names) + 2), np.float32)
        for i, t in enumerate(texts):
            out[i, self.names.index(t) + 1 if t in self.names else -1] = 1.0
        return out

    def patch_grid(self, tile):
        if self.interrupt_after is not None and self.grids >= self.interrupt_after:
            raise KeyboardInterrupt
        self.grids += 1
        row0, col0 = tile.window[:2]
        gh, gw = math.ceil(tile.height / 16), math.ceil(tile.width / 16)
        grid = np.zeros((gh, gw, len(self.names) + 2), np.float32)
        grid[..., 0] = 1.0
        rows = row0 + np.arange(gh) * 16 + 8
        cols = col0 + np.arange(gw) * 16 + 8
        for k, name in enumerate(self.names, start=1):
            for top, bottom, left, right in self.rects[name]:
                inside = ((rows >= top) & (rows < bottom))[:, None] & ((cols >= left) & (cols < right))[None]
                grid[inside] = 0.0
                grid[inside, k] = 1.0
        return grid

    def score_maps(self, tile, queries):
        return np.einsum("hwc,qc->qhw", self.patch_grid(tile), self.text_embeddings(queries))


def _features_engine(scorer, **options):
    return Engine(scorer=scorer, refine="none", threshold=0.5, **SMALL_SCENE, **options)


def test_a_second_question_reuses_the_features_on_disk(raster, isolated_home):
    first = OneHotFeatures({"building": BUILDINGS})
    assert _features_engine(first).ask(raster, "How many buildings are there?").answer == "3"
    assert first.grids == 9  # a 2,048² scene in 9 windows of 1,024 (64 px overlap)
    stores = list((isolated_home / "features").iterdir())
    assert len(stores) == 1 and (stores[0] / "features.f16").is_file()
    again = OneHotFeatures({"building": BUILDINGS})  # a new engine, as in a new process
    answer = _features_engine(again).ask(raster, "What is the area covered by buildings?")
    assert again.grids == 0  # no model pass: the features come from disk
    truth = sum((b - t) * (r - left) for t, b, left, r in BUILDINGS) * load_tile(raster).pixel_area_m2
    assert answer.value == pytest.approx(truth, rel=0.02)
    other = OneHotFeatures({"building": BUILDINGS}, model_id="one-hot:2")  # other weights: other features
    _features_engine(other).ask(raster, "How many buildings are there?")
    assert other.grids == 9 and len(list((isolated_home / "features").iterdir())) == 2


def test_an_interrupted_encoding_resumes_where_it_stopped(raster, isolated_home):
    broken = OneHotFeatures({"building": BUILDINGS}, interrupt_after=4)
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C: nothing swallowed, nothing half-written
        _features_engine(broken).ask(raster, "How many buildings are there?")
    resumed = OneHotFeatures({"building": BUILDINGS})
    assert _features_engine(resumed).ask(raster, "How many buildings are there?").answer == "3"
    assert resumed.grids == 9 - 4


def test_no_feature_cache_and_a_size_bound(raster, tmp_path, isolated_home):
    scorer = OneHotFeatures({"building": BUILDINGS})
    assert _features_engine(scorer, feature_cache=False).ask(raster, "How many buildings are there?").answer == "3"
    assert not (isolated_home / "features").exists()
    second = write_scene(tmp_path / "second.tif", 2048, 2048, *UTM)
    bound = 2048 * 2048 // 256 * (4 * 2 + 1) * 1.5 / 2**30  # room for one scene's features (4-d), not two
    for path in (raster, second):
        _features_engine(OneHotFeatures({"building": BUILDINGS}), feature_cache_gb=bound).ask(
            path, "How many buildings are there?")
    stores = list((isolated_home / "features").iterdir())
    assert len(stores) == 1  # the first scene's features were evicted, least recently used first


def test_progress_is_reported_window_by_window(raster):
    seen = []
    engine = Engine(scorer=SceneRects({"building": BUILDINGS}), refine="none", threshold=0.25,
                    feature_cache=False, progress=lambda done, total, what: seen.append((done, total)),
                    **SMALL_SCENE)
    assert engine.ask(raster, "How many buildings are there?").answer == "3"
    assert seen[:9] == [(i, 9) for i in range(1, 10)]


def test_the_same_answers_as_a_whole_tile_read(raster):
    rects = {"building": BUILDINGS}
    questions = ["How many buildings are there?", "What is the area covered by buildings?", "Is there a road?"]
    whole = Engine(scorer=SceneRects(rects), refine="none", threshold=0.25)
    scene = Engine(scorer=SceneRects(rects), refine="none", threshold=0.25, feature_cache=False, **SMALL_SCENE)
    for question in questions:
        a, b = whole.ask(raster, question), scene.ask(raster, question)
        assert a.kind == b.kind and (a.value == b.value or a.value == pytest.approx(b.value, rel=1e-3)), question
    assert whole.image_patch(raster).context.scale == 1 and scene.image_patch(raster).context.scale == 16


class ExactRefiner:
    """Stands in for SAM: refines each instance to the exact rectangle it lies on, in the window's own
    coordinates, and records the windows it saw (one SAM embedding each)."""

    def __init__(self, rects) -> None:
        self.rects = rects
        self.windows: list[tuple] = []

    def refine(self, tile, instances, *, box_prompt=False, valid=None):
        self.windows.append(tile.window)
        row0, col0 = tile.window[:2]
        out = []
        for inst in instances:
            r, c = inst.best_pixel[0] + row0, inst.best_pixel[1] + col0
            top, bottom, left, right = next(x for x in self.rects if x[0] <= r < x[1] and x[2] <= c < x[3])
            mask = np.zeros((tile.height, tile.width), bool)
            mask[top - row0:bottom - row0, left - col0:right - col0] = True
            out.append(replace(Instance.from_mask(mask, inst.best_pixel, inst.score), refined=True))
        return out


def test_sam_refines_each_instance_in_a_window_around_it(raster):
    refiner = ExactRefiner(BUILDINGS)
    engine = Engine(scorer=SceneRects({"building": BUILDINGS}), refiner=refiner, threshold=0.25,
                    feature_cache=False, **SMALL_SCENE)
    answer = engine.ask(raster, "How many buildings are there?")
    assert answer.answer == "3" and all(d.refined for d in answer.detections)
    assert sorted(d.box for d in answer.detections) == sorted((lf, t, r, b) for t, b, lf, r in BUILDINGS)
    assert len(refiner.windows) == len(set(refiner.windows)) <= 3  # one embedding per window with instances
    assert all(w[2] <= 1024 and w[3] <= 1024 for w in refiner.windows)


def _vrt(path: Path, sources: list[tuple[str, int]], width: int, height: int, crs: str, transform: Affine) -> Path:
    bands = []
    for band in (1, 2, 3):
        simple = "".join(
            f'<SimpleSource><SourceFilename relativeToVRT="1">{name}</SourceFilename><SourceBand>{band}</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{width // len(sources)}" ySize="{height}"/>'
            f'<DstRect xOff="{xoff}" yOff="0" xSize="{width // len(sources)}" ySize="{height}"/></SimpleSource>'
            for name, xoff in sources)
        bands.append(f'<VRTRasterBand dataType="Byte" band="{band}">{simple}</VRTRasterBand>')
    gt = ", ".join(str(v) for v in transform.to_gdal())
    path.write_text(f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}"><SRS>{crs}</SRS>'
                    f'<GeoTransform>{gt}</GeoTransform>{"".join(bands)}</VRTDataset>')
    return path


def test_a_vrt_mosaic_is_one_scene_and_missing_sources_are_named(tmp_path):
    crs, t = UTM
    write_scene(tmp_path / "west.tif", 1500, 1500, crs, t)
    write_scene(tmp_path / "east.tif", 1500, 1500, crs, t @ Affine.translation(1500, 0))
    mosaic = _vrt(tmp_path / "mosaic.vrt", [("west.tif", 0), ("east.tif", 1500)], 3000, 1500, crs, t)
    across = [(600, 900, 1300, 1700)]  # straddles the seam between the two files
    engine = Engine(scorer=SceneRects({"building": across}), refine="none", threshold=0.25, feature_cache=False,
                    **SMALL_SCENE)
    answer = engine.ask(mosaic, "How many buildings are there?")
    assert answer.answer == "1" and answer.detections[0].box == (1300, 600, 1700, 900)
    areas = load_tile(mosaic).pixel_area_map()
    assert answer.detections[0].area_m2 == pytest.approx(rect_area_m2(areas, across[0]), rel=0.01)
    broken = _vrt(tmp_path / "broken.vrt", [("west.tif", 0), ("gone.tif", 1500)], 3000, 1500, crs, t)
    with pytest.raises(UnreadableTileError, match="missing source file.*gone.tif"):
        engine.ask(broken, "How many buildings are there?")
