"""Benchmark scenes: memory on a 20,000² raster, GRAFT windows per second, and the feature cache.

    .venv/bin/python bench/scene.py [--part all|memory|graft|app] [--side 20000] [--crop 4096]

memory: a 20,000 × 20,000 × 3 GeoTIFF (written once, tiled and compressed) answered whole with a
        cheap scorer (known objects, coarse maps); prints wall time and peak RSS of a fresh process
        against the raster's size in memory (target: peak RSS <= 2 GiB).
graft:  the real GRAFT ViT-B/16 (random weights) and CLIP text tower on a 4,096² crop: windows per
        second of the first question (encoding, features written to disk), then a second question
        with a new query on the same scene (features read from disk; target: >= 20x faster).
app:    the same 20,000² raster through the app's handlers in a fresh process: the upload (a preview read
        decimated to 2,048 px), then a question with the cheap scorer and its overlay on the preview;
        prints wall times, the preview's and the overlay's sizes and peak RSS (target: as memory, <= 2 GiB).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench scripts reuse the test fixtures (tests/fixtures/scenes.py)


def _write(path: Path, side: int) -> Path:
    from affine import Affine

    from tests.fixtures.scenes import write_scene

    if not path.is_file():
        write_scene(path, side, side, "EPSG:32617", Affine(0.6, 0, 400000.0, 0, -0.6, 3300000.0), block=2048)
    return path


class CheapScorer:
    """Known rectangles in scene pixels, scored on a coarse 16-px grid (no model)."""

    def __init__(self, rects):
        self.rects = rects

    def score_maps(self, tile, queries):
        row0, col0 = tile.window[:2] if tile.window else (0, 0)
        gh, gw = -(-tile.height // 16), -(-tile.width // 16)
        maps = np.zeros((len(queries), gh, gw), np.float32)
        for i, q in enumerate(queries):
            for top, bottom, left, right in self.rects.get(q, []):
                t, b = max(0, (top - row0) // 16), min(gh, -(-(bottom - row0) // 16))
                lf, r = max(0, (left - col0) // 16), min(gw, -(-(right - col0) // 16))
                if t < b and lf < r:
                    maps[i, t:b, lf:r] = 0.5
        return maps


def memory_child(path: str) -> None:
    """Run in a fresh process: answer two questions about the whole scene, print JSON figures."""
    from graft_vqa import Engine

    engine = Engine(scorer=CheapScorer(RECTS), refine="none", threshold=0.25, feature_cache=False)
    t0 = time.perf_counter()
    count = engine.ask(path, "How many buildings are there?")
    area = engine.ask(path, "What is the area covered by water?")
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"count": count.answer, "water_m2": area.value, "wall_s": wall, "peak_rss": peak}))


RECTS = {"building": [(1000 + 2500 * k, 1400 + 2500 * k, 3000, 3600) for k in range(7)],
         "water": [(12000, 16000, 9000, 15000)]}


def app_child(path: str) -> None:
    """Run in a fresh process: upload the scene to the app's handlers, ask one question, print JSON figures."""
    from PIL import Image

    from graft_vqa import Engine
    from graft_vqa.interfaces.app.handlers import handle_question, handle_upload
    from graft_vqa.interfaces.app.session import EnginePool, UISettings

    engine = Engine(scorer=CheapScorer(RECTS), refine="none", threshold=0.25, feature_cache=False)
    t0 = time.perf_counter()
    state, preview, _, history = handle_upload(path, None, [], 2000, tempfile.mkdtemp())
    upload = time.perf_counter() - t0
    upload_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    windows = []
    t0 = time.perf_counter()
    history, _, _, state = handle_question("How many buildings are there?", state, history, UISettings(),
                                           EnginePool(lambda s: engine),
                                           lambda *a, **k: windows.append(a[0]) if k.get("unit") == "windows" else None)
    answer = time.perf_counter() - t0
    overlay = Image.open(history[-3]["content"]["path"]).size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"answer": history[-4]["content"].split("\n")[0], "upload_s": upload, "answer_s": answer,
                      "preview": list(preview.shape), "overlay": list(overlay), "windows": windows[-1] if windows else None,
                      "upload_rss": upload_rss, "peak_rss": peak}))


