"""Shared fixtures. Plain functions, no class hierarchies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Sessions persist to the embedded store by default: the suite's go to a folder of its
# own, never to the user's data directory.
if "CIVAL_DATA_DIR" not in os.environ:
    import tempfile

    os.environ["CIVAL_DATA_DIR"] = tempfile.mkdtemp(prefix="cival-tests-")


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


POSTGRES_ADMIN_URL = os.environ.get("CIVAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def service_unavailable(what: str, reason: str) -> None:
    """Skip with the reason on a developer's machine; in CI a missing service is a failure."""
    message = f"{what} is not reachable ({reason}); start it or set CIVAL_TEST_POSTGRES"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI: {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def postgres_url():
    """A fresh, empty PostgreSQL database for the module (dropped afterwards)."""
    import asyncio
    import uuid

    asyncpg = pytest.importorskip("asyncpg")
    name = f"cival_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        con = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=5)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server
        service_unavailable("PostgreSQL", f"{type(exc).__name__}: {exc}")
    yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
