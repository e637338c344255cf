"""The PostgreSQL store, through an asyncpg pool (see :mod:`cival.store.base`).

The runtime is synchronous, so the store runs its own event loop on a background thread
and each method waits for its coroutine there. Batches go through ``executemany`` in one
transaction. The URL comes from the caller (``DATABASE_URL`` or ``storage.url``) and is
never printed with its password.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cival.core.ledger import Transaction
from cival.store.base import MigrationStatus, RunRecord, Store, StoreError, check_batch, new_run_id, rebuild, tx_rows
from cival.store.schema import MIGRATIONS

T = TypeVar("T")


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


class PostgresStore(Store):
    kind = "postgres"

    def __init__(self, url: str, min_size: int = 1, max_size: int = 4, timeout: float = 10.0) -> None:
        import asyncpg

        self.url = url
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
                server_settings={"plan_cache_mode": "force_custom_plan"},
            )

        try:
            self._pool = self._run(connect())
        except Exception as exc:  # asyncpg raises OSError, its own errors, timeouts...
            self._stop()
            raise StoreError(f"cannot reach PostgreSQL at {redact(url)} ({type(exc).__name__}: {exc}); check DATABASE_URL") from None
        self._run(self._execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._pool.acquire() as con:
            await con.execute(sql, *args)

    # schema

    def migrate(self) -> list[int]:
        async def go() -> list[int]:
            done = []
            async with self._pool.acquire() as con, con.transaction():
                await con.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")  # one migrator at a time
                applied = {r["version"] for r in await con.fetch("SELECT version FROM schema_migrations")}
                for m in MIGRATIONS:
                    if m.version in applied:
                        continue
                    await con.execute(m.postgres)
                    await con.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                        m.version, m.name, datetime.now(UTC),
                    )
                    done.append(m.version)
            return done

        return self._run(go())

    def status(self) -> list[MigrationStatus]:
        async def go() -> dict[int, datetime]:
            async with self._pool.acquire() as con:
                return {r["version"]: r["applied_at"] for r in await con.fetch("SELECT version, applied_at FROM schema_migrations")}

        applied = self._run(go())
        return [MigrationStatus(m.version, m.name, applied.get(m.version)) for m in MIGRATIONS]

    # runs

    def create_run(self, name: str, mode: str, config: dict[str, Any], run_id: str | None = None) -> str:
        run_id = run_id or new_run_id()
        self._run(
            self._execute(
                "INSERT INTO runs (id, name, mode, status, started_at, config) VALUES ($1, $2, $3, 'running', $4, $5::jsonb)",
                run_id, name, mode, datetime.now(UTC), json.dumps(config),
            )
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        self._run(self._execute("UPDATE runs SET status = $1, finished_at = $2 WHERE id = $3", status, datetime.now(UTC), run_id))

    def runs(self) -> list[RunRecord]:
        async def go() -> list[Any]:
            async with self._pool.acquire() as con:
                return await con.fetch(
                    "SELECT id, name, mode, status, started_at, finished_at, config::text AS config FROM runs "
                    "ORDER BY started_at DESC, id DESC"
                )

        return [
            RunRecord(r["id"], r["name"], r["mode"], r["status"], r["started_at"], r["finished_at"], json.loads(r["config"]))
            for r in self._run(go())
        ]

    # ledgers

    def write_transactions(self, run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> int:
        if not txs:
            return 0

        async def go() -> int:
            async with self._pool.acquire() as con, con.transaction():
                await con.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"{run_id}/{ledger}")
                existing = {t.seq: t for t in await self._read(con, run_id, ledger, [t.seq for t in txs], [t.idempotency_key for t in txs])}
                fresh = check_batch(existing, txs, ledger)
                head, legs = tx_rows(run_id, ledger, currency, fresh)
                await con.executemany(
                    "INSERT INTO ledger_transactions (run_id, ledger, seq, type, idempotency_key, at, memo, currency) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    head,
                )
                await con.executemany(
                    "INSERT INTO ledger_postings (run_id, ledger, seq, leg, account, amount, quantity) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    legs,
                )
                return len(fresh)

        return self._run(go())

    def transactions(self, run_id: str, ledger: str) -> list[Transaction]:
        async def go() -> list[Transaction]:
            async with self._pool.acquire() as con:
                return await self._read(con, run_id, ledger)

        return self._run(go())

    async def _read(self, con: Any, run_id: str, ledger: str, seqs: list[int] | None = None, keys: list[str] | None = None) -> list[Transaction]:
        columns = "SELECT seq, type, idempotency_key, at, memo, currency FROM ledger_transactions"
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

    def close(self) -> None:
        if self._loop.is_running():
            try:
                self._run(self._pool.close())
            finally:
                self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


__all__ = ["PostgresStore", "redact"]
