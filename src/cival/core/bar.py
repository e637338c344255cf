"""One bar of market data, as agents receive it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np


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


@dataclass(frozen=True)
class BarBatch:
    """Consecutive bars of one symbol as columns: what replay sends to actors in one call.

    ``ts`` holds each bar's open time in nanoseconds since the epoch (UTC); prices are
    float64. Numpy columns travel through Ray's object store without copying per reader.
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    @classmethod
    def from_bars(cls, bars: Sequence[Bar]) -> BarBatch:
        ts = np.fromiter((_ns(b.timestamp) for b in bars), dtype=np.int64, count=len(bars))
        cols = (np.fromiter((getattr(b, f) for b in bars), dtype=np.float64, count=len(bars)) for f in PRICES)
        return cls(ts, *cols)

    @classmethod
    def from_frame(cls, frame: object) -> BarBatch:
        """From a standard bars frame (see :func:`cival.data.load_bars`): UTC index, float prices."""
        import pandas as pd

        assert isinstance(frame, pd.DataFrame)
        index = pd.DatetimeIndex(frame.index)
        ts = (index.tz_convert("UTC") if index.tz is not None else index).as_unit("ns").asi8
        return cls(
            np.ascontiguousarray(ts, dtype=np.int64),
            *(np.ascontiguousarray(frame[f].to_numpy(dtype=np.float64)) for f in PRICES),
        )

    def bars(self) -> list[Bar]:
        return [
            Bar(timestamp_of(int(t)), float(o), float(h), float(l), float(c))
            for t, o, h, l, c in zip(self.ts, self.open, self.high, self.low, self.close, strict=True)
        ]

    def slice(self, start: int, stop: int) -> BarBatch:
        return BarBatch(*(a[start:stop] for a in (self.ts, self.open, self.high, self.low, self.close)))


PRICES = ("open", "high", "low", "close")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def timestamp_of(ns: int) -> datetime:
    """A UTC datetime from nanoseconds since the epoch (to the microsecond)."""
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(microsecond=(ns % 1_000_000_000) // 1_000)


__all__ = ["Bar", "BarBatch", "timestamp_of"]
