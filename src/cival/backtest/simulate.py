"""Running the fill model over a series of signals, with either engine.

* :func:`simulate_reference`: a plain loop over bars driving a
  :class:`~cival.execution.broker.PaperBroker`, the broker paper trading uses.
* :func:`simulate_vectorbt`: vectorbt's ``Portfolio.from_orders`` executing the orders the
  fill model decides for every signal column (:func:`cival.execution.broker.broker_orders`:
  the same compiled rules, one account per column), quantities in units of ``qty_step``,
  prices with slippage, the model's fees. vectorbt's own signal sizing cannot be used: it
  snaps leftover cash within a tolerance to zero, where the fill model keeps every 1e-8
  of it as cash. What vectorbt executed is checked against what was decided.

Both return a :class:`Simulation` built by one function from the list of fills, so the
two can be compared fill for fill.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numba import njit

from cival.execution.fills import (
    Execution,
    FillModel,
    grid,
    model_params,
    settle,
    step_decimals,
)

TRADE_COLUMNS = ["entry_time", "entry_price", "exit_time", "exit_price", "qty", "fees", "pnl", "return", "exit_reason"]

EXIT_REASONS = ("signal", "stop-loss", "take-profit")
"""Why a trade closed: its strategy's exit signal (filled at the next open), or a stop."""


@dataclass(frozen=True)
class Simulation:
    """Fills, closed trades, the equity curve and any position left open."""

    fills: pd.DataFrame
    """One row per fill: time, side (+1 buy / -1 sell), qty, price, notional, fee, cash_after."""
    trades: pd.DataFrame
    """One row per closed trade (see TRADE_COLUMNS). ``fees`` are both sides'; ``pnl`` is net of
    them; ``return`` is pnl over the capital committed (entry notional + entry fee);
    ``exit_reason`` is one of :data:`EXIT_REASONS`, from the reason the broker gave the sale.
    A position still open at the end of the data is not a trade (see ``open_position``)."""
    equity: pd.Series
    """Cash plus the position at the bar's close, at every bar."""
    in_position: np.ndarray
    """Whether a position is held at each bar's close."""
    cash: float
    open_position: dict[str, Any] | None = field(default=None)


def simulate_reference(bars: pd.DataFrame, entry: np.ndarray, exit: np.ndarray, model: FillModel) -> Simulation:
    """Bar-by-bar simulation: the paper-trading broker's compiled bar step over every bar."""
    from cival.execution.broker import PaperBroker

    entry = np.asarray(entry, dtype=bool)
    exit = np.asarray(exit, dtype=bool)
    opens, highs, lows, closes = (bars[c].to_numpy(dtype=float) for c in ("open", "high", "low", "close"))
    broker = PaperBroker(model)
    run = broker.run(opens, highs, lows, closes, entry, exit)
    return _simulation(bars, model, _fill_arrays(run.executions()), run.equity, run.held, broker.cash)


