"""The embedded store: one SQLite file, exact decimals as text (see :mod:`cival.store.base`).

SQLite's and the file system's errors are StoreErrors that name the file and say what
to do (:meth:`SqliteStore._error`): a store that cannot be written (its permissions, a
read-only disk), a full disk, a write the disk refused (a failing disk, the process's
file size limit), a lock held too long, a damaged file. A transaction that fails, its
COMMIT included, is rolled back whole: the file keeps every transaction committed before
it, so the runs in it stay readable (``cival runs``, ``cival report``).

A full disk would also refuse the one small write that records a run as interrupted. So
the store keeps :data:`RESERVE` bytes of disk beside its file (``<file>-reserve``, made
when the store is opened and there is room) and gives them up to record that a run
stopped when the disk is full (:meth:`SqliteStore.update_run`).

Nothing of the database is memory-mapped (``mmap_size`` 0, whatever the SQLite build's
default): through a mapping, a read or write the disk refuses is a SIGBUS that kills the
process, not an error code. The write-ahead log's index (the ``-shm`` file) is mapped, as
WAL requires; SQLite writes every page of it before mapping it, so a full disk is an
error there too.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from cival.core.events import EventDraft, StoredEvent
from cival.core.fmt import parse_time, stored_time
from cival.core.ledger import GENESIS, Transaction
from cival.store.base import (
    DATA_TABLES,
    CommitResult,
    JournalBatch,
    MigrationStatus,
    NodeState,
    NoStore,
    RunRecord,
    Store,
    StoreError,
    StoreLocation,
    check_batch,
    decode_reply,
    new_run_id,
    rebuild,
    register_backend,
    tx_rows,
    with_hashes,
)
from cival.store.codec import (
    column_names,
    decode_row,
    insert_sql,
    row_values,
    update_sql,
    update_values,
)
from cival.store.schema import CHAINED, COLUMNS, KEYS, MIGRATIONS

F = TypeVar("F", bound=Callable[..., Any])

RESERVE = 256 * 1024
"""Bytes of disk kept beside the file for recording that a run stopped (see the module docstring)."""


class StoreFull(StoreError):
    """The disk under the embedded store is full."""


def _mapped(method: F) -> F:
    """``method`` with SQLite's and the file system's errors raised as StoreErrors (see
    :meth:`SqliteStore._error`)."""

    @functools.wraps(method)
    def wrapper(self: SqliteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc) from exc

    return wrapper  # type: ignore[return-value]


def _parse_time(value: str | None) -> datetime | None:
    return parse_time(value) if value else None


class SqliteStore(Store):
    kind = "sqlite"

    def __init__(self, path: str | os.PathLike[str], read_only: bool = False) -> None:
        """``read_only``: to read, creating and changing nothing (see :mod:`cival.store.base`):
        :class:`NoStore` if there is no file at ``path``, and every write refused."""
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        if read_only:
            self._open_to_read()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Several processes (the actors of a session) write to one file: each waits its
            # turn for the write lock rather than failing.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=120)
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from exc
        try:
            self._db.execute("PRAGMA mmap_size = 0")  # see the module docstring
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA journal_mode = WAL")
            # With WAL, NORMAL keeps every committed transaction through a crash of the
            # program (not through a power cut), at a fraction of FULL's cost.
            self._db.execute("PRAGMA synchronous = NORMAL")
            # A session's commits can be large (a batch of bars, many fills): a page cache that
            # holds them avoids spilling to the log in the middle of a transaction.
            self._db.execute("PRAGMA cache_size = -131072")  # KiB: 128 MiB at most, taken as used
            self._db.execute("PRAGMA temp_store = MEMORY")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(exc) from exc
        self._reserve = self.path.with_name(self.path.name + "-reserve")
        if not self._reserve.exists():
            try:
                with open(self._reserve, "xb") as f:
                    os.posix_fallocate(f.fileno(), 0, RESERVE)
            except FileExistsError:
                pass  # another process of the session made it
            except OSError:  # no room (or no right) for it now: only the stop's record goes without
                self._reserve.unlink(missing_ok=True)

    def _open_to_read(self) -> None:
        """Open the file as it is: never created (``mode=rw`` fails on a missing file),
        nothing written (``query_only``), its journal mode left as it is. A read-write
        connection rather than ``mode=ro``: the last connection to close removes the
        write-ahead log's files, where a read-only one would leave them behind."""
        if self.path.is_dir():
            raise StoreError(f"the embedded store's path {self.path.absolute()} is a folder: give the store's file (--path FILE)")
        if not self.path.exists():
            raise NoStore(
                f"no store at {self.path.absolute()} (nothing has run there yet; `cival demo`, `cival paper` "
                "or `cival backtest ... --save` creates it)"
            )
        self._reserve = self.path.with_name(self.path.name + "-reserve")
        try:
            self._db = sqlite3.connect(
                f"{self.path.absolute().as_uri()}?mode=rw", uri=True, isolation_level=None, check_same_thread=False, timeout=120
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from exc
        try:
            self._db.execute("PRAGMA query_only = ON")
            self._db.execute("PRAGMA mmap_size = 0")  # see the module docstring
            self._db.execute("PRAGMA temp_store = MEMORY")
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error | OSError) -> StoreError:
        """A StoreError for what SQLite or the file system refused: which file, what
        happened, what to do."""
        where = f"the embedded store at {self.path.absolute()}"
        name = getattr(exc, "sqlite_errorname", "") or ""
        other = "or use another store (a config's storage.path, --path, CIVAL_DATA_DIR or DATABASE_URL)"
        if self.read_only and (isinstance(exc, PermissionError) or name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"))):
            return StoreError(f"{where} cannot be read ({exc}): make the file, and the folder it is in, readable by this user, {other}")
        if isinstance(exc, PermissionError) or name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
            return StoreError(
                f"{where} cannot be written ({exc}): make the file, and the folder it is in, writable by this user "
                f"(or the disk writable again), {other}"
            )
        if name == "SQLITE_FULL" or getattr(exc, "errno", None) == 28:  # ENOSPC
            return StoreFull(f"{where} cannot grow: the disk is full ({exc}); free space on it, {other}")
        if name.startswith("SQLITE_IOERR") or isinstance(exc, OSError):
            return StoreError(
                f"{where} could not be written ({exc}, {name or type(exc).__name__}): the disk refused it (failing, full, "
                f"or over this process's file size limit, `ulimit -f`); fix that, {other}"
            )
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return StoreError(f"{where} stayed locked by another process for too long ({exc}); stop that process, {other}")
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            return StoreError(f"{where} is damaged or not a Cival store ({exc}); restore it from a copy, {other}")
        return StoreError(f"{where} refused the operation ({type(exc).__name__}: {exc}; {name or 'no code'})")

    @property
    def location(self) -> StoreLocation:
        return StoreLocation(path=str(self.path))

    # schema

    @_mapped
    def migrate(self) -> list[int]:
        done = []
        with self._lock, self._transaction():  # the write lock first: one migrator at a time
            applied = {row[0] for row in self._db.execute("SELECT version FROM schema_migrations")}
            for m in MIGRATIONS:
                if m.version in applied:
                    continue
                for statement in _statements(m.sqlite):
                    self._db.execute(statement)
                if m.version == CHAINED:
                    self._chain_stored_rows()
                self._db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, stored_time(datetime.now(UTC))),
                )
                done.append(m.version)
        return done

    def _chain_stored_rows(self) -> None:
        """Hash every ledger row stored before rows carried their hash, ledger by ledger."""
        ledgers = list(self._db.execute("SELECT DISTINCT run_id, ledger FROM ledger_transactions"))
        for run_id, ledger in ledgers:
            txs = with_hashes(GENESIS, self._read(run_id, ledger))
            self._db.executemany(
                "UPDATE ledger_transactions SET hash = ? WHERE run_id = ? AND ledger = ? AND seq = ?",
                [(tx.hash, run_id, ledger, tx.seq) for tx in txs],
            )

    @_mapped
    def status(self) -> list[MigrationStatus]:
        applied = {}
        with self._lock:
            if "schema_migrations" in self._tables():  # not yet, in a file opened to read
                applied = {row[0]: row[1] for row in self._db.execute("SELECT version, applied_at FROM schema_migrations")}
        return [MigrationStatus(m.version, m.name, _parse_time(applied.get(m.version))) for m in MIGRATIONS]

    def _tables(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    @_mapped
    def holds_data(self) -> bool:
        with self._lock:
            tables = self._tables()
            return any(self._db.execute(f"SELECT EXISTS (SELECT 1 FROM {t})").fetchone()[0] for t in DATA_TABLES if t in tables)

    # runs

    @_mapped
    def create_run(self, name: str, mode: str, config: dict[str, Any], run_id: str | None = None) -> str:
        run_id = run_id or new_run_id()
        self._db.execute(
            "INSERT INTO runs (id, name, mode, status, started_at, config) VALUES (?, ?, ?, 'running', ?, ?)",
            (run_id, name, mode, stored_time(datetime.now(UTC)), json.dumps(config)),
        )
        return run_id

    @_mapped
    def runs(self) -> list[RunRecord]:
        if not self.readable():
            return []
        rows = self._db.execute(
            "SELECT id, name, mode, status, started_at, finished_at, config, meta, event_seq, driver, heartbeat_at FROM runs "
            "ORDER BY started_at DESC, id DESC"
        )
        return [
            RunRecord(
                r[0], r[1], r[2], r[3], _parse_time(r[4]), _parse_time(r[5]), json.loads(r[6]), json.loads(r[7]), r[8],  # type: ignore[arg-type]
                r[9], _parse_time(r[10]) if r[10] else None,
            )
            for r in rows
        ]

    @_mapped
    def claim_run(self, run_id: str, driver: str, expected: str | None) -> bool:
        with self._lock, self._transaction():
            done = self._db.execute(
                "UPDATE runs SET driver = ?, heartbeat_at = ? WHERE id = ? AND driver IS ?",
                (driver, stored_time(datetime.now(UTC)), run_id, expected),
            )
            return done.rowcount == 1

    @_mapped
    def beat(self, run_id: str, driver: str) -> bool:
        with self._lock, self._transaction():
            done = self._db.execute(
                "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND driver = ?", (stored_time(datetime.now(UTC)), run_id, driver)
            )
            return done.rowcount == 1

    @_mapped
    def release_run(self, run_id: str, driver: str) -> None:
        with self._lock, self._transaction():
            self._db.execute("UPDATE runs SET driver = NULL WHERE id = ? AND driver = ?", (run_id, driver))

    def update_run(self, run_id: str, status: str | None = None, meta: dict[str, Any] | None = None, finished: bool = False) -> None:
        """See :meth:`Store.update_run`. On a full disk, the reserve kept beside the file is
        given up for this write (a run's record that it stopped; see the module docstring)."""
        try:
            self._update_run(run_id, status, meta, finished)
        except StoreFull as full:
            try:
                self._reserve.unlink()
            except OSError:
                raise full from None  # nothing left to give up
            self._update_run(run_id, status, meta, finished)

    @_mapped
    def _update_run(self, run_id: str, status: str | None, meta: dict[str, Any] | None, finished: bool) -> None:
        with self._lock, self._transaction():
            row = self._db.execute("SELECT meta FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run {run_id!r} in the embedded store")
            merged = {**json.loads(row[0]), **(meta or {})}
            self._db.execute("UPDATE runs SET meta = ? WHERE id = ?", (json.dumps(merged), run_id))
            if status is not None:
                self._db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))
            if finished:
                self._db.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (stored_time(datetime.now(UTC)), run_id))

    # journal

    @_mapped
    def commit(self, run_id: str, batch: JournalBatch) -> CommitResult:
        with self._lock, self._transaction():
            new_txs = 0
            if batch.ledger is not None and batch.transactions:
                new_txs = self._write_transactions(run_id, batch.ledger, batch.currency, batch.transactions)
            for table, rows in batch.rows.items():
                if rows:
                    self._db.executemany(insert_sql(table, "sqlite"), [row_values(table, r, "sqlite") for r in rows])
            for table, rows in batch.updates.items():
                for r in rows:
                    columns, values = update_values(table, r, "sqlite")
                    self._db.execute(update_sql(table, columns, "sqlite"), values)
            new_events = 0
            if batch.events:
                ids = [e.id for e in batch.events]
                known: set[str] = set()
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    known.update(
                        r[0]
                        for r in self._db.execute(
                            f"SELECT id FROM events WHERE run_id = ? AND id IN ({','.join('?' * len(chunk))})", [run_id, *chunk]
                        )
                    )
                fresh = []
                for e in batch.events:  # new ones, each once
                    if e.id not in known:
                        known.add(e.id)
                        fresh.append(e)
                if fresh:
                    (last,) = self._db.execute("SELECT event_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
                    self._db.executemany(
                        insert_sql("events", "sqlite"),
                        [
                            row_values("events", _event_row(run_id, last + i, e, batch.source), "sqlite")
                            for i, e in enumerate(fresh, start=1)
                        ],
                    )
                    self._db.execute("UPDATE runs SET event_seq = ? WHERE id = ?", (last + len(fresh), run_id))
                new_events = len(fresh)
            if batch.state is not None:
                self._db.execute(
                    "INSERT INTO node_states (run_id, source, version, state, reply_json, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (run_id, source) DO UPDATE SET version = excluded.version, state = excluded.state, "
                    "reply_json = excluded.reply_json, updated_at = excluded.updated_at WHERE node_states.version < excluded.version",
                    (run_id, batch.source, batch.version, batch.state, batch.reply, stored_time(datetime.now(UTC))),
                )
        return CommitResult(new_txs, new_events)

    @_mapped
    def node_state(self, run_id: str, source: str) -> NodeState | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version, state, reply_json, reply FROM node_states WHERE run_id = ? AND source = ?", (run_id, source)
            ).fetchone()
        if row is None:
            return None
        if row[3] is not None:
            decode_reply(run_id, source, None, legacy=row[3])  # refused: see decode_reply
        return NodeState(source, row[0], row[1], row[2])

    @_mapped
    def node_sources(self, run_id: str) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT source FROM node_states WHERE run_id = ? ORDER BY source", (run_id,))]

    @_mapped
    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        sql = "SELECT seq, id, source, type, entity, at, data FROM events WHERE run_id = ? AND seq > ? ORDER BY seq"
        args: list[Any] = [run_id, after]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows = list(self._db.execute(sql, args))
        return self.expand(run_id, [StoredEvent(run_id, r[0], r[1], r[2], r[3], r[4], parse_time(r[5]), json.loads(r[6])) for r in rows])

    @_mapped
    def rows(
        self, table: str, run_id: str | None = None, where: dict[str, Any] | None = None, order: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        names = column_names(table, columns)
        conditions = dict(where or {})
        if run_id is not None:
            conditions["run_id"] = run_id
        sql = f"SELECT {', '.join(names)} FROM {table}"
        args: list[Any] = []
        if conditions:
            clauses = []
            for k, v in conditions.items():  # a list: any of its values
                clauses.append(f"{k} IN ({','.join('?' * len(v))})" if isinstance(v, list) else f"{k} = ?")
                args += v if isinstance(v, list) else [v]
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {order or ', '.join(KEYS[table])}"
        with self._lock:
            found = list(self._db.execute(sql, args))
        return [decode_row(table, names, r) for r in found]

    @_mapped
    def update_row(self, table: str, row: dict[str, Any]) -> bool:
        columns, values = update_values(table, row, "sqlite")
        with self._lock, self._transaction():
            return self._db.execute(update_sql(table, columns, "sqlite"), values).rowcount > 0

    @_mapped
    def delete_row(self, table: str, key: dict[str, Any]) -> bool:
        names = KEYS[table]
        with self._lock, self._transaction():
            sql = f"DELETE FROM {table} WHERE " + " AND ".join(f"{k} = ?" for k in names)
            return self._db.execute(sql, [key[k] for k in names]).rowcount > 0

    @_mapped
    def save(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        with self._lock, self._transaction():
            self._db.executemany(insert_sql(table, "sqlite"), [row_values(table, r, "sqlite") for r in rows])

    # ledgers

    @_mapped
    def write_transactions(self, run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> int:
        if not txs:
            return 0
        with self._lock, self._transaction():
            return self._write_transactions(run_id, ledger, currency, txs)

    def _write_transactions(self, run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> int:
        existing: dict[int, Transaction] = {}
        for i in range(0, len(txs), 400):  # SQLite caps the parameters of one statement
            chunk = txs[i : i + 400]
            existing.update({t.seq: t for t in self._read(run_id, ledger, [t.seq for t in chunk], [t.idempotency_key for t in chunk])})
        fresh = check_batch(existing, txs, ledger)
        if fresh and not all(tx.hash for tx in fresh):
            fresh = with_hashes(self._hash_before(run_id, ledger, fresh[0].seq), fresh)
        head, legs = tx_rows(run_id, ledger, currency, fresh)
        self._db.executemany(
            "INSERT INTO ledger_transactions (run_id, ledger, seq, type, idempotency_key, at, memo, currency, hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(*h[:5], stored_time(h[5]), *h[6:]) for h in head],
        )
        self._db.executemany(
            "INSERT INTO ledger_postings (run_id, ledger, seq, leg, account, amount, quantity) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(*leg[:5], str(leg[5]), str(leg[6])) for leg in legs],
        )
        return len(fresh)

    def _hash_before(self, run_id: str, ledger: str, seq: int) -> str:
        """The stored hash of the transaction before #``seq`` (GENESIS for the first)."""
        if seq <= 1:
            return GENESIS
        row = self._db.execute(
            "SELECT hash FROM ledger_transactions WHERE run_id = ? AND ledger = ? AND seq = ?", (run_id, ledger, seq - 1)
        ).fetchone()
        if row is None or not row[0]:
            raise StoreError(f"ledger {ledger}: transaction #{seq - 1} is not stored (or has no hash); transactions are written in order")
        return str(row[0])

    @_mapped
    def transactions(self, run_id: str, ledger: str) -> list[Transaction]:
        with self._lock:
            return self._read(run_id, ledger)

    @_mapped
    def transactions_at(self, run_id: str, ledger: str, seqs: Sequence[int]) -> list[Transaction]:
        out: list[Transaction] = []
        with self._lock:
            for i in range(0, len(seqs), 400):  # SQLite caps the parameters of one statement
                out += self._read(run_id, ledger, list(seqs[i : i + 400]), [])
        return out

    def _read(self, run_id: str, ledger: str, seqs: list[int] | None = None, keys: list[str] | None = None) -> list[Transaction]:
        columns = "SELECT seq, type, idempotency_key, at, memo, currency, hash FROM ledger_transactions WHERE run_id = ? AND ledger = ?"
        if seqs is not None and keys is not None:
            # Two lookups, each on its own index (an OR, or a UNION, of the two scans the
            # ledger); the first is skipped for numbers above the last one stored, as new
            # transactions of an append-only journal are.
            (top,) = self._db.execute(
                "SELECT coalesce(max(seq), 0) FROM ledger_transactions WHERE run_id = ? AND ledger = ?", (run_id, ledger)
            ).fetchone()
            found: dict[int, Any] = {}
            low = [q for q in seqs if q <= top]
            if low:
                for row in self._db.execute(f"{columns} AND seq IN ({','.join('?' * len(low))})", [run_id, ledger, *low]):
                    found[row[0]] = row
            if keys:
                for row in self._db.execute(f"{columns} AND idempotency_key IN ({','.join('?' * len(keys))})", [run_id, ledger, *keys]):
                    found[row[0]] = row
            heads = [found[q] for q in sorted(found)]
        else:
            heads = list(self._db.execute(f"{columns} ORDER BY seq", [run_id, ledger]))
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
            [(s, t, k, _parse_time(a), m, c, h) for s, t, k, a, m, c, h in heads],
            [(s, acc, Decimal(amt), Decimal(q)) for s, acc, amt, q in legs],
        )

    @_mapped
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
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error:
                # A COMMIT that fails (a full disk) leaves the transaction open: it is
                # rolled back below, so that the connection can take the next one.
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        # SQLite rolls some failed transactions back itself (an I/O error, a full disk);
        # the error that ended the transaction is the one to report, not ROLLBACK's.
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                pass


def _event_row(run_id: str, seq: int, e: EventDraft, source: str) -> dict[str, Any]:
    return {"run_id": run_id, "seq": seq, "id": e.id, "source": source, "type": e.type, "entity": e.entity, "at": e.at, "data": e.data}


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


__all__ = ["RESERVE", "SqliteStore", "StoreFull"]


register_backend("sqlite", lambda where, wait, read_only: SqliteStore(where.path, read_only=read_only))  # type: ignore[arg-type]
