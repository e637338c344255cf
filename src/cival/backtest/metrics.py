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
output never holds NaN or infinity. People read them through :func:`format_metric`:
returns and shares as percentages, money with two decimals, ratios with two.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cival.backtest.simulate import Simulation
from cival.core import fmt
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


PERCENT_METRICS = frozenset({"total_return", "cagr", "max_drawdown", "win_rate", "exposure"})
"""Metrics that are fractions, shown as percentages (0.2029 -> 20.29 %)."""

SIGNED_METRICS = frozenset({"total_return", "cagr"})
MONEY_METRICS = frozenset({"fees_paid", "final_equity"})
RATIO_METRICS = frozenset({"sharpe", "sortino", "calmar", "profit_factor"})
COUNT_METRICS = frozenset({"bars", "trades"})


def format_metric(name: str, value: Any) -> str:
    """``value`` of metric ``name`` as a person reads it, in every table (the CLI's, the
    sweep's, walk-forward's, the HTML report's): ``total_return`` -0.202855 -> ``-20.29 %``,
    ``final_equity`` -> ``7,971.45``, ``sharpe`` -> ``1.52``, ``trades`` -> ``1,234``; an
    undefined ratio (None, NaN) -> ``-``. A walk-forward column (``is_sharpe``,
    ``oos_total_return``) is shown as its metric. Other names are shown as they are."""
    base = name.removeprefix("is_").removeprefix("oos_")
    if base in PERCENT_METRICS:
        return fmt.percent(value, signed=base in SIGNED_METRICS)
    if base in MONEY_METRICS:
        return fmt.money(value)
    if base in RATIO_METRICS:
        return fmt.ratio(value)
    if base in COUNT_METRICS:  # a mean of counts (walk-forward) is shown as a ratio
        if value is None or value != value:
            return fmt.MISSING
        return f"{int(value):,}" if float(value).is_integer() else fmt.ratio(value)
    if base == "open_position" and isinstance(value, dict):
        return format_open_position(value)
    if value is None or (isinstance(value, float) and value != value):
        return fmt.MISSING
    return str(value)


def format_open_position(position: dict[str, Any]) -> str:
    """The position a backtest ends with, for a person: ``0.5 bought 2024-01-31T09:30:00Z
    at 100.00, marked at 120.00 (unrealised +9.80)``."""
    return (
        f"{fmt.quantity(position['qty'])} bought {position['entry_time']} at {fmt.price(position['entry_price'])}, "
        f"marked at {fmt.price(position['mark_price'])} (unrealised {fmt.money(position['unrealized_pnl'], signed=True)})"
    )


def format_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table of metrics (a sweep's, walk-forward's windows) with every metric
    column as text by :func:`format_metric`; other columns (parameters, times) unchanged."""
    shown = frame.copy()
    known = set(METRIC_NAMES)
    for column in shown.columns:
        if str(column).removeprefix("is_").removeprefix("oos_") in known:
            shown[column] = [format_metric(str(column), v) for v in shown[column].tolist()]
    return shown


TRADE_CELLS = {
    "entry_price": fmt.price, "exit_price": fmt.price, "qty": fmt.quantity, "fees": fmt.money,
    "pnl": lambda v: fmt.money(v, signed=True), "return": lambda v: fmt.percent(v, signed=True),
}
"""How each number of a closed trade is shown to people (the other columns as they are)."""


def format_trades(trades: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table of closed trades as people read it: times to the minute, prices,
    quantities, money and returns by :mod:`cival.core.fmt`."""
    shown = trades.copy()
    for column in ("entry_time", "exit_time"):
        if column in shown.columns:
            shown[column] = pd.to_datetime(shown[column]).dt.strftime("%Y-%m-%d %H:%M")
    for column, show in TRADE_CELLS.items():
        if column in shown.columns:
            shown[column] = [show(v) for v in shown[column].tolist()]
    return shown


def format_costs(costs: dict[str, Any]) -> str:
    """A fill model's costs in one line, as ``--param`` spells values:
    ``cash=10,000.00, fee_bps=10, ..., qty_step=0.00000001``."""
    shown = {"cash": fmt.money, "qty_step": fmt.quantity}
    return ", ".join(f"{k}={shown[k](v) if k in shown else f'{v:g}'}" for k, v in costs.items() if v is not None)


__all__ = [
    "DAYS_PER_YEAR", "METRIC_NAMES", "TRADE_CELLS", "compute_metrics", "format_costs", "format_metric", "format_open_position",
    "format_table", "format_trades",
]
