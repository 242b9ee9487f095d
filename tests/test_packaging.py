"""What `pip install .` installs: only graft_vqa and graft_models as import names, with the prompts
and the API spec inside graft_vqa as package data, and every package of the source tree listed."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _source_packages() -> set[str]:
    found = set()
    for root in ("graft_vqa", "graft_models"):
        for init in (REPO / root).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join(init.parent.relative_to(REPO).parts))
    return found


def test_every_source_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert _source_packages() | {"graft_vqa._prompts", "graft_vqa._api_spec"} == listed


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel of this checkout, installed (without dependencies) into an empty folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist"), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("graft_vqa-*.whl"))
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    assert zipfile.ZipFile(wheel).testzip() is None
    return target


def test_the_wheel_installs_no_generic_top_level_name(installed):
    names = {p.name for p in installed.iterdir() if not p.name.endswith((".dist-info", ".data")) and p.name != "bin"}
    assert names == {"graft_vqa", "graft_models"}
    assert not {"eval", "prompts", "api_spec"} & names


def test_the_installed_package_reads_its_prompts_and_spec_from_package_data(installed, tmp_path):
    code = ("import graft_vqa.planner.prompts as p, graft_vqa.core.resources as r; "
            "print(r.data_path('prompts')); print(len(p.fewshot_examples())); print(p.api_spec_text()[:20])")
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=True).stdout.splitlines()
    assert out[0] == str(installed / "graft_vqa" / "_prompts")  # not the source checkout
    assert int(out[1]) >= 5 and out[2].startswith("# The ImagePatch API")
