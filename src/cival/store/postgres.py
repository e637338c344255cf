"""The PostgreSQL store, through an asyncpg pool (see :mod:`cival.store.base`).

The runtime is synchronous, so the store runs its own event loop on a background thread
and each method waits for its coroutine there. Batches go through ``executemany`` in one
transaction. The URL comes from the caller (``DATABASE_URL`` or ``storage.url``) and is
never printed with its password.

An outage delays writes, it does not lose them: an operation that fails because the
server or the connection to it went away is retried whole, on a new connection, with a
growing pause, for up to ``retry_for`` seconds (``CIVAL_STORE_RETRY_SECONDS``, default
300) before a StoreError. Retrying is safe because every write is idempotent (a commit
whose acknowledgement was lost is recognised, not repeated). What counts as an outage
(:func:`_outage`): the connection refused, reset or ended (EOF), a timeout, the server
shutting down (57P01 fast, 57P02 immediate or crash), starting up or recovering (57P03),
any connection exception (class 08), and an error on a connection that no longer answers
(asyncpg reports one left in the middle of the protocol by a shutdown as an interface or
internal client error: "cannot switch to state 15; another operation (2) is in
progress"). A connection on which anything failed is closed, never handed out again, and
after an outage the pool's idle connections are replaced too. Any other error (a
constraint violation, bad SQL or arguments, a wrong password) is a StoreError at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from cival.core.events import StoredEvent
from cival.core.ledger import GENESIS, Transaction
from cival.core.urls import redact
from cival.store.base import (
    DATA_TABLES,
    CommitResult,
    JournalBatch,
    MigrationStatus,
    NodeState,
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

T = TypeVar("T")
log = logging.getLogger("cival.store")


_OUTAGE_STATES = {
    "57P01",  # admin shutdown: a fast shutdown (or smart, once idle) ends every session
    "57P02",  # crash shutdown: another server process crashed, or an immediate shutdown
    "57P03",  # cannot connect now: the server is starting, recovering or shutting down
    "57P05",  # idle session timeout: the server closed the connection
}


def _outage(exc: BaseException) -> bool:
    """Whether an error certainly means that the server or the connection went away:
    the error, or one it happened while handling (a rollback after a shutdown)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _lost(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _lost(exc: BaseException) -> bool:
    import asyncpg

    if isinstance(exc, asyncpg.PostgresError):
        code = getattr(exc, "sqlstate", None) or ""
        return code.startswith("08") or code in _OUTAGE_STATES
    # Refused, reset, broken pipe, EOF in the middle of a message, a connect or command timeout.
    return isinstance(exc, (OSError, EOFError, TimeoutError, asyncio.TimeoutError))


def _ambiguous(exc: BaseException) -> bool:
    """Whether an error is one asyncpg raises both for a connection left broken (by a
    shutdown, mid-protocol) and for a caller's mistake (wrong number of arguments): which
    it was, only the connection can say."""
    from asyncpg import exceptions as pg

    if isinstance(
        exc,
        (
            pg.ClientConfigurationError,
            pg._base.DataError,
            pg.UnsupportedClientFeatureError,
            pg.UnsupportedServerFeatureError,
            pg.TargetServerAttributeNotMatched,
        ),
    ):
        return False  # bad settings or input: the same again on any connection
    return isinstance(exc, (pg.InterfaceError, pg.InternalClientError))


def _refusal(exc: BaseException) -> bool:
    """Whether an error is asyncpg's (the server's or the driver's), rather than a bug of ours."""
    import asyncpg

    return isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.exceptions.InternalClientError))


async def _answers(con: Any) -> bool:
    """Whether a connection still works (after an error that does not say)."""
    try:
        return bool(await con.fetchval("SELECT 1", timeout=5) == 1)
    except Exception:  # noqa: BLE001 - closed, mid-protocol, timed out: it does not
        return False


def _drop(con: Any) -> None:
    """Close a pool's connection at once: never handed out again (the pool makes a new one)."""
    try:
        con.terminate()
    except Exception:  # noqa: BLE001 - already closed and taken back by the pool
        pass


