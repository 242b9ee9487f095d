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
