"""The weights registry: resolution order, offline errors, and the download path."""
from __future__ import annotations

import dataclasses
import http.client
import urllib.request

import pytest

from graft_vqa import weights
from graft_vqa.core.errors import WeightsError, WeightsNotFoundError


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
    # the library speaks the Python API's words; the CLI and the app rewrite them (tests/test_advice.py)
    assert "allow_untrained=True" in message and "graft_checkpoint=PATH" in message
    assert "--" not in message and "explicitly" not in message


def test_missing_sam_never_suggests_random_weights(homes):
    with pytest.raises(WeightsNotFoundError) as info:
        weights.resolve("sam-vit_b")
    message = str(info.value)
    assert "allow_untrained" not in message  # SAM is never random: allow_untrained would not help
    assert "sam_checkpoint=PATH" in message and "refine='none'" in message
    assert "graft_vqa.weights.pull('sam-vit_b')" in message


def test_unknown_name_lists_known_ones():
    with pytest.raises(WeightsError, match="sam-vit_h"):
        weights.source("sam-vit_x")


def _expect_size(monkeypatch, name: str, size: int | None) -> None:
    monkeypatch.setitem(weights.WEIGHTS, name, dataclasses.replace(weights.WEIGHTS[name], size_bytes=size))


def test_pull_downloads_atomically_into_cache(homes, tmp_path, monkeypatch):
    home, _, _ = homes
    payload = bytes(range(256)) * 4096
    src = tmp_path / "remote.pth"
    src.write_bytes(payload)
    _expect_size(monkeypatch, "sam-vit_b", len(payload))
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


def test_missing_hint_is_the_message_without_the_untrained_advice(homes):
    hint = weights.missing_hint("graft-naip-patch")
    assert "graft_naip_patch.ckpt" in hint and "allow_untrained" not in hint and hint.endswith(".")
    assert weights.missing_message("graft-naip-patch").startswith(hint + " ")
    assert "allow_untrained" in weights.missing_message("graft-naip-patch")


def test_pull_rejects_a_file_of_the_wrong_size_and_leaves_nothing(homes, tmp_path, monkeypatch):
    home, _, _ = homes
    src = tmp_path / "remote.pth"
    src.write_bytes(b"x" * 1000)
    _expect_size(monkeypatch, "sam-vit_b", 1001)
    with pytest.raises(WeightsNotFoundError, match="1000 bytes.*1001"):
        weights.pull("sam-vit_b", url=src.as_uri(), progress=False)
    assert not any((home / "weights").glob("*"))


def test_pull_turns_an_interrupted_transfer_into_a_clear_error(homes, monkeypatch):
    home, _, _ = homes

    class Broken:
        headers = {"Content-Length": "10"}

        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *exc):  # noqa: ANN002, ANN204
            return False

        def read(self, n):  # noqa: ANN001, ANN201
            raise http.client.IncompleteRead(b"abc", 7)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Broken())
    with pytest.raises(WeightsNotFoundError, match="could not download"):
        weights.pull("sam-vit_b", url="https://example.invalid/sam.pth", progress=False)
    assert not any((home / "weights").glob("*"))
