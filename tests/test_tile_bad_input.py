"""Bad input to load_tile: each case gets a typed error with advice or a documented behaviour."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning

from graft_vqa.core.errors import (AreaUnavailableError, TileNotFoundError, UnreadableTileError,
                              UnsupportedTileError)
from graft_vqa.core.tiles import MIN_SIDE, load_tile

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

UTM = Affine(2.0, 0.0, 500000.0, 0.0, -2.0, 4000000.0)


def write_tif(path, data, *, crs="EPSG:32633", transform=UTM, nodata=None, **kw):
    """Write a C×H×W array as a GeoTIFF (no CRS/transform when both are None)."""
    profile = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
                   dtype=data.dtype, nodata=nodata, **kw)
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(TileNotFoundError, match="check the path"):
        load_tile(tmp_path / "nope.tif")
    with pytest.raises(FileNotFoundError):
        load_tile(str(tmp_path / "nope.tif"))


def test_text_file_named_tif(tmp_path):
    p = tmp_path / "notes.tif"
    p.write_text("this is not an image\n" * 20)
    with pytest.raises(UnreadableTileError, match="not a readable raster"):
        load_tile(p)


@pytest.mark.parametrize("fraction", [0.3, 0.9])
def test_truncated_copy_of_real_tif(shared_data, tmp_path, fraction):
    src = shared_data / "tiles" / "rgbn_5m_utm18n.tif"
    data = src.read_bytes()
    p = tmp_path / "truncated.tif"
    p.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(UnreadableTileError, match="truncated|not a readable"):
        load_tile(p)


def test_empty_file_and_folder(tmp_path):
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(UnreadableTileError, match="empty"):
        load_tile(tmp_path / "empty.tif")
    with pytest.raises(UnreadableTileError, match="folder"):
        load_tile(tmp_path)


def test_one_pixel_and_small_images(tmp_path):
    p = write_tif(tmp_path / "one.tif", np.full((3, 1, 1), 7, np.uint8))
    with pytest.raises(UnsupportedTileError, match=f"at least {MIN_SIDE}x{MIN_SIDE}"):
        load_tile(p)
    with pytest.raises(UnsupportedTileError, match="0x0"):
        load_tile(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(UnsupportedTileError, match="at least"):
        load_tile(np.zeros((MIN_SIDE - 1, 40, 3), np.uint8))
    assert load_tile(np.zeros((MIN_SIDE, MIN_SIDE, 3), np.uint8)).rgb().shape == (16, 16, 3)


def test_one_band_is_gray_rgb(tmp_path):
    band = np.arange(32 * 32, dtype=np.uint16).reshape(1, 32, 32) % 251
    tile = load_tile(write_tif(tmp_path / "gray.tif", band.astype(np.uint8)))
    rgb = tile.rgb()
    assert tile.count == 1 and rgb.shape == (32, 32, 3)
    for k in range(3):
        np.testing.assert_array_equal(rgb[:, :, k], band[0])


def test_two_bands_first_is_gray(tmp_path):
    data = np.stack([np.full((20, 20), 50, np.uint8), np.full((20, 20), 200, np.uint8)])
    tile = load_tile(write_tif(tmp_path / "two.tif", data))
    assert tile.count == 2 and tile.bands == (0,)
    assert (tile.rgb() == 50).all()
    assert (load_tile(tile.path, bands=[1]).rgb() == 200).all()


def test_gray_alpha_png_masks_transparent_pixels(tmp_path):
    arr = np.zeros((20, 20, 2), np.uint8)
    arr[..., 0], arr[:10, :, 1] = 120, 255  # bottom half transparent
    p = tmp_path / "la.png"
    Image.fromarray(arr, mode="LA").save(p)
    tile = load_tile(p)
    assert tile.crs is None and not tile.has_area
    assert tile.valid_mask()[:10].all() and not tile.valid_mask()[10:].any()
    assert (tile.rgb()[:10] == 120).all() and (tile.rgb()[10:] == 0).all()


def test_all_nodata_tile(tmp_path):
    p = write_tif(tmp_path / "nodata.tif", np.full((3, 32, 32), 255, np.uint8), nodata=255)
    tile = load_tile(p)
    assert not tile.valid_mask().any()
    with pytest.raises(UnsupportedTileError, match="nodata"):
        tile.rgb()
    wins = list(tile.windows(16, rgb=True))  # windows are black instead of raising
    assert len(wins) == 4 and all((a == 0).all() for _, a in wins)


def test_crs_less_geotiff_is_not_georeferenced(tmp_path):
    p = write_tif(tmp_path / "nocrs.tif", np.ones((3, 20, 20), np.uint8), crs=None)
    tile = load_tile(p)
    assert tile.crs is None and not tile.georeferenced and not tile.has_area
    assert tile.transform == UTM  # kept for pixel <-> map helpers
    with pytest.raises(AreaUnavailableError, match="gsd_m"):
        tile.area_m2(np.ones((20, 20), bool))
    assert load_tile(p, gsd_m=2.0).area_m2(np.ones((20, 20), bool)) == pytest.approx(1600.0)


def test_plain_tif_without_georeferencing_is_detected_quietly(tmp_path):
    p = write_tif(tmp_path / "plain.tif", np.ones((3, 20, 20), np.uint8), crs=None, transform=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tile = load_tile(p)
        tile.rgb()
    assert not [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
    assert not tile.georeferenced and tile.gsd_m is None and tile.pixel_area_m2 is None
    assert tile.pixel_to_map(3.0, 4.0) == pytest.approx((3.0, 4.0))  # identity: pixel coords


def test_uint16_percentile_stretch(tmp_path):
    ramp = np.arange(40 * 40, dtype=np.uint16).reshape(40, 40) * 20
    data = np.stack([ramp, ramp[::-1], np.full_like(ramp, 900)])
    tile = load_tile(write_tif(tmp_path / "u16.tif", data))
    lo, hi = np.percentile(ramp.astype(float), [2, 98])
    expected = np.clip((ramp.astype(np.float64) - lo) * 255.0 / (hi - lo), 0, 255)
    rgb = tile.rgb()
    assert rgb.dtype == np.uint8
    np.testing.assert_allclose(rgb[:, :, 0], expected.astype(np.uint8), atol=1)
    assert rgb[:, :, 0].min() == 0 and rgb[:, :, 0].max() == 255
    assert (rgb[:, :, 2] == 0).all()  # constant band: documented to map to 0


def test_float_nan_is_masked(tmp_path):
    data = np.random.default_rng(0).random((3, 24, 24)).astype(np.float32)
    data[:, 0, :5] = np.nan
    tile = load_tile(write_tif(tmp_path / "f32.tif", data))
    assert not tile.valid_mask()[0, :5].any() and tile.valid_mask()[1:].all()
    assert (tile.rgb()[0, :5] == 0).all()


def test_png_jpeg_and_pil_inputs(tmp_path):
    arr = np.random.default_rng(1).integers(0, 255, (24, 30, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    Image.fromarray(arr).save(tmp_path / "a.jpg", quality=95)
    np.testing.assert_array_equal(load_tile(tmp_path / "a.png").rgb(), arr)
    jpg = load_tile(tmp_path / "a.jpg")
    assert jpg.rgb().shape == (24, 30, 3) and not jpg.georeferenced
    np.testing.assert_array_equal(load_tile(Image.fromarray(arr)).rgb(), arr)
    rgba = np.dstack([arr, np.where(np.arange(30) < 10, 0, 255).astype(np.uint8)[None].repeat(24, 0)])
    t = load_tile(Image.fromarray(rgba, mode="RGBA"))
    assert t.bands == (0, 1, 2) and not t.valid_mask()[:, :10].any() and t.valid_mask()[:, 10:].all()


def test_bad_arrays_and_band_choices(tmp_path):
    with pytest.raises(UnsupportedTileError, match="channels-first"):
        load_tile(np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(UnsupportedTileError, match="H×W"):
        load_tile(np.zeros((4, 4, 4, 4), np.uint8))
    with pytest.raises(UnsupportedTileError, match="pass a file path"):
        load_tile(12345)
    p = write_tif(tmp_path / "rgbn.tif", np.ones((4, 20, 20), np.uint8))
    with pytest.raises(UnsupportedTileError, match="no band named 'swir'"):
        load_tile(p, bands=["swir", "red", "green"])
    with pytest.raises(UnsupportedTileError, match="out of range"):
        load_tile(p, bands=[0, 1, 4])
    with pytest.raises(UnsupportedTileError, match="1 \\(gray\\) or 3"):
        load_tile(p, bands=[0, 1])
    with pytest.raises(ValueError, match="mask has shape"):
        load_tile(p).area_m2(np.ones((5, 5), bool))


def test_band_names_from_descriptions(tmp_path):
    p = tmp_path / "named.tif"
    data = np.stack([np.full((20, 20), v, np.uint8) for v in (10, 20, 30, 40)])
    with rasterio.open(p, "w", driver="GTiff", width=20, height=20, count=4, dtype="uint8",
                       crs="EPSG:32633", transform=UTM) as ds:
        ds.write(data)
        for i, name in enumerate(["blue", "green", "red", "nir"], start=1):
            ds.set_band_description(i, name)
        ds.colorinterp = [ColorInterp.undefined] * 4
    tile = load_tile(p, bands=["NIR", "red", "green"])
    assert tile.bands == (3, 2, 1)
    assert tuple(tile.rgb()[0, 0]) == (40, 30, 20)


def test_truncated_in_the_middle_fails_on_read_not_silently(shared_data, tmp_path):
    p = tmp_path / "copy.tif"
    shutil.copy(shared_data / "tiles" / "neon_osbs_029_10cm.tif", p)
    with pytest.raises(UnreadableTileError):
        with open(p, "r+b") as f:
            f.truncate(p.stat().st_size // 2)
        load_tile(p).pixels()
