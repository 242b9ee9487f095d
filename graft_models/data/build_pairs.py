"""Build GRAFT pairs from GeoTIFF tiles and a CSV of geotagged ground photos.

Satellite crops are centred on photo locations (greedy, in CSV order); every not-yet-assigned
photo inside a crop is assigned to it (at most ``max_per_crop``, the nearest first, or the closest
in date when dates exist), photos are never reused, and crop centres in one tile stay at least
``min_spacing_px`` apart (the paper keeps 112 px). When dates exist (CSV column ``date`` and a
tile date from ``tile_dates`` or the GeoTIFF ``TIFFTAG_DATETIME`` tag), a photo covered by several
tiles only goes to the tile closest in date. The result is written in the official layout
(:mod:`graft_models.data.official`), satellite crops as PNG in the RGB view that
``graft_vqa.core.tiles.Tile.rgb()`` gives (and ``find()`` later sees).
"""
from __future__ import annotations

import csv
import logging
import os
import random
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from pyproj import Transformer
from tqdm import tqdm

from graft_models.data.official import SatRecord, write_official
from graft_vqa.core.tiles import load_tile
from graft_vqa.core.errors import DatasetNotFoundError, UnsupportedTileError

log = logging.getLogger(__name__)


@dataclass
class Photo:
    """One ground photo from the CSV."""

    path: str  # absolute path of the photo
    lon: float  # WGS84 longitude
    lat: float  # WGS84 latitude
    when: date | None  # capture date, if the CSV has one


@dataclass
class BuildSummary:
    """What :func:`build_pairs` wrote."""

    crops: int  # satellite crops written
    pairs: int  # (satellite, ground) pairs written
    unassigned: int  # photos that fell in no crop
    splits: dict[str, int]  # crops per split


