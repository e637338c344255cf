"""Vectorised backtests on the shared fill model: ``backtest()`` and its result."""

from cival.backtest.api import BacktestError, BacktestResult, backtest, fill_model
from cival.backtest.fills import FillModel

__all__ = ["BacktestError", "BacktestResult", "FillModel", "backtest", "fill_model"]
