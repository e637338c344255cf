"""Running the fill model over a series of signals, with either engine.

* :func:`simulate_reference`: a plain loop over bars calling :mod:`cival.backtest.fills`,
  the way paper trading will (one bar at a time).
* :func:`simulate_vectorbt`: vectorbt's ``Portfolio.from_signals`` configured to the same
  rules: signals shifted one bar, price = next open, percent sizing, quantities counted in
  units of ``qty_step`` (``size_granularity=1``).

Both return a :class:`Simulation` built by one function from the list of fills, so the
two can be compared fill for fill.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from cival.backtest.fills import Fill, FillModel, buy, order_signals, sell

TRADE_COLUMNS = ["entry_time", "entry_price", "exit_time", "exit_price", "qty", "fees", "pnl", "return"]


@dataclass(frozen=True)
class Simulation:
    """Fills, closed trades, the equity curve and any position left open."""

    fills: pd.DataFrame
    """One row per fill: time, side (+1 buy / -1 sell), qty, price, notional, fee, cash_after."""
    trades: pd.DataFrame
    """One row per closed trade (see TRADE_COLUMNS). ``fees`` are both sides'; ``pnl`` is net of
    them; ``return`` is pnl over the capital committed (entry notional + entry fee)."""
    equity: pd.Series
    """Cash plus the position at the bar's close, at every bar."""
    in_position: np.ndarray
    """Whether a position is held at each bar's close."""
    cash: float
    open_position: dict[str, Any] | None = field(default=None)


def simulate_reference(bars: pd.DataFrame, entry: np.ndarray, exit: np.ndarray, model: FillModel) -> Simulation:
    """Bar-by-bar simulation of the fill model (the paper-trading path)."""
    buys, sells = order_signals(entry, exit)
    opens = bars["open"].to_numpy(dtype=float)
    closes = bars["close"].to_numpy(dtype=float) * model.qty_step
    n = len(bars)
    cash, units = model.cash, 0.0
    fills: list[tuple[int, Fill]] = []
    equity = np.empty(n)
    held = np.zeros(n, dtype=bool)
    for t in range(n):
        if t > 0:
            if units == 0.0 and buys[t - 1]:
                fill = buy(model, cash, opens[t])
                if fill is not None:
                    cash, units = fill.cash_after, fill.units
                    fills.append((t, fill))
            elif units > 0.0 and sells[t - 1]:
                fill = sell(model, cash, units, opens[t])
                cash, units = fill.cash_after, 0.0
                fills.append((t, fill))
        equity[t] = cash + units * closes[t]
        held[t] = units > 0.0
    return _simulation(bars, model, fills, equity, held, cash)


def simulate_vectorbt(bars: pd.DataFrame, entry: np.ndarray, exit: np.ndarray, model: FillModel) -> Simulation:
    """The same rules through ``vectorbt.Portfolio.from_signals`` (vectorised, numba)."""
    return simulate_vectorbt_columns(bars, np.asarray(entry)[:, None], np.asarray(exit)[:, None], model)[0]


