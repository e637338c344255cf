"""Walk-forward validation: choose parameters in sample, judge them out of sample.

Windows roll forward by ``test`` bars: window i trains on bars
``[i*test, i*test + train)`` and tests on the ``test`` bars after them. On each train
window a sweep ranks the grid by ``metric``; the best parameters then trade the test
window. Their signals are computed on all bars up to the end of the test window (the
strategies are causal, so nothing leaks, and the indicators are warmed up), and only
the test window's bars are simulated: a signal on its last bar is not filled.

The out-of-sample equity is stitched: each test window starts flat with the equity the
previous one ended with. A position still open at the end of a window is valued at that
window's last close (as if closed there without costs) and not carried over.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cival.backtest.api import fill_model, resolve_bars
from cival.backtest.errors import SweepError
from cival.backtest.metrics import compute_metrics, format_metric, format_table
from cival.backtest.simulate import Simulation, simulate_vectorbt
from cival.backtest.sweep import (
    PER_RUN,
    Combinations,
    auto_backend,
    checked_values,
    parse_grid,
    progress_bar,
    sweep,
)
from cival.data.bars import DEFAULT_MAX_MOVE
from cival.execution.fills import FillModel
from cival.rayconnect import RaySession, RayUnavailable, connect, ray_address
from cival.strategies import Strategy, get_strategy


@dataclass(frozen=True)
class WalkForwardResult:
    """Per-window choices with in- and out-of-sample metrics, and the stitched result."""

    strategy: str
    metric: str
    train: int
    test: int
    windows: pd.DataFrame
    """One row per window: its bounds, the chosen params, ``is_<metric>`` and ``oos_<metric>`` columns."""
    equity: pd.Series
    """Stitched out-of-sample equity."""
    trades: pd.DataFrame
    """Out-of-sample trades, with the window they belong to."""
    metrics: dict[str, Any]
    """Metrics of the stitched out-of-sample run."""

    def _repr_html_(self) -> str:
        m = self.metric
        shown = [c for c in self.windows.columns if not c.startswith(("is_", "oos_", "train_"))]
        table = self.windows[[*shown, f"is_{m}", f"oos_{m}", "oos_trades", "oos_total_return"]]
        oos = self.metrics
        head = (
            f"<b>{self.strategy} walk-forward: {len(self.windows)} windows (train {self.train}, test {self.test} bars, "
            f"by {m})</b><br>out of sample: {oos['trades']} trades, total return {format_metric('total_return', oos['total_return'])}"
        )
        return head + format_table(table).to_html(index=False)

    def plot(self) -> Any:
        """The stitched out-of-sample equity, with each test window's start marked."""
        import plotly.graph_objects as go

        fig = go.Figure(go.Scatter(x=self.equity.index, y=self.equity, name="out-of-sample equity"))
        for start in self.windows["test_start"]:
            fig.add_vline(x=start, line={"width": 1, "dash": "dot", "color": "#999"})
        fig.update_layout(title=f"{self.strategy} walk-forward (train {self.train}, test {self.test} bars, by {self.metric})")
        return fig


def walkforward(
    strategy: str | Strategy,
    bars: pd.DataFrame | str | os.PathLike[str],
    grid: Mapping[str, Iterable[Any]] | Sequence[str],
    model: FillModel | Mapping[str, Any] | None = None,
    *,
    train: int,
    test: int,
    metric: str = "sharpe",
    backend: str = "auto",
    address: str | None = None,
    chunk_size: int = 10,
    progress: bool = False,
    drop_bad_rows: bool = False,
    max_move: float | None = DEFAULT_MAX_MOVE,
    **costs: Any,
) -> WalkForwardResult:
    """Roll train/test windows over ``bars`` (see the module docstring)."""
    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy)
    fm = fill_model(model, **costs)
    bars, _ = resolve_bars(bars, drop_bad_rows, max_move)
    if train < 2 or test < 2:
        raise SweepError("train and test must each be at least 2 bars")
    if len(bars) < train + test:
        raise SweepError(f"{len(bars)} bars are fewer than one window (train {train} + test {test}); shorten them")
    parsed = dict(grid) if isinstance(grid, Mapping) else parse_grid(list(grid))
    combos = Combinations(strat, checked_values(strat, parsed)).total

    starts = range(0, len(bars) - train - test + 1, test)
    address = ray_address(address)
    auto = backend == "auto"
    if auto:  # decide once for all windows, so Ray starts (at most) once
        backend = auto_backend(address, combos, chunk_size)
    try:
        session = _ensure_ray(backend, address)
    except SweepError as exc:
        if not auto:
            raise
        print(f"note: {exc}", file=sys.stderr)
        backend, session = "local", None
    advance = progress_bar(len(starts) * combos, progress)
    try:
        rows, equities, trades, fills, held = [], [], [], [], []
        cash = fm.cash
        for w, start in enumerate(starts):
            train_bars = bars.iloc[start : start + train]
            ranked = sweep(strat, train_bars, parsed, fm, metric=metric, chunk_size=chunk_size,
                           backend=backend, address=address)
            advance(combos)
            best = ranked.best()
            in_sample = ranked.top(1).iloc[0]
            end = start + train + test
            signals = strat.signals(bars.iloc[:end], best).iloc[start + train :]
            window_bars = bars.iloc[start + train : end]
            window_model = fm.model_copy(update={"cash": cash})
            sim = simulate_vectorbt(window_bars, signals["entry"].to_numpy(), signals["exit"].to_numpy(), window_model)
            oos = compute_metrics(sim, cash)
            rows.append(
                {
                    "window": w,
                    "train_start": train_bars.index[0],
                    "train_end": train_bars.index[-1],
                    "test_start": window_bars.index[0],
                    "test_end": window_bars.index[-1],
                    **best,
                    **{f"is_{k}": in_sample[k] for k in ranked.table.columns if k not in best},
                    **{f"oos_{k}": v for k, v in oos.items() if k not in PER_RUN},
                }
            )
            equities.append(sim.equity)
            trades.append(sim.trades.assign(window=w))
            fills.append(sim.fills)
            held.append(sim.in_position)
            cash = float(sim.equity.iloc[-1])
    finally:
        advance(0, done=True)
        if session is not None:
            session.close()

    equity = pd.concat(equities).rename("equity")
    stitched = Simulation(
        fills=pd.concat(fills, ignore_index=True),
        trades=pd.concat(trades, ignore_index=True),
        equity=equity,
        in_position=np.concatenate(held),
        cash=cash,
    )
    return WalkForwardResult(
        strategy=strat.name,
        metric=metric,
        train=train,
        test=test,
        windows=pd.DataFrame(rows),
        equity=equity,
        trades=stitched.trades,
        metrics=compute_metrics(stitched, fm.cash),
    )


def _ensure_ray(backend: str, address: str | None) -> RaySession | None:
    """Start (or join) Ray once for all windows, rather than once per sweep."""
    if backend != "ray":
        return None
    try:
        return connect(address, log_to_driver=False)
    except RayUnavailable as exc:
        raise SweepError(f"{exc}; run it in this process instead (--local, backend='local')") from None


__all__ = ["WalkForwardResult", "walkforward"]
