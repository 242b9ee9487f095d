"""Shared pytest fixtures (keep this file small; one fixture per shared need)."""
from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Read-only real test data (../shared/data relative to the repo root)."""
    assert SHARED_DATA.is_dir(), f"missing shared test data at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test (and every subprocess it starts) gets its own GRAFT_VQA_HOME: no test reads
    weights or cached programs from, or writes them to, the user's real cache."""
    home = tmp_path_factory.mktemp("graft_vqa_home")
    monkeypatch.setenv("GRAFT_VQA_HOME", str(home))
    monkeypatch.delenv("GRAFT_VQA_WEIGHTS", raising=False)
    return home
