"""Schema versions, applied in order and recorded in ``schema_migrations``.

Each version has the same tables in both dialects: PostgreSQL keeps money and quantities
in ``NUMERIC`` (exact, unbounded scale), times in ``timestamptz`` and documents in
``jsonb``; SQLite keeps money as decimal text (read back as exact Decimals) and times as
ISO 8601 UTC text.

Postings carry no foreign key to their transaction: the store writes both in one
database transaction, and a per-row key check would make every batch slower as a
ledger grows (PostgreSQL plans it once, while the table is still empty).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    postgres: str
    sqlite: str


_V1_TABLES = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at {time} NOT NULL,
    finished_at {time},
    config {json} NOT NULL
);
CREATE TABLE ledger_transactions (
    run_id TEXT NOT NULL REFERENCES runs(id),
    ledger TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    at {time} NOT NULL,
    memo TEXT NOT NULL,
    currency TEXT NOT NULL,
    PRIMARY KEY (run_id, ledger, seq),
    UNIQUE (run_id, ledger, idempotency_key)
);
CREATE TABLE ledger_postings (
    run_id TEXT NOT NULL,
    ledger TEXT NOT NULL,
    seq INTEGER NOT NULL,
    leg INTEGER NOT NULL,
    account TEXT NOT NULL,
    amount {money} NOT NULL,
    quantity {money} NOT NULL,
    PRIMARY KEY (run_id, ledger, seq, leg)
);
"""

MIGRATIONS = [
    Migration(
        1,
        "runs and ledgers",
        _V1_TABLES.format(time="TIMESTAMPTZ", json="JSONB", money="NUMERIC"),
        _V1_TABLES.format(time="TEXT", json="TEXT", money="TEXT"),
    ),
]

__all__ = ["MIGRATIONS", "Migration"]
