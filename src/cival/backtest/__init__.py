"""Vectorised backtests on the shared fill model: ``backtest()``, ``sweep()`` and their results."""

from cival.backtest.api import BacktestError, BacktestResult, backtest, fill_model
from cival.backtest.fills import FillModel
from cival.backtest.sweep import SweepError, SweepResult, sweep

__all__ = ["BacktestError", "BacktestResult", "FillModel", "SweepError", "SweepResult", "backtest", "fill_model", "sweep"]
