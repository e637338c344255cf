"""The fill model, one bar at a time: the broker paper trading and the reference engine use.

A :class:`PaperBroker` holds one account's cash and position. At each bar's close the
owner submits what its signals want (:meth:`PaperBroker.submit`); when the next bar opens,
:meth:`PaperBroker.on_bar` first checks the position's stops against that bar, then fills
the submitted order at the open, by the rules of :mod:`cival.execution.fills`. A live
exchange adapter can implement the same two methods.

The bar step is one compiled function, :func:`broker_bar`. :meth:`PaperBroker.on_bar`
calls it for one bar; :meth:`PaperBroker.run` runs it over a batch of bars whose signals
are already known (the signals of bar t only act at bar t + 1, so a batch can be computed
first and filled after), in one compiled loop: the same fills, much faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from cival.execution.fills import (
    P_SL,
    P_STEP,
    P_TP,
    Execution,
    FillModel,
    buy_nb,
    grid,
    model_params,
    sell_units_nb,
    stop_price_nb,
)

# Broker state, a float64 array (so compiled code can update it in place).
S_CASH, S_UNITS, S_ENTRY_BAR, S_ENTRY_PRICE, S_PENDING, S_BARS, S_REASON = range(7)
REASONS = ("", "signal", "stop")
"""Fill reasons by code: 1 a signal's order, 2 a stop."""


@njit(cache=True)
def broker_bar(state, p, open_, high, low, fill):  # pragma: no cover - compiled
    """The next bar opens: a stop if one is hit (it replaces the order due), else the order
    due at the open. Writes a fill to ``fill`` (side, units, unit_price, notional, fee,
    cash_after) and returns its reason code (0: no fill, 1: signal, 2: stop)."""
    t = state[S_BARS]
    state[S_BARS] = t + 1.0
    due = state[S_PENDING]
    state[S_PENDING] = 0.0
    cash, units = state[S_CASH], state[S_UNITS]
    has_stops = not (np.isnan(p[P_SL]) and np.isnan(p[P_TP]))
    if units > 0.0 and has_stops and t > state[S_ENTRY_BAR]:
        step = p[P_STEP]
        level = stop_price_nb(p, state[S_ENTRY_PRICE], open_ * step, high * step, low * step)
        if not np.isnan(level):
            unit_price, notional, fee, cash_after = sell_units_nb(p, cash, units, level)
            fill[0], fill[1], fill[2], fill[3], fill[4], fill[5] = -1.0, units, unit_price, notional, fee, cash_after
            state[S_CASH], state[S_UNITS], state[S_REASON] = cash_after, 0.0, 2.0
            return 2
    state[S_REASON] = 1.0
    if due > 0 and units == 0.0:
        bought, unit_price, notional, fee, cash_after = buy_nb(p, cash, open_)
        if bought > 0:
            state[S_ENTRY_BAR], state[S_ENTRY_PRICE] = t, unit_price
            fill[0], fill[1], fill[2], fill[3], fill[4], fill[5] = 1.0, bought, unit_price, notional, fee, cash_after
            state[S_CASH], state[S_UNITS] = cash_after, bought
            return 1
    elif due < 0 and units > 0.0:
        unit_price, notional, fee, cash_after = sell_units_nb(p, cash, units, open_ * p[P_STEP])
        fill[0], fill[1], fill[2], fill[3], fill[4], fill[5] = -1.0, units, unit_price, notional, fee, cash_after
        state[S_CASH], state[S_UNITS] = cash_after, 0.0
        return 1
    return 0


@njit(cache=True)
def broker_run(state, p, opens, highs, lows, closes, entries, exits, fills, equity, held):  # pragma: no cover - compiled
    """Bars in order, their signals known: fill at each open, value at each close, submit
    each close's signals. ``fills`` (rows: bar index, reason, side, units, unit_price,
    notional, fee, cash_after) gets one row per fill; returns how many."""
    n = 0
    fill = np.empty(6)
    step = p[P_STEP]
    for i in range(opens.shape[0]):
        reason = broker_bar(state, p, opens[i], highs[i], lows[i], fill)
        if reason:
            fills[n, 0] = i
            fills[n, 1] = reason
            fills[n, 2:] = fill
            n += 1
        equity[i] = state[S_CASH] + state[S_UNITS] * (closes[i] * step)
        held[i] = state[S_UNITS] > 0.0
        state[S_PENDING] = -1.0 if exits[i] else (1.0 if entries[i] else 0.0)
    return n


