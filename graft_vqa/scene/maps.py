"""Scene-wide score maps of a raster of any size, assembled window by window (a :class:`MapSource`).

Windows are read one at a time (never the whole raster), scored, reduced to the cell grid and only
their core cells kept, so a scene's map is seamless at window borders and memory is one window plus
the cell-resolution maps. A :class:`~graft_vqa.perception.protocols.FeatureScorer` (GRAFT) has its
features kept on disk (:mod:`graft_vqa.scene.features`): later questions cost a dot product. Any other
scorer is called on each window with every query of the pass at once.
"""
from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.windows import Window
from tqdm.auto import tqdm

from graft_vqa import weights
from graft_vqa.config import FindConfig, SceneConfig
from graft_vqa.core.aoi import AOI
from graft_vqa.core.errors import GraftVQAError
from graft_vqa.perception.instances import Box, Instance
from graft_vqa.perception.protocols import FeatureScorer, Refiner, Scorer
from graft_vqa.perception.scorer import resize_maps
from graft_vqa.scene.features import FeatureStore
from graft_vqa.scene.find import find_in_scene
from graft_vqa.scene.plan import PlannedWindow, Progress, WindowPlan

log = logging.getLogger(__name__)

VALID_FRACTION = 0.5  # a cell holds data when at least this share of its pixels is valid
BAND_ROWS = 256  # cell rows scored at a time from the on-disk features


def block_mean(values: np.ndarray, cell: int) -> np.ndarray:
    """(..., h, w) -> (..., ceil(h / cell), ceil(w / cell)) float32: the mean over each cell's pixels
    (cells cut by the edge average the pixels they have)."""
    h, w = values.shape[-2:]
    gh, gw = math.ceil(h / cell), math.ceil(w / cell)
    lead = values.shape[:-2]
    if h == gh * cell and w == gw * cell:  # the common case: no cut cells
        return values.reshape(*lead, gh, cell, gw, cell).mean(axis=(-3, -1), dtype=np.float32)
    pad = [(0, 0)] * len(lead) + [(0, gh * cell - h), (0, gw * cell - w)]
    sums = np.pad(values.astype(np.float32), pad).reshape(*lead, gh, cell, gw, cell).sum(axis=(-3, -1))
    rows = np.minimum(cell, h - np.arange(gh) * cell).astype(np.float32)
    cols = np.minimum(cell, w - np.arange(gw) * cell).astype(np.float32)
    return sums / np.outer(rows, cols)