def bench_app(side: int, folder: Path) -> None:
    path = _write(folder / f"scene_{side}.tif", side)
    out = subprocess.run([sys.executable, __file__, "--part", "app-child", "--path", str(path)],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    raw = side * side * 3
    print(f"app: {side}x{side}x3 GeoTIFF ({raw / 2**30:.2f} GiB of pixels) uploaded in {res['upload_s']:.1f} s "
          f"(preview {res['preview']}, peak RSS so far {res['upload_rss'] / 2**30:.2f} GiB); "
          f"{res['answer']} in {res['answer_s']:.1f} s ({res['windows']} windows reported), overlay {res['overlay']} px; "
          f"peak RSS {res['peak_rss'] / 2**30:.2f} GiB = {res['peak_rss'] / raw:.2f}x the raster "
          f"(target <= 2 GiB: {'ok' if res['peak_rss'] <= 2 * 2**30 else 'MISSED'})")


def bench_memory(side: int, folder: Path) -> None:
    path = _write(folder / f"scene_{side}.tif", side)
    out = subprocess.run([sys.executable, __file__, "--part", "memory-child", "--path", str(path)],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    raw = side * side * 3
    print(f"memory: {side}x{side}x3 GeoTIFF ({raw / 2**30:.2f} GiB of pixels), two questions "
          f"(count: {res['count']}, water {res['water_m2']:.0f} m2) in {res['wall_s']:.1f} s; "
          f"peak RSS {res['peak_rss'] / 2**30:.2f} GiB = {res['peak_rss'] / raw:.2f}x the raster "
          f"(target <= 2 GiB: {'ok' if res['peak_rss'] <= 2 * 2**30 else 'MISSED'})")


def bench_graft(crop: int, folder: Path) -> None:
    import torch

    from graft_vqa import Engine

    torch.manual_seed(0)
    path = _write(folder / f"crop_{crop}.tif", crop)
    home = Path(tempfile.mkdtemp())
    os.environ["GRAFT_VQA_HOME"] = str(home)  # an empty feature cache
    engine = Engine(graft_model="graft-vitb16", allow_untrained=True, refine="none", threshold_mode="relative",
                    relative_threshold=0.8, scene_pixels=1_000_000, cache_dir=str(home / "programs"))
    engine.scorer  # build the models outside the timings
    t0 = time.perf_counter()
    engine.ask(path, "How many buildings are there?")
    first = time.perf_counter() - t0
    maps = engine.image_patch(path).context.source
    windows = maps.windows_scored
    fresh = Engine(graft_model="graft-vitb16", allow_untrained=True, refine="none", threshold_mode="relative",
                   relative_threshold=0.8, scene_pixels=1_000_000, cache_dir=str(home / "programs"))
    fresh.scorer
    t0 = time.perf_counter()
    fresh.ask(path, "Is there a water area?")
    second = time.perf_counter() - t0
    print(f"graft: ViT-B/16 (random) on a {crop}x{crop} crop: {windows} windows of 1024 in {first:.1f} s "
          f"({windows / first:.3f} windows/s, {crop * crop / first / 1e6:.3f} MP/s)")
    print(f"graft: second question, new query, new engine (features from disk): {second:.2f} s, "
          f"{first / second:.0f}x faster than the first (target >= 20x: {'ok' if first / second >= 20 else 'MISSED'})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", default="all", choices=["all", "memory", "graft", "app", "memory-child", "app-child"])
    p.add_argument("--side", type=int, default=20_000)
    p.add_argument("--crop", type=int, default=4096)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "graft_vqa_bench_scene")
    a = p.parse_args()
    if a.part in ("memory-child", "app-child"):
        (memory_child if a.part == "memory-child" else app_child)(a.path)
        return
    a.folder.mkdir(parents=True, exist_ok=True)
    print(f"bench/scene.py; rasters in {a.folder}")
    if a.part in ("all", "memory"):
        bench_memory(a.side, a.folder)
    if a.part in ("all", "graft"):
        bench_graft(a.crop, a.folder)
    if a.part in ("all", "app"):
        bench_app(a.side, a.folder)


if __name__ == "__main__":
    main()
