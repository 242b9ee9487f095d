"""The layer contracts in pyproject.toml hold, and they fail when someone breaks them.

Each check runs import-linter on a copy of the two packages, so a planted import never touches the
real tree; imports inside functions count (grimp reads them), so a cycle cannot hide in one.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = "from importlinter.cli import lint_imports_command; lint_imports_command()"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of graft_vqa, graft_models and pyproject.toml."""
    root = tmp_path_factory.mktemp("layers")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("graft_vqa", "graft_models"):
        shutil.copytree(REPO / package, root / package, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the copies, not the installed packages
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)


def _plant(root: Path, module: str, line: str) -> None:
    path = root / module
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {line}\n")


def test_the_real_tree_keeps_every_contract():
    proc = _lint(REPO)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "0 broken" in proc.stdout


def test_graft_models_importing_the_agent_breaks_a_contract(tree, tmp_path):
    root = tmp_path / "t"
    shutil.copytree(tree, root)
    _plant(root, "graft_models/losses.py", "from graft_vqa.engine import Engine  # noqa: F401")
    proc = _lint(root)
    assert proc.returncode != 0
    assert "graft_models (the training library) never imports the agent" in proc.stdout
    assert "graft_models.losses -> graft_vqa.engine" in proc.stdout


def test_a_cycle_inside_a_function_breaks_a_contract(tree, tmp_path):
    root = tmp_path / "t"
    shutil.copytree(tree, root)
    # planner.rules -> image_patch is allowed (higher layer); image_patch -> planner closes a cycle
    _plant(root, "graft_vqa/image_patch.py", "from graft_vqa.planner import rules  # noqa: F401")
    proc = _lint(root)
    assert proc.returncode != 0
    assert "image_patch is not allowed to import graft_vqa.planner" in proc.stdout


def test_a_new_module_without_a_layer_breaks_the_exhaustive_contract(tree, tmp_path):
    root = tmp_path / "t"
    shutil.copytree(tree, root)
    (root / "graft_vqa" / "stray.py").write_text('"""A module nobody placed in a layer."""\n')
    proc = _lint(root)
    assert proc.returncode != 0 and "graft_vqa.stray" in proc.stdout


@pytest.mark.parametrize("module", ["graft_vqa/engine.py", "graft_vqa/interfaces/evaluation/runner.py"])
def test_ray_outside_graft_vqa_distributed_breaks_a_contract(tree, tmp_path, module):
    root = tmp_path / "t"
    shutil.copytree(tree, root)
    _plant(root, module, "import ray  # noqa: F401")
    proc = _lint(root)
    assert proc.returncode != 0
    assert "only graft_vqa.distributed imports ray" in proc.stdout
    assert f"{module[:-3].replace('/', '.')} -> ray" in proc.stdout
