"""A tiny synthetic GRAFT pair set from real tiles, for tests, demos and benchmarks.

Ground "photos" are perturbed (jittered, noised) small crops of a tile around random known
locations; their lon/lat comes from the tile's georeferencing, so :func:`build_pairs` can place
them back. Nothing here is a real ground photo: it only exercises the pipeline end to end.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from pyproj import Transformer
from rasterio.windows import Window


@dataclass
class SyntheticPhotos:
    """Where the synthetic photos went and where they truly are."""

    csv_path: Path  # CSV with columns path, lon, lat
    pixels: dict[str, tuple[float, float]]  # photo path (as in the CSV) -> (col, row) in its tile


def make_photos(tile: str | Path, out_dir: str | Path, n: int, *, photo_px: int = 32,
                margin: int = 0, seed: int = 0, prefix: str = "") -> SyntheticPhotos:
    """Write ``n`` perturbed crops of ``tile`` and a ``photos.csv`` (path, lon, lat) in ``out_dir``.

    Locations are uniform over the tile at least ``margin`` px from its edges.
    """
    out = Path(out_dir)
    (out / "ground").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, pixels = [], {}
    with rasterio.open(tile) as src:
        to_geo = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True)
        half = photo_px // 2
        for k in range(n):
            col = rng.uniform(max(margin, half), src.width - max(margin, half))
            row = rng.uniform(max(margin, half), src.height - max(margin, half))
            win = Window(int(col) - half, int(row) - half, photo_px, photo_px)
            rgb = src.read([1, 2, 3] if src.count >= 3 else [1, 1, 1], window=win).transpose(1, 2, 0)
            rgb = rgb.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.normal(0, 8, rgb.shape)
            name = f"ground/{prefix}{Path(tile).stem}_{k:04d}.png"
            Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out / name)
            x, y = src.transform @ (col, row)
            lon, lat = to_geo.transform(x, y)
            rows.append((name, f"{lon:.10f}", f"{lat:.10f}"))
            pixels[name] = (col, row)
    csv_path = out / f"{prefix}photos.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "lon", "lat"])
        w.writerows(rows)
    return SyntheticPhotos(csv_path, pixels)


def make_pair_set(tiles: list[str | Path], out_dir: str | Path, *, photos_per_tile: int = 40,
                  crop_px: int = 64, max_per_crop: int = 5, min_spacing_px: float = 32,
                  test_fraction: float = 0.2, seed: int = 0) -> Path:
    """Synthetic photos over ``tiles`` plus :func:`build_pairs`: an official layout in ``out_dir``."""
    from graft_models.data.build_pairs import build_pairs

    out = Path(out_dir)
    rows = ["path,lon,lat"]
    for k, tile in enumerate(tiles):
        made = make_photos(tile, out, photos_per_tile, seed=seed + k, prefix=f"t{k}_")
        rows += made.csv_path.read_text().splitlines()[1:]
    (out / "photos.csv").write_text("\n".join(rows) + "\n")
    build_pairs(tiles, out / "photos.csv", out, crop_px=crop_px, max_per_crop=max_per_crop,
                min_spacing_px=min_spacing_px, test_fraction=test_fraction, seed=seed)
    return out
