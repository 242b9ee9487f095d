"""The on-disk feature cache of scenes: float16 feature grids, memory-mapped, bounded in size.

One folder per (scene, model, window plan) under ``$GRAFT_VQA_HOME/features/``: ``features.f16``
(rows × cols × D, float16), ``valid.u8`` (rows × cols: cells holding data), ``done.u8`` (one byte
per window of the plan, set once that window's core is written and flushed) and ``meta.json``.
A second question about the same scene reads the features instead of running the model again; an
interrupted encoding resumes at the first window not done. When the folders together exceed the
size bound, the least recently used scenes are deleted first.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from graft_vqa.core.errors import GraftVQAError

log = logging.getLogger(__name__)

FORMAT = "graft-vqa-features/1"


class FeatureStore:
    """Features of one scene under one model and plan (create with :meth:`open`)."""

    def __init__(self, folder: Path, grid: tuple[int, int], dim: int, windows: int) -> None:
        self.folder = folder
        self.grid = grid  # (rows, cols) of cells
        self.dim = dim  # feature size
        self.windows = windows  # windows in the plan
        mode = "r+"
        self.features = np.memmap(folder / "features.f16", dtype=np.float16, mode=mode, shape=(*grid, dim))
        self.valid = np.memmap(folder / "valid.u8", dtype=np.uint8, mode=mode, shape=grid)
        self.done = np.memmap(folder / "done.u8", dtype=np.uint8, mode=mode, shape=(windows,))

    @classmethod
    def open(cls, root: Path, key: str, grid: tuple[int, int], dim: int, windows: int, meta: dict,
             max_bytes: int) -> FeatureStore:
        """The store for ``key``: reused when complete or partly done, else created (evicting the least
        recently used stores so that all of them stay under ``max_bytes``).

        Raises:
            GraftVQAError: this scene's features alone are larger than ``max_bytes``.
        """
        folder = root / key
        need = grid[0] * grid[1] * (dim * 2 + 1) + windows
        if need > max_bytes:
            raise GraftVQAError(f"this scene's features need {need / 2**30:.1f} GiB, more than the feature "
                                f"cache's {max_bytes / 2**30:.1f} GiB: raise feature_cache_gb or turn the cache off")
        meta_path = folder / "meta.json"
        if meta_path.is_file():
            try:
                old = json.loads(meta_path.read_text(encoding="utf-8"))
                if old.get("format") == FORMAT and old.get("grid") == list(grid) and old.get("dim") == dim:
                    os.utime(meta_path)  # most recently used
                    return cls(folder, grid, dim, windows)
            except (OSError, ValueError):
                pass
            shutil.rmtree(folder, ignore_errors=True)
        evict(root, max_bytes - need, keep=folder)
        return cls._create(folder, grid, dim, windows, meta)

    @classmethod
    def _create(cls, folder: Path, grid: tuple[int, int], dim: int, windows: int, meta: dict) -> FeatureStore:
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, size in (("features.f16", grid[0] * grid[1] * dim * 2), ("valid.u8", grid[0] * grid[1]),
                           ("done.u8", windows)):
            with open(tmp / name, "wb") as f:
                f.truncate(size)  # sparse: disk is used as windows are written
        record = {**meta, "format": FORMAT, "grid": list(grid), "dim": dim, "windows": windows,
                  "created": time.time()}
        (tmp / "meta.json").write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, folder)
        return cls(folder, grid, dim, windows)

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def write(self, index: int, core: tuple[int, int, int, int], features: np.ndarray, valid: np.ndarray) -> None:
        """Store one window's core cells, flush them, then mark the window done (in that order, so a
        window marked done is always on disk)."""
        r0, r1, c0, c1 = core
        self.features[r0:r1, c0:c1] = features.astype(np.float16)
        self.valid[r0:r1, c0:c1] = valid.astype(np.uint8)
        self.features.flush()
        self.valid.flush()
        self.done[index] = 1
        self.done.flush()


def folder_bytes(folder: Path) -> int:
    """Bytes a store's files use on disk (sparse parts not counted)."""
    total = 0
    for f in folder.iterdir():
        try:
            total += f.stat().st_blocks * 512
        except OSError:
            pass
    return total


def evict(root: Path, budget: int, keep: Path | None = None) -> None:
    """Delete the least recently used stores under ``root`` until the rest use at most ``budget`` bytes."""
    if not root.is_dir():
        return
    stores = []
    for folder in root.iterdir():
        meta = folder / "meta.json"
        if folder.is_dir() and folder != keep and meta.is_file():
            stores.append((meta.stat().st_mtime, folder, folder_bytes(folder)))
        elif folder.is_dir() and ".tmp" in folder.name:
            shutil.rmtree(folder, ignore_errors=True)  # left by an interrupted creation
    total = sum(size for _, _, size in stores)
    for _, folder, size in sorted(stores):
        if total <= max(0, budget):
            break
        log.info("feature cache: dropping %s (%.1f MiB, least recently used)", folder.name, size / 2**20)
        shutil.rmtree(folder, ignore_errors=True)
        total -= size
