"""Vectorised backtests on the shared fill model: ``backtest()``, ``sweep()``, ``walkforward()``."""

from cival.backtest.api import BacktestResult, backtest, fill_model
from cival.backtest.errors import BacktestError, SweepError
from cival.backtest.sweep import SweepResult, sweep
from cival.backtest.walkforward import WalkForwardResult, walkforward

__all__ = [
    "BacktestError",
    "BacktestResult",
    "SweepError",
    "SweepResult",
    "WalkForwardResult",
    "backtest",
    "fill_model",
    "sweep",
    "walkforward",
]
