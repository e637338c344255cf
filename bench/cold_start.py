"""Wall time of a whole ``cival backtest alligator`` process on the 1-hour BTC file.

Each engine is run once to fill the on-disk numba caches, then ``--repeat`` more times in
new processes, alternating; medians are printed with the ratio to the 4-second target.
Ray is never started for a single backtest.

Usage: python bench/cold_start.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "intraday_crypto" / "binance_BTCUSDT_1h.csv"
TARGET_S = 4.0


def run(engine: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cival", "backtest", "alligator", "--data", str(DATA), "--json", "--engine", engine],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not DATA.is_file():
        sys.exit(f"needs {DATA} (the shared market data beside the checkout)")
    engines = ("auto", "vectorbt")  # auto: the default, the bar-by-bar engine
    first = {e: run(e) for e in engines}
    times: dict[str, list[float]] = {e: [] for e in engines}
    for _ in range(args.repeat):
        for engine in engines:
            times[engine].append(run(engine))
    print(f"cival backtest alligator on {DATA.name}, whole process, median of {args.repeat} after one warm-up run")
    for engine in engines:
        median = statistics.median(times[engine])
        print(
            f"  --engine {engine:<10} first {first[engine]:5.2f} s   median {median:5.2f} s   "
            f"ratio to the {TARGET_S:.0f} s target {median / TARGET_S:.2f}"
        )


if __name__ == "__main__":
    main()
