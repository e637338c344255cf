"""Signals on 1,000,000 bars per strategy, against the 1-second budget.

Prints, for each strategy:
  * numba compile time in a fresh process with an empty cache, and the same first call in
    a second process that finds the on-disk cache (what a user's second command pays);
  * the median wall time of ``Strategy.signals`` on 1,000,000 bars after compilation,
    bars per second, and the ratio to the budget of 1 second (target: ratio <= 1).

Bars: ``../shared/data/intraday_crypto/binance_BTCUSDT_5m.csv`` repeated to 1,000,000 rows
(each repeat rescaled to continue from the last close), or synthetic bars with
``--synthetic`` or when the shared data are absent. Runs on one core (NUMBA_NUM_THREADS=1).

Usage: python bench/signals.py [--bars 1000000] [--repeat 5] [--synthetic]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BTC_5M = ROOT.parent / "shared" / "data" / "intraday_crypto" / "binance_BTCUSDT_5m.csv"
BUDGET_S = 1.0

FIRST_CALL = """
import time, numpy as np, pandas as pd
t0 = time.perf_counter()
from cival.strategies import get_strategy
t1 = time.perf_counter()
bars = pd.DataFrame({c: np.linspace(100, 110, 500) for c in ("open", "close")})
bars["high"] = bars["close"] + 1; bars["low"] = bars["close"] - 1
get_strategy("%s").signals(bars)
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def first_call_seconds(name: str, cache_dir: str) -> tuple[float, float]:
    """(import time, first signals call) in a new process using ``cache_dir`` for numba."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALL % name], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def repeated_btc(n: int) -> pd.DataFrame:
    from cival.data import load_bars

    base = load_bars(BTC_5M)
    ohlc = base[["open", "high", "low", "close"]].to_numpy()
    blocks, last_close = [], None
    while sum(len(b) for b in blocks) < n:
        block = ohlc.copy()
        if last_close is not None:  # continue from the previous block's close
            block *= last_close / block[0, 0]
        blocks.append(block)
        last_close = block[-1, 3]
    data = np.vstack(blocks)[:n]
    index = pd.date_range("2000-01-01", periods=n, freq="5min", tz="UTC", name="timestamp")
    frame = pd.DataFrame(data, index=index, columns=["open", "high", "low", "close"])
    frame["volume"] = 1.0
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bars", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--synthetic", action="store_true", help="use synthetic bars instead of the BTC file")
    args = parser.parse_args()

    from cival.strategies import STRATEGIES

    if args.synthetic or not BTC_5M.is_file():
        from cival.data import synthetic_bars

        bars, source = synthetic_bars(args.bars, seed=7, timeframe="5m"), "synthetic"
    else:
        bars, source = repeated_btc(args.bars), "BTCUSDT 5m repeated"
    print(f"{len(bars):,} bars ({source}); budget {BUDGET_S:.1f} s per strategy on one core\n")

    print(f"{'strategy':<10}{'cold first call':>17}{'cached first call':>19}{'median':>10}{'bars/s':>14}{'ratio to 1 s':>14}")
    for name, strategy in STRATEGIES.items():
        with tempfile.TemporaryDirectory() as cache:
            _, cold = first_call_seconds(name, cache)
            _, warm = first_call_seconds(name, cache)
        strategy.signals(bars.iloc[:1000])  # compile (or load) in this process
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            out = strategy.signals(bars)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        assert len(out) == len(bars)
        print(
            f"{name:<10}{cold:>15.2f} s{warm:>17.2f} s{median:>8.3f} s{len(bars) / median:>14,.0f}"
            f"{median / BUDGET_S:>14.3f}"
        )
    print(f"\n(medians of {args.repeat} runs; 'first call' = compile or cache load plus a 500-bar run, in a new process)")


if __name__ == "__main__":
    main()
