"""The store: where runs and their books are kept, behind one interface.

Two backends implement :class:`Store`: PostgreSQL through asyncpg
(:class:`cival.store.postgres.PostgresStore`, money in ``NUMERIC``, times in
``timestamptz``) and an embedded SQLite file (:class:`cival.store.sqlite.SqliteStore`,
the default when no URL is set, money as exact decimal text). The same contract tests
run against both.

Ledger transactions are written in batches and are idempotent: writing a transaction
that is already stored (same ledger, sequence number and idempotency key) changes
nothing, and one that conflicts with what is stored (same sequence number or key,
different content) raises :class:`StoreError` without writing any of the batch.

Schema versions are applied in order by :meth:`Store.migrate` and recorded in
``schema_migrations``; :meth:`Store.status` says which are applied and which pending.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cival.core.errors import CivalError
from cival.core.ledger import Posting, Transaction, TxType


class StoreError(CivalError):
    """The store refused an operation or could not be reached."""


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None
    """None: pending."""


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    config: dict[str, Any]


def new_run_id() -> str:
    """A run id: UTC start time and a random suffix, so ids sort by time."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


class Store(ABC):
    """Runs and their ledgers (see the module docstring)."""

    kind: str = ""

    @abstractmethod
    def migrate(self) -> list[int]:
        """Apply the pending schema versions; returns those applied now."""

    @abstractmethod
    def status(self) -> list[MigrationStatus]:
        """Every schema version, applied (with its time) or pending."""

    @abstractmethod
    def create_run(self, name: str, mode: str, config: dict[str, Any], run_id: str | None = None) -> str:
        """Record a new run; returns its id."""

    @abstractmethod
    def finish_run(self, run_id: str, status: str = "finished") -> None:
        """Mark a run finished (or ``interrupted``, ``failed``)."""

    @abstractmethod
    def runs(self) -> list[RunRecord]:
        """Every run, newest first."""

    @abstractmethod
    def write_transactions(self, run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> int:
        """Write a batch of one ledger's transactions; returns how many were new."""

    @abstractmethod
    def transactions(self, run_id: str, ledger: str) -> list[Transaction]:
        """One ledger's transactions, in sequence order, exactly as written."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tx_rows(run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> tuple[list[tuple], list[tuple]]:
    """Rows for ``ledger_transactions`` and ``ledger_postings`` (amounts as Decimals)."""
    head = [(run_id, ledger, tx.seq, tx.type.value, tx.idempotency_key, tx.at, tx.memo, currency) for tx in txs]
    legs = [
        (run_id, ledger, tx.seq, i, p.account, p.amount, p.quantity)
        for tx in txs
        for i, p in enumerate(tx.postings)
    ]
    return head, legs


def rebuild(heads: Sequence[Any], legs: Sequence[Any]) -> list[Transaction]:
    """Transactions from rows (head: seq, type, key, at, memo, currency; legs: seq, account, amount, quantity)."""
    by_seq: dict[int, list[Posting]] = {}
    for seq, account, amount, quantity in legs:
        by_seq.setdefault(int(seq), []).append(Posting(account, amount, quantity))
    return [
        Transaction(int(seq), TxType(type_), key, tuple(by_seq.get(int(seq), ())), at, currency, memo)
        for seq, type_, key, at, memo, currency in heads
    ]


def check_batch(existing: dict[int, Transaction], txs: Sequence[Transaction], ledger: str) -> list[Transaction]:
    """The transactions of ``txs`` not stored yet; StoreError if one conflicts with what is."""
    fresh = []
    by_key = {t.idempotency_key: t for t in existing.values()}
    for tx in txs:
        stored = existing.get(tx.seq) or by_key.get(tx.idempotency_key)
        if stored is None:
            fresh.append(tx)
            continue
        same = (
            stored.seq == tx.seq
            and stored.idempotency_key == tx.idempotency_key
            and stored.type == tx.type
            and [(p.account, p.amount, p.quantity) for p in stored.postings]
            == [(p.account, p.amount, p.quantity) for p in tx.postings]
        )
        if not same:
            raise StoreError(
                f"ledger {ledger}: transaction #{tx.seq} ({tx.idempotency_key!r}) conflicts with the stored "
                f"#{stored.seq} ({stored.idempotency_key!r}); nothing of this batch was written"
            )
    return fresh


def open_store(url: str | None = None, path: str | os.PathLike[str] | None = None) -> Store:
    """PostgreSQL when ``url`` (or ``DATABASE_URL``) is set, else SQLite at ``path``
    (default: ``cival.sqlite3`` in the user's data directory)."""
    url = url or os.environ.get("DATABASE_URL") or None
    if url:
        from cival.store.postgres import PostgresStore

        return PostgresStore(url)
    from cival.store.sqlite import SqliteStore

    if path is None:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "cival"
        path = base / "cival.sqlite3"
    return SqliteStore(path)


__all__ = [
    "MigrationStatus",
    "RunRecord",
    "Store",
    "StoreError",
    "check_batch",
    "new_run_id",
    "open_store",
    "rebuild",
    "tx_rows",
]
