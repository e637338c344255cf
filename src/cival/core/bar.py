"""One bar of market data, as agents receive it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; ``timestamp`` is the bar's open time, in UTC. Prices are floats
    (market data, not money: the ledger converts at its own boundary)."""

    timestamp: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0


__all__ = ["Bar"]
