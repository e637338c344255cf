"""The fill model, one bar at a time: the broker paper trading and the reference engine use.

A :class:`PaperBroker` holds one account's cash and position. At each bar's close the
owner submits what its signals want (:meth:`PaperBroker.submit`); when the next bar opens,
:meth:`PaperBroker.on_bar` first checks the position's stops against that bar, then fills
the submitted order at the open, by the rules of :mod:`cival.backtest.fills`. A live
exchange adapter can implement the same two methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cival.backtest.fills import Execution, FillModel, buy, sell, sell_units, stop_price


@dataclass
class PaperBroker:
    """Cash and position of one account, moved only by fills of the fill model."""

    model: FillModel
    cash: float = math.nan
    units: float = 0.0
    """Position in whole units of ``model.qty_step``."""
    entry_bar: int = -1
    entry_unit_price: float = 0.0
    pending: int = 0
    """Order due at the next open: +1 buy, -1 sell, 0 none."""
    bars_seen: int = 0
    last_fill_reason: str = ""
    """Why the latest fill happened: "stop" or "signal"."""

    def __post_init__(self) -> None:
        if math.isnan(self.cash):
            self.cash = self.model.cash

    @property
    def in_position(self) -> bool:
        return self.units > 0.0

    def on_bar(self, open_: float, high: float, low: float) -> Execution | None:
        """The next bar opens: a stop if one is hit (it replaces the order due), else the
        order due at the open. Returns the fill, if any."""
        t = self.bars_seen
        self.bars_seen += 1
        due, self.pending = self.pending, 0
        model = self.model
        if self.units > 0.0 and model.has_stops and t > self.entry_bar:
            step = model.qty_step
            level = stop_price(model, self.entry_unit_price, open_ * step, high * step, low * step)
            if not math.isnan(level):
                self.last_fill_reason = "stop"
                return self._apply(sell_units(model, self.cash, self.units, level))
        self.last_fill_reason = "signal"
        if due > 0 and self.units == 0.0:
            fill = buy(model, self.cash, open_)
            if fill is not None:
                self.entry_bar, self.entry_unit_price = t, fill.unit_price
                return self._apply(fill)
        elif due < 0 and self.units > 0.0:
            return self._apply(sell(model, self.cash, self.units, open_))
        return None

    def submit(self, entry: bool, exit: bool) -> None:
        """At a bar's close, the signals for that bar: an exit wins over an entry; each is
        filled at the next open only if it applies then (a buy when flat, a sale when in
        a position)."""
        self.pending = -1 if exit else (1 if entry else 0)

    def equity(self, close: float) -> float:
        """Cash plus the position at ``close``."""
        return self.cash + self.units * (close * self.model.qty_step)

    def _apply(self, fill: Execution) -> Execution:
        self.cash = fill.cash_after
        self.units = fill.units if fill.side > 0 else 0.0
        return fill


__all__ = ["PaperBroker"]
