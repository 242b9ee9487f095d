"""The committed API spec equals the one generated from the real ImagePatch class."""
from __future__ import annotations

from pathlib import Path

from graft_vqa.planner.prompts import api_spec_text
from graft_vqa.planner.api_spec import main, render
from graft_vqa.api import api_members
from graft_vqa.image_patch import ImagePatch

SPEC = Path(__file__).resolve().parents[1] / "api_spec" / "image_patch_api.md"


def test_committed_spec_is_fresh():
    assert SPEC.read_text(encoding="utf-8") == render(), "run `python -m graft_vqa.planner.api_spec`"
    assert api_spec_text() == SPEC.read_text(encoding="utf-8")
    assert main(["--check"]) == 0


def test_spec_lists_every_api_member_and_nothing_private():
    text = render()
    titles = [line for line in text.splitlines() if line.startswith("### ")]
    names = [t.removeprefix("### `").split("(")[0].split(":")[0] for t in titles]
    assert names == list(api_members(ImagePatch))
    for required in ("find", "exists", "count", "coverage_m2", "area_m2", "best_text_match", "verify_property",
                     "crop", "left", "lower", "right", "upper", "horizontal_center", "is_left_of", "is_next_to",
                     "distance_m", "size", "shape", "to_geojson"):
        assert required in names
    assert "detection" not in names and "polygon" not in names and "context" not in names


def test_check_fails_on_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "spec.md"
    stale.write_text(render().replace("find(", "detect(", 1), encoding="utf-8")
    assert main(["--check", "--output", str(stale)]) == 1
    assert "stale" in capsys.readouterr().err
    assert main(["--output", str(stale)]) == 0 and main(["--check", "--output", str(stale)]) == 0
