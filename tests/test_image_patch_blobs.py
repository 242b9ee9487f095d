"""ImagePatch + find on the real GeoTIFFs with a synthetic scorer that paints known blobs.

Expected values are computed here independently: components with scipy (not scikit-image),
areas are true ground areas measured independently with pyproj (tests/fixtures/geo.py) for every CRS.
"""
from __future__ import annotations


import numpy as np
import pytest
import rasterio
from pyproj import Geod
from scipy import ndimage

from graft_vqa.config import FindConfig
from graft_vqa.image_patch import SAM_MISSING, ImagePatch, PatchContext
from graft_vqa.core.tiles import load_tile

from .fixtures.geo import ground_pixel_areas

TILES = ["neon_osbs_029_10cm.tif", "rgbn_5m_utm18n.tif", "rmnp_rgb_epsg4326.tif"]


def blobs(h: int, w: int) -> dict[str, list[tuple[int, int, int, int]]]:
    """Rectangles (top, bottom, left, right) per query, for an h x w tile."""
    return {
        "building": [
            (50, 70, 60, 100),                          # A: separate
            (150, 170, 150, 170), (170, 190, 170, 190),  # B, C: touch at a corner -> one (8-connected)
            (150, 170, 250, 270), (150, 170, 270, 300),  # D, E: share an edge -> one
            (0, 15, 0, 25),                             # F: top-left corner of the tile
            (h - 30, h, w - 12, w),                     # G: bottom-right corner of the tile
            (300, 301, 300, 302),                       # 2 pixels: below min_pixels=4
        ],
        "car": [(200, 210, 20, 30), (200, 210, 33, 43), (212, 218, 20, 30)],
        "red car": [(200, 210, 20, 30)],
    }


class BlobScorer:
    """Paints 1.0 inside each query's rectangles, 0.0 elsewhere; counts calls."""

    def __init__(self, h: int, w: int) -> None:
        self.rects = blobs(h, w)
        self.calls: list[str] = []
        self.image_sizes: list[tuple[int, int]] = []

    def paint(self, h: int, w: int, name: str) -> np.ndarray:
        m = np.zeros((h, w), dtype=np.float32)
        for top, bottom, left, right in self.rects.get(name, []):
            m[top:bottom, left:right] = 1.0
        return m

    def score_maps(self, tile, queries):
        self.calls.extend(queries)
        return np.stack([self.paint(tile.height, tile.width, q) for q in queries])

    def score_image(self, tile, options):
        self.image_sizes.append((tile.width, tile.height))
        return np.array([len(o) for o in options], dtype=np.float32)  # the longest option wins


def expected_pixel_area(path) -> np.ndarray:
    """(H, 1) m² per pixel row: true ground areas measured with pyproj (see tests/fixtures/geo.py)."""
    return ground_pixel_areas(path)


@pytest.fixture(params=TILES)
def setup(request, shared_data):
    path = shared_data / "tiles" / request.param
    tile = load_tile(path)
    scorer = BlobScorer(tile.height, tile.width)
    config = FindConfig(threshold=0.5, refine="none", min_pixels=4)
    root = ImagePatch(tile, context=PatchContext(tile=tile, scorer=scorer, config=config))
    return path, tile, scorer, root


def painted(scorer, tile, name):
    return scorer.paint(tile.height, tile.width, name) > 0.5


