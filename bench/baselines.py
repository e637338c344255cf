"""Baselines to compare cival's Alligator sweeps against: what a user would write by hand.

* :func:`alligator_grid`: a deterministic list of Alligator parameter combinations.
* :func:`handwritten_vectorbt_sweep`: a hand-written vectorbt sweep, single-threaded: own
  numba SMMA, numpy shifts, boolean signal matrices (bars x combos), then
  ``vbt.Portfolio.from_signals`` over column chunks of at most ``chunk_size`` (50) combos to
  bound memory (each 2D float output is n_bars x chunk, about 48 MB for 120k bars x 50).
* :func:`backtrader_alligator`: one backtrader run of the same rules (a bar-by-bar
  event-driven engine), for speed comparison.

Both follow cival's fill model (signal at bar t filled at bar t + 1's open, adverse
slippage, fees on both sides, all-in percent sizing) with these differences, which are
accepted because these are *speed* baselines, not parity references:

* vectorbt: quantities are fractional (no ``size_granularity``: with a 1e-8 step it breaks
  vectorbt's long-only re-entries), and prices are not rescaled to units of ``qty_step``.
* backtrader: the buy size is decided at bar t's close, before bar t + 1's open is known,
  so it is estimated from the close with a small headroom (see :func:`backtrader_alligator`);
  its SMMA is ``s * (1 - 1/n) + x / n`` (same recursion, different rounding).

Not a project dependency: backtrader is installed only for this benchmark
(``pip install backtrader``). Usage: python bench/baselines.py [--combos 20]
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from numba import njit  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BTC_5M = ROOT.parent / "shared" / "data" / "intraday_crypto" / "binance_BTCUSDT_5m.csv"

PARAM_NAMES = ("jaw_period", "jaw_shift", "teeth_period", "teeth_shift", "lips_period", "lips_shift")
DEFAULT_PARAMS = {"jaw_period": 13, "jaw_shift": 8, "teeth_period": 8, "teeth_shift": 5, "lips_period": 5, "lips_shift": 3}

# Grid ranges: teeth and lips periods are fixed ranges; jaw periods start at 13 and extend as
# far as n needs. Every combo keeps lips < teeth < jaw, and the default (13, 8, 5) is in it.
_TEETH_PERIODS = range(6, 14)  # 6..13
_LIPS_PERIODS = range(2, 6)  # 2..5
_JAW_START = 13


def alligator_grid(n: int = 200) -> list[dict]:
    """The first ``n`` combos of the sorted product jaw_period x teeth_period x lips_period.

    jaw_period runs 13, 14, ... (as many as needed), teeth_period 6..13, lips_period 2..5
    (32 combos per jaw period), with the default shifts (8, 5, 3). Deterministic, distinct,
    all periods > 0; the first combo of every jaw block has the smallest teeth and lips.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    per_jaw = len(_TEETH_PERIODS) * len(_LIPS_PERIODS)
    jaws = range(_JAW_START, _JAW_START + max(1, math.ceil(n / per_jaw)))
    combos = sorted(itertools.product(jaws, _TEETH_PERIODS, _LIPS_PERIODS))[:n]
    shifts = DEFAULT_PARAMS
    return [
        {
            "jaw_period": jaw,
            "jaw_shift": shifts["jaw_shift"],
            "teeth_period": teeth,
            "teeth_shift": shifts["teeth_shift"],
            "lips_period": lips,
            "lips_shift": shifts["lips_shift"],
        }
        for jaw, teeth, lips in combos
    ]


# --------------------------------------------------------------------------------------
# Hand-written vectorbt sweep
# --------------------------------------------------------------------------------------


@njit(cache=True)
def _smma(x, n):  # pragma: no cover - compiled
    """Wilder's SMMA: NaN for the first n-1, mean of the first n at n-1, then (s*(n-1)+x)/n."""
    out = np.full(x.shape[0], np.nan)
    if x.shape[0] < n:
        return out
    total = 0.0
    for t in range(n):
        total += x[t]
    s = total / n
    out[n - 1] = s
    for t in range(n, x.shape[0]):
        s = (s * (n - 1.0) + x[t]) / n
        out[t] = s
    return out


def _shift(x: np.ndarray, k: int) -> np.ndarray:
    """x moved k bars later (NaN in the first k)."""
    if k == 0:
        return x
    out = np.full_like(x, np.nan)
    out[k:] = x[:-k]
    return out


