"""The paper-trading cluster on Ray: replay throughput, start-up, memory at scale, latency.

1. **Replay.** 3 farms x 3 agents (each farm one strategy with three parameter sets), one
   Ray actor each, replaying ``../shared/data/intraday_crypto/binance_BTCUSDT_5m.csv``
   (~120k bars) at ``--speed max``. Reported: bar-agent steps per second, and the ratio of
   the session's wall time (starting Ray and the actors excluded, reported separately)
   to the time of the 9 equivalent vectorised backtests (``backtest(engine="vectorbt")``,
   after a warm-up compile), run side by side in this one process. Targets: ratio <= 4,
   cluster start <= 20 s. The actors alone: nothing is journaled here (4 measures whole
   sessions, which are).
2. **Scale.** One farm of 90 inline agents (30 parameter sets per strategy) on the same
   bars: peak memory of this process, the Ray workers and Ray's own processes. Target
   <= 8 GiB.
3. **Latency.** The seeded synthetic feed at 1 bar/s through 9 agent actors: from a bar
   leaving the feed to each resulting fill being booked in its agent's ledger (one
   machine, one monotonic clock), p50 and p99; also bar to farm report for every bar.
   Target: fill p99 <= 25 ms.
4. **Persistence.** The replay of 1 as whole sessions (``run_paper``: every node
   journaled, every event published), on embedded defaults (an SQLite file and the
   in-process bus) and on PostgreSQL (a fresh database, dropped afterwards;
   ``CIVAL_TEST_POSTGRES`` or the local server) with Redis (``CIVAL_TEST_REDIS`` or the
   local server; keys deleted afterwards), alternately in this one run. Wall time from
   the first bar to the run recorded finished and its last event delivered (starting Ray
   and the actors excluded, reported). Target: PostgreSQL + Redis <= 1.5x embedded.

Medians over ``--repeat`` runs.

Usage: python bench/replay.py [--repeat 3] [--bars N] [--latency-seconds 120] [--skip-replay] [--skip-scale]
       [--skip-latency] [--skip-persistence]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

if "CIVAL_DATA_DIR" not in os.environ:  # the sessions' embedded store: a folder of the benchmark's own
    import tempfile

    os.environ["CIVAL_DATA_DIR"] = tempfile.mkdtemp(prefix="cival-bench-")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep import PeakMemory  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "intraday_crypto" / "binance_BTCUSDT_5m.csv"

PARAMS = {
    "alligator": [
        {},
        {"jaw_period": 21, "jaw_shift": 13, "teeth_period": 13, "teeth_shift": 8, "lips_period": 8, "lips_shift": 5},
        {"jaw_period": 34, "jaw_shift": 13, "teeth_period": 21, "teeth_shift": 8, "lips_period": 13, "lips_shift": 5},
    ],
    "darvas": [{"lookback": 20}, {"lookback": 50, "confirm": 3}, {"lookback": 100, "confirm": 4}],
    "elliott": [{"zigzag_pct": 1.0}, {"zigzag_pct": 2.0}, {"zigzag_pct": 3.0}],
}
FAMILY = {"alligator": "trend_following", "darvas": "breakout", "elliott": "price_action"}


def nine_agent_config(data: Path, inline: bool = False, per_strategy: int = 3, seconds_feed: bool = False):
    from cival.config import config_from_dict

    farms = []
    for strategy, sets in PARAMS.items():
        params = [sets[i % len(sets)] | _variant(strategy, i) for i in range(per_strategy)]
        farms.append(
            {
                "name": strategy,
                "type": FAMILY[strategy],
                "runtime": {"agents": "inline" if inline else "actors"},
                "agents": [{"name": f"{strategy}-{i}", "strategy": strategy, "params": p} for i, p in enumerate(params)],
            }
        )
    data_block = (
        {"source": "synthetic", "bars": 100_000, "seed": 11, "timeframe": "1m"}
        if seconds_feed
        else {"source": "file", "path": str(data), "symbol": "BTCUSDT"}
    )
    return config_from_dict({"name": "bench", "master": {"initial_deposit": "900000"}, "farms": farms, "data": data_block})


def _variant(strategy: str, i: int) -> dict:
    """Distinct parameter sets beyond the three named ones (for the 90-agent farm)."""
    if i < 3:
        return {}
    if strategy == "alligator":
        return {"lips_period": 3 + i % 7, "teeth_period": 8 + i % 5}
    if strategy == "darvas":
        return {"lookback": 10 + 3 * i}
    return {"zigzag_pct": 0.5 + 0.25 * i}


def bench_replay(bars, repeat: int) -> None:
    from cival.actors.nodes import cluster_spec
    from cival.backtest import backtest
    from cival.execution import FillModel
    from cival.runtime import DEFAULT_BATCH, RayCluster
    from cival.session import replay_batches

    config = nine_agent_config(DATA)
    spec = cluster_spec(config, symbol="BTCUSDT")
    agents = spec.agents
    n = len(bars)
    print(f"\n1. Replay: {len(agents)} agent actors in 3 farms, {n:,} bars of BTCUSDT 5m at --speed max")

    def backtests() -> float:
        t0 = time.perf_counter()
        for a in agents:
            backtest(a.strategy, bars, a.params, FillModel(cash=float(100_000 * 0.95)), engine="vectorbt")
        return time.perf_counter() - t0

    warm = backtests()  # compiles vectorbt's and the strategies' kernels
    print(f"   vectorised backtests, first run (compiling): {warm:.2f} s")
    starts, sessions, vector = [], [], []
    for r in range(repeat):
        cluster = RayCluster(spec)
        started = cluster.start()
        try:
            cluster.fund()
            t0 = time.perf_counter()
            handles = []
            for batch in replay_batches(bars, "max", DEFAULT_BATCH):  # as run_paper does
                handles.append(cluster.submit(batch))
                if len(handles) > 2:
                    cluster.wait(handles.pop(0))
            for h in handles:
                cluster.wait(h)
            wall = time.perf_counter() - t0
        finally:
            cluster.close()
        vec = backtests()
        starts.append(started)
        sessions.append(wall)
        vector.append(vec)
        print(f"   run {r + 1}: cluster start {started:.2f} s, session {wall:.2f} s, 9 vectorised backtests {vec:.2f} s")
    s, v, st = statistics.median(sessions), statistics.median(vector), statistics.median(starts)
    print(f"   median: session {s:.2f} s ({len(agents) * n / s:,.0f} bar-agent steps/s), backtests {v:.2f} s")
    print(f"   ratio session / backtests: {s / v:.2f}x (target <= 4)")
    print(f"   cluster start (a local Ray + {len(agents) + 4} actors, from cold): median {st:.2f} s (target <= 20 s)")


def bench_scale(bars) -> None:
    import ray

    from cival.session import run_paper

    config = nine_agent_config(DATA, inline=True, per_strategy=30)
    config = config.model_copy(update={"farms": _one_farm(config)})
    print(f"\n2. Scale: one farm of {len(config.farms[0].agents)} inline agents, {len(bars):,} bars")
    with PeakMemory() as memory:
        t0 = time.perf_counter()
        result = run_paper(config, bars=bars)
        wall = time.perf_counter() - t0
    trades = sum(a["trade_count"] for f in result.report["farms"] for a in f["agents"])
    print(
        f"   {wall:.1f} s in all (start {result.start_seconds:.1f} s), {trades:,} trades, audit "
        f"{'OK' if result.audit.ok else 'FAILED'}"
    )
    print(f"   peak memory (driver + Ray processes): {memory.peak / 2**30:.2f} GiB (target <= 8 GiB)")
    assert not ray.is_initialized()


def _one_farm(config):
    farm = config.farms[0]
    agents = [a for f in config.farms for a in f.agents]
    return [farm.model_copy(update={"name": "all", "agents": agents})]


def bench_latency(seconds: float) -> None:
    from cival.core.bar import BarBatch
    from cival.data.feeds import SyntheticFeed
    from cival.session import run_paper

    # Quick-trading parameter sets, so that a two-minute run books enough fills.
    config = nine_agent_config(DATA, seconds_feed=True)
    farms = []
    quick = {
        "alligator": [{"jaw_period": 5, "jaw_shift": 2, "teeth_period": 3, "teeth_shift": 1, "lips_period": 2, "lips_shift": 0}] * 3,
        "darvas": [{"lookback": 3, "confirm": 1}, {"lookback": 4, "confirm": 1}, {"lookback": 5, "confirm": 1}],
        "elliott": [{"zigzag_pct": 0.2}, {"zigzag_pct": 0.3}, {"zigzag_pct": 0.4}],
    }
    for farm in config.farms:
        agents = [a.model_copy(update={"params": a.params.model_validate(p)}) for a, p in zip(farm.agents, quick[farm.name], strict=True)]
        farms.append(farm.model_copy(update={"agents": agents}))
    config = config.model_copy(update={"farms": farms})
    bars_n = int(seconds)
    feed = SyntheticFeed(n=bars_n, seed=11, timeframe="1m", interval=1.0)
    print(f"\n3. Latency: synthetic feed at 1 bar/s, 9 agent actors, {bars_n} bars ({seconds:.0f} s)")
    per_bar: list[float] = []
    sent: dict[int, int] = {}

    def batches():
        for bars in feed.batches():
            batch = BarBatch.from_bars(bars)
            sent[int(batch.ts[0])] = time.monotonic_ns()
            yield batch

    def progress(p) -> None:
        if p.last_time is not None:
            per_bar.append((time.monotonic_ns() - sent[p.last_time.value]) / 1e6)

    result = run_paper(config, batches=batches(), on_progress=progress, window=0)
    fills = sorted(x / 1e6 for x in result.latencies_ns)
    if fills:
        print(
            f"   {len(fills)} fills: bar sent -> fill booked p50 {_pct(fills, 50):.2f} ms, p99 {_pct(fills, 99):.2f} ms, "
            f"max {fills[-1]:.2f} ms (target p99 <= 25 ms)"
        )
    else:
        print("   no fills booked; run longer")
    per_bar.sort()
    print(f"   {len(per_bar)} bars: bar sent -> farm reports back p50 {_pct(per_bar, 50):.2f} ms, p99 {_pct(per_bar, 99):.2f} ms")


def bench_persistence(bars, repeat: int) -> None:
    import asyncio
    import tempfile
    import uuid

    import asyncpg
    import redis

    from cival.events import RedisBus
    from cival.session import run_paper
    from cival.store.postgres import PostgresStore
    from cival.store.sqlite import SqliteStore

    config = nine_agent_config(DATA)
    admin = os.environ.get("CIVAL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    redis_url = os.environ.get("CIVAL_TEST_REDIS", "redis://127.0.0.1:6379/0")
    name = f"cival_bench_{uuid.uuid4().hex[:8]}"
    prefix = f"cival-bench-{uuid.uuid4().hex[:8]}"

    async def sql(statement: str) -> None:
        con = await asyncpg.connect(admin)
        try:
            await con.execute(statement)
        finally:
            await con.close()

    print(f"\n4. Persistence: the replay of 1 as whole sessions, embedded (SQLite + in-process bus) "
          f"against PostgreSQL + Redis, {len(bars):,} bars")
    asyncio.run(sql(f'CREATE DATABASE "{name}"'))
    results: dict[str, list[float]] = {"embedded": [], "postgres+redis": []}
    counts: dict[str, tuple[int, int]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lite = SqliteStore(Path(tmp) / "bench.sqlite3")
            lite.migrate()
            pg = PostgresStore(admin.rsplit("/", 1)[0] + f"/{name}")
            pg.migrate()
            setups = {
                "embedded": (lite, None),
                "postgres+redis": (pg, lambda run: RedisBus(redis_url, run, prefix=prefix)),
            }
            for r in range(repeat):
                for kind, (store, bus) in setups.items():
                    t0 = time.perf_counter()
                    result = run_paper(config, bars=bars, store=store, events=bus)
                    wall = time.perf_counter() - t0 - result.start_seconds
                    stats = result.events
                    assert result.audit.ok and stats.bus.dropped == 0, stats
                    results[kind].append(wall)
                    counts[kind] = (result.report["ledger"]["transactions"], stats.relayed)
                    print(f"   run {r + 1} {kind:>15}: {wall:.2f} s (start {result.start_seconds:.1f} s, "
                          f"{counts[kind][0]:,} ledger transactions, {stats.relayed:,} events delivered)")
            lite.close()
            pg.close()
    finally:
        asyncio.run(sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    embedded, full = statistics.median(results["embedded"]), statistics.median(results["postgres+redis"])
    print(f"   median: embedded {embedded:.2f} s, PostgreSQL + Redis {full:.2f} s")
    print(f"   ratio PostgreSQL + Redis / embedded: {full / embedded:.2f}x (target <= 1.5)")


def _pct(values: list[float], q: float) -> float:
    k = max(0, min(len(values) - 1, round(q / 100 * (len(values) - 1))))
    return values[k]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bars", type=int, default=None, help="replay only the first N bars")
    parser.add_argument("--latency-seconds", type=float, default=120.0)
    parser.add_argument("--skip-replay", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-persistence", action="store_true")
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"needs {DATA} (the shared market data beside the checkout)")

    import ray

    from cival.data import load_bars

    bars = load_bars(DATA)
    if args.bars:
        bars = bars.iloc[: args.bars]
    print(f"{os.cpu_count()} CPUs; {len(bars):,} bars from {DATA.name}")
    if not args.skip_replay:
        bench_replay(bars, args.repeat)
        assert not ray.is_initialized()
    if not args.skip_scale:
        bench_scale(bars)
    if not args.skip_latency:
        bench_latency(args.latency_seconds)
    if not args.skip_persistence:
        bench_persistence(bars, args.repeat)


if __name__ == "__main__":
    main()