@njit(cache=True)
def broker_orders(p, cash, opens, highs, lows, entries, exits, size, price, fee, reason):  # pragma: no cover - compiled
    """The orders of many accounts (one per signal column, each starting with ``cash``):
    for every bar and column, the signed units the fill model fills at that bar (+ buy,
    - sale; NaN: none), at ``price`` per unit (slippage included), paying ``fee``, for
    ``reason`` (a code of :data:`REASONS`). What the vectorbt engine is given to execute
    (see :mod:`cival.backtest.simulate`)."""
    n, k = entries.shape
    fill = np.empty(6)
    state = np.zeros(7)
    for j in range(k):
        state[:] = 0.0
        state[S_CASH] = cash
        state[S_ENTRY_BAR] = -1.0
        for i in range(n):
            why = broker_bar(state, p, opens[i], highs[i], lows[i], fill)
            if why:
                reason[i, j] = why
                size[i, j] = fill[0] * fill[1]
                price[i, j] = fill[2]
                fee[i, j] = fill[4]
            state[S_PENDING] = -1.0 if exits[i, j] else (1.0 if entries[i, j] else 0.0)


@dataclass
class BrokerRun:
    """What :meth:`PaperBroker.run` did over a batch."""

    fills: np.ndarray
    """One row per fill: bar index (in the batch), reason code, side, units, unit_price,
    notional, fee, cash_after."""
    equity: np.ndarray
    """Cash plus the position at each bar's close."""
    held: np.ndarray
    """Whether a position is held at each bar's close."""

    def executions(self) -> list[tuple[int, str, Execution]]:
        return [
            (int(r[0]), REASONS[int(r[1])], Execution(int(r[2]), r[3], r[4], r[5], r[6], r[7]))
            for r in self.fills.tolist()
        ]


@dataclass
class PaperBroker:
    """Cash and position of one account, moved only by fills of the fill model."""

    model: FillModel
    state: np.ndarray = field(default_factory=lambda: np.zeros(7))
    _p: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._p = model_params(self.model)
        if not self.state.any():
            self.state[S_CASH] = grid(self.model.cash)
            self.state[S_ENTRY_BAR] = -1.0

    # The state, readable by name.

    @property
    def cash(self) -> float:
        return float(self.state[S_CASH])

    @cash.setter
    def cash(self, value: float) -> None:
        self.state[S_CASH] = value

    @property
    def units(self) -> float:
        """Position in whole units of ``model.qty_step``."""
        return float(self.state[S_UNITS])

    @property
    def pending(self) -> int:
        """Order due at the next open: +1 buy, -1 sell, 0 none."""
        return int(self.state[S_PENDING])

    @property
    def in_position(self) -> bool:
        return self.state[S_UNITS] > 0.0

    def on_bar(self, open_: float, high: float, low: float) -> Execution | None:
        """The next bar opens: a stop if one is hit (it replaces the order due), else the
        order due at the open. Returns the fill, if any."""
        fill = np.empty(6)
        if not broker_bar(self.state, self._p, float(open_), float(high), float(low), fill):
            return None
        side, units, unit_price, notional, fee, cash_after = fill.tolist()
        return Execution(int(side), units, unit_price, notional, fee, cash_after)

    def submit(self, entry: bool, exit: bool) -> None:
        """At a bar's close, the signals for that bar: an exit wins over an entry; each is
        filled at the next open only if it applies then (a buy when flat, a sale when in
        a position)."""
        self.state[S_PENDING] = -1.0 if exit else (1.0 if entry else 0.0)

    def run(
        self,
        opens: np.ndarray,
        highs: np.ndarray,
        lows: np.ndarray,
        closes: np.ndarray,
        entries: np.ndarray,
        exits: np.ndarray,
    ) -> BrokerRun:
        """:meth:`on_bar`, value at the close, :meth:`submit` for each bar of a batch, compiled."""
        n = len(opens)
        arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in (opens, highs, lows, closes)]
        fills = np.empty((n + 1, 8))
        equity = np.empty(n)
        held = np.zeros(n, dtype=np.bool_)
        count = broker_run(
            self.state,
            self._p,
            *arrays,
            np.ascontiguousarray(entries, dtype=np.bool_),
            np.ascontiguousarray(exits, dtype=np.bool_),
            fills,
            equity,
            held,
        )
        return BrokerRun(fills[:count], equity, held)

    def equity(self, close: float) -> float:
        """Cash plus the position at ``close``."""
        return self.cash + self.units * (close * self.model.qty_step)


__all__ = ["BrokerRun", "PaperBroker", "broker_bar", "broker_orders", "broker_run"]