def _fill_arrays(fills: list[tuple[int, str, Execution]]) -> dict[str, np.ndarray]:
    from cival.execution.broker import REASONS

    return {
        "idx": np.array([t for t, _, _ in fills], dtype=np.int64),
        "reason": np.array([REASONS.index(r) for _, r, _ in fills], dtype=np.int8),
        "side": np.array([f.side for _, _, f in fills], dtype=np.int64),
        "units": np.array([f.units for _, _, f in fills], dtype=np.float64),
        "unit_price": np.array([f.unit_price for _, _, f in fills], dtype=np.float64),
        "notional": np.array([f.notional for _, _, f in fills], dtype=np.float64),
        "fee": np.array([f.fee for _, _, f in fills], dtype=np.float64),
        "cash_after": np.array([f.cash_after for _, _, f in fills], dtype=np.float64),
    }


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

    from cival.execution.broker import broker_orders

    entry = np.ascontiguousarray(entry, dtype=bool)
    exit = np.ascontiguousarray(exit, dtype=bool)
    if entry.ndim != 2 or entry.shape != exit.shape or entry.shape[0] != len(bars):
        from cival.backtest.errors import BacktestError

        raise BacktestError(
            f"entry/exit signals must both be (bars, columns) for {len(bars)} bars; got {entry.shape} and {exit.shape}: "
            "a strategy's signals need one row per bar"
        )
    step = model.qty_step
    n, k = entry.shape
    opens, highs, lows = (bars[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low"))
    size = np.full((n, k), np.nan)
    price = np.full((n, k), np.nan)
    fees = np.zeros((n, k))
    reasons = np.zeros((n, k), dtype=np.int8)
    cash0 = float(grid(model.cash))
    broker_orders(model_params(model), cash0, opens, highs, lows, entry, exit, size, price, fees, reasons)
    close = bars["close"].to_numpy(dtype=float) * step
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pf = vbt.Portfolio.from_orders(
            close=close[:, None],  # (n, 1): vectorbt broadcasts it without copying per column
            size=size,
            size_type="amount",  # whole units of qty_step
            price=price,
            fixed_fees=fees,  # the model's fee of each fill, on the money grid
            direction="longonly",
            # vectorbt's cash drops leftover dust within its tolerance, which the fill model
            # keeps as cash: with a cash of its own it would cut an order that spends all of
            # ours. The orders are the fill model's, already within our cash; vectorbt's
            # cash is not used (cash and equity come from the fills, by the model's rules).
            init_cash=np.inf,
        )
    records = pf.order_records
    decided = np.argwhere(~np.isnan(size.T))  # (column, bar), in vectorbt's record order
    if len(records) != len(decided) or not (
        np.array_equal(records["col"], decided[:, 0])
        and np.array_equal(records["idx"], decided[:, 1])
        and np.array_equal(np.where(records["side"] == 0, 1.0, -1.0) * records["size"], size.T[~np.isnan(size.T)])
        and np.array_equal(records["price"], price.T[~np.isnan(price.T)])
    ):
        raise AssertionError("vectorbt executed other orders than the fill model decided")
    # Order records come sorted by column, then by bar.
    bounds = np.searchsorted(records["col"], np.arange(k + 1))
    sims = []
    for j in range(k):
        r = records[bounds[j] : bounds[j + 1]]
        arrays = {
            "idx": r["idx"].astype(np.int64),
            "reason": reasons[r["idx"], j],
            "side": np.where(r["side"] == 0, 1, -1).astype(np.int64),
            "units": r["size"].astype(np.float64),
            "unit_price": r["price"].astype(np.float64),
            "fee": r["fees"].astype(np.float64),
        }
        arrays["notional"], arrays["cash_after"], equity, held = _replay(arrays, close, cash0)
        open_value = arrays["units"][-1] * close[-1] if len(r) % 2 else 0.0
        sims.append(_simulation(bars, model, arrays, equity, held, float(equity[-1] - open_value)))
    return sims


def _replay(
    fills: dict[str, np.ndarray], close: np.ndarray, cash0: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each fill's notional and the cash after it (by the fill model's own rules), and
    equity and holding at every bar close: the same floats the bar-by-bar engine computes,
    without vectorbt's n x k output frames."""
    side = fills["side"]
    notional = _grid_all(fills["units"] * fills["unit_price"])
    cash_after = _cash_after_fills(cash0, side, notional, fills["fee"])
    n = len(close)
    last = np.searchsorted(fills["idx"], np.arange(n), side="right") - 1  # latest fill at or before t
    has = last >= 0
    units_after = np.where(fills["side"] > 0, fills["units"], 0.0)
    cash_t = np.where(has, cash_after[np.maximum(last, 0)] if len(side) else cash0, cash0)
    units_t = np.where(has, units_after[np.maximum(last, 0)] if len(side) else 0.0, 0.0)
    return notional, cash_after, cash_t + units_t * close, units_t > 0.0


@njit(cache=True)
def _grid_all(values):  # pragma: no cover - compiled
    out = np.empty(values.shape[0])
    for i in range(values.shape[0]):
        out[i] = grid(values[i])
    return out


@njit(cache=True)
def _cash_after_fills(cash, side, notional, fee):  # pragma: no cover - compiled
    out = np.empty(side.shape[0])
    for i in range(side.shape[0]):
        cash = settle(cash, side[i], notional[i], fee[i])
        out[i] = cash
    return out


def _simulation(
    bars: pd.DataFrame,
    model: FillModel,
    fills: dict[str, np.ndarray],
    equity: np.ndarray,
    held: np.ndarray,
    cash: float,
) -> Simulation:
    """Fills (as arrays, alternating buy/sell from a buy) -> the Simulation record."""
    index = bars.index
    step = model.qty_step
    decimals = step_decimals(step)
    idx, side, units, unit_price, fee = (fills[c] for c in ("idx", "side", "units", "unit_price", "fee"))
    if len(side) and not ((side[0::2] == 1).all() and (side[1::2] == -1).all()):
        raise AssertionError("fills must alternate buy, sell, buy, ...")
    notional = fills["notional"]  # as the fill model computed it: quantity x price on the money grid
    times = index[idx]
    fill_frame = pd.DataFrame(
        {
            "time": times,
            "side": side,
            "qty": np.round(units * step, decimals),
            "price": unit_price / step,
            "notional": notional,
            "fee": fee,
            "cash_after": fills["cash_after"],
        }
    )
    closed = len(side) // 2
    b, s = slice(0, 2 * closed, 2), slice(1, 2 * closed, 2)
    pnl = (notional[s] - notional[b]) - fee[b] - fee[s]
    exit_reason = _exit_reasons(model, fills["reason"][s], unit_price[b], unit_price[s])
    trades = pd.DataFrame(
        {
            "entry_time": times[b],
            "entry_price": unit_price[b] / step,
            "exit_time": times[s],
            "exit_price": unit_price[s] / step,
            "qty": np.round(units[b] * step, decimals),
            "fees": fee[b] + fee[s],
            "pnl": pnl,
            "return": pnl / (notional[b] + fee[b]),
            "exit_reason": exit_reason,
        },
        columns=TRADE_COLUMNS,
    )
    open_position = None
    if len(side) % 2:
        mark = float(bars["close"].iloc[-1])
        value = units[-1] * (mark * step)
        open_position = {
            "entry_time": times[-1],
            "entry_price": unit_price[-1] / step,
            "qty": float(np.round(units[-1] * step, decimals)),
            "entry_fee": float(fee[-1]),
            "mark_price": mark,
            "unrealized_pnl": value - notional[-1] - fee[-1],
        }
    return Simulation(
        fills=fill_frame,
        trades=trades,
        equity=pd.Series(equity, index=index, name="equity"),
        in_position=held,
        cash=cash,
        open_position=open_position,
    )


def _exit_reasons(model: FillModel, codes: np.ndarray, entry_price: np.ndarray, exit_price: np.ndarray) -> Any:
    """Each sale's reason as a word of EXIT_REASONS. The broker codes a stop as one reason;
    which stop it was follows from the sale's price before slippage: a stop-loss sells
    below the entry fill price, a take-profit above it (each by its whole distance)."""
    if len(codes) and not np.isin(codes, (1, 2)).all():
        raise AssertionError(f"sales must be coded 1 (signal) or 2 (stop); got {sorted(set(codes.tolist()))}")
    if model.take_profit_pct is None:
        stop = "stop-loss"
    elif model.stop_loss_pct is None:
        stop = "take-profit"
    else:
        before_slippage = exit_price / (1 - model.slippage)
        stop = np.where(before_slippage < entry_price, "stop-loss", "take-profit")
    # One dtype, with or without trades: pandas's string dtype (object before pandas 3).
    return pd.Series(np.where(codes == 2, stop, "signal"), dtype="str").array


__all__ = ["EXIT_REASONS", "TRADE_COLUMNS", "Simulation", "simulate_reference", "simulate_vectorbt", "simulate_vectorbt_columns"]
