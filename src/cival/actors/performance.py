"""Running performance figures of an equity curve, bounded in memory.

Agents and farms see their equity one batch of bars at a time, for as long as a session
runs, so they keep running sums rather than the curve. The definitions are those of
:mod:`cival.backtest.metrics` (``r`` the bar-to-bar returns, the first measured from the
starting equity ``E0``; ``sharpe = mean(r) / std(r) * sqrt(bars_per_year)`` with the
sample std and ``bars_per_year = (bars - 1) / years``; ``max_drawdown`` the largest
fall from the running peak, which starts at ``E0``), so a paper session's figures equal
the backtest's on the same bars, up to the order of floating-point sums.

The running sums are updated bar by bar, in order (Welford's method, compiled), so the
figures do not depend on how the bars were batched. Money allocated or collected between
bars is a *flow*, not a return (:meth:`PerformanceTracker.flow`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from pydantic import Field

from cival.core.codec import StateModel, apply, capture

NS_PER_DAY = 86_400 * 1_000_000_000
DAYS_PER_YEAR = 365.25


class PerformanceState(StateModel):
    """A :class:`PerformanceTracker`'s running sums (floats exact, NaN before the start)."""

    start_equity: float
    bars: int
    first_ns: int
    last_ns: int
    last_equity: float
    peak: float
    max_drawdown: float
    mean: float = Field(alias="_mean")
    m2: float = Field(alias="_m2")


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

    def state(self) -> PerformanceState:
        """The running sums, for a journal."""
        return capture(self, PerformanceState)

    def restore(self, state: PerformanceState) -> None:
        apply(self, state, "performance")

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
        state = np.array([self.last_equity, self._mean, self._m2, float(self.bars), self.peak, self.max_drawdown])
        _track(np.ascontiguousarray(equity, dtype=np.float64), state)
        self.last_equity, self._mean, self._m2, count, self.peak, self.max_drawdown = (float(x) for x in state)
        self.bars = int(count)
        self.last_ns = int(ts_ns[-1])

    def flow(self, amount: float) -> None:
        """Money moved in (positive) or out (negative) between bars: not a return. The
        previous equity and the peak move with it, so returns and drawdowns are those of
        the trading alone."""
        if self.bars == 0 or math.isnan(self.last_equity):
            return
        self.last_equity += amount
        self.peak += amount

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


@njit(cache=True)
def _track(equity, state):  # pragma: no cover - compiled
    """Welford's update of the mean and sum of squared deviations of bar returns, and the
    running peak and largest drawdown. state: last, mean, m2, count, peak, max_drawdown."""
    last, mean, m2, count, peak, worst = state[0], state[1], state[2], state[3], state[4], state[5]
    for i in range(equity.shape[0]):
        e = equity[i]
        r = e / last - 1.0 if last != 0.0 else np.nan
        count += 1.0
        delta = r - mean
        mean += delta / count
        m2 += delta * (r - mean)
        if e > peak:
            peak = e
        if peak > 0.0:
            dd = 1.0 - e / peak
            if dd > worst:
                worst = dd
        last = e
    state[0], state[1], state[2], state[3], state[4], state[5] = last, mean, m2, count, peak, worst


__all__ = ["PerformanceState", "PerformanceTracker"]
