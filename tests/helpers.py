"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

from cival.config import config_from_dict
from tests.conftest import ROOT


def recovery_config():
    """A cluster that carries state across calls in every way a session can: rebalancing by
    performance within a farm, selling to rebalance, the master's rebalancing, goals that
    collect, a risk limit, an inline farm (see tests/test_recovery.py)."""
    return config_from_dict(
        {
            "name": "recovery",
            "master": {
                "initial_deposit": "100000",
                "allocation": {"policy": "performance", "metric": "return", "lookback_bars": 96, "min_share": 0.2, "reserve_pct": 10},
                "rebalance": {"every_bars": 96},
            },
            "farms": [
                {
                    "name": "trend",
                    "type": "trend_following",
                    "allocation": {"policy": "performance", "lookback_bars": 48, "reserve_pct": 5},
                    "rebalance": {"every_bars": 48},
                    "agents": [
                        {"name": "gator-a", "strategy": "alligator"},
                        {"name": "gator-b", "strategy": "alligator", "params": {"jaw_period": 21, "teeth_period": 13}},
                    ],
                },
                {
                    "name": "breakout",
                    "type": "breakout",
                    "allocation": {"policy": "equal", "reserve_pct": 5},
                    "rebalance": {"every_bars": 72, "liquidate": True},
                    "agents": [
                        {"name": "darvas-a", "strategy": "darvas"},
                        {"name": "darvas-b", "strategy": "darvas", "params": {"lookback": 40}},
                    ],
                },
                {
                    "name": "waves",
                    "type": "price_action",
                    "runtime": {"agents": "inline"},
                    "agents": [{"name": "elliott-a", "strategy": "elliott", "params": {"zigzag_pct": 3}}],
                },
            ],
            "goals": [
                {"name": "gator-profit", "type": "profit_target", "target": {"profit": "200"}, "assign": [{"agent": "gator-a"}]},
                {"name": "breakout-busy", "type": "trade_volume", "target": {"trades": 40}, "assign": [{"farm": "breakout"}],
                 "on_complete": "collect_all"},
                {"name": "waves-quality", "type": "strategy_performance", "target": {"min_win_rate": 0.9, "min_trades": 5},
                 "assign": [{"farm": "waves"}], "deadline": {"bars": 3000}},
            ],
            "risk": {"farm_max_drawdown_pct": 40},
            "checkpoint": {"every_bars": 24},
            "data": {"source": "file", "path": str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")},
        }
    )
