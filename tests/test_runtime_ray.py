"""The paper-trading cluster on real Ray actors: parity with the backtester, the demo end
to end, actor and inline farms, duplicates and a clean stop. One local Ray per module."""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pytest

ray = pytest.importorskip("ray")

from cival.actors.books import combine  # noqa: E402
from cival.actors.nodes import cluster_spec  # noqa: E402
from cival.backtest import backtest  # noqa: E402
from cival.cli import main  # noqa: E402
from cival.config import load_config  # noqa: E402
from cival.core.fmt import iso_utc as iso  # noqa: E402
from cival.core.messages import Allocate  # noqa: E402
from cival.data import load_bars  # noqa: E402
from cival.execution import FillModel  # noqa: E402
from cival.runtime import RayCluster, single_agent_config  # noqa: E402
from cival.session import run_paper, session_bars  # noqa: E402
from tests.conftest import ROOT  # noqa: E402
from tests.helpers import comparable, master_rebalance_config, rebalance_config  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]  # sessions on the module's Ray

DEMO = ROOT / "configs" / "demo.yaml"


PARITY = [
    ("intraday_crypto/binance_BTCUSDT_1h.csv", "alligator", {}, {}),
    ("intraday_crypto/binance_ETHUSDT_15m.csv", "darvas", {"lookback": 40}, {"fee_bps": 4.0}),
    ("daily_us_equities/backtrader_ORCL.csv", "elliott", {"zigzag_pct": 3.0}, {"slippage_bps": 2.0}),
]


@pytest.mark.parametrize("path, strategy, params, costs", PARITY, ids=[f"{p[0].split('/')[-1]}-{p[1]}" for p in PARITY])
def test_a_one_agent_cluster_on_ray_trades_exactly_as_the_backtest(shared_data, path, strategy, params, costs):
    bars = load_bars(shared_data / path)
    config = single_agent_config(strategy, params, data=shared_data / path, cash=25_000, **costs)
    result = run_paper(config, bars=bars)
    assert result.report["mode"] == "ray"
    expected = backtest(strategy, bars, params, FillModel(cash=25_000.0, **costs), engine="vectorbt").trades
    got = result.report["farms"][0]["agents"][0]["trades"]
    assert len(got) == len(expected) >= 5
    for g, w in zip(got, expected.itertuples(index=False), strict=True):
        assert (g["entry_time"], g["exit_time"]) == (iso(w.entry_time), iso(w.exit_time))
        for key, value in (("qty", w.qty), ("entry_price", w.entry_price), ("exit_price", w.exit_price), ("fees", w.fees)):
            assert Decimal(g[key]) == Decimal(repr(float(value))), key
    assert result.audit.ok and result.report["ledger"]["ledgers"] == 3


def test_actor_and_inline_farms_on_ray_and_in_process_give_identical_results():
    config = load_config(DEMO)
    bars = session_bars(config, max_bars=3000)
    actors = run_paper(config, bars=bars, batch_size=500)
    inline = run_paper(config, bars=bars, batch_size=500, inline=True)
    local = run_paper(config, bars=bars, local=True, batch_size=3000)
    assert actors.report["ledger"]["ledgers"] == 7 and inline.report["ledger"]["ledgers"] == 4
    assert comparable(actors.report) == comparable(inline.report) == comparable(local.report)
    assert sum(a["trade_count"] for f in actors.report["farms"] for a in f["agents"]) > 10