class _Outage(Exception):
    """An operation failed because the server or the connection went away (the cause)."""


class PostgresStore(Store):
    kind = "postgres"

    def __init__(
        self,
        url: str,
        min_size: int = 0,
        max_size: int = 4,
        timeout: float = 10.0,
        retry_for: float | None = None,
        wait: bool = False,
        read_only: bool = False,
    ) -> None:
        """``wait``: if the server cannot be reached now, keep trying as during an outage
        (an actor restarting while the server is away) rather than failing at once (a
        wrong URL, a server not started). ``read_only``: to read, creating and changing
        nothing (see :mod:`cival.store.base`): its connections' transactions are read-only
        (``default_transaction_read_only``), and ``schema_migrations`` is not created."""
        import asyncpg

        self.url = url
        self.read_only = read_only
        self.retry_for = float(os.environ.get("CIVAL_STORE_RETRY_SECONDS", 300)) if retry_for is None else retry_for
        self.outages = 0
        """How many times the server was unreachable and an operation waited for it."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cival-store", daemon=True)
        self._thread.start()

        async def connect() -> Any:  # the pool must be made on the loop that will use it
            # Plan each statement for the data at hand: a plan cached while a ledger was empty
            # (a sequential scan) would make every later batch slower.
            return await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                timeout=timeout,
                command_timeout=60,
                server_settings={
                    "plan_cache_mode": "force_custom_plan",
                    **({"default_transaction_read_only": "on"} if read_only else {}),
                },
            )

        try:
            self._pool = self._run(connect())
        except Exception as exc:  # asyncpg raises OSError, its own errors, timeouts...
            self._stop()
            raise StoreError(f"cannot reach PostgreSQL at {redact(url)} ({type(exc).__name__}: {exc}); check DATABASE_URL") from None
        create = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        if read_only:
            create = "SELECT 1"  # that the server answers, and nothing more
        try:
            if wait:
                self._call(lambda con: con.execute(create), transaction=False)
            else:
                self._run(self._pool.execute(create))
        except StoreError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001 - refused, unknown host, bad credentials...
            self.close()
            raise StoreError(f"cannot reach PostgreSQL at {redact(url)} ({type(exc).__name__}: {exc}); check DATABASE_URL") from None

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _call(self, fn: Callable[[Any], Awaitable[T]], transaction: bool = True) -> T:
        """Run ``fn(connection)`` (in a transaction), retrying whole while the server is
        away (see the module docstring); any other failure is a StoreError at once."""
        deadline: float | None = None
        pause = 0.1
        while True:
            try:
                return self._run(self._once(fn, transaction))
            except _Outage as outage:
                exc = outage.__cause__ or outage
                if self._pool.is_closing():
                    raise StoreError(f"the PostgreSQL store at {redact(self.url)} is closed") from None
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.retry_for
                    self.outages += 1
                    log.warning("PostgreSQL at %s unreachable (%s: %s); retrying for up to %.0f s", redact(self.url), type(exc).__name__, exc, self.retry_for)
                if now >= deadline:
                    raise StoreError(
                        f"PostgreSQL at {redact(self.url)} unreachable for {self.retry_for:.0f} s "
                        f"({type(exc).__name__}: {exc}); nothing after the last successful write was stored"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
            except StoreError:
                raise
            except Exception as exc:
                if not _refusal(exc):
                    raise
                raise StoreError(
                    f"PostgreSQL at {redact(self.url)} refused the operation ({type(exc).__name__}: {exc}); "
                    "nothing of it was written"
                ) from exc

    async def _once(self, fn: Callable[[Any], Awaitable[T]], transaction: bool) -> T:
        """One attempt on a connection of the pool; _Outage if the server or the connection went away."""
        try:
            con = await self._pool.acquire()
        except Exception as exc:
            if _outage(exc):
                raise _Outage() from exc
            if self._pool.is_closing():
                raise StoreError(f"the PostgreSQL store at {redact(self.url)} is closed") from None
            raise StoreError(f"cannot connect to PostgreSQL at {redact(self.url)} ({type(exc).__name__}: {exc}); check DATABASE_URL") from None
        try:
            if transaction:
                async with con.transaction():
                    result = await fn(con)
            else:
                result = await fn(con)
        except BaseException as exc:
            lost = isinstance(exc, Exception) and (_outage(exc) or (_ambiguous(exc) and not await _answers(con)))
            # A connection on which something failed may be in the middle of the protocol
            # or of a transaction: closed, never given back to the pool.
            _drop(con)
            if lost:
                # Its idle siblings are connections to the same server: most likely gone too.
                await self._pool.expire_connections()
                raise _Outage() from exc
            raise
        try:
            await self._pool.release(con)
        except Exception:  # noqa: BLE001 - done (committed): a connection the pool cannot reset, it closes itself
            pass
        return result

    @property
    def location(self) -> StoreLocation:
        return StoreLocation(url=self.url)

    # schema

    def migrate(self) -> list[int]:
        async def go(con: Any) -> list[int]:
            done = []
            await con.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")  # one migrator at a time
            applied = {r["version"] for r in await con.fetch("SELECT version FROM schema_migrations")}
            for m in MIGRATIONS:
                if m.version in applied:
                    continue
                await con.execute(m.postgres)
                if m.version == CHAINED:
                    await self._chain_stored_rows(con)
                await con.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    m.version, m.name, datetime.now(UTC),
                )
                done.append(m.version)
            return done

        return self._call(go)

    async def _chain_stored_rows(self, con: Any) -> None:
        """Hash every ledger row stored before rows carried their hash, ledger by ledger."""
        for r in await con.fetch("SELECT DISTINCT run_id, ledger FROM ledger_transactions"):
            txs = with_hashes(GENESIS, await self._read(con, r["run_id"], r["ledger"]))
            await con.executemany(
                "UPDATE ledger_transactions SET hash = $1 WHERE run_id = $2 AND ledger = $3 AND seq = $4",
                [(tx.hash, r["run_id"], r["ledger"], tx.seq) for tx in txs],
            )

    def status(self) -> list[MigrationStatus]:
        async def go(con: Any) -> dict[int, datetime]:
            if await con.fetchval("SELECT to_regclass('schema_migrations')") is None:
                return {}  # not yet, in a database opened to read
            return {r["version"]: r["applied_at"] for r in await con.fetch("SELECT version, applied_at FROM schema_migrations")}

        applied = self._call(go, transaction=False)
        return [MigrationStatus(m.version, m.name, applied.get(m.version)) for m in MIGRATIONS]

    def holds_data(self) -> bool:
        async def go(con: Any) -> bool:
            for table in DATA_TABLES:
                if await con.fetchval("SELECT to_regclass($1)", table) is not None and await con.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {table})"
                ):
                    return True
            return False

        return self._call(go, transaction=False)

    # runs

    def create_run(self, name: str, mode: str, config: dict[str, Any], run_id: str | None = None) -> str:
        run_id = run_id or new_run_id()
        started = datetime.now(UTC)
        self._call(
            lambda con: con.execute(
                "INSERT INTO runs (id, name, mode, status, started_at, config) VALUES ($1, $2, $3, 'running', $4, $5::jsonb) "
                "ON CONFLICT (id) DO NOTHING",
                run_id, name, mode, started, json.dumps(config),
            )
        )
        return run_id

    def update_run(self, run_id: str, status: str | None = None, meta: dict[str, Any] | None = None, finished: bool = False) -> None:
        async def go(con: Any) -> None:
            found = await con.execute(
                "UPDATE runs SET meta = meta || $2::jsonb, status = COALESCE($3, status), "
                "finished_at = CASE WHEN $4 THEN $5 ELSE finished_at END WHERE id = $1",
                run_id, json.dumps(meta or {}), status, finished, datetime.now(UTC),
            )
            if found == "UPDATE 0":
                raise StoreError(f"no run {run_id!r} in the PostgreSQL store")

        self._call(go)

    def runs(self) -> list[RunRecord]:
        if not self.readable():
            return []

        async def go(con: Any) -> list[Any]:
            return await con.fetch(
                "SELECT id, name, mode, status, started_at, finished_at, config::text AS config, meta::text AS meta, "
                "event_seq, driver, heartbeat_at FROM runs ORDER BY started_at DESC, id DESC"
            )

        return [
            RunRecord(
                r["id"], r["name"], r["mode"], r["status"], r["started_at"], r["finished_at"],
                json.loads(r["config"]), json.loads(r["meta"]), r["event_seq"], r["driver"], r["heartbeat_at"],
            )
            for r in self._call(go, transaction=False)
        ]

    def claim_run(self, run_id: str, driver: str, expected: str | None) -> bool:
        done = self._call(
            lambda con: con.execute(
                "UPDATE runs SET driver = $1, heartbeat_at = $2 WHERE id = $3 AND driver IS NOT DISTINCT FROM $4",
                driver, datetime.now(UTC), run_id, expected,
            )
        )
        return done == "UPDATE 1"

    def beat(self, run_id: str, driver: str) -> bool:
        done = self._call(
            lambda con: con.execute(
                "UPDATE runs SET heartbeat_at = $1 WHERE id = $2 AND driver = $3", datetime.now(UTC), run_id, driver
            )
        )
        return done == "UPDATE 1"

    def release_run(self, run_id: str, driver: str) -> None:
        self._call(lambda con: con.execute("UPDATE runs SET driver = NULL WHERE id = $1 AND driver = $2", run_id, driver))

    # ledgers

    def write_transactions(self, run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> int:
        if not txs:
            return 0
        return self._call(lambda con: self._write_transactions(con, run_id, ledger, currency, txs))

    async def _write_transactions(self, con: Any, run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> int:
        await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{run_id}/{ledger}")
        existing = {t.seq: t for t in await self._read(con, run_id, ledger, [t.seq for t in txs], [t.idempotency_key for t in txs])}
        fresh = check_batch(existing, txs, ledger)
        if fresh and not all(tx.hash for tx in fresh):
            fresh = with_hashes(await self._hash_before(con, run_id, ledger, fresh[0].seq), fresh)
        head, legs = tx_rows(run_id, ledger, currency, fresh)
        if head:  # all new (checked above): COPY, the fastest way in
            await _copy(
                con, "ledger_transactions", ("run_id", "ledger", "seq", "type", "idempotency_key", "at", "memo", "currency", "hash"), head
            )
            await _copy(con, "ledger_postings", ("run_id", "ledger", "seq", "leg", "account", "amount", "quantity"), legs)
        return len(fresh)

    async def _hash_before(self, con: Any, run_id: str, ledger: str, seq: int) -> str:
        """The stored hash of the transaction before #``seq`` (GENESIS for the first)."""
        if seq <= 1:
            return GENESIS
        found = await con.fetchval(
            "SELECT hash FROM ledger_transactions WHERE run_id = $1 AND ledger = $2 AND seq = $3", run_id, ledger, seq - 1
        )
        if not found:
            raise StoreError(f"ledger {ledger}: transaction #{seq - 1} is not stored (or has no hash); transactions are written in order")
        return str(found)

    def transactions(self, run_id: str, ledger: str) -> list[Transaction]:
        return self._call(lambda con: self._read(con, run_id, ledger), transaction=False)

    def transactions_at(self, run_id: str, ledger: str, seqs: Sequence[int]) -> list[Transaction]:
        return self._call(lambda con: self._read(con, run_id, ledger, list(seqs), []), transaction=False)

    async def _read(self, con: Any, run_id: str, ledger: str, seqs: list[int] | None = None, keys: list[str] | None = None) -> list[Transaction]:
        columns = "SELECT seq, type, idempotency_key, at, memo, currency, hash FROM ledger_transactions"
        if seqs is not None and keys is not None:
            # Two lookups, each on its own index (an OR of the two would scan the ledger).
            heads = await con.fetch(
                f"{columns} WHERE run_id = $1 AND ledger = $2 AND seq = ANY($3::int[]) "
                f"UNION {columns} WHERE run_id = $1 AND ledger = $2 AND idempotency_key = ANY($4::text[]) ORDER BY seq",
                run_id, ledger, seqs, keys,
            )
        else:
            heads = await con.fetch(f"{columns} WHERE run_id = $1 AND ledger = $2 ORDER BY seq", run_id, ledger)
        found = [h["seq"] for h in heads]
        legs = []
        if found:
            legs = await con.fetch(
                "SELECT seq, account, amount, quantity FROM ledger_postings WHERE run_id = $1 AND ledger = $2 "
                "AND seq = ANY($3::int[]) ORDER BY seq, leg",
                run_id, ledger, found,
            )
        return rebuild([tuple(h) for h in heads], [tuple(leg) for leg in legs])

    # journal

    def commit(self, run_id: str, batch: JournalBatch) -> CommitResult:
        async def go(con: Any) -> CommitResult:
            new_txs = 0
            if batch.ledger is not None and batch.transactions:
                new_txs = await self._write_transactions(con, run_id, batch.ledger, batch.currency, batch.transactions)
            for table, rows in batch.rows.items():
                if rows:
                    await _insert(con, table, [row_values(table, r, "postgres") for r in rows])
            for table, rows in batch.updates.items():
                for r in rows:
                    columns, values = update_values(table, r, "postgres")
                    await con.execute(update_sql(table, columns, "postgres"), *values)
            if batch.state is not None:
                await con.execute(
                    "INSERT INTO node_states (run_id, source, version, state, reply_json, updated_at) VALUES ($1, $2, $3, $4, $5, $6) "
                    "ON CONFLICT (run_id, source) DO UPDATE SET version = EXCLUDED.version, state = EXCLUDED.state, "
                    "reply_json = EXCLUDED.reply_json, updated_at = EXCLUDED.updated_at WHERE node_states.version < EXCLUDED.version",
                    run_id, batch.source, batch.version, batch.state, batch.reply, datetime.now(UTC),
                )
            new_events = 0
            if batch.events:
                # Last, and under the run's row lock until the commit: numbers are handed out
                # in commit order, so a reader that saw number n has seen every number below.
                # (NO KEY UPDATE: the ledger rows' foreign key holds a KEY SHARE lock on the
                # same row, which a plain FOR UPDATE would wait for: a deadlock between two nodes.)
                last = await con.fetchval("SELECT event_seq FROM runs WHERE id = $1 FOR NO KEY UPDATE", run_id)
                if last is None:
                    raise StoreError(f"no run {run_id!r} in the PostgreSQL store")
                known = {
                    r["id"]
                    for r in await con.fetch("SELECT id FROM events WHERE run_id = $1 AND id = ANY($2::text[])", run_id, [e.id for e in batch.events])
                }
                fresh = []
                for e in batch.events:  # new ones, each once
                    if e.id not in known:
                        known.add(e.id)
                        fresh.append(e)
                if fresh:  # all new (checked above, under the lock)
                    await _copy(
                        con,
                        "events",
                        tuple(n for n, _ in COLUMNS["events"]),
                        [
                            row_values("events", {"run_id": run_id, "seq": last + i, "id": e.id, "source": batch.source,
                                                  "type": e.type, "entity": e.entity, "at": e.at, "data": e.data}, "postgres")
                            for i, e in enumerate(fresh, start=1)
                        ],
                    )
                    await con.execute("UPDATE runs SET event_seq = $2 WHERE id = $1", run_id, last + len(fresh))
                new_events = len(fresh)
            return CommitResult(new_txs, new_events)

        return self._call(go)

    def node_state(self, run_id: str, source: str) -> NodeState | None:
        async def go(con: Any) -> Any:
            return await con.fetchrow(
                "SELECT version, state, reply_json, reply FROM node_states WHERE run_id = $1 AND source = $2", run_id, source
            )

        row = self._call(go, transaction=False)
        if row is None:
            return None
        if row["reply"] is not None:
            decode_reply(run_id, source, None, legacy=row["reply"])  # refused: see decode_reply
        return NodeState(source, row["version"], row["state"], row["reply_json"])

    def node_sources(self, run_id: str) -> list[str]:
        async def go(con: Any) -> list[str]:
            return [r["source"] for r in await con.fetch("SELECT source FROM node_states WHERE run_id = $1 ORDER BY source", run_id)]

        return self._call(go, transaction=False)

    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        async def go(con: Any) -> list[Any]:
            return await con.fetch(
                "SELECT seq, id, source, type, entity, at, data::text AS data FROM events WHERE run_id = $1 AND seq > $2 "
                "ORDER BY seq LIMIT $3",
                run_id, after, limit,
            )

        return self.expand(run_id, [
            StoredEvent(run_id, r["seq"], r["id"], r["source"], r["type"], r["entity"], r["at"], json.loads(r["data"]))
            for r in self._call(go, transaction=False)
        ])

    def rows(
        self, table: str, run_id: str | None = None, where: dict[str, Any] | None = None, order: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        names = column_names(table, columns)
        conditions = dict(where or {})
        if run_id is not None:
            conditions["run_id"] = run_id
        specs = dict(COLUMNS[table])
        select = ", ".join(f"{n}::text AS {n}" if specs[n].rstrip("?") == "json" else n for n in names)
        sql = f"SELECT {select} FROM {table}"
        if conditions:  # a list: any of its values
            sql += " WHERE " + " AND ".join(
                f"{k} = ANY(${i})" if isinstance(v, list) else f"{k} = ${i}" for i, (k, v) in enumerate(conditions.items(), start=1)
            )
        sql += f" ORDER BY {order or ', '.join(KEYS[table])}"

        async def go(con: Any) -> list[Any]:
            return await con.fetch(sql, *conditions.values())

        return [decode_row(table, names, tuple(r)) for r in self._call(go, transaction=False)]

    def update_row(self, table: str, row: dict[str, Any]) -> bool:
        columns, values = update_values(table, row, "postgres")
        done = self._call(lambda con: con.execute(update_sql(table, columns, "postgres"), *values))
        return not str(done).endswith(" 0")

    def delete_row(self, table: str, key: dict[str, Any]) -> bool:
        names = KEYS[table]
        sql = f"DELETE FROM {table} WHERE " + " AND ".join(f"{k} = ${i}" for i, k in enumerate(names, start=1))
        done = self._call(lambda con: con.execute(sql, *[key[k] for k in names]))
        return not str(done).endswith(" 0")

    def save(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        self._call(lambda con: con.executemany(insert_sql(table, "postgres"), [row_values(table, r, "postgres") for r in rows]))

    def close(self) -> None:
        if self._loop.is_running():
            try:
                self._run(asyncio.wait_for(self._pool.close(), 10))
            except Exception:  # noqa: BLE001 - closing a pool whose server is gone
                self._pool.terminate()
            finally:
                self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


BULK = 200
"""Rows from which an insert goes through COPY rather than one statement per row."""


async def _copy(con: Any, table: str, columns: Sequence[str], records: list[tuple[Any, ...]]) -> None:
    """Rows known to be new, into ``table``: COPY for many, an INSERT per row for a few."""
    if len(records) >= BULK:
        await con.copy_records_to_table(table, records=records, columns=list(columns))
    elif records:
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        await con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", records)


async def _insert(con: Any, table: str, records: list[tuple[Any, ...]]) -> None:
    """Rows that may be stored already (a retried commit): those whose key is stored are
    left as they are. Many go through COPY into a temporary table first."""
    if len(records) < BULK:
        await con.executemany(insert_sql(table, "postgres"), records)
        return
    names = [n for n, _ in COLUMNS[table]]
    staging = f"staging_{table}"
    await con.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    await con.copy_records_to_table(staging, records=records, columns=names)
    await con.execute(f"INSERT INTO {table} SELECT * FROM {staging} ON CONFLICT DO NOTHING")


__all__ = ["PostgresStore", "redact"]


register_backend("postgres", lambda where, wait, read_only: PostgresStore(where.url, wait=wait, read_only=read_only))  # type: ignore[arg-type]
