"""Pair builder (GeoTIFF + CSV -> official layout), official reader, multi-positive batching."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.windows import Window

from graft_models.data import PairDataset, collate_pairs, read_official
from graft_models.data.build_pairs import build_pairs
from graft_vqa.core.errors import DatasetNotFoundError

TILES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tiles"
CROP, CAP, SPACING = 96, 6, 48


def _fixture(tmp_path: Path, tile: Path, n: int, seed: int, dates: list[str] | None = None):
    """Photos at random pixel positions; lon/lat computed here with rasterio + pyproj."""
    rng = np.random.default_rng(seed)
    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    truth = {}
    with rasterio.open(tile) as src:
        cols = rng.uniform(0, src.width, n)
        rows = rng.uniform(0, src.height, n)
        xs, ys = rasterio.transform.xy(src.transform, rows, cols, offset="ul")
        lon, lat = Transformer.from_crs(src.crs, "EPSG:4326", always_xy=True).transform(xs, ys)
    with open(tmp_path / "photos.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "lon", "lat"] + (["date"] if dates else []))
        for k in range(n):
            name = f"photos/p{seed}_{k:03d}.png"
            Image.new("RGB", (8, 8), (k % 255, 0, 0)).save(tmp_path / name)
            w.writerow([name, repr(float(lon[k])), repr(float(lat[k]))] + ([dates[k]] if dates else []))
            truth[(tmp_path / name).resolve()] = (cols[k], rows[k])
    return tmp_path / "photos.csv", truth


def _records(out: Path):
    recs = read_official(out, "train") + read_official(out, "test")
    return [(r, [(out / g).resolve() for g in r.grounds]) for r in recs]


@pytest.mark.parametrize("tile_name", ["neon_osbs_029_10cm.tif", "rmnp_rgb_epsg4326.tif", "rgbn_5m_utm18n.tif"])
def test_builder_assigns_photos_to_the_right_crops(tmp_path, tile_name):
    tile = TILES / tile_name
    csv_path, truth = _fixture(tmp_path, tile, 120, seed=3)
    out = tmp_path / "pairs"
    summary = build_pairs([tile], csv_path, out, crop_px=CROP, max_per_crop=CAP,
                          min_spacing_px=SPACING, test_fraction=0.3)
    recs = _records(out)
    assert summary.crops == len(recs) >= 5
    all_grounds = [g for _, gs in recs for g in gs]
    assert len(all_grounds) == len(set(all_grounds)) == summary.pairs  # no reuse
    windows = []
    with rasterio.open(tile) as src:
        for rec, grounds in recs:
            assert 1 <= len(grounds) <= CAP
            origins = np.array([[truth[g][0] - dx - CROP / 2, truth[g][1] - dy - CROP / 2]
                                for g, (dx, dy) in zip(grounds, rec.offsets)])
            assert np.allclose(origins, origins[0], atol=1e-3)  # one crop origin for all its photos
            c0, r0 = np.round(origins[0]).astype(int)
            assert np.allclose(origins[0], (c0, r0), atol=1e-3)
            for g in grounds:  # each photo lies inside its crop
                assert c0 <= truth[g][0] < c0 + CROP and r0 <= truth[g][1] < r0 + CROP
            expected = src.read([1, 2, 3], window=Window(c0, r0, CROP, CROP)).transpose(1, 2, 0)
            if src.nodata is not None:  # Tile.rgb() view: pixels that are nodata in every band -> 0
                expected = np.where(np.all(expected == src.nodata, axis=2)[..., None], 0, expected)
            assert np.array_equal(np.asarray(Image.open(out / rec.sat)), expected)
            windows.append((c0, r0, grounds))
    centres = np.array([(c + CROP / 2, r + CROP / 2) for c, r, _ in windows])
    d = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    assert d[~np.eye(len(d), dtype=bool)].min() >= SPACING
    assigned = set(all_grounds)
    for g, (col, row) in truth.items():
        if g in assigned:
            continue
        for c0, r0, grounds in windows:  # a free photo inside a crop means the crop is full ...
            if c0 <= col < c0 + CROP and r0 <= row < r0 + CROP:
                assert len(grounds) == CAP
                far = max(np.hypot(truth[x][0] - c0 - CROP / 2, truth[x][1] - r0 - CROP / 2) for x in grounds)
                assert np.hypot(col - c0 - CROP / 2, row - r0 - CROP / 2) >= far - 1e-9  # ... of nearer ones


def test_closest_date_picks_the_tile(tmp_path):
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    shutil.copy(TILES / "neon_osbs_029_10cm.tif", a)
    shutil.copy(TILES / "neon_osbs_029_10cm.tif", b)
    dates = ["2020-02-01" if k % 2 else "2021-11-30" for k in range(40)]
    csv_path, truth = _fixture(tmp_path, a, 40, seed=5, dates=dates)
    out = tmp_path / "pairs"
    build_pairs([a, b], csv_path, out, crop_px=CROP, max_per_crop=CAP, min_spacing_px=SPACING,
                tile_dates={str(a): "2020-01-01", str(b): "2022-01-01"})
    order = list(truth)
    seen = 0
    for rec, grounds in _records(out):
        for g in grounds:
            want = "a_" if order.index(g) % 2 else "b_"
            assert Path(rec.sat).name.startswith(want)
            seen += 1
    assert seen >= 10


def test_dataset_patch_indices_and_collate(tmp_path):
    tile = TILES / "neon_osbs_029_10cm.tif"
    csv_path, truth = _fixture(tmp_path, tile, 80, seed=7)
    out = tmp_path / "pairs"
    build_pairs([tile], csv_path, out, crop_px=CROP, max_per_crop=CAP, min_spacing_px=SPACING,
                test_fraction=0.0)
    recs = read_official(out, "train")
    ds = PairDataset(out, recs, image_size=64, patch_size=16, ground_size=32)
    batch = collate_pairs([ds[i] for i in range(min(4, len(ds)))])
    counts = [len(r.grounds) for r in recs[:4]]
    assert batch.sat.shape == (len(counts), 3, 64, 64)
    assert batch.ground.shape == (sum(counts), 3, 32, 32)
    assert batch.owner.tolist() == [i for i, c in enumerate(counts) for _ in range(c)]
    k = 0
    for rec in recs[:4]:
        for g, (dx, dy) in zip(rec.grounds, rec.offsets):
            col, row = truth[(out / g).resolve()]
            c0 = round(col - dx - CROP / 2)
            r0 = round(row - dy - CROP / 2)
            want = int((row - r0) * 64 / CROP // 16) * 4 + int((col - c0) * 64 / CROP // 16)
            assert int(batch.patch[k]) == want
            k += 1


def test_official_reader_errors_and_offsets(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="split_m2o"):
        read_official(tmp_path, "train")
    (tmp_path / "split_m2o").mkdir()
    (tmp_path / "split_m2o" / "train.csv").write_text("sat_relpath,ground_relpath\ns1.png,g1.jpg\ns1.png,g2.jpg\ns2.png,g3.jpg\n")
    (tmp_path / "pixel_offset.csv").write_text("sat,ground,dx,dy\ns1.png,g2.jpg,-3.5,7\n")
    recs = read_official(tmp_path, "train")
    assert [(r.sat, r.grounds) for r in recs] == [("s1.png", ["g1.jpg", "g2.jpg"]), ("s2.png", ["g3.jpg"])]
    assert recs[0].offsets == [(0.0, 0.0), (-3.5, 7.0)]
    assert torch.equal(collate_pairs([{"sat": torch.zeros(3, 2, 2), "ground": torch.zeros(2, 4),
                                       "patch": torch.zeros(2, dtype=torch.long), "index": 0},
                                      {"sat": torch.zeros(3, 2, 2), "ground": torch.zeros(1, 4),
                                       "patch": torch.zeros(1, dtype=torch.long), "index": 1}]).owner,
                       torch.tensor([0, 0, 1]))


def _uint16_tile(path: Path) -> np.ndarray:
    """A 3-band uint16 UTM GeoTIFF whose bands have very different ranges, with nodata pixels."""
    rng = np.random.default_rng(11)
    data = np.stack([rng.integers(100, 400, (160, 160)), rng.integers(2000, 60000, (160, 160)),
                     rng.integers(0, 50, (160, 160))]).astype(np.uint16)
    data[:, :20, :30] = 0  # nodata corner
    profile = {"driver": "GTiff", "width": 160, "height": 160, "count": 3, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32618", "transform": Affine(1, 0, 500000, 0, -1, 4400000)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


def _stretched(data: np.ndarray) -> np.ndarray:
    """Per-band 2-98 percentile stretch over the whole tile's valid pixels, nodata -> 0 (HxWx3)."""
    valid = ~np.all(data == 0, axis=0)
    out = np.zeros((*data.shape[1:], 3), np.float64)
    for b in range(3):
        lo, hi = np.percentile(data[b][valid].astype(np.float64), [2, 98])
        out[:, :, b] = np.clip((data[b] - lo) * 255.0 / (hi - lo), 0, 255)
    out[~valid] = 0
    return out


def test_uint16_crops_are_the_tile_rgb_view(tmp_path):
    from graft_vqa.core.tiles import load_tile

    tile = tmp_path / "u16.tif"
    data = _uint16_tile(tile)
    csv_path, _ = _fixture(tmp_path, tile, 30, seed=9)
    out = tmp_path / "pairs"
    build_pairs([tile], csv_path, out, crop_px=48, max_per_crop=4, min_spacing_px=24, test_fraction=0.0)
    view = load_tile(tile).rgb()
    want = _stretched(data)
    recs = read_official(out, "train")
    assert len(recs) >= 3
    for rec in recs:
        c0, r0 = (int(v) for v in Path(rec.sat).stem.split("_")[-2:])
        got = np.asarray(Image.open(out / rec.sat))
        assert np.array_equal(got, view[r0:r0 + 48, c0:c0 + 48])  # what find() sees of that window
        assert np.abs(got - want[r0:r0 + 48, c0:c0 + 48]).max() <= 1  # tile-wide per-band stretch
