"""Scene-wide score maps of a raster of any size, assembled window by window (a :class:`MapSource`).

Windows are read one at a time (never the whole raster), scored, reduced to the cell grid and only
their core cells kept (:func:`~graft_vqa.scene.windows.run_window`), so a scene's map is seamless at
window borders and memory is one window plus the cell-resolution maps. A
:class:`~graft_vqa.perception.protocols.FeatureScorer` (GRAFT) has its features kept on disk
(:mod:`graft_vqa.scene.features`): later questions cost a dot product. Any other scorer is called on
each window with every query of the pass at once. Where the windows run is a
:class:`~graft_vqa.scene.windows.WindowRunner`'s choice (this process by default, or a Ray cluster);
the maps are assembled here whatever the order the windows come back in.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
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
from graft_vqa.scene.windows import LocalWindowRunner, WindowJob, WindowResult, WindowRunner

log = logging.getLogger(__name__)

BAND_ROWS = 256  # cell rows scored at a time from the on-disk features


class SceneMaps:
    """Score maps and instances of a scene (a raster of any size) on a grid of ``scale``-pixel cells."""

    def __init__(self, tile: Any, scorer: Scorer, config: SceneConfig | None = None, *, aoi: AOI | None = None,
                 progress: Progress | None = None, cache_root: Any = None,
                 runner: WindowRunner | None = None) -> None:
        config = config or SceneConfig()
        self.tile = tile
        self.scorer = scorer
        self.config = config
        self.aoi = aoi
        self.progress = progress
        self.runner = runner or LocalWindowRunner()  # where windows are read and scored
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

    # --- running windows -----------------------------------------------------------------------
    def _run(self, windows: list[PlannedWindow], job: WindowJob, what: str) -> Iterator[WindowResult]:
        """The windows' results as the runner hands them over, with a progress bar (and the callback)."""
        bar = tqdm(total=len(windows), desc=what, unit="window", disable=None, leave=False)
        try:
            for i, result in enumerate(self.runner.run(self.tile, windows, self.scorer, job)):
                yield result
                bar.update(1)
                if self.progress is not None:
                    self.progress(i + 1, len(windows), what)
        finally:
            bar.close()

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
        for result in self._run(self.windows, WindowJob(self.scale, names=tuple(names)), "scoring scene"):
            r0, r1, c0, c1 = result.core
            if result.maps is not None:
                maps[:, r0:r1, c0:c1] = result.maps
                self.windows_scored += 1
            valid[r0:r1, c0:c1] = result.valid
        self._valid = valid
        return maps

    def _encode(self) -> None:
        """Run the model on the planned windows whose features are not on disk yet."""
        todo = [w for w in self.windows if not self._store.done[w.index]]
        if not todo:
            return
        job = WindowJob(self.scale, features=True, patch_size=self.scorer.patch_size)
        for result in self._run(todo, job, "encoding scene"):
            self._store.write(result.index, result.core, result.features, result.valid)
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