def to_cells(maps: np.ndarray, height: int, width: int, cell: int) -> np.ndarray:
    """A scorer's (Q, h', w') maps of an h×w window on its cell grid: block means of full-resolution
    maps, a bilinear resize of coarser ones."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[1:] == (height, width):
        return block_mean(maps, cell)
    size = (math.ceil(height / cell), math.ceil(width / cell))
    out = F.interpolate(torch.from_numpy(np.ascontiguousarray(maps))[None], size=size, mode="bilinear",
                        align_corners=False)
    return out[0].numpy()


class SceneMaps:
    """Score maps and instances of a scene (a raster of any size) on a grid of ``scale``-pixel cells."""

    def __init__(self, tile: Any, scorer: Scorer, config: SceneConfig | None = None, *, aoi: AOI | None = None,
                 progress: Progress | None = None, cache_root: Any = None) -> None:
        config = config or SceneConfig()
        self.tile = tile
        self.scorer = scorer
        self.config = config
        self.aoi = aoi
        self.progress = progress
        self.plan = WindowPlan.build(tile.height, tile.width, window=config.scene_window,
                                     overlap=config.scene_overlap, cell=config.scene_cell,
                                     max_cells=config.scene_max_cells)
        self.scale = self.plan.cell  # pixels per map cell
        self.windows = self.plan.windows(None if aoi is None else aoi.geometry_px)
        self._valid: np.ndarray | None = None  # (rows, cols) bool, filled by the first pass
        self._store = self._open_store(cache_root) if config.feature_cache else None
        self.windows_scored = 0  # windows the model ran on (for tests and benchmarks)

    # --- the feature cache ---------------------------------------------------------------------
    def _open_store(self, cache_root: Any) -> FeatureStore | None:
        if not isinstance(self.scorer, FeatureScorer) or not self.scorer.model_id:
            return None
        if self.scorer.patch_size > self.scale or self.scale % self.scorer.patch_size:
            return None
        root = Path(cache_root) if cache_root is not None else weights.home() / "features"
        dim = int(self.scorer.text_embeddings(["a"]).shape[-1])
        key = hashlib.sha1(f"{self.tile.key}|{self.scorer.model_id}|{self.plan.key}".encode()).hexdigest()[:24]
        meta = {"tile": self.tile.path, "tile_key": self.tile.key, "model": self.scorer.model_id, "plan": self.plan.key}
        try:
            return FeatureStore.open(root, key, self.plan.grid, dim, self.plan.count(), meta,
                                     int(self.config.feature_cache_gb * 2**30))
        except (GraftVQAError, OSError) as exc:
            log.warning("scene features are not cached on disk: %s", exc)
            return None

    # --- reading windows -----------------------------------------------------------------------
    def _read(self, windows: list[PlannedWindow], what: str) -> Iterator[tuple[PlannedWindow, Any]]:
        """Window tiles one by one, with a progress bar (and the progress callback)."""
        bar = tqdm(total=len(windows), desc=what, unit="window", disable=None, leave=False)
        try:
            for i, win in enumerate(windows):
                yield win, self.tile.read(Window(win.col_off, win.row_off, win.width, win.height))
                bar.update(1)
                if self.progress is not None:
                    self.progress(i + 1, len(windows), what)
        finally:
            bar.close()

    def _core(self, win: PlannedWindow, cells: np.ndarray) -> np.ndarray:
        """The core part of a window's (..., rows, cols) cell array."""
        r0, r1, c0, c1 = win.core
        top, left = win.row_off // self.scale, win.col_off // self.scale
        return cells[..., r0 - top:r1 - top, c0 - left:c1 - left]

    def _valid_cells(self, win: PlannedWindow, window_tile: Any) -> np.ndarray:
        valid = np.asarray(window_tile.valid_mask(), dtype=np.uint8)[None]
        return self._core(win, block_mean(valid, self.scale))[0] >= VALID_FRACTION

    def valid(self) -> np.ndarray:
        """Bool (rows, cols): cells that hold data and lie in a planned window."""
        if self._valid is None:
            if self._store is not None:
                self._encode()
                self._valid = self._planned(np.asarray(self._store.valid, dtype=bool))
            else:
                self.score_maps([])
        return self._valid

    def _planned(self, valid: np.ndarray) -> np.ndarray:
        keep = np.zeros(self.plan.grid, dtype=bool)
        for win in self.windows:
            r0, r1, c0, c1 = win.core
            keep[r0:r1, c0:c1] = True
        return valid & keep

    # --- score maps ----------------------------------------------------------------------------
    def score_maps(self, names: list[str]) -> np.ndarray:
        """(len(names), rows, cols) float32 scores; cells outside the planned windows are NaN."""
        if self._store is not None:
            self._encode()
            return self._from_features(names)
        maps = np.full((len(names), *self.plan.grid), np.nan, dtype=np.float32)
        valid = np.zeros(self.plan.grid, dtype=bool)
        for win, window_tile in self._read(self.windows, "scoring scene"):
            r0, r1, c0, c1 = win.core
            if names:
                scored = self.scorer.score_maps(window_tile, list(names))
                maps[:, r0:r1, c0:c1] = self._core(win, to_cells(scored, win.height, win.width, self.scale))
                self.windows_scored += 1
            valid[r0:r1, c0:c1] = self._valid_cells(win, window_tile)
        self._valid = valid
        return maps

    def _encode(self) -> None:
        """Run the model on the planned windows whose features are not on disk yet."""
        todo = [w for w in self.windows if not self._store.done[w.index]]
        if not todo:
            return
        k = self.scale // self.scorer.patch_size
        for win, window_tile in self._read(todo, "encoding scene"):
            grid = np.asarray(self.scorer.patch_grid(window_tile), dtype=np.float32)  # (gh, gw, D)
            if k > 1:
                grid = np.moveaxis(block_mean(np.moveaxis(grid, -1, 0), k), 0, -1)
            features = np.moveaxis(self._core(win, np.moveaxis(grid, -1, 0)), 0, -1)
            self._store.write(win.index, win.core, features, self._valid_cells(win, window_tile))
            self.windows_scored += 1

    def _from_features(self, names: list[str]) -> np.ndarray:
        """Maps from the on-disk features: cosines with the text embeddings, a band of rows at a time."""
        rows, cols = self.plan.grid
        maps = np.full((len(names), rows, cols), np.nan, dtype=np.float32)
        if not names:
            return maps
        text = np.asarray(torch.as_tensor(self.scorer.text_embeddings(list(names))).float(), dtype=np.float32)
        norm = np.linalg.norm(text, axis=1, keepdims=True)
        text = text / np.maximum(norm, 1e-12)
        for r in range(0, rows, BAND_ROWS):
            band = np.asarray(self._store.features[r:r + BAND_ROWS], dtype=np.float32)  # (b, cols, D)
            # a pooled cell holds the mean feature, so its score is the mean of its patches' cosines
            maps[:, r:r + BAND_ROWS] = np.moveaxis(band @ text.T, -1, 0)
        keep = self._planned(np.ones(self.plan.grid, dtype=bool))
        maps[:, ~keep] = np.nan
        return maps

    # --- instances -----------------------------------------------------------------------------
    def find(self, score_map: np.ndarray, box: Box, config: FindConfig, refiner: Refiner | None,
             name: str | None = None) -> list[Instance]:
        """``find``'s instances of one scene-wide map inside pixel ``box`` (see :func:`find_in_scene`);
        a scorer with full-resolution maps is asked again around small instances of ``name``."""
        pixel_maps = None
        if name is not None and not isinstance(self.scorer, FeatureScorer):
            def pixel_maps(window_tile: Any) -> np.ndarray:
                scored = self.scorer.score_maps(window_tile, [name])
                return resize_maps(np.asarray(scored), (window_tile.height, window_tile.width))[0]
        return find_in_scene(self.tile, score_map, self.valid(), self.scale, box, config, refiner,
                             self.config.sam_window, pixel_maps, self.plan.window)
