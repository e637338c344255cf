"""Random clusters with every feature at once (policies, floors, scheduled rebalancing at
both levels, goals with each action, risk limits, inline and actor farms): at the end of
any session the books reconcile exactly, nothing is in flight, and money is conserved."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cival.config import config_from_dict
from cival.session import run_paper
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # every test here runs a session, a cluster or the command line of its own

DATA = ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz"
STRATEGIES = [
    ("alligator", {}),
    ("alligator", {"jaw_period": 8, "jaw_shift": 5, "teeth_period": 5, "teeth_shift": 3, "lips_period": 3, "lips_shift": 2}),
    ("darvas", {"lookback": 10}),
    ("elliott", {"zigzag_pct": 2.0}),
]
POLICIES = st.sampled_from(
    [
        {"policy": "equal", "reserve_pct": 5},
        {"policy": "inverse_volatility", "lookback_bars": 100, "max_share": 0.7},
        {"policy": "performance", "metric": "sharpe", "lookback_bars": 100, "min_share": 0.1},
        {"policy": "performance", "metric": "return", "lookback_bars": 200, "min_share": 0.2, "reserve_pct": 10},
    ]
)


@st.composite
def clusters(draw):
    farms = []
    for i in range(draw(st.integers(1, 3))):
        agents = []
        for j in range(draw(st.integers(1, 3))):
            strategy, params = draw(st.sampled_from(STRATEGIES))
            agents.append({"name": f"a{i}{j}", "strategy": strategy, "params": params})
        farm = {
            "name": f"f{i}",
            "type": "breakout",
            "allocation": draw(POLICIES),
            "runtime": {"agents": draw(st.sampled_from(["actors", "inline"]))},
            "agents": agents,
        }
        if draw(st.booleans()):
            farm["rebalance"] = {"every_bars": draw(st.sampled_from([50, 100, 200]))}
        farms.append(farm)
    names = [a["name"] for f in farms for a in f["agents"]]
    goals = []
    for k in range(draw(st.integers(1, 2))):
        target = draw(st.sampled_from([("profit_target", {"profit": "50"}), ("trade_volume", {"trades": 5})]))
        goals.append(
            {
                "name": f"g{k}",
                "type": target[0],
                "target": target[1],
                "assign": [{"agent": draw(st.sampled_from(names))}],
                "on_complete": draw(st.sampled_from(["collect_profit", "collect_all", "none"])),
            }
        )
    master = {"initial_deposit": str(draw(st.integers(1_000, 1_000_000))), "allocation": draw(POLICIES)}
    if draw(st.booleans()):
        master["rebalance"] = {"every_bars": draw(st.sampled_from([100, 200]))}
    risk = draw(st.sampled_from([{}, {"farm_max_drawdown_pct": 15}, {"master_daily_loss_pct": 3}]))
    return config_from_dict(
        {
            "name": "prop",
            "master": master,
            "farms": farms,
            "goals": goals,
            "risk": risk,
            "checkpoint": {"every_bars": 50},
            "costs": {"fee_bps": draw(st.sampled_from([0.0, 10.0])), "slippage_bps": 5.0},
            "data": {"source": "file", "path": str(DATA), "symbol": "BTCUSDT"},
        }
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(config=clusters(), bars=st.integers(300, 1500), start=st.integers(0, 8000))
def test_any_cluster_with_every_feature_keeps_exact_books(config, bars, start):
    from cival.session import session_bars

    frame = session_bars(config).iloc[start : start + bars]
    result = run_paper(config, bars=frame, local=True)
    audit = result.audit
    assert audit.ok, audit.problems
    assert audit.residual == 0 and audit.in_flight == 0
    ledger = result.report["ledger"]
    total = Decimal(ledger["total_equity"])
    assert total == Decimal(ledger["deposits"]) + Decimal(ledger["realized_pnl"]) + Decimal(ledger["unrealized_pnl"]) - Decimal(ledger["fees"])
    collected = sum(Decimal(g["collected"]) for g in result.report["goals"])
    assert collected >= 0
    # Everything the master holds came from its deposit and what goals and rebalances sent up.
    assert Decimal(result.report["master"]["cash"]) >= 0
