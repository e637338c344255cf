"""Cival's sweep against a hand-written vectorbt sweep, and against backtrader.

On ``../shared/data/intraday_crypto/binance_BTCUSDT_5m.csv`` (~120k bars), 200 Alligator
combinations (``baselines.alligator_grid``):

* baseline: ``baselines.handwritten_vectorbt_sweep``, single-threaded (numba SMMA,
  from_signals with next-open prices, total return and trade count only);
* cival: ``cival.backtest.sweep`` on Ray with every core of this machine (a local Ray,
  started before timing; its start-up is reported separately), computing all metrics;
* one backtrader run of the same rules, for the per-combination speed-up.

Both sweeps are run ``--repeat`` times alternately in this one process after a warm-up,
and medians are compared. Peak memory is sampled during a separate run of Cival's sweep
made before any full baseline run (so the baseline's heap is not counted).

Targets: Cival's combinations per second >= 1.5 x the baseline's; Cival's peak memory
(this process, the Ray workers and Ray's own processes) under 4 GiB.

Usage: python bench/sweep.py [--combos 200] [--repeat 3] [--no-backtrader]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import baselines  # noqa: E402
import psutil  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "intraday_crypto" / "binance_BTCUSDT_5m.csv"


class PeakMemory:
    """Samples the RSS of this process and its children (Ray workers) every 50 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--combos", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=10, help="combinations per vectorbt call in cival's sweep")
    parser.add_argument("--no-backtrader", action="store_true")
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"needs {DATA} (the shared market data beside the checkout)")

    from cival.backtest import sweep
    from cival.data import load_bars
    from cival.rayconnect import connect

    bars = load_bars(DATA)
    grid = baselines.alligator_grid(args.combos)
    keys = list(grid[0])
    print(f"{len(bars):,} bars; {len(grid)} Alligator combinations, the same for both sweeps")

    started = time.perf_counter()
    session = connect(None, log_to_driver=False)  # a local Ray as Cival starts one
    ray_start = time.perf_counter() - started
    print(f"Ray start-up: {ray_start:.1f} s ({os.cpu_count()} CPUs)")

    # Warm-up: compile in this process and in every Ray worker.
    baselines.handwritten_vectorbt_sweep(bars, grid[:2])
    sweep("alligator", bars, grid[:1], backend="local")
    sweep("alligator", bars.iloc[:5000], grid[:8], backend="ray", chunk_size=1)

    # Memory: one measured run of Cival's sweep before any full baseline run, so that the
    # baseline's own heap in this process is not counted. It covers this process, the Ray
    # workers and Ray's own processes (raylet, GCS, ...).
    with PeakMemory() as memory:
        sweep("alligator", bars, grid, backend="ray", chunk_size=args.chunk)

    base_t, cival_t = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        base = baselines.handwritten_vectorbt_sweep(bars, grid)
        base_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = sweep("alligator", bars, grid, backend="ray", chunk_size=args.chunk)
        cival_t.append(time.perf_counter() - t)
    session.close()

    base_rate = len(grid) / statistics.median(base_t)
    cival_rate = len(result.table) / statistics.median(cival_t)
    print(f"\nbaseline (hand-written vectorbt, 1 thread): median {statistics.median(base_t):.2f} s -> {base_rate:.1f} combinations/s")
    print(f"cival sweep (Ray, {os.cpu_count()} workers, all metrics):   median {statistics.median(cival_t):.2f} s -> {cival_rate:.1f} combinations/s")
    print(f"ratio cival / baseline: {cival_rate / base_rate:.2f}x (target >= 1.5x)")
    print(f"peak memory of Cival's sweep (driver + Ray workers + Ray's processes): {memory.peak / 2**30:.2f} GiB (target < 4 GiB)")
    same = base.merge(result.table, on=keys, suffixes=("_base", "_cival"))
    print(f"trade counts equal on {int((same['trades_base'] == same['trades_cival']).sum())} of {len(same)} shared combinations")

    if not args.no_backtrader:
        bt = baselines.backtrader_alligator(bars, grid[0])
        per_combo = statistics.median(cival_t) / len(result.table)
        print(f"\nbacktrader, one run of {grid[0]}: {bt['seconds']:.2f} s, {bt['trades']} trades")
        print(f"per-combination speed-up of cival's sweep over backtrader: {bt['seconds'] / per_combo:.0f}x")


if __name__ == "__main__":
    main()
