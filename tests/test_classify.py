"""Zero-shot classification with a synthetic embedder of known vectors (tests/embedders.py)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio

import graft_vqa
from graft_vqa.classification import NO_LABEL, parse_labels
from graft_vqa.core.errors import ConfigError

from .embedders import ColourEmbedder, GREY, solid, write_raster


def _direct(rgb, labels, scale=ColourEmbedder.logit_scale):
    """softmax(scale * cos) computed by hand: image (r, g, b, GREY), texts the unit axes."""
    v = np.array([*rgb, GREY], dtype=np.float64)
    cos = {"red": v[0], "green": v[1], "blue": v[2], "grey": v[3]}
    logits = np.array([scale * cos[label] / np.linalg.norm(v) for label in labels])
    e = np.exp(logits - logits.max())
    return e / e.sum()


def test_probabilities_equal_a_direct_computation(tmp_path):
    path = write_raster(tmp_path / "t.tif", solid((200, 120, 30)))
    result = graft_vqa.classify(path, "red, green,blue,grey", embedder=ColourEmbedder())
    assert result.labels == ["red", "green", "blue", "grey"] and result.windows == [(0, 0, 64, 64)]
    np.testing.assert_allclose(result.probabilities[0], _direct((200, 120, 30), result.labels), rtol=1e-6)
    assert result.best() == ["red"] and result.probabilities[0].sum() == pytest.approx(1.0)


def test_each_chip_of_a_large_raster_and_the_label_geotiff(tmp_path):
    rgb = np.zeros((300, 500, 3), np.uint8)
    rgb[:] = (20, 200, 20)
    rgb[0:224, 0:224] = (230, 10, 10)
    rgb[224:, 448:] = 0  # all nodata: no label
    path = write_raster(tmp_path / "big.tif", rgb, crs="EPSG:32618", nodata=0)
    labels = tmp_path / "labels.txt"
    labels.write_text("# classes\nred\ngreen\n\nblue\n")
    result = graft_vqa.classify(path, labels, embedder=ColourEmbedder(), chip=224)
    assert len(result.windows) == 6 and result.step == 224
    assert result.best() == ["red", "green", "green", "green", "green", None]
    np.testing.assert_allclose(result.probabilities[1], _direct((20, 200, 20), ["red", "green", "blue"]), rtol=1e-6)
    assert np.isnan(result.probabilities[5]).all()
    assert result.to_csv().splitlines()[0] == "row_off,col_off,height,width,label,red,green,blue"

    out = result.to_geotiff(tmp_path / "labels.tif")
    with rasterio.open(out) as src, rasterio.open(path) as tile:
        assert src.crs == tile.crs and src.count == 1 and src.nodata == NO_LABEL
        assert src.transform == tile.transform @ rasterio.Affine.scale(224)
        assert src.read(1).tolist() == [[0, 1, 1], [1, 1, NO_LABEL]]
        assert src.tags()["LABELS"] == "red,green,blue"


def test_labels_are_checked():
    assert parse_labels(["a", "b"]) == ["a", "b"]
    with pytest.raises(ConfigError, match="more than once"):
        parse_labels("forest,water,Forest")
    with pytest.raises(ConfigError, match="at least two"):
        parse_labels("forest")
    with pytest.raises(ConfigError, match="empty label"):
        parse_labels("forest,,water")
