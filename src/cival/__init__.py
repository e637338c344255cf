"""Cival: multi-agent paper trading and backtesting with exact books."""

__version__ = "0.1.0"
