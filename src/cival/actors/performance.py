"""Running performance figures of an equity curve, bounded in memory.

Agents and farms see their equity one batch of bars at a time, for as long as a session
runs, so they keep running sums rather than the curve. The definitions are those of
:mod:`cival.backtest.metrics`, with ``r`` the bar-to-bar returns, the first measured from
the starting equity ``E0``, ``years`` the span from the first bar's time to the last's
(365.25 days a year) and ``bars_per_year = (bars - 1) / years``:

* ``total_return = prod(1 + r) - 1``, time-weighted: money moved in or out between bars
  (a flow) is not a return, so with no flows it is ``E[-1] / E0 - 1``, the backtest's.
* ``cagr = (1 + total_return) ** (1 / years) - 1`` (None over a zero span, or when
  equity fell to zero or below).
* ``sharpe = mean(r) / std(r) * sqrt(bars_per_year)`` with the sample std.
* ``sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(bars_per_year)``.
* ``max_drawdown``: the largest fall from the running peak, which starts at ``E0``.
* ``calmar = cagr / max_drawdown`` (None with no drawdown).

So a paper session's figures equal the backtest's on the same bars, up to the order of
floating-point sums. A figure that is undefined (too few bars, no variance, no downside)
is None, never NaN.

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
    """A :class:`PerformanceTracker`'s running sums (floats exact, NaN before the start).

    ``growth`` (the product of ``1 + r``) and ``downside`` (the sum of ``min(r, 0) ** 2``)
    came later than the other sums: a state journaled before them has neither, and is
    read with both NaN, which no later bar makes a number again. A tracker restored from
    such a state goes on with its drawdown and Sharpe, and reports None for the total
    return, CAGR, Sortino and Calmar ratios of its run (unknown), rather than figures of
    only the bars seen since it was restored."""

    start_equity: float
    bars: int
    first_ns: int
    last_ns: int
    last_equity: float
    peak: float
    max_drawdown: float
    mean: float = Field(alias="_mean")
    m2: float = Field(alias="_m2")
    growth: float = Field(math.nan, alias="_growth")
    downside: float = Field(math.nan, alias="_downside")


@dataclass
class PerformanceTracker:
    """Feeds on (bar time, equity) pairs; reports the return, CAGR, Sharpe, Sortino and
    Calmar ratios and the drawdown so far (see the module docstring)."""

    start_equity: float = math.nan
    bars: int = 0
    first_ns: int = 0
    last_ns: int = 0
    last_equity: float = math.nan
    peak: float = math.nan
    max_drawdown: float = 0.0
    _mean: float = 0.0
    _m2: float = 0.0
    _growth: float = 1.0
    _downside: float = 0.0

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
        state = np.array([
            self.last_equity, self._mean, self._m2, float(self.bars), self.peak, self.max_drawdown, self._growth,
            self._downside,
        ])
        _track(np.ascontiguousarray(equity, dtype=np.float64), state)
        (self.last_equity, self._mean, self._m2, count, self.peak, self.max_drawdown, self._growth,
         self._downside) = (float(x) for x in state)
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

    def figures(self) -> dict[str, float | None]:
        """Every figure, as a report shows them: ``total_return``, ``cagr``, ``sharpe``,
        ``sortino``, ``calmar`` and ``max_drawdown`` (None before the first bar)."""
        return {
            "max_drawdown": self.max_drawdown if self.bars else None,
            "sharpe": self.sharpe,
            "total_return": self.total_return,
            "cagr": self.cagr,
            "sortino": self.sortino,
            "calmar": self.calmar,
        }

    @property
    def years(self) -> float:
        """The span from the first bar's time to the last's, in years of 365.25 days."""
        return (self.last_ns - self.first_ns) / NS_PER_DAY / DAYS_PER_YEAR

    def _annual(self, years: float) -> float | None:
        """``sqrt(bars_per_year)``, or None over fewer than two bars or a zero span."""
        if self.bars < 2 or not years > 0:
            return None
        return math.sqrt((self.bars - 1) / years)

    @property
    def total_return(self) -> float | None:
        if self.bars == 0:
            return None
        return _finite(self._growth - 1.0)

    @property
    def cagr(self) -> float | None:
        years = self.years
        if self._annual(years) is None or not self._growth > 0:
            return None
        try:
            return _finite(self._growth ** (1.0 / years) - 1.0)
        except OverflowError:
            return None

    @property
    def sharpe(self) -> float | None:
        annual = self._annual(self.years)
        if annual is None:
            return None
        std = math.sqrt(self._m2 / (self.bars - 1))
        if not std > 0 or not math.isfinite(std):
            return None
        return _finite(self._mean / std * annual)

    @property
    def sortino(self) -> float | None:
        annual = self._annual(self.years)
        if annual is None:
            return None
        downside = math.sqrt(self._downside / self.bars)
        if not downside > 0 or not math.isfinite(downside):
            return None
        return _finite(self._mean / downside * annual)

    @property
    def calmar(self) -> float | None:
        cagr = self.cagr
        if cagr is None or not self.max_drawdown > 0:
            return None
        return _finite(cagr / self.max_drawdown)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


@njit(cache=True)
def _track(equity, state):  # pragma: no cover - compiled
    """Welford's update of the mean and sum of squared deviations of bar returns, the
    product of ``1 + r`` and the sum of ``min(r, 0) ** 2``, and the running peak and largest
    drawdown. state: last, mean, m2, count, peak, max_drawdown, growth, downside."""
    last, mean, m2, count, peak, worst = state[0], state[1], state[2], state[3], state[4], state[5]
    growth, downside = state[6], state[7]
    for i in range(equity.shape[0]):
        e = equity[i]
        g = e / last if last != 0.0 else np.nan
        r = g - 1.0
        count += 1.0
        delta = r - mean
        mean += delta / count
        m2 += delta * (r - mean)
        growth *= g
        if r < 0.0 or r != r:
            downside += r * r
        if e > peak:
            peak = e
        if peak > 0.0:
            dd = 1.0 - e / peak
            if dd > worst:
                worst = dd
        last = e
    state[0], state[1], state[2], state[3], state[4], state[5] = last, mean, m2, count, peak, worst
    state[6], state[7] = growth, downside


__all__ = ["PerformanceState", "PerformanceTracker"]
