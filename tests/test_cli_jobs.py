"""index, search, classify and segment end to end from the command line, with the real GRAFT models (seeded
random weights: graft-tiny, and the full ViT-B/16 once) on the shared imagery."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from graft_vqa.core.tiles import load_tile
from graft_vqa.interfaces.cli import main

TINY = ["--graft-model", "graft-tiny", "--allow-untrained"]


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def collection(shared_data, tmp_path):
    """The three GeoTIFFs and five RSVQA-LR images (no georeferencing), through a list file."""
    images = sorted((shared_data / "rsvqa_lr_sample" / "Images_LR").glob("*.tif"))[:5]
    listing = tmp_path / "rsvqa.txt"
    listing.write_text("".join(f"{p}\n" for p in images))
    return [str(shared_data / "tiles"), str(listing)]


def test_index_and_search_from_the_cli(capsys, collection, tmp_path, shared_data):
    index = str(tmp_path / "idx")
    code, out, err = _run(capsys, "index", *collection, "--out", index, "--quiet", *TINY)
    assert code == 0, err
    assert "13 chips added from 8 new" in out and "random weights" in err  # rgbn (515 px) is cut into 6 chips
    code, out, _ = _run(capsys, "index", *collection, "--out", index, "--quiet", *TINY)
    assert code == 0 and "0 chips added" in out and "8 unchanged" in out

    code, out, err = _run(capsys, "search", index, "a lake", "--top", "20", "--json", *TINY)
    hits = json.loads(out)
    assert code == 0 and len(hits) == 13
    scores = [h["properties"]["score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert sum(h["geometry"] is None for h in hits) == 5  # the RSVQA images have no footprint

    # a box around the Rocky Mountain mosaic (EPSG:4326) finds only its chip
    code, out, _ = _run(capsys, "search", index, "a lake", "--bbox=-106,40,-105,41", "--json", *TINY)
    assert [h["properties"]["path"].rsplit("/", 1)[-1] for h in json.loads(out)] == ["rmnp_rgb_epsg4326.tif"]
    vector = tmp_path / "hits.geojson"
    code, out, _ = _run(capsys, "search", index, "a lake", "--top", "3", "--vector", str(vector), *TINY)
    assert code == 0 and len(json.loads(vector.read_text())["features"]) == 3

    code, _, err = _run(capsys, "search", index, "a lake", "--allow-untrained")  # default ViT-B/16 id
    assert code == 2 and "graft-tiny:untrained-seed0" in err and "graft-vitb16:untrained-seed0" in err
    code, _, err = _run(capsys, "search", str(tmp_path / "nowhere"), "a lake", *TINY)
    assert code == 2 and "no search index" in err


def test_classify_from_the_cli(capsys, shared_data, tmp_path):
    tile = str(shared_data / "tiles" / "neon_osbs_029_10cm.tif")
    code, out, err = _run(capsys, "classify", tile, "--labels", "forest,water,urban,farmland", *TINY)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4 and sum(float(line.split()[0]) for line in lines) == pytest.approx(1.0, abs=1e-3)
    out_tif = tmp_path / "labels.tif"
    code, out, _ = _run(capsys, "classify", tile, "--labels", "forest,water", "--chip", "128", "--out",
                        str(out_tif), *TINY)
    assert code == 0 and "16 chips" in out
    with rasterio.open(out_tif) as src:
        assert src.shape == (4, 4) and src.crs.to_epsg() == 32617 and set(np.unique(src.read(1))) <= {0, 1, 255}
    code, _, err = _run(capsys, "classify", tile, "--labels", "forest,forest", *TINY)
    assert code == 2 and "more than once" in err


def test_segment_from_the_cli_matches_ask(capsys, shared_data, tmp_path):
    tile = str(shared_data / "tiles" / "neon_osbs_029_10cm.tif")
    options = [*TINY, "--threshold-mode", "relative", "--relative-threshold", "0.6"]
    mask, vector = tmp_path / "water.tif", tmp_path / "water.geojson"
    code, out, err = _run(capsys, "segment", tile, "water", "--out", str(mask), "--vector", str(vector), *options)
    assert code == 0, err
    assert "SAM refinement is off" in err  # no SAM weights here: components, one warning
    code, answer_json, _ = _run(capsys, "ask", tile, "What is the area covered by water?", "--json", *options)
    answer = json.loads(answer_json)
    assert 'coverage_m2("water")' in answer["program"]  # the same query as the segmentation
    with rasterio.open(mask) as src, rasterio.open(tile) as raster:
        assert src.crs == raster.crs and src.transform == raster.transform and src.shape == raster.shape
        assert src.nodata == raster.nodata
        masked = src.read(1) == 1
    assert masked.any()
    assert load_tile(tile).area_m2(masked) == pytest.approx(answer["value"], rel=1e-9)
    features = json.loads(vector.read_text())["features"]
    assert len(features) == len(answer["detections"]) > 0

    code, _, err = _run(capsys, "segment", tile, "water", "--out", str(tmp_path / "x.png"), *options)
    assert code == 2 and ".tif" in err and not (tmp_path / "x.png").exists()


@pytest.mark.slow
def test_vit_b16_index_search_classify_segment(shared_data, tmp_path):
    """The full-size image-level and pixel-level GRAFT ViT-B/16 (random weights), as the CLI runs them."""
    tiles, index = shared_data / "tiles", tmp_path / "idx"
    full = ["--allow-untrained", "--quiet"]

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "graft_vqa.interfaces.cli", *args], capture_output=True,
                              text=True, timeout=900)

    done = cli("index", str(tiles), "--out", str(index), *full)
    assert done.returncode == 0 and "8 chips added" in done.stdout, done.stderr
    found = cli("search", str(index), "a forest", "--json", "--allow-untrained")
    assert found.returncode == 0 and len(json.loads(found.stdout)) == 8, found.stderr
    classified = cli("classify", str(tiles / "rmnp_rgb_epsg4326.tif"), "--labels", "forest,water", "--json",
                     "--allow-untrained")
    chips = json.loads(classified.stdout)["chips"]
    assert classified.returncode == 0 and len(chips) == 1 and chips[0]["forest"] + chips[0]["water"] == \
        pytest.approx(1.0)
    mask = tmp_path / "forest.tif"
    segmented = cli("segment", str(tiles / "rmnp_rgb_epsg4326.tif"), "forest", "--out", str(mask), "--json",
                    "--allow-untrained", "--threshold-mode", "relative")
    assert segmented.returncode == 0, segmented.stderr
    with rasterio.open(mask) as src:
        assert src.crs.to_epsg() == 4326 and src.shape == (373, 485)
        assert (src.read(1) == 1).sum() == json.loads(segmented.stdout)["pixels"] > 0
