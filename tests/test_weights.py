"""The weights registry: resolution order, offline errors, and the download path."""
from __future__ import annotations


import pytest

from graft_vqa import weights
from graft_vqa.errors import WeightsError, WeightsNotFoundError


@pytest.fixture
def homes(tmp_path, monkeypatch):
    home = tmp_path / "home"
    folder = tmp_path / "weights_folder"
    folder.mkdir()
    monkeypatch.setenv("GRAFT_VQA_HOME", str(home))
    monkeypatch.delenv("GRAFT_VQA_WEIGHTS", raising=False)
    return home, folder, monkeypatch


def test_resolution_order_explicit_then_env_then_cache(homes, tmp_path):
    home, folder, monkeypatch = homes
    cached = home / "weights" / "sam_vit_b_01ec64.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"cache")
    assert weights.resolve("sam-vit_b") == cached

    monkeypatch.setenv("GRAFT_VQA_WEIGHTS", str(folder))
    in_folder = folder / "sam_vit_b_01ec64.pth"
    in_folder.write_bytes(b"folder")
    assert weights.resolve("sam-vit_b") == in_folder

    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"explicit")
    assert weights.resolve("sam-vit_b", explicit) == explicit


def test_explicit_missing_path_is_an_error_not_a_fallback(homes, tmp_path):
    home, _, _ = homes
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "graft_naip_patch.ckpt").write_bytes(b"x")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        weights.resolve("graft-naip-patch", tmp_path / "typo.ckpt")


def test_offline_error_names_file_and_folder(homes):
    home, _, _ = homes
    with pytest.raises(WeightsNotFoundError) as info:
        weights.resolve("graft-sentinel-patch")
    message = str(info.value)
    assert "graft_sentinel_patch.ckpt" in message
    assert str(home / "weights") in message
    assert "--allow-untrained" in message


def test_unknown_name_lists_known_ones():
    with pytest.raises(WeightsError, match="sam-vit_h"):
        weights.source("sam-vit_x")


def test_pull_downloads_atomically_into_cache(homes, tmp_path):
    home, _, _ = homes
    payload = bytes(range(256)) * 4096
    src = tmp_path / "remote.pth"
    src.write_bytes(payload)
    path = weights.pull("sam-vit_b", url=src.as_uri(), progress=False)
    assert path == home / "weights" / "sam_vit_b_01ec64.pth"
    assert path.read_bytes() == payload
    assert not list(path.parent.glob("*.part"))


def test_failed_download_leaves_nothing_and_explains(homes, tmp_path):
    home, _, _ = homes
    with pytest.raises(WeightsNotFoundError, match="could not download"):
        weights.pull("sam-vit_b", url=(tmp_path / "absent.pth").as_uri(), progress=False)
    assert not any((home / "weights").glob("*"))


def test_graft_has_no_url_and_says_where_to_get_it(homes):
    with pytest.raises(WeightsNotFoundError, match="no published download"):
        weights.pull("graft-naip")
