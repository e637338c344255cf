"""Persistence: runs and their books in PostgreSQL or an embedded SQLite file."""

from cival.store.base import (
    MigrationStatus,
    RunRecord,
    Store,
    StoreError,
    new_run_id,
    open_store,
)

__all__ = ["MigrationStatus", "RunRecord", "Store", "StoreError", "new_run_id", "open_store"]
