"""An agent: one strategy on one instrument, trading through the paper broker.

A plain class. The Ray actor wraps it unchanged, and a farm hosting its agents inline
(scale mode) holds it directly, so both modes run the same code. Each bar goes:

1. the bar opens: the broker fills a stop or the order due (the fill model's rules);
2. the bar closes: the strategy's live form computes the bar's signals (the same row
   the vectorised form gives), and the broker is told what they want at the next open.

Fills leave as :class:`~cival.core.messages.Fill` messages with exact decimals:
``qty`` is the whole number of quantity steps times the step, ``price`` and ``fee`` are
the fill model's floats read exactly (``Decimal(repr(x))``), which is this module's
float boundary. Sizing uses the broker's float cash, exactly as the backtester does, so
paper trading and ``cival backtest`` produce the same trades from the same bars.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from pydantic import BaseModel

from cival.backtest.broker import PaperBroker
from cival.backtest.fills import Execution
from cival.backtest.fills import FillModel
from cival.core.bar import Bar
from cival.core.messages import Fill, OrderIntent
from cival.strategies import get_strategy


class Agent:
    """Runs ``strategy`` with ``params`` on ``symbol`` bars, filling through a PaperBroker."""

    def __init__(
        self,
        name: str,
        strategy: str,
        params: BaseModel | Mapping[str, Any] | None,
        model: FillModel,
        symbol: str,
    ) -> None:
        self.name = name
        self.symbol = symbol
        self.strategy = get_strategy(strategy)
        self.signals = self.strategy.live(params)
        self.broker = PaperBroker(model)
        self.step = Decimal(repr(model.qty_step))
        self.fills: list[Fill] = []

    @property
    def params(self) -> BaseModel:
        return self.signals.params

    def on_bar(self, bar: Bar) -> list[Fill | OrderIntent]:
        """Process one bar; returns the fill at its open (if any) and the intent for the next."""
        out: list[Fill | OrderIntent] = []
        execution = self.broker.on_bar(bar.open, bar.high, bar.low)
        if execution is not None:
            out.append(self._fill_message(execution, bar.timestamp, self.broker.last_fill_reason))
        row = self.signals.update(bar.open, bar.high, bar.low, bar.close, pd.Timestamp(bar.timestamp))
        self.broker.submit(bool(row["entry"]), bool(row["exit"]))
        side = self.broker.pending
        if (side > 0 and not self.broker.in_position) or (side < 0 and self.broker.in_position):
            out.append(
                OrderIntent(
                    agent=self.name,
                    symbol=self.symbol,
                    side="buy" if side > 0 else "sell",
                    signal_at=bar.timestamp,
                    at=bar.timestamp,
                )
            )
        return out

    def on_bars(self, bars: Iterable[Bar]) -> list[Fill | OrderIntent]:
        """A batch of bars (replay amortises per-call overhead this way); same result as one by one."""
        out: list[Fill | OrderIntent] = []
        for bar in bars:
            out.extend(self.on_bar(bar))
        return out

    def equity(self, close: float) -> float:
        return self.broker.equity(close)

    def _fill_message(self, execution: Execution, at: datetime, reason: str) -> Fill:
        fill = Fill(
            id=f"{self.name}:{self.symbol}:{len(self.fills) + 1}",
            at=at,
            agent=self.name,
            symbol=self.symbol,
            side="buy" if execution.side > 0 else "sell",
            qty=Decimal(int(execution.units)) * self.step,
            price=Decimal(repr(execution.unit_price / self.broker.model.qty_step)),
            fee=Decimal(repr(execution.fee)),
            reason=reason,  # type: ignore[arg-type]
        )
        self.fills.append(fill)
        return fill


__all__ = ["Agent"]
