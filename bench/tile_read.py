"""Benchmark: process a generated 20,000 x 20,000 x 3 GeoTIFF window by window.

Prints the time and peak RSS of computing the per-window mean of ``rgb()`` over the whole raster
with ``Tile.windows``, and, as a baseline measured in the same run, the time per megapixel of a
plain whole read of a small (4,000 x 4,000) raster of the same kind. Peak RSS must stay under
1.5 GiB. The rasters are written by a child process so their writing does not count.

    .venv/bin/python bench/tile_read.py [--side 20000] [--window 2048]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RSS_LIMIT_GIB = 1.5
STRIP = 512  # rows written at a time when generating


def generate(path: Path, side: int) -> None:
    """Write a tiled, deflate-compressed EPSG:32633 RGB GeoTIFF with smooth content."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint8", tiled=True,
                   blockxsize=512, blockysize=512, compress="deflate", zlevel=1,
                   crs="EPSG:32633", transform=Affine(0.5, 0, 400000, 0, -0.5, 5000000))
    cols = np.arange(side, dtype=np.float32)
    with rasterio.Env(GDAL_CACHEMAX=128 * 2**20), rasterio.open(path, "w", **profile) as ds:
        for r0 in range(0, side, STRIP):
            rows = np.arange(r0, min(side, r0 + STRIP), dtype=np.float32)[:, None]
            base = 127 + 100 * np.sin(cols / 997.0) * np.cos(rows / 1511.0)
            strip = np.stack([base, base[:, ::-1], (rows % 256) + 0 * base]).astype(np.uint8)
            ds.write(strip, window=Window(0, r0, side, strip.shape[1]))


def peak_rss_gib() -> float:
    """Peak resident set size of this process (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def baseline_s_per_mp(path: Path) -> float:
    """Seconds per megapixel of a plain whole read + mean of a small raster."""
    import rasterio

    t0 = time.perf_counter()
    with rasterio.open(path) as ds:
        arr = ds.read()
    float(arr.mean())
    return (time.perf_counter() - t0) / (arr.shape[1] * arr.shape[2] / 1e6)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=20_000, help="raster side in pixels")
    ap.add_argument("--window", type=int, default=2048, help="window side in pixels")
    ap.add_argument("--generate", help=argparse.SUPPRESS)  # child mode: write PATH and exit
    args = ap.parse_args()
    if args.generate:
        generate(Path(args.generate), args.side)
        return 0
    from tqdm import tqdm

    from graft_vqa.core.tiles import load_tile

    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.tif", Path(tmp) / "small.tif"
        t0 = time.perf_counter()
        for path, side in ((big, args.side), (small, 4000)):
            subprocess.run([sys.executable, __file__, "--generate", str(path), "--side", str(side)],
                           check=True)
        print(f"generated {args.side}x{args.side}x3 GeoTIFF ({big.stat().st_size / 2**20:.0f} MiB "
              f"on disk) in {time.perf_counter() - t0:.1f} s")
        rss_start = peak_rss_gib()
        base = baseline_s_per_mp(small)
        tile = load_tile(big)
        n_win = int(np.ceil(tile.height / args.window) * np.ceil(tile.width / args.window))
        t0 = time.perf_counter()
        means = [float(rgb.mean()) for _, rgb in
                 tqdm(tile.windows(args.window, rgb=True), total=n_win, desc="windows")]
        elapsed = time.perf_counter() - t0
    per_mp = elapsed / tile.megapixels
    peak = peak_rss_gib()
    print(f"windowed rgb() mean over {len(means)} windows of {args.window}px: {elapsed:.1f} s, "
          f"{per_mp * 1e3:.2f} ms/MP, overall mean {np.mean(means):.2f}")
    print(f"baseline whole read of 4000x4000: {base * 1e3:.2f} ms/MP; "
          f"ratio windowed/baseline = {per_mp / base:.2f}")
    print(f"peak RSS {peak:.3f} GiB (before reading {rss_start:.3f} GiB; limit {RSS_LIMIT_GIB} GiB; "
          f"whole raster would be {tile.height * tile.width * 3 / 2**30:.2f} GiB)")
    ok = peak < RSS_LIMIT_GIB
    print("PASS" if ok else "FAIL: peak RSS over the limit")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