def _parse_date(text: str | None) -> date | None:
    if not text or not text.strip():
        return None
    text = text.strip()
    for fmt in ("%Y-%m-%d", "%Y:%m:%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y/%m/%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise DatasetNotFoundError(f"unreadable date {text!r}; write dates as YYYY-MM-DD")


def read_photos(photos_csv: str | Path) -> list[Photo]:
    """Read the photo CSV (columns ``path, lon, lat[, date]``); relative paths are from its folder."""
    photos_csv = Path(photos_csv)
    if not photos_csv.is_file():
        raise DatasetNotFoundError(f"photo CSV {photos_csv} not found")
    with open(photos_csv, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "lon", "lat"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetNotFoundError(f"{photos_csv} lacks columns {sorted(missing)}; "
                                       "expected path, lon, lat[, date]")
        return [Photo(str((photos_csv.parent / r["path"]).resolve()), float(r["lon"]),
                      float(r["lat"]), _parse_date(r.get("date"))) for r in reader]


def _tile_date(src: rasterio.DatasetReader, given: str | None) -> date | None:
    return _parse_date(given or src.tags().get("TIFFTAG_DATETIME"))


def _pixel_positions(src: rasterio.DatasetReader, photos: list[Photo]) -> np.ndarray:
    """(N, 2) float (col, row) of every photo in the tile's pixel grid."""
    tr = Transformer.from_crs("EPSG:4326", src.crs, always_xy=True)
    xs, ys = tr.transform([p.lon for p in photos], [p.lat for p in photos])
    inv = ~src.transform
    cols, rows = inv @ (np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))
    return np.stack([cols, rows], axis=1)


def _choose_tiles(tiles: list[str], photos: list[Photo], tile_dates: dict[str, str]) -> dict:
    """Per tile: (positions, indices of photos it may take) honouring the closest-date rule."""
    info, best = {}, {}
    for t in tiles:
        with rasterio.open(t) as src:
            pos = _pixel_positions(src, photos)
            inside = (pos[:, 0] >= 0) & (pos[:, 0] < src.width) & (pos[:, 1] >= 0) & (pos[:, 1] < src.height)
            when = _tile_date(src, tile_dates.get(t))
        info[t] = (pos, inside, when)
        for i in np.flatnonzero(inside):
            p = photos[i]
            gap = abs((p.when - when).days) if p.when and when else 0
            if i not in best or gap < best[i][0]:
                best[i] = (gap, t)
    return {t: (pos, [i for i in np.flatnonzero(ins) if best[i][1] == t], when)
            for t, (pos, ins, when) in info.items()}


def _crops_for_tile(pos: np.ndarray, candidates: list[int], photos: list[Photo], tile_when,
                    width: int, height: int, crop_px: int, max_per_crop: int,
                    min_spacing_px: float) -> list[tuple[int, int, list[int]]]:
    """Greedy crops ``(col0, row0, photo indices)`` for one tile."""
    free = set(candidates)
    centres: list[tuple[float, float]] = []
    crops = []
    half = crop_px // 2
    for seed in candidates:
        if seed not in free:
            continue
        col0, row0 = int(np.floor(pos[seed, 0])) - half, int(np.floor(pos[seed, 1])) - half
        if col0 < 0 or row0 < 0 or col0 + crop_px > width or row0 + crop_px > height:
            continue
        cx, cy = col0 + crop_px / 2, row0 + crop_px / 2
        if any(np.hypot(cx - a, cy - b) < min_spacing_px for a, b in centres):
            continue
        inside = [i for i in free if col0 <= pos[i, 0] < col0 + crop_px and row0 <= pos[i, 1] < row0 + crop_px]

        def key(i: int) -> tuple[float, float, int]:
            gap = abs((photos[i].when - tile_when).days) if photos[i].when and tile_when else 0
            return gap, float(np.hypot(pos[i, 0] - cx, pos[i, 1] - cy)), i

        chosen = sorted(inside, key=key)[:max_per_crop]
        free.difference_update(chosen)
        centres.append((cx, cy))
        crops.append((col0, row0, chosen))
    return crops


def build_pairs(tiles: list[str | Path], photos_csv: str | Path, out_dir: str | Path, *,
                crop_px: int = 224, max_per_crop: int = 25, min_spacing_px: float = 112,
                test_fraction: float = 0.1, seed: int = 0,
                tile_dates: dict[str, str] | None = None) -> BuildSummary:
    """Cut satellite crops around geotagged photos and write the official pair layout to ``out_dir``.

    ``tiles``: GeoTIFF paths (any CRS pyproj knows, e.g. EPSG:4326 or UTM). ``photos_csv``: columns
    ``path, lon, lat[, date]``. Crops go to ``test`` with probability ``test_fraction`` (seeded).
    """
    out = Path(out_dir)
    (out / "sat").mkdir(parents=True, exist_ok=True)
    photos = read_photos(photos_csv)
    tiles = [str(t) for t in tiles]
    for t in tiles:
        if not Path(t).is_file():
            raise DatasetNotFoundError(f"tile {t} not found")
    plan = _choose_tiles(tiles, photos, {str(k): v for k, v in (tile_dates or {}).items()})
    rng = random.Random(seed)
    splits: dict[str, list[SatRecord]] = {"train": [], "test": []}
    used = 0
    for t in tqdm(tiles, desc="tiles", disable=len(tiles) < 2):
        pos, candidates, when = plan[t]
        tile = load_tile(t)  # crops use find()'s RGB view: tile-wide per-band stretch, nodata -> 0
        crops = _crops_for_tile(pos, candidates, photos, when, tile.width, tile.height,
                                crop_px, max_per_crop, min_spacing_px)
        for k, (col0, row0, chosen) in enumerate(crops):
            rel = f"sat/{Path(t).stem}_{k:05d}_{col0}_{row0}.png"
            try:
                rgb = tile.crop_window(col0, row0, crop_px, crop_px).rgb()
            except UnsupportedTileError:  # every pixel is nodata: nothing to learn from
                log.info("skipped all-nodata crop at (%d, %d) of %s", col0, row0, t)
                continue
            Image.fromarray(rgb).save(out / rel)
            offsets = [(float(pos[i, 0] - col0 - crop_px / 2), float(pos[i, 1] - row0 - crop_px / 2))
                       for i in chosen]
            grounds = [os.path.relpath(photos[i].path, out.resolve()) for i in chosen]
            split = "test" if rng.random() < test_fraction else "train"
            splits[split].append(SatRecord(rel, grounds, offsets))
            used += len(chosen)
    write_official(out, splits)
    summary = BuildSummary(crops=sum(len(v) for v in splits.values()), pairs=used,
                           unassigned=len(photos) - used, splits={k: len(v) for k, v in splits.items()})
    log.info("built %s", summary)
    return summary
