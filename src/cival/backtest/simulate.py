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
    import vectorbt as vbt

    buys, sells = order_signals(entry, exit)
    step = model.qty_step
    n = len(bars)
    entries = np.zeros(n, dtype=bool)
    exits = np.zeros(n, dtype=bool)
    entries[1:] = buys[:-1]  # a signal at t is an order at t + 1 ...
    exits[1:] = sells[:-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = vbt.Portfolio.from_signals(
            close=bars["close"].to_numpy(dtype=float) * step,
            entries=entries,
            exits=exits,
            price=bars["open"].to_numpy(dtype=float) * step,  # ... filled at that bar's open
            fees=model.fee_rate,
            slippage=model.slippage,
            size=model.fraction,
            size_type="percent",
            size_granularity=1.0,  # whole units of qty_step
            direction="longonly",
            init_cash=model.cash,
        )
    records = pf.orders.values
    fills = [
        (
            int(r["idx"]),
            Fill(
                side=1 if r["side"] == 0 else -1,
                units=float(r["size"]),
                unit_price=float(r["price"]),
                notional=float(r["size"]) * float(r["price"]),
                fee=float(r["fees"]),
                cash_after=np.nan,
            ),
        )
        for r in records
    ]
    equity = np.asarray(pf.value(), dtype=float).reshape(-1)
    held = np.asarray(pf.assets(), dtype=float).reshape(-1) > 0
    cash = float(np.asarray(pf.cash()).reshape(-1)[-1])
    return _simulation(bars, model, fills, equity, held, cash)


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


__all__ = ["TRADE_COLUMNS", "Simulation", "simulate_reference", "simulate_vectorbt"]
