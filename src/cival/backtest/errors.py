"""The backtester's errors, below every module that raises them."""

from __future__ import annotations

from cival.core.errors import CivalError


class BacktestError(CivalError):
    """Bad backtest arguments (costs, engine, data)."""


class SweepError(BacktestError):
    """A bad grid (syntax, unknown parameter, value out of bounds) or metric."""


__all__ = ["BacktestError", "SweepError"]