def _signals(bars: pd.DataFrame, grid: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(entries, exits) as order-bar booleans, n_bars x n_combos, already shifted one bar."""
    high = bars["high"].to_numpy(dtype=float)
    low = bars["low"].to_numpy(dtype=float)
    close = bars["close"].to_numpy(dtype=float)
    median = (high + low) / 2.0
    cache: dict[tuple[int, int], np.ndarray] = {}

    def line(period: int, shift: int) -> np.ndarray:
        key = (period, shift)
        if key not in cache:
            cache[key] = _shift(_smma(median, period), shift)
        return cache[key]

    n_bars, n_combos = len(bars), len(grid)
    entries = np.zeros((n_bars, n_combos), dtype=bool)
    exits = np.zeros((n_bars, n_combos), dtype=bool)
    for j, p in enumerate(grid):
        jaw = line(p["jaw_period"], p["jaw_shift"])
        teeth = line(p["teeth_period"], p["teeth_shift"])
        lips = line(p["lips_period"], p["lips_shift"])
        ex = lips < teeth  # comparisons with NaN are False
        en = (lips > teeth) & (teeth > jaw) & (close > lips)
        en &= ~ex
        entries[1:, j] = en[:-1]  # a signal at t is an order at t + 1 (filled at its open)
        exits[1:, j] = ex[:-1]
    return entries, exits


def handwritten_vectorbt_sweep(
    bars: pd.DataFrame,
    grid: list[dict],
    fee_bps: float = 10,
    slippage_bps: float = 5,
    cash: float = 10000.0,
    chunk_size: int = 50,
) -> pd.DataFrame:
    """Backtest every combo of ``grid`` with vectorbt, single-threaded, as a user would by hand.

    Signals for all combos are built at once (n_bars x n_combos booleans); the portfolio is
    simulated by ``vbt.Portfolio.from_signals`` over column chunks of at most ``chunk_size``
    combos (one call when the grid is that small). Returns one row per combo: the params,
    ``total_return``, ``trades`` (closed trades) and ``final_value``.
    """
    import vectorbt as vbt

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    entries, exits = _signals(bars, grid)
    close = bars["close"].to_numpy(dtype=float)
    open_ = bars["open"].to_numpy(dtype=float)
    n_bars = len(bars)
    results: list[pd.DataFrame] = []
    for start in range(0, len(grid), chunk_size):
        stop = min(start + chunk_size, len(grid))
        shape = (n_bars, stop - start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pf = vbt.Portfolio.from_signals(
                close=np.broadcast_to(close[:, None], shape),
                entries=entries[:, start:stop],
                exits=exits[:, start:stop],
                price=np.broadcast_to(open_[:, None], shape),  # filled at the order bar's open
                fees=fee_bps / 1e4,
                slippage=slippage_bps / 1e4,
                size=1.0,
                size_type="percent",
                direction="longonly",
                init_cash=cash,
            )
            results.append(
                pd.DataFrame(
                    {
                        "total_return": np.asarray(pf.total_return(), dtype=float),
                        "trades": np.asarray(pf.trades.closed.count(), dtype=np.int64),
                        "final_value": np.asarray(pf.final_value(), dtype=float),
                    }
                )
            )
    params = pd.DataFrame(grid, columns=list(PARAM_NAMES))
    if not results:
        return params.assign(total_return=pd.Series(dtype=float), trades=pd.Series(dtype=np.int64),
                             final_value=pd.Series(dtype=float))
    metrics = pd.concat(results, ignore_index=True)
    return pd.concat([params, metrics], axis=1)


# --------------------------------------------------------------------------------------
# backtrader
# --------------------------------------------------------------------------------------

SIZE_HEADROOM = 1e-3
"""backtrader sizes a buy at bar t's close but fills it at bar t + 1's open: the size is
shrunk by this share so that a slightly higher open still fits in the cash."""


def _backtrader_strategy():
    import backtrader as bt

    class AlligatorBT(bt.Strategy):
        params = (
            *((name, DEFAULT_PARAMS[name]) for name in PARAM_NAMES),
            ("fee", 0.001),
            ("slippage", 0.0005),
            ("fraction", 1.0),
            ("qty_step", 1e-8),
            ("headroom", SIZE_HEADROOM),
        )

        def __init__(self):
            p = self.p
            median = (self.data.high + self.data.low) / 2.0
            self.jaw = bt.indicators.SmoothedMovingAverage(median, period=p.jaw_period)
            self.teeth = bt.indicators.SmoothedMovingAverage(median, period=p.teeth_period)
            self.lips = bt.indicators.SmoothedMovingAverage(median, period=p.lips_period)
            # next() runs from the bar where every SMMA is defined; the shifted lines need
            # `shift` more bars (indexing [-k] too early would wrap around the buffer).
            self.warmup = max(
                p.jaw_period + p.jaw_shift, p.teeth_period + p.teeth_shift, p.lips_period + p.lips_shift
            )
            self.closed_trades = 0
            self.rejected = 0

        def notify_trade(self, trade):
            if trade.isclosed:
                self.closed_trades += 1

        def notify_order(self, order):
            if order.status in (order.Margin, order.Rejected):
                self.rejected += 1

        def next(self):
            if len(self) < self.warmup:
                return
            p = self.p
            jaw = self.jaw[-p.jaw_shift]
            teeth = self.teeth[-p.teeth_shift]
            lips = self.lips[-p.lips_shift]
            exit_ = lips < teeth
            if self.position.size > 0:
                if exit_:
                    self.close()
            elif not exit_ and lips > teeth > jaw and self.data.close[0] > lips:
                # The fill model: qty = cash * fraction / (price * (1 + fee)), floored to the
                # step, with price = next open * (1 + slippage). The next open is unknown
                # here, so the close stands in for it, shrunk by `headroom`.
                price = self.data.close[0] * (1 + p.slippage) * (1 + p.headroom)
                cash = self.broker.getcash()
                size = math.floor(cash * p.fraction / (price * (1 + p.fee)) / p.qty_step) * p.qty_step
                if size > 0:
                    self.buy(size=size)

    return AlligatorBT


def backtrader_alligator(
    bars: pd.DataFrame,
    params: dict | None = None,
    fee_bps: float = 10,
    slippage_bps: float = 5,
    cash: float = 10000.0,
) -> dict[str, Any]:
    """One backtrader run of the Alligator rules on ``bars``.

    Market orders placed in ``next()`` at bar t fill at bar t + 1's open (backtrader's
    default); slippage ``slippage_bps`` is applied to that open (``slip_open=True``, and
    ``slip_out=True`` so it is not capped at the bar's high/low, as in cival); commission
    ``fee_bps`` of notional on both sides. Sizing approximates cival's (see
    :data:`SIZE_HEADROOM`), so results are close to, not equal to, cival's.
    Default observers are off (``stdstats=False``): the fastest plain configuration.

    Returns ``{"seconds": wall time of cerebro.run(), "trades": closed trades,
    "final_value": broker value at the end, "rejected": orders refused for lack of cash}``.
    """
    import backtrader as bt

    p = {**DEFAULT_PARAMS, **(params or {})}
    frame = bars[["open", "high", "low", "close", "volume"]].copy()
    if frame.index.tz is not None:
        frame.index = frame.index.tz_convert("UTC").tz_localize(None)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None))
    cerebro.addstrategy(_backtrader_strategy(), fee=fee_bps / 1e4, slippage=slippage_bps / 1e4, **p)
    cerebro.broker.setcash(cash)
    cerebro.broker.setcommission(commission=fee_bps / 1e4)
    cerebro.broker.set_slippage_perc(slippage_bps / 1e4, slip_open=True, slip_match=True, slip_out=True)
    start = time.perf_counter()
    strategy = cerebro.run()[0]
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "trades": strategy.closed_trades,
        "final_value": float(cerebro.broker.getvalue()),
        "rejected": strategy.rejected,
    }


# --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--combos", type=int, default=20, help="combos for the vectorbt sweep")
    parser.add_argument("--no-backtrader", action="store_true")
    args = parser.parse_args()

    from cival.data import load_bars

    if BTC_5M.is_file():
        bars, source = load_bars(BTC_5M), "BTCUSDT 5m"
    else:
        from cival.data import synthetic_bars

        bars, source = synthetic_bars(120_000, seed=7, timeframe="5m"), "synthetic"
    print(f"{len(bars):,} bars ({source}); NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS')}\n")

    grid = alligator_grid(args.combos)
    handwritten_vectorbt_sweep(bars.iloc[:2000], grid[:2])  # compile / load numba caches
    start = time.perf_counter()
    sweep = handwritten_vectorbt_sweep(bars, grid)
    vbt_s = time.perf_counter() - start
    print(sweep.to_string(index=False))
    print(f"\nvectorbt sweep: {len(grid)} combos in {vbt_s:.3f} s = {vbt_s / len(grid):.4f} s per combination")

    if not args.no_backtrader:
        bt_run = backtrader_alligator(bars)
        print(
            f"backtrader (default params): {bt_run['seconds']:.3f} s per combination, "
            f"{bt_run['trades']} trades, final value {bt_run['final_value']:,.2f}, "
            f"{bt_run['rejected']} rejected orders"
        )
        try:
            from cival.backtest import backtest

            res = backtest("alligator", bars)
            print(f"cival (default params): {res.metrics['trades']} trades")
        except Exception as exc:  # pragma: no cover - informational only
            print(f"cival backtest unavailable: {exc}")
        default = sweep[(sweep[list(PARAM_NAMES)] == pd.Series(DEFAULT_PARAMS)).all(axis=1)]
        if len(default):
            print(f"vectorbt baseline (default params): {int(default['trades'].iloc[0])} trades")


if __name__ == "__main__":
    main()