def expected_components(mask: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    comps = [labels == k for k in range(1, n + 1)]
    return [c for c in comps if c.sum() >= min_pixels]


def test_count_exists_and_coverage(setup):
    path, tile, scorer, root = setup
    valid = tile.valid_mask()
    building = painted(scorer, tile, "building") & valid
    comps = expected_components(building, 4)
    assert root.count("building") == len(comps)
    if path.name != "rmnp_rgb_epsg4326.tif":  # edges are valid: the hand count holds
        assert root.count("building") == 5
    assert root.exists("building") and not root.exists("swimming pool")
    union = np.any(comps, axis=0)
    expected = float((union.sum(axis=1) * expected_pixel_area(path)[:, 0]).sum())
    assert root.coverage_m2("building") == pytest.approx(expected, rel=1e-6)
    assert sum(p.area_m2 for p in root.find("building")) == pytest.approx(expected, rel=1e-6)
    assert scorer.calls.count("building") == 1  # score map computed once per context


def test_nodata_is_excluded_on_the_4326_tile(shared_data):
    path = shared_data / "tiles" / "rmnp_rgb_epsg4326.tif"
    tile = load_tile(path)
    scorer = BlobScorer(tile.height, tile.width)
    root = ImagePatch(tile, context=PatchContext(tile=tile, scorer=scorer,
                                                 config=FindConfig(threshold=0.5, refine="none")))
    corner = [p for p in root.find("building") if p.left < 30 and p.box[1] < 20]
    assert len(corner) == 1
    with rasterio.open(path) as src:
        nodata_cols = int((src.read(1)[:, :25] == src.nodata).all(axis=0).sum())
    assert corner[0].left >= nodata_cols >= 1  # the all-nodata border columns are not part of it


def test_boxes_relations_and_distances(setup):
    path, tile, scorer, root = setup
    h = tile.height
    cars = sorted(root.find("car"), key=lambda p: (p.box[1], p.left))
    c1, c2, c3 = cars
    assert (c1.left, c1.right, c1.lower, c1.upper) == (20, 30, h - 210, h - 200)
    assert (c1.width, c1.height) == (10, 10)
    assert c1.horizontal_center == 25 and c1.vertical_center == h - 205
    assert c1.is_left_of(c2) and c2.is_right_of(c1) and not c1.is_right_of(c2)
    assert c1.is_above(c3) and c3.is_below(c1) and not c3.is_above(c1)
    if tile.is_geographic:
        geod = Geod(ellps="WGS84")
        with rasterio.open(path) as src:
            t = src.transform
        lon_a, lat = t @ (30, 205)
        lon_b, _ = t @ (33, 205)
        gap = geod.inv(lon_a, lat, lon_b, lat)[2]
        assert c1.distance_m(c2) == pytest.approx(gap, rel=0.02)
    else:
        gsd = abs(rasterio.open(path).transform.a)
        assert c1.distance_m(c2) == pytest.approx(3 * gsd, rel=1e-9)
        assert c1.distance_m(c3) == pytest.approx(2 * gsd, rel=1e-9)
        assert c1.is_next_to(c3) and not c1.is_next_to(c2)
        assert c1.is_next_to(c2, max_gap_m=3 * gsd)


def test_crop_restricts_find(setup):
    path, tile, scorer, root = setup
    left_half = root.crop(0, 0, 120, tile.height)
    assert (left_half.left, left_half.right, left_half.lower, left_half.upper) == (0, 120, 0, tile.height)
    # A (cols 60..100), F (top-left corner) and the three cars are left of column 120
    assert left_half.count("building") == len(expected_components(
        painted(scorer, tile, "building") & tile.valid_mask() & (np.arange(tile.width) < 120), 4))
    assert left_half.count("car") == 3
    inner = left_half.crop(10, 10, 20, 30)  # relative to the crop's bottom-left corner
    assert (inner.left, inner.right, inner.lower, inner.upper) == (10, 20, 10, 30)


def test_attributes_and_properties(setup):
    path, tile, scorer, root = setup
    red = [p for p in root.find("car") if p.verify_property("car", "red")]
    assert [(p.left, p.box[1]) for p in red] == [(20, 200)]
    assert root.best_text_match(["rural", "urban area"]) == "urban area"
    assert root.crop(0, 0, 50, 60).best_text_match(["a", "bb"]) == "bb"
    assert scorer.image_sizes == [(tile.width, tile.height), (50, 60)]  # the crop is scored on its own
    a = next(p for p in root.find("building") if p.left == 60)
    assert a.shape == "rectangular"  # 40 x 20 pixels, fill 1, aspect 2
    assert next(p for p in root.find("car") if p.box[1] == 212).shape == "rectangular"
    assert next(p for p in root.find("car") if p.box[1] == 200 and p.left == 20).shape == "square"
    area = a.area_m2
    expected = "small" if area < 500 else "medium" if area < 10_000 else "large"
    assert a.size == expected
    if path.name == "neon_osbs_029_10cm.tif":  # 800 px x 0.01 m2 (ground area: UTM scale factor ~1.0006)
        rows = expected_pixel_area(path)[50:70, 0]
        assert a.size == "small" and a.area_m2 == pytest.approx(40 * rows.sum(), rel=1e-5)  # 1 m² reference cells
        assert a.area_m2 == pytest.approx(8.0, rel=2e-3)
    if path.name == "rgbn_5m_utm18n.tif":  # 800 px x 25 m2 = 20,000 m2
        assert a.size == "large"


def test_geojson_and_detections(setup):
    path, tile, scorer, root = setup
    root.context.begin_question()
    cars = root.find("car")
    feature = cars[0].to_geojson()
    assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
    with rasterio.open(path) as src:
        t = src.transform
    xs = [x for x, _ in feature["geometry"]["coordinates"][0]]
    assert min(xs) == pytest.approx((t @ (cars[0].left, 0))[0])
    dets = root.context.question_detections()
    assert len(dets) == 3 and all(d.name == "car" for d in dets)
    root.find("car")  # cached: not recorded twice in the same question
    assert len(root.context.question_detections()) == 3
    assert dets[0].box == cars[0].box and dets[0].geometry is not None


def test_missing_sam_warns_once_and_relative_mode(shared_data):
    tile = load_tile(shared_data / "tiles" / "rgbn_5m_utm18n.tif")
    scorer = BlobScorer(tile.height, tile.width)
    ctx = PatchContext(tile=tile, scorer=scorer, refiner=None,
                       config=FindConfig(threshold=10.0, threshold_mode="relative", relative_threshold=0.5,
                                         refine="sam"))
    root = ImagePatch(tile, context=ctx)
    assert root.count("building") == 5  # relative mode ignores the absolute threshold of 10
    assert root.count("car") == 3
    assert ctx.warnings == [SAM_MISSING]


def test_min_area_filter(shared_data):
    path = shared_data / "tiles" / "rgbn_5m_utm18n.tif"
    tile = load_tile(path)
    scorer = BlobScorer(tile.height, tile.width)
    # F is 15 x 25 px = 9375 m2 at 5 m; A is 20,000 m2, G 30 x 12 px = 9000 m2: keep above 9500 m2
    cfg = FindConfig(threshold=0.5, refine="none", min_area_m2=9500.0)
    root = ImagePatch(tile, context=PatchContext(tile=tile, scorer=scorer, config=cfg))
    areas = sorted(p.area_m2 for p in root.find("building"))
    assert all(a >= 9500.0 for a in areas) and len(areas) == 3
    rows = expected_pixel_area(path)[150:170, 0]  # D+E: rows 150-169, 20 + 30 columns
    assert areas[-1] == pytest.approx(50 * rows.sum(), rel=1e-6)
    assert areas[-1] == pytest.approx((400 + 600) * 25.0, rel=2e-3)  # plane area at 5 m, within UTM's scale


class ShapeScorer:
    """A disc ('pool'), an L ('lake') and a 45-degree rotated square ('roof')."""

    def score_maps(self, tile, queries):
        yy, xx = np.mgrid[: tile.height, : tile.width]
        shapes = {
            "pool": (yy - 100) ** 2 + (xx - 100) ** 2 <= 25 ** 2,
            "lake": ((yy >= 200) & (yy < 280) & (xx >= 20) & (xx < 40)) | ((yy >= 260) & (yy < 280) & (xx >= 20) & (xx < 100)),
            "roof": np.abs(yy - 100) + np.abs(xx - 300) <= 30,
        }
        return np.stack([shapes[q].astype(np.float32) for q in queries])


def test_shapes_on_a_real_tile(shared_data):
    tile = load_tile(shared_data / "tiles" / "rgbn_5m_utm18n.tif")
    root = ImagePatch(tile, context=PatchContext(tile=tile, scorer=ShapeScorer(),
                                                 config=FindConfig(threshold=0.5, refine="none")))
    (pool,), (lake,), (roof,) = root.find("pool"), root.find("lake"), root.find("roof")
    assert pool.shape == "circular" and lake.shape == "irregular" and roof.shape == "square"
    disc_px = int(((np.mgrid[:51, :51] - 25) ** 2).sum(axis=0).__le__(625).sum())
    disc = ((np.mgrid[:51, :51] - 25) ** 2).sum(axis=0) <= 625  # rows 75..125 of the tile
    row_areas = expected_pixel_area(shared_data / "tiles" / "rgbn_5m_utm18n.tif")[75:126, 0]
    assert pool.area_m2 == pytest.approx(float((disc.sum(axis=1) * row_areas).sum()), rel=1e-6)
    assert pool.area_m2 == pytest.approx(disc_px * 25.0, rel=2e-3)
    assert pool.size == "large" and (pool.width, pool.height) == (51, 51)
