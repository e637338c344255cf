"""Shared fixtures. Plain functions, no class hierarchies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or $CIVAL_SHARED_DATA), if present."""
    configured = os.environ.get("CIVAL_SHARED_DATA")
    path = Path(configured) if configured else ROOT.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real market data for tests; skips (with the reason) where it is absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("real market data not found: ../shared/data beside the checkout (or set CIVAL_SHARED_DATA)")
    return path
