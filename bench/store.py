"""Ledger transactions persisted per second, through the store's batched path.

Builds a real ledger (a deposit, allocations, then buy/sell fills with fees: two
transactions per fill) and writes its journal in batches of ``--batch`` transactions,
into PostgreSQL (a fresh database, dropped afterwards; ``CIVAL_TEST_POSTGRES`` or the
local server) and into the embedded SQLite file, side by side in this one run. Each
store is checked to read back exactly what was written. Target (issue): at least 5,000
transactions per second into PostgreSQL.

Usage: python bench/store.py [--transactions 20000] [--batch 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

ADMIN = os.environ.get("CIVAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def journal(n: int):  # type: ignore[no-untyped-def]
    from cival.core.wallets import WalletTree

    tree = WalletTree("master", "USD")
    tree.add_farm("f")
    tree.add_agent("f", "a")
    tree.deposit("1000000", key="dep")
    tree.allocate("farm:f", "900000", key="a1")
    tree.allocate("agent:a", "800000", key="a2")
    i = 0
    while len(tree.ledger) < n:
        price = Decimal(40000 + (i % 97))
        tree.buy("a", "BTC", Decimal("0.5"), price, fee=Decimal("2.5"), key=f"b{i}")
        tree.sell("a", "BTC", Decimal("0.5"), price + Decimal("12.34567891"), fee=Decimal("2.51"), key=f"s{i}")
        i += 1
    return tree.ledger.journal[:n]


def write_all(store, txs, batch: int) -> float:  # type: ignore[no-untyped-def]
    run = store.create_run("bench", "bench", {})
    t0 = time.perf_counter()
    for i in range(0, len(txs), batch):
        store.write_transactions(run, "master", "USD", txs[i : i + batch])
    seconds = time.perf_counter() - t0
    assert store.transactions(run, "master") == list(txs), "read-back differs"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import asyncpg

    from cival.store.postgres import PostgresStore
    from cival.store.sqlite import SqliteStore

    txs = journal(args.transactions)
    print(f"{len(txs):,} ledger transactions ({sum(len(t.postings) for t in txs):,} postings), batches of {args.batch}")
    name = f"cival_bench_{uuid.uuid4().hex[:8]}"

    async def admin(sql: str) -> None:
        con = await asyncpg.connect(ADMIN)
        try:
            await con.execute(sql)
        finally:
            await con.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    results: dict[str, list[float]] = {"postgres": [], "sqlite": []}
    try:
        pg = PostgresStore(ADMIN.rsplit("/", 1)[0] + f"/{name}")
        pg.migrate()
        with tempfile.TemporaryDirectory() as tmp:
            lite = SqliteStore(Path(tmp) / "bench.sqlite3")
            lite.migrate()
            for _ in range(args.repeat):
                results["postgres"].append(write_all(pg, txs, args.batch))
                results["sqlite"].append(write_all(lite, txs, args.batch))
            lite.close()
        pg.close()
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    for kind, times in results.items():
        median = statistics.median(times)
        print(f"  {kind:>8}: median {median:.2f} s, {len(txs) / median:,.0f} transactions/s (runs: {', '.join(f'{t:.2f}' for t in times)})")
    pg_rate = len(txs) / statistics.median(results["postgres"])
    print(f"  PostgreSQL: {pg_rate:,.0f} transactions/s against the target of 5,000/s: {pg_rate / 5000:.1f}x")


if __name__ == "__main__":
    main()