def simulate_vectorbt_columns(
    bars: pd.DataFrame, entry: np.ndarray, exit: np.ndarray, model: FillModel
) -> list[Simulation]:
    """Many signal columns (``entry``/``exit`` of shape bars x k) in one vectorbt call.

    Each column is an independent account with the model's cash; returns one Simulation
    per column, identical to running :func:`simulate_reference` on that column.
    """
    import vectorbt as vbt

    entry = np.asarray(entry, dtype=bool)
    exit = np.asarray(exit, dtype=bool)
    if entry.ndim != 2 or entry.shape != exit.shape or entry.shape[0] != len(bars):
        raise ValueError(f"entry/exit must both be (bars, columns); got {entry.shape} and {exit.shape}")
    buys, sells = order_signals(entry, exit)
    step = model.qty_step
    n, k = entry.shape
    entries = np.zeros((n, k), dtype=bool)
    exits = np.zeros((n, k), dtype=bool)
    entries[1:] = buys[:-1]  # a signal at t is an order at t + 1 ...
    exits[1:] = sells[:-1]
    close = bars["close"].to_numpy(dtype=float) * step
    price = bars["open"].to_numpy(dtype=float) * step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = vbt.Portfolio.from_signals(
            close=np.broadcast_to(close[:, None], (n, k)),
            entries=entries,
            exits=exits,
            price=np.broadcast_to(price[:, None], (n, k)),  # ... filled at that bar's open
            fees=model.fee_rate,
            slippage=model.slippage,
            size=model.fraction,
            size_type="percent",
            size_granularity=1.0,  # whole units of qty_step
            direction="longonly",
            init_cash=model.cash,
        )
    records = pf.orders.values
    equity = np.asarray(pf.value(), dtype=float).reshape(n, k)
    held = np.asarray(pf.assets(), dtype=float).reshape(n, k) > 0
    cash = np.asarray(pf.cash(), dtype=float).reshape(n, k)[-1]
    by_column: list[list[tuple[int, Fill]]] = [[] for _ in range(k)]
    for r in records:  # records are ordered by column, then by bar
        size, unit_price = float(r["size"]), float(r["price"])
        by_column[int(r["col"])].append(
            (
                int(r["idx"]),
                Fill(
                    side=1 if r["side"] == 0 else -1,
                    units=size,
                    unit_price=unit_price,
                    notional=size * unit_price,
                    fee=float(r["fees"]),
                    cash_after=np.nan,
                ),
            )
        )
    return [
        _simulation(bars, model, by_column[j], equity[:, j], held[:, j], float(cash[j])) for j in range(k)
    ]


def _simulation(
    bars: pd.DataFrame,
    model: FillModel,
    fills: list[tuple[int, Fill]],
    equity: np.ndarray,
    held: np.ndarray,
    cash: float,
) -> Simulation:
    index = bars.index
    step = model.qty_step
    fill_frame = pd.DataFrame(
        {
            "time": [index[t] for t, _ in fills],
            "side": [f.side for _, f in fills],
            "qty": [f.quantity(step) for _, f in fills],
            "price": [f.price(step) for _, f in fills],
            "notional": [f.notional for _, f in fills],
            "fee": [f.fee for _, f in fills],
            "cash_after": [f.cash_after for _, f in fills],
        }
    )
    rows = []
    open_position = None
    for i in range(0, len(fills), 2):
        t_in, f_in = fills[i]
        if f_in.side != 1:
            raise AssertionError(f"fill {i} should be a buy")
        if i + 1 < len(fills):
            t_out, f_out = fills[i + 1]
            pnl = (f_out.notional - f_in.notional) - f_in.fee - f_out.fee
            rows.append(
                (
                    index[t_in],
                    f_in.price(step),
                    index[t_out],
                    f_out.price(step),
                    f_in.quantity(step),
                    f_in.fee + f_out.fee,
                    pnl,
                    pnl / (f_in.notional + f_in.fee),
                )
            )
        else:
            mark = float(bars["close"].iloc[-1])
            value = f_in.units * (mark * step)
            open_position = {
                "entry_time": index[t_in],
                "entry_price": f_in.price(step),
                "qty": f_in.quantity(step),
                "entry_fee": f_in.fee,
                "mark_price": mark,
                "unrealized_pnl": value - f_in.notional - f_in.fee,
            }
    dtypes = {c: (index.dtype if c.endswith("_time") else np.float64) for c in TRADE_COLUMNS}
    trades = pd.DataFrame(rows, columns=TRADE_COLUMNS).astype(dtypes)  # typed even when empty
    return Simulation(
        fills=fill_frame,
        trades=trades,
        equity=pd.Series(equity, index=index, name="equity"),
        in_position=held,
        cash=cash,
        open_position=open_position,
    )


__all__ = ["TRADE_COLUMNS", "Simulation", "simulate_reference", "simulate_vectorbt", "simulate_vectorbt_columns"]
