"""Helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

from cival.config import config_from_dict
from tests.conftest import ROOT

SRC = ROOT / "src"

GiB = 1 << 30


def run_cival(
    *args: str, cwd: Path, timeout: float = 60, memory: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m cival ARGS`` with the checkout's src first on PYTHONPATH, in ``cwd``.

    ``timeout`` (seconds) and ``memory`` (bytes of address space, RLIMIT_AS) bound the
    process, so that input that makes it run away fails the test instead of holding the
    suite: subprocess.TimeoutExpired, or a MemoryError in its output.
    """
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(SRC)] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    environment.pop("PYTHONSTARTUP", None)

    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "cival", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,  # noqa: PLW1509 - only sets a resource limit
    )


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
