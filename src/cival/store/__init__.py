"""Persistence: runs and their books in PostgreSQL or an embedded SQLite file."""

# The backends register themselves with cival.store.base (StoreLocation.open) as they load.
import cival.store.postgres
import cival.store.sqlite  # noqa: F401
from cival.store.base import (
    MigrationStatus,
    NoStore,
    RunRecord,
    Store,
    StoreError,
    new_run_id,
    open_store,
)

__all__ = ["MigrationStatus", "NoStore", "RunRecord", "Store", "StoreError", "new_run_id", "open_store"]
