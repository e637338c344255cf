"""Running performance figures of an equity curve, bounded in memory.

Agents and farms see their equity one batch of bars at a time, for as long as a session
runs, so they keep running sums rather than the curve. The definitions are those of
:mod:`cival.backtest.metrics` (``r`` the bar-to-bar returns, the first measured from the
starting equity ``E0``; ``sharpe = mean(r) / std(r) * sqrt(bars_per_year)`` with the
sample std and ``bars_per_year = (bars - 1) / years``; ``max_drawdown`` the largest
fall from the running peak, which starts at ``E0``), so a paper session's figures equal
the backtest's on the same bars, up to the order of floating-point sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NS_PER_DAY = 86_400 * 1_000_000_000
DAYS_PER_YEAR = 365.25


@dataclass
class PerformanceTracker:
    """Feeds on (bar time, equity) pairs; reports drawdown and Sharpe so far."""

    start_equity: float = math.nan
    bars: int = 0
    first_ns: int = 0
    last_ns: int = 0
    last_equity: float = math.nan
    peak: float = math.nan
    max_drawdown: float = 0.0
    _mean: float = 0.0
    _m2: float = 0.0

    def start(self, equity: float) -> None:
        """Set the starting equity (E0) if not set yet."""
        if math.isnan(self.start_equity):
            self.start_equity = float(equity)
            self.last_equity = self.peak = float(equity)

    def update(self, ts_ns: np.ndarray, equity: np.ndarray) -> None:
        """Add consecutive bars' closing equity."""
        n = int(equity.shape[0])
        if n == 0:
            return
        if math.isnan(self.start_equity):
            self.start(float(equity[0]))
        if self.bars == 0:
            self.first_ns = int(ts_ns[0])
        previous = np.concatenate(([self.last_equity], equity[:-1]))
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = equity / previous - 1.0
        # Chan et al.'s parallel update of the mean and the sum of squared deviations.
        count = self.bars + n
        batch_mean = float(np.mean(returns))
        batch_m2 = float(np.sum((returns - batch_mean) ** 2))
        delta = batch_mean - self._mean
        self._mean += delta * n / count
        self._m2 += batch_m2 + delta * delta * self.bars * n / count
        peaks = np.maximum.accumulate(np.concatenate(([self.peak], equity)))[1:]
        with np.errstate(divide="ignore", invalid="ignore"):
            drawdown = float(np.max(1.0 - equity / peaks))
        if math.isfinite(drawdown):
            self.max_drawdown = max(self.max_drawdown, drawdown)
        self.peak = float(peaks[-1])
        self.bars = count
        self.last_ns = int(ts_ns[-1])
        self.last_equity = float(equity[-1])

    @property
    def sharpe(self) -> float | None:
        years = (self.last_ns - self.first_ns) / NS_PER_DAY / DAYS_PER_YEAR
        if self.bars < 2 or years <= 0:
            return None
        std = math.sqrt(self._m2 / (self.bars - 1))
        if not std > 0 or not math.isfinite(std):
            return None
        value = self._mean / std * math.sqrt((self.bars - 1) / years)
        return value if math.isfinite(value) else None


__all__ = ["PerformanceTracker"]
