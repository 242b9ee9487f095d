"""Output files are checked before any work and written whole or not at all."""
from __future__ import annotations

import pytest

from graft_vqa.core.errors import OutputPathError
from graft_vqa.core.files import atomic_output, check_output_path, write_json, write_text

SUFFIXES = (".csv", ".jsonl")


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def _file(path):
    path.write_text("x")
    return path


def test_a_good_path_passes_and_the_probe_leaves_nothing(tmp_path):
    assert check_output_path(tmp_path / "results.CSV", SUFFIXES, "--out") == tmp_path / "results.CSV"
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("make, words", [
    (lambda t: t / "missing" / "r.csv", "the folder"),
    (lambda t: _file(t / "file.tif") / "r.csv", "is a file, not a folder"),
    (lambda t: (t / "dir.csv").mkdir() or t / "dir.csv", "is a folder"),
    (lambda t: t / "r.parquet", "unknown extension '.parquet'; use one of .csv, .jsonl"),
    (lambda t: t / "results", "unknown extension '(none)'"),
    (lambda t: "/proc/nope.csv", "cannot write in /proc"),
])
def test_bad_paths_are_one_line_errors_naming_the_option(tmp_path, make, words):
    path = make(tmp_path)
    before = _listing(tmp_path)
    with pytest.raises(OutputPathError) as info:
        check_output_path(path, SUFFIXES, "--out")
    message = str(info.value)
    assert message.startswith("--out ") and words in message and "\n" not in message
    assert _listing(tmp_path) == before


def test_atomic_output_replaces_an_existing_file_whole(tmp_path):
    target = tmp_path / "r.jsonl"
    target.write_text("old\n")
    write_text(target, "new\n")
    assert target.read_text() == "new\n" and _listing(tmp_path) == ["r.jsonl"]
    write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_an_error_while_writing_leaves_the_old_file_and_no_temporary(tmp_path, error):
    target = tmp_path / "r.csv"
    target.write_text("old\n")
    with pytest.raises(error):
        with atomic_output(target) as tmp:
            tmp.write_text("half a fi")
            raise error()
    assert target.read_text() == "old\n" and _listing(tmp_path) == ["r.csv"]


def test_nothing_written_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(OutputPathError, match="nothing was written"):
        with atomic_output(tmp_path / "r.csv"):
            pass
    assert _listing(tmp_path) == []


def test_shapefile_parts_move_together_and_stale_parts_go(tmp_path):
    target = tmp_path / "b.shp"
    for suffix in (".shp", ".shx", ".dbf", ".prj"):
        target.with_suffix(suffix).write_text("old")
    with atomic_output(target) as tmp:
        for suffix in (".shp", ".shx", ".dbf", ".cpg"):  # the new one has no CRS: no .prj
            tmp.with_suffix(suffix).write_text("new")
    assert _listing(tmp_path) == ["b.cpg", "b.dbf", "b.shp", "b.shx"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"new"}
