"""The embedded store: one SQLite file, exact decimals as text (see :mod:`cival.store.base`)."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cival.core.ledger import Transaction
from cival.store.base import MigrationStatus, RunRecord, Store, StoreError, check_batch, new_run_id, rebuild, tx_rows
from cival.store.schema import MIGRATIONS


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class SqliteStore(Store):
    kind = "sqlite"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the embedded store at {self.path}: {exc}") from None
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )

    # schema

    def migrate(self) -> list[int]:
        applied = {row[0] for row in self._db.execute("SELECT version FROM schema_migrations")}
        done = []
        for m in MIGRATIONS:
            if m.version in applied:
                continue
            with self._transaction():
                for statement in _statements(m.sqlite):
                    self._db.execute(statement)
                self._db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, _time(datetime.now(UTC))),
                )
            done.append(m.version)
        return done

    def status(self) -> list[MigrationStatus]:
        applied = {row[0]: row[1] for row in self._db.execute("SELECT version, applied_at FROM schema_migrations")}
        return [MigrationStatus(m.version, m.name, _parse_time(applied.get(m.version))) for m in MIGRATIONS]

    # runs

    def create_run(self, name: str, mode: str, config: dict[str, Any], run_id: str | None = None) -> str:
        run_id = run_id or new_run_id()
        self._db.execute(
            "INSERT INTO runs (id, name, mode, status, started_at, config) VALUES (?, ?, ?, 'running', ?, ?)",
            (run_id, name, mode, _time(datetime.now(UTC)), json.dumps(config)),
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        self._db.execute(
            "UPDATE runs SET status = ?, finished_at = ? WHERE id = ?", (status, _time(datetime.now(UTC)), run_id)
        )

    def runs(self) -> list[RunRecord]:
        rows = self._db.execute(
            "SELECT id, name, mode, status, started_at, finished_at, config FROM runs ORDER BY started_at DESC, id DESC"
        )
        return [
            RunRecord(r[0], r[1], r[2], r[3], _parse_time(r[4]), _parse_time(r[5]), json.loads(r[6]))  # type: ignore[arg-type]
            for r in rows
        ]

    # ledgers

    def write_transactions(self, run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> int:
        if not txs:
            return 0
        with self._transaction():
            existing = {t.seq: t for t in self._read(run_id, ledger, [t.seq for t in txs], [t.idempotency_key for t in txs])}
            fresh = check_batch(existing, txs, ledger)
            head, legs = tx_rows(run_id, ledger, currency, fresh)
            self._db.executemany(
                "INSERT INTO ledger_transactions (run_id, ledger, seq, type, idempotency_key, at, memo, currency) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*h[:5], _time(h[5]), *h[6:]) for h in head],
            )
            self._db.executemany(
                "INSERT INTO ledger_postings (run_id, ledger, seq, leg, account, amount, quantity) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*leg[:5], str(leg[5]), str(leg[6])) for leg in legs],
            )
        return len(fresh)

    def transactions(self, run_id: str, ledger: str) -> list[Transaction]:
        return self._read(run_id, ledger)

    def _read(self, run_id: str, ledger: str, seqs: list[int] | None = None, keys: list[str] | None = None) -> list[Transaction]:
        where, args = "run_id = ? AND ledger = ?", [run_id, ledger]
        if seqs is not None and keys is not None:
            marks = ",".join("?" * len(seqs))
            where += f" AND (seq IN ({marks}) OR idempotency_key IN ({','.join('?' * len(keys))}))"
            args += [*seqs, *keys]
        heads = list(
            self._db.execute(f"SELECT seq, type, idempotency_key, at, memo, currency FROM ledger_transactions WHERE {where} ORDER BY seq", args)
        )
        found = [h[0] for h in heads]
        legs: list[Any] = []
        if found:
            marks = ",".join("?" * len(found))
            legs = list(
                self._db.execute(
                    f"SELECT seq, account, amount, quantity FROM ledger_postings WHERE run_id = ? AND ledger = ? "
                    f"AND seq IN ({marks}) ORDER BY seq, leg",
                    [run_id, ledger, *found],
                )
            )
        return rebuild(
            [(s, t, k, _parse_time(a), m, c) for s, t, k, a, m, c in heads],
            [(s, acc, Decimal(amt), Decimal(q)) for s, acc, amt, q in legs],
        )

    def close(self) -> None:
        self._db.close()

    def _transaction(self):  # type: ignore[no-untyped-def]
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *rest) -> None:  # type: ignore[no-untyped-def]
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


__all__ = ["SqliteStore"]
