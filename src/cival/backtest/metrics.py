"""The metrics traders read, from a simulation's equity curve and trades.

Definitions (``E`` is equity at each bar's close, ``E0`` the starting cash, ``r`` the
bar-to-bar returns ``E[t] / E[t-1] - 1`` over all bars, the first bar's return measured
from ``E0``):

* ``total_return = E[-1] / E0 - 1``.
* ``years`` = (last bar time - first bar time) / 365.25 days.
* ``cagr = (E[-1] / E0) ** (1 / years) - 1`` (None when the span is zero or equity <= 0).
* Annualisation: ``bars_per_year = (bars - 1) / years``, the bars the data actually has per
  year, so markets that close at night or at weekends are annualised by their own
  calendar (about 252 for daily equities, 8,766 for 24/7 hourly crypto).
* ``sharpe = mean(r) / std(r) * sqrt(bars_per_year)`` (sample std, risk-free rate 0).
* ``sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(bars_per_year)``.
* ``max_drawdown = max(1 - E / running_max(E))`` with the running max starting at E0, a
  positive fraction (0.25 = a 25 % fall from the peak).
* ``calmar = cagr / max_drawdown``.
* ``win_rate`` = closed trades with pnl > 0 / closed trades.
* ``profit_factor`` = sum of winning pnl / |sum of losing pnl| (None with no loser).
* ``exposure`` = share of bars that end with a position held.
* ``fees_paid`` = all fees of all fills, including an open position's entry.
* ``open_position``: the position left at the end, marked to the last close, or None.

Ratios that are undefined (no variance, no trades, zero span) are None, so the JSON
output never holds NaN or infinity.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cival.backtest.simulate import Simulation
from cival.core.fmt import iso_utc

DAYS_PER_YEAR = 365.25

METRIC_NAMES = (
    "bars", "start", "end", "trades", "total_return", "cagr", "sharpe", "sortino", "calmar",
    "max_drawdown", "win_rate", "profit_factor", "exposure", "fees_paid", "final_equity", "open_position",
)
"""Every key :func:`compute_metrics` returns, in order."""


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def compute_metrics(sim: Simulation, initial_cash: float) -> dict[str, Any]:
    """Every metric in the module docstring, as plain JSON-ready values."""
    equity = sim.equity.to_numpy(dtype=float)
    index = sim.equity.index
    n = len(equity)
    final = float(equity[-1]) if n else initial_cash
    span_days = (index[-1] - index[0]) / pd.Timedelta(days=1) if n > 1 else 0.0
    years = span_days / DAYS_PER_YEAR

    cagr = None
    if years > 0 and final > 0:
        cagr = (final / initial_cash) ** (1.0 / years) - 1.0

    returns = np.diff(np.concatenate(([initial_cash], equity))) / np.concatenate(([initial_cash], equity[:-1]))
    sharpe = sortino = None
    if years > 0 and n > 1:
        bars_per_year = (n - 1) / years
        mean = float(np.mean(returns))
        std = float(np.std(returns, ddof=1))
        downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
        sharpe = mean / std * math.sqrt(bars_per_year) if std > 0 else None
        sortino = mean / downside * math.sqrt(bars_per_year) if downside > 0 else None

    peak = np.maximum.accumulate(np.concatenate(([initial_cash], equity)))[1:]
    max_drawdown = float(np.max(1.0 - equity / peak)) if n else 0.0
    calmar = cagr / max_drawdown if cagr is not None and max_drawdown > 0 else None

    pnl = sim.trades["pnl"].to_numpy(dtype=float)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    win_rate = float(len(wins) / len(pnl)) if len(pnl) else None
    profit_factor = float(wins.sum() / -losses.sum()) if len(losses) else None

    open_position = None
    if sim.open_position is not None:
        open_position = {
            key: (iso_utc(value) if isinstance(value, pd.Timestamp) else float(value))
            for key, value in sim.open_position.items()
        }
    return {
        "bars": int(n),
        "start": iso_utc(index[0]) if n else None,
        "end": iso_utc(index[-1]) if n else None,
        "trades": len(pnl),
        "total_return": _finite(final / initial_cash - 1.0),
        "cagr": _finite(cagr) if cagr is not None else None,
        "sharpe": _finite(sharpe) if sharpe is not None else None,
        "sortino": _finite(sortino) if sortino is not None else None,
        "calmar": _finite(calmar) if calmar is not None else None,
        "max_drawdown": _finite(max_drawdown),
        "win_rate": win_rate,
        "profit_factor": _finite(profit_factor) if profit_factor is not None else None,
        "exposure": float(np.mean(sim.in_position)) if n else 0.0,
        "fees_paid": float(sim.fills["fee"].sum()),
        "final_equity": final,
        "open_position": open_position,
    }


__all__ = ["DAYS_PER_YEAR", "METRIC_NAMES", "compute_metrics"]
