"""Default costs and sizing of a trading account, the same for the backtester, paper
trading, the config file and the command line (each reads them here)."""

from decimal import Decimal

DEFAULT_CASH = Decimal(10_000)
"""Starting cash when none is given."""

DEFAULT_FEE_BPS = 10.0
"""Fee per side, in basis points of the notional."""

DEFAULT_SLIPPAGE_BPS = 5.0
"""Adverse slippage, in basis points of the price."""

DEFAULT_FRACTION = 1.0
"""Share of cash an entry invests."""

__all__ = ["DEFAULT_CASH", "DEFAULT_FEE_BPS", "DEFAULT_FRACTION", "DEFAULT_SLIPPAGE_BPS"]