def test_the_demo_runs_end_to_end_and_its_report_passes_the_audit(tmp_path, capsys):
    report_path = tmp_path / "demo.json"
    code = main(["demo", "--bars", "2500", "--report", str(report_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "Session finished: 2,500 bars of BTCUSDT" in out
    assert "audit OK: 7 ledgers" in out
    report = json.loads(report_path.read_text())
    assert report["mode"] == "ray" and report["bars"] == 2500
    assert [f["name"] for f in report["farms"]] == ["trend", "breakout", "price-action"]
    ledger = report["ledger"]
    assert ledger["audit_ok"] is True and Decimal(ledger["residual"]) == 0 and Decimal(ledger["in_flight"]) == 0
    assert Decimal(ledger["total_equity"]) == (
        Decimal(ledger["deposits"]) - Decimal(ledger["withdrawals"]) + Decimal(ledger["realized_pnl"])
        + Decimal(ledger["unrealized_pnl"]) - Decimal(ledger["fees"])
    )
    trades = sum(len(a["trades"]) for f in report["farms"] for a in f["agents"])
    assert trades == sum(a["trade_count"] for f in report["farms"] for a in f["agents"]) > 10


def test_duplicate_messages_to_actors_change_nothing_and_collections_reach_the_master():
    config = load_config(DEMO)
    cluster = RayCluster(cluster_spec(config, symbol="BTCUSDT"))
    try:
        cluster.start()
        cluster.fund()
        before = combine(cluster.summaries())
        # Funding again, and the farm's allocation delivered a second time, book nothing.
        cluster.fund()
        again = Allocate(id="fund:farm:trend", source="master", target="farm:trend", amount=Decimal("36000"))
        ray.get(cluster.farms["trend"].on_allocate.remote(again))
        after = combine(cluster.summaries())
        assert (after.transactions, after.cash) == (before.transactions, before.cash) == (13, Decimal(100000))
        # Collect everything from a farm: its agent's cash and its own reach the master.
        transfer = cluster.collect("breakout", None, reason="test")
        assert transfer.amount == Decimal("27000")
        assert Decimal(cluster.master_snapshot()["cash"]) == Decimal("37000")
        audit = combine(cluster.summaries())
        assert audit.ok and audit.in_flight == 0 and audit.cash == Decimal(100000)
    finally:
        cluster.close()
    assert ray.is_initialized()  # a cluster it did not start is left running


def test_stopping_a_ray_session_reports_positions_and_a_clean_audit():
    config = load_config(DEMO)
    stop = threading.Event()
    calls = []

    def progress(p):
        calls.append(p.bars)
        if len(calls) == 3:
            stop.set()

    result = run_paper(config, batch_size=200, on_progress=progress, stop=stop)
    assert result.interrupted and result.bars == calls[-1] < 12_556
    assert result.audit.ok and result.audit.residual == 0 and result.audit.in_flight == 0
    assert result.report["bars"] == result.bars


def test_rebalancing_goals_and_halts_on_ray_equal_the_same_in_process():
    policy = {"policy": "performance", "metric": "return", "lookback_bars": 200, "min_share": 0.1}
    config = rebalance_config(policy)
    bars = session_bars(config, max_bars=1500)
    on_ray = run_paper(config, bars=bars)
    local = run_paper(config, bars=bars, local=True)
    assert on_ray.report["mode"] == "ray"
    assert comparable(on_ray.report) == comparable(local.report)
    assert any(Decimal(d) != 0 for r in on_ray.report["farms"][0]["rebalances"] for d in r["moves"].values())
    assert on_ray.audit.ok and on_ray.audit.residual == 0


def test_master_rebalancing_on_ray_equals_the_same_in_process():
    policy = {"policy": "performance", "metric": "return", "lookback_bars": 240, "min_share": 0.1, "reserve_pct": 5}
    config = master_rebalance_config(policy)
    bars = session_bars(config, max_bars=1440)
    on_ray = run_paper(config, bars=bars)
    local = run_paper(config, bars=bars, local=True)
    assert comparable(on_ray.report) == comparable(local.report)
    assert len(on_ray.report["master"]["rebalances"]) == 6
    assert on_ray.audit.ok and on_ray.audit.residual == 0


def test_rebalancing_with_liquidate_on_ray_equals_the_same_in_process():
    raw = rebalance_config({"policy": "equal"}).model_dump(mode="json")
    raw["farms"][0]["rebalance"] = {"every_bars": 200, "liquidate": True}
    from cival.config import config_from_dict

    config = config_from_dict(raw)
    bars = session_bars(config, max_bars=1200)
    on_ray = run_paper(config, bars=bars)
    local = run_paper(config, bars=bars, local=True)
    assert comparable(on_ray.report) == comparable(local.report)
    halts = [h for a in on_ray.report["farms"][0]["agents"] for h in a["halts"]]
    assert any(h["reason"] == "paused: selling to rebalance" for h in halts)
    assert on_ray.audit.ok


def test_goals_changed_by_hand_on_ray_equal_the_same_in_process():
    from cival.session import Session, SessionConfig

    config = rebalance_config({"policy": "equal"})
    bars = session_bars(config, max_bars=1200)
    reports = []
    for local in (False, True):
        session = Session(config, SessionConfig(local=local, persist=False), bars=bars).open()
        session.step(300)
        session.add_goal({"name": "busy", "type": "trade_volume", "target": {"trades": 4}, "assign": [{"agent": "fast"}]})
        session.assign_goal("busy", [{"agent": "mid", "weight": 0.5}])
        session.add_goal({"name": "rich", "type": "profit_target", "target": {"profit": "100000"}, "assign": [{"farm": "trend"}]})
        assert session.cancel_goal("rich")["goal"]["status"] == "cancelled"
        result = session.run()
        assert result.audit.ok
        reports.append(result.report)
    on_ray, in_process = reports
    assert on_ray["mode"] == "ray"
    goals = {g["name"]: g for g in on_ray["goals"]}
    assert goals["busy"]["status"] == "completed" and goals["busy"]["assigned"] == {"fast": "1", "mid": "0.5"}
    assert goals["rich"]["status"] == "cancelled"
    assert comparable(on_ray) == comparable(in_process)
