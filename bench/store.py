"""The store and the event stream: ledger transactions persisted per second, events
published to Redis per second.

1. **Ledger.** Builds a real ledger (a deposit, allocations, then buy/sell fills with
   fees: two transactions per fill) and writes its journal in batches of ``--batch``
   transactions, into PostgreSQL (a fresh database, dropped afterwards;
   ``CIVAL_TEST_POSTGRES`` or the local server) and into the embedded SQLite file, side
   by side in this one run. Each store is checked to read back exactly what was written.
   Target: at least 5,000 transactions per second into PostgreSQL.
2. **Events.** The events of a real session (the demo cluster on its bundled bars, every
   type, in their real proportions), repeated with new numbers up to ``--events``, are
   published to Redis (``CIVAL_TEST_REDIS`` or the local server; keys of their own,
   deleted afterwards) through the runtime's bus, pages of 5,000 as the session's relay
   hands them over, until Redis has them all: AG-UI encoding included. Each run is
   checked: the stream holds every event once. Target: at least 20,000 events per second.

Medians over ``--repeat`` runs.

Usage: python bench/store.py [--transactions 20000] [--batch 500] [--events 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
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
    # Read back as written, each row with the chain hash the store gave it.
    assert [replace(t, hash="") for t in store.transactions(run, "master")] == list(txs), "read-back differs"
    return seconds


def session_events(n: int):  # type: ignore[no-untyped-def]
    """``n`` events made from a real session's (numbered 1..n, unique ids)."""
    from cival.config import load_config
    from cival.core.events import StoredEvent
    from cival.events import parse_event
    from cival.session import run_paper
    from cival.store.sqlite import SqliteStore

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(Path(tmp) / "s.sqlite3")
        store.migrate()
        result = run_paper(load_config(root / "configs" / "demo.yaml"), local=True, store=store)
        rows = store.events(result.run_id)
        store.close()
    body = [r for r in rows if r.type not in ("run_started", "run_finished")]
    picked = [rows[0]] + [body[k % len(body)] for k in range(n - 2)] + [rows[-1]]
    out = [
        StoredEvent("bench", seq, r.id if r.type in ("run_started", "run_finished") else f"{r.id}#{seq}", r.source, r.type,
                    r.entity, r.at, r.data)
        for seq, r in enumerate(picked, start=1)
    ]
    return [parse_event(r) for r in out], len({r.type for r in rows})


def publish_all(url: str, events, page: int = 5_000) -> float:  # type: ignore[no-untyped-def]
    import redis

    from cival.events import RedisBus, run_stream_key

    prefix = f"cival-bench-{uuid.uuid4().hex[:8]}"
    run = f"bench-{uuid.uuid4().hex[:8]}"
    events = [e.model_copy(update={"run_id": run}) for e in events]
    bus = RedisBus(url, run, prefix=prefix, buffer=len(events))
    t0 = time.perf_counter()
    for i in range(0, len(events), page):
        bus.publish(events[i : i + page])
    assert bus.flush(timeout=600), bus.stats()
    seconds = time.perf_counter() - t0
    bus.close()
    client = redis.Redis.from_url(url)
    try:
        entries = client.xrange(run_stream_key(run, prefix), count=None)
        custom = [f for _, f in entries if f[b"agui_type"] == b"CUSTOM"]
        assert [int(f[b"seq"]) for f in custom] == list(range(1, len(events) + 1)), "the stream does not hold every event once"
    finally:
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-ledger", action="store_true")
    parser.add_argument("--skip-events", action="store_true")
    args = parser.parse_args()
    if not args.skip_ledger:
        bench_ledger(args)
    if not args.skip_events:
        bench_events(args)


def bench_events(args: argparse.Namespace) -> None:
    url = os.environ.get("CIVAL_TEST_REDIS", "redis://127.0.0.1:6379/0")
    events, types = session_events(args.events)
    print(f"\n2. Events: {len(events):,} events of a demo session ({types} types) published to Redis through the bus")
    times = [publish_all(url, events) for _ in range(args.repeat)]
    median = statistics.median(times)
    rate = len(events) / median
    print(f"   median {median:.2f} s, {rate:,.0f} events/s (runs: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"   against the target of 20,000 events/s: {rate / 20000:.1f}x")


def bench_ledger(args: argparse.Namespace) -> None:

    import asyncpg

    from cival.store.postgres import PostgresStore
    from cival.store.sqlite import SqliteStore

    txs = journal(args.transactions)
    print(f"1. Ledger: {len(txs):,} ledger transactions ({sum(len(t.postings) for t in txs):,} postings), batches of {args.batch}")
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
