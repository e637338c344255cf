"""Paper-trading sessions in one process: parity with the backtester, batching, inline
farms, duplicate messages and clean errors. (The same on Ray actors: test_runtime_ray.py.)"""

from __future__ import annotations

import json
import threading
from decimal import Decimal

import pandas as pd
import pytest

from cival.actors.books import combine, summarize
from cival.actors.nodes import FarmNode, MasterNode, cluster_spec
from cival.allocation import split, split_equal
from cival.backtest import backtest
from cival.config import config_from_dict, load_config, parse_yaml
from cival.core.bar import BarBatch, timestamp_of
from cival.core.fmt import iso_utc as iso
from cival.core.fmt import plain_decimal as dec
from cival.core.messages import Allocate, Collect
from cival.data import load_bars
from cival.execution import FillModel
from cival.runtime import LocalCluster, RuntimeFailure, connect_ray, single_agent_config
from cival.session import replay_batches, run_paper, session_bars
from tests.conftest import ROOT
from tests.helpers import Outbox
from tests.helpers import comparable as _comparable
from tests.helpers import master_rebalance_config as _master_rebalance_config
from tests.helpers import rebalance_config as _rebalance_config

PARITY = [
    ("intraday_crypto/binance_BTCUSDT_1h.csv", "alligator", {}, {}),
    ("intraday_crypto/binance_ETHUSDT_1h.csv", "darvas", {"lookback": 30}, {}),
    ("intraday_crypto/binance_BTCUSDT_15m.csv", "elliott", {"zigzag_pct": 2.0}, {}),
    ("daily_us_equities/backtrader_NVDA.csv", "darvas", {}, {"fee_bps": 2.0, "slippage_bps": 0.0}),
    ("intraday_fx/backtestingpy_EURUSD_1h.csv", "alligator", {"jaw_period": 21}, {"fee_bps": 1.0, "slippage_bps": 1.0}),
    ("daily_us_equities/pandasta_SPY_adjusted.csv", "elliott", {"zigzag_pct": 4.0}, {"fee_bps": 5.0}),
]


def _session(strategy, params, path, costs, cash=10_000):
    config = single_agent_config(strategy, params, data=path, cash=cash, **costs)
    cluster = LocalCluster(cluster_spec(config))
    cluster.fund()
    return config, cluster


@pytest.mark.slow
@pytest.mark.parametrize("path, strategy, params, costs", PARITY, ids=[f"{p[0].split('/')[-1]}-{p[1]}" for p in PARITY])
def test_paper_session_trades_exactly_as_the_backtest(shared_data, path, strategy, params, costs):
    bars = load_bars(shared_data / path)
    config = single_agent_config(strategy, params, data=shared_data / path, cash=10_000, **costs)
    result = run_paper(config, bars=bars, local=True)
    expected = backtest(strategy, bars, params, FillModel(cash=10_000.0, **costs), engine="vectorbt")

    agent = result.report["farms"][0]["agents"][0]
    got = agent["trades"]
    want = expected.trades
    assert len(got) == len(want) >= 5
    for g, w in zip(got, want.itertuples(index=False), strict=True):
        assert g["entry_time"] == iso(w.entry_time) and g["exit_time"] == iso(w.exit_time)
        assert Decimal(g["qty"]) == Decimal(repr(float(w.qty)))
        assert Decimal(g["entry_price"]) == Decimal(repr(float(w.entry_price)))
        assert Decimal(g["exit_price"]) == Decimal(repr(float(w.exit_price)))
        assert Decimal(g["fees"]) == Decimal(repr(float(w.fees)))
        assert Decimal(g["pnl"]) == Decimal(repr(float(w.pnl)))
    # The books hold the broker's cash to the cent-and-beyond: within one ledger quantum
    # of the backtest's final float cash for every fill, never above it.
    final_cash = Decimal(agent["cash"])
    assert final_cash <= Decimal(repr(expected.simulation.cash)) < final_cash + Decimal("0.00000001")
    assert result.audit.ok and result.audit.residual == 0
    assert Decimal(result.report["ledger"]["deposits"]) == Decimal(10_000)
    # The running figures agree with the backtest's metrics (same definitions; the sums
    # are taken in another order, hence the tolerance).
    assert agent["sharpe"] == pytest.approx(expected.metrics["sharpe"], rel=1e-9)
    assert agent["max_drawdown"] == pytest.approx(expected.metrics["max_drawdown"], rel=1e-12)
    for key in ("total_return", "cagr", "sortino", "calmar"):
        assert agent[key] == pytest.approx(expected.metrics[key], rel=1e-9), key


def test_every_fill_is_booked_with_the_backtests_quantity_price_and_fee(shared_data):
    path = shared_data / "intraday_crypto" / "binance_ETHUSDT_1h.csv"
    bars = load_bars(path)
    _, cluster = _session("alligator", {}, path, {"fee_bps": 7.5, "slippage_bps": 2.0}, cash=2_500)
    cluster.submit(BarBatch.from_frame(bars))
    agent = cluster.agents["alligator-1"]
    fills = agent.fills
    expected = backtest("alligator", bars, {}, FillModel(cash=2_500.0, fee_bps=7.5, slippage_bps=2.0)).simulation.fills
    assert len(fills) == len(expected) > 50
    ledger = agent.books.ledger
    for fill, want in zip(fills, expected.itertuples(index=False), strict=True):
        assert fill.at == want.time.to_pydatetime()
        assert (fill.qty, fill.price, fill.fee, fill.notional) == (
            Decimal(repr(float(want.qty))),
            Decimal(repr(float(want.price))),
            Decimal(repr(float(want.fee))),
            Decimal(repr(float(want.notional))),
        )
        trade = ledger.find(f"{fill.id}/trade")
        fee = ledger.find(f"{fill.id}/fee")
        assert trade is not None and fee is not None
        # Exact books: the fill costs its notional, quantity x price rounded half-even to
        # 1e-8, and its fee, fee_bps of the notional rounded the same way; the rest stays cash.
        quantum = Decimal("1e-8")
        assert abs(fill.notional - fill.qty * fill.price) <= quantum
        assert fill.notional == fill.notional.quantize(quantum) and fill.fee == fill.fee.quantize(quantum)
        assert fee.amount_of("agent:alligator-1/fees") == fill.fee
        assert trade.amount_of("agent:alligator-1/cash") == (-fill.notional if fill.side == "buy" else fill.notional)
        assert (fill.notional * Decimal("7.5") / Decimal(10_000)).quantize(quantum) == fill.fee
    # The cash left is the backtest's, to the last 1e-8.
    assert agent.books.cash("agent:alligator-1").amount == Decimal(repr(float(expected["cash_after"].iloc[-1])))


@pytest.mark.slow
def test_batched_and_bar_by_bar_replay_give_identical_reports(shared_data):
    config = load_config(ROOT / "configs" / "demo.yaml")
    bars = load_bars(shared_data / "intraday_crypto" / "binance_BTCUSDT_15m.csv").iloc[:3000]
    reports = [run_paper(config, bars=bars, local=True, batch_size=size).report for size in (1, 7, 3000)]
    for r in reports:
        r.pop("generated_at")
    assert reports[0] == reports[1] == reports[2]
    assert sum(a["trade_count"] for f in reports[0]["farms"] for a in f["agents"]) > 20


@pytest.mark.slow
def test_inline_farms_and_agents_with_their_own_books_give_identical_results(shared_data):
    config = load_config(ROOT / "configs" / "demo.yaml")
    bars = load_bars(shared_data / "intraday_crypto" / "binance_ETHUSDT_1h.csv").iloc[:4000]
    own_books = run_paper(config, bars=bars, local=True, inline=False)
    inline = run_paper(config, bars=bars, local=True, inline=True)
    assert own_books.report["ledger"]["ledgers"] == 7 and inline.report["ledger"]["ledgers"] == 4
    assert _comparable(own_books.report) == _comparable(inline.report)
    assert own_books.audit.ok and inline.audit.ok


def test_report_has_every_documented_key_as_exact_strings():
    config = load_config(ROOT / "configs" / "demo.yaml")
    result = run_paper(config, local=True, bars=_demo_bars(config, 1500))
    report = json.loads(json.dumps(result.report))
    entity_keys = {"name", "cash", "positions", "equity", "realized_pnl", "unrealized_pnl", "fees", "trades", "halts"}
    assert entity_keys <= set(report["master"])
    assert [g["name"] for g in report["goals"]] == ["trend-profit", "breakout-volume", "price-action-quality"]
    for g in report["goals"]:
        assert {"name", "type", "status", "progress", "completed_at", "collected"} <= set(g)
        assert g["status"] in ("active", "completed", "failed") and 0 <= Decimal(g["progress"]) <= 100
    for farm in report["farms"]:
        assert entity_keys | {"total_equity", "agents"} <= set(farm)
        for agent in farm["agents"]:
            assert entity_keys <= set(agent)
            for trade in agent["trades"]:
                assert list(trade) == ["entry_time", "entry_price", "exit_time", "exit_price", "qty", "fees", "pnl", "return"]
                assert trade["entry_time"].endswith("Z")
    ledger = report["ledger"]
    for key in ("deposits", "withdrawals", "fees", "realized_pnl", "unrealized_pnl", "total_equity", "residual"):
        assert isinstance(ledger[key], str)
        Decimal(ledger[key])
    assert ledger["audit_ok"] is True and Decimal(ledger["residual"]) == 0
    # The farm's cash is its own; its total equity adds its agents'.
    for farm in report["farms"]:
        assert Decimal(farm["total_equity"]) == Decimal(farm["cash"]) + sum(Decimal(a["equity"]) for a in farm["agents"])
    total = Decimal(report["master"]["cash"]) + sum(Decimal(f["total_equity"]) for f in report["farms"])
    assert total == Decimal(ledger["total_equity"])
    # Equity = deposits + realised + unrealised - fees, exactly.
    assert total == (
        Decimal(ledger["deposits"]) + Decimal(ledger["realized_pnl"]) + Decimal(ledger["unrealized_pnl"]) - Decimal(ledger["fees"])
    )


def _demo_bars(config, n):
    from cival.session import session_bars

    return session_bars(config, max_bars=n)


def test_funding_splits_exact_to_the_cent_with_reserves():
    config = load_config(ROOT / "configs" / "demo.yaml")
    cluster = LocalCluster(cluster_spec(config))
    cluster.fund()
    master = cluster.master.books.cash("master").amount
    assert master == Decimal("10000.00")  # 10 % reserve of 100,000
    farms = {n: f.books.cash(f.ref).amount for n, f in cluster.farms.items()}
    agents = {n: a.books.cash(a.ref).amount for n, a in cluster.agents.items()}
    # 90,000 by weights 0.4/0.3/0.3; each farm keeps 5 % and passes the rest to its one agent.
    assert farms == {"trend": Decimal("1800.00"), "breakout": Decimal("1350.00"), "price-action": Decimal("1350.00")}
    assert agents == {"gator-13-8-5": Decimal("34200.00"), "darvas-20-3": Decimal("25650.00"), "elliott-5pct": Decimal("25650.00")}
    assert master + sum(farms.values()) + sum(agents.values()) == Decimal("100000.00")


def test_an_odd_amount_splits_to_the_ledger_quantum_and_nothing_is_lost():
    raw = {
        "name": "odd",
        "master": {"initial_deposit": "1000.00000001", "allocation": {"policy": "equal", "reserve_pct": 3}},
        "farms": [
            {"name": f"f{i}", "type": "breakout", "agents": [{"name": f"a{i}{j}", "strategy": "darvas"} for j in range(3)]}
            for i in range(3)
        ],
        "data": {"source": "synthetic", "bars": 100},
    }
    cluster = LocalCluster(cluster_spec(config_from_dict(raw)))
    cluster.fund()
    audit = combine(cluster.summaries())
    assert audit.ok and audit.in_flight == 0
    assert audit.cash == Decimal("1000.00000001")
    shares = sorted(a.books.cash(a.ref).amount for a in cluster.agents.values())
    assert shares[-1] - shares[0] <= Decimal("0.00000001")


def test_duplicate_allocate_and_fill_messages_change_nothing(shared_data):
    config = load_config(ROOT / "configs" / "demo.yaml")
    spec = cluster_spec(config, symbol="BTC")
    master, farm = MasterNode(spec), FarmNode(spec.farms[0])
    agent = spec.farms[0].agents[0].build()
    (to_farm, *_) = master.fund()
    to_agents = farm.on_allocate(to_farm, Outbox(farm))
    for msg in to_agents:
        agent.on_allocate(msg)
    before = [summarize(b) for b in (master.books, farm.books, agent.books)]
    # The same messages again, as a retrying transport would deliver them.
    assert farm.on_allocate(to_farm, Outbox(farm)) == to_agents
    for msg in to_agents:
        agent.on_allocate(msg)
    key = lambda ms: [(m.id, m.target, m.amount) for m in ms]  # noqa: E731 - a new send has a new time
    assert key(master.fund()) == key([to_farm, *_])
    after = [summarize(b) for b in (master.books, farm.books, agent.books)]
    assert before == after

    bars = load_bars(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv").iloc[:2000]
    agent.on_batch(BarBatch.from_frame(bars))
    assert len(agent.fills) > 10
    booked = len(agent.books.ledger)
    cash = agent.books.cash(agent.ref)
    for fill in agent.fills:
        agent.book(fill)
    assert len(agent.books.ledger) == booked and agent.books.cash(agent.ref) == cash
    # An allocation changed in flight (same id, other amount) is refused, not booked.
    forged = Allocate(id=to_agents[0].id, source=to_agents[0].source, target=to_agents[0].target, amount=Decimal(1))
    with pytest.raises(Exception, match="different postings"):
        agent.on_allocate(forged)
    assert len(agent.books.ledger) == booked


def test_an_allocation_beyond_the_masters_cash_is_refused_and_books_nothing():
    config = load_config(ROOT / "configs" / "demo.yaml")
    master = MasterNode(cluster_spec(config, symbol="X"))
    master.fund()
    before = summarize(master.books)
    too_much = Allocate(source="master", target="farm:trend", amount=Decimal("10000.01"))
    with pytest.raises(Exception, match=r"has 10,000.00 USD available"):
        master.allocate(too_much)
    assert summarize(master.books) == before


def test_stop_event_ends_the_session_cleanly_with_positions_reported():
    config = load_config(ROOT / "configs" / "demo.yaml")
    stop = threading.Event()
    seen = []

    def progress(p):
        seen.append(p.bars)
        if len(seen) == 5:
            stop.set()

    result = run_paper(config, local=True, batch_size=100, on_progress=progress, stop=stop)
    assert result.interrupted and result.report["interrupted"] is True
    # The demo has goals: batches end on its checkpoints (every 24 bars), one at a time.
    assert result.bars == seen[-1] == 5 * 24
    assert result.audit.ok and result.audit.residual == 0
    agents = [a for f in result.report["farms"] for a in f["agents"]]
    held = [a for a in agents if a["positions"]]
    for a in held:
        p = a["positions"][0]
        assert Decimal(p["qty"]) > 0 and Decimal(p["value"]) == (Decimal(p["qty"]) * Decimal(p["mark"])).quantize(Decimal("1e-8"))


def test_unreachable_ray_address_fails_fast_with_a_hint(monkeypatch):
    import ray

    if ray.is_initialized():
        pytest.skip("Ray already running in this process")
    with pytest.raises(RuntimeFailure, match="RAY_ADDRESS or --address"):
        connect_ray("127.0.0.1:1")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    with pytest.raises(RuntimeFailure, match="127.0.0.1:1"):
        connect_ray(None)


def test_bad_session_input_names_the_problem(tmp_path):
    config = load_config(ROOT / "configs" / "demo.yaml")
    with pytest.raises(RuntimeFailure, match="--bars must be at least 1"):
        _demo_bars(config, 0)
    with pytest.raises(Exception, match="speed 'fast'"):
        run_paper(config, local=True, speed="fast")
    with pytest.raises(Exception, match="unknown strategy|no strategy"):
        single_agent_config("turtle", {}, data=ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")


@pytest.mark.parametrize(
    ("cash", "fragment"),
    [(10_000.5, "floats are not exact"), ("1e20", "beyond what the books hold"),
     ("0.123456789", "more than 8 decimal places"), (0, "must be more than 0")],
)
def test_single_agent_cash_is_exact_and_within_the_books(cash, fragment):
    from cival.core.money import AmountError

    with pytest.raises(AmountError, match=r"^cash: .*" + fragment):
        single_agent_config("darvas", {}, data=ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz", cash=cash)
    config = single_agent_config(
        "darvas", {}, data=ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz", cash=Decimal("123456789012.12345678")
    )
    assert config.master.initial_deposit == Decimal("123456789012.12345678")


def test_amounts_in_reports_are_plain_decimal_strings():
    assert dec(Decimal("1E-8")) == "0.00000001"
    assert dec(Decimal("100.00")) == "100"
    assert dec(0.1) == "0.1"
    assert dec(Decimal(0)) == "0"


def test_cluster_audit_flags_money_received_but_never_sent_or_altered_in_flight():
    from cival.core.wallets import EntityKind, WalletTree

    master = WalletTree.rooted(EntityKind.MASTER, "master")
    farm = WalletTree.rooted(EntityKind.FARM, "f", parent="master")
    master.deposit(Decimal(100), key="d")
    master.send("master", "farm:f", Decimal(60), key="m1")
    audit = combine([summarize(master), summarize(farm)])
    assert audit.ok and audit.in_flight == 60 and [m.key for m in audit.pending] == ["m1"]
    farm.receive("farm:f", "master", Decimal(60), key="m1")
    assert combine([summarize(master), summarize(farm)]).in_flight == 0
    # A receipt with no sending creates money: flagged.
    farm.receive("farm:f", "master", Decimal(5), key="forged")
    audit = combine([summarize(master), summarize(farm)])
    assert not audit.ok and any("never sent" in p for p in audit.problems)
    # A sending received with another amount: flagged.
    master.send("master", "farm:f", Decimal(10), key="m2")
    other = WalletTree.rooted(EntityKind.FARM, "f", parent="master")
    other.receive("farm:f", "master", Decimal(60), key="m1")
    other.receive("farm:f", "master", Decimal(11), key="m2")
    audit = combine([summarize(master), summarize(other)])
    assert not audit.ok and any("received 11" in p for p in audit.problems)


@pytest.mark.slow
def test_paced_replay_bar_by_bar_equals_full_speed_batches():
    """--speed N sends one bar at a time when its time comes; the results equal --speed max."""
    config = load_config(ROOT / "configs" / "demo.yaml")
    bars = _demo_bars(config, 800)
    paced = run_paper(config, bars=bars, local=True, speed=1e12)  # 1 h bars at 1e12 x: no waiting
    fast = run_paper(config, bars=bars, local=True, speed="max")
    assert paced.bars == fast.bars == 800
    a, b = _comparable(paced.report), _comparable(fast.report)
    assert a == b and sum(x["trade_count"] for f in a["farms"] for x in f["agents"]) > 5


def _goal_config(every: int, inline: bool = False):
    raw = parse_yaml((ROOT / "configs" / "demo.yaml").read_text(), "demo")
    raw["data"]["path"] = str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")
    raw["checkpoint"] = {"every_bars": every}
    raw["goals"] = [
        {"name": "gator-300", "type": "profit_target", "target": {"profit": "300"}, "assign": [{"agent": "gator-13-8-5"}]},
        {"name": "darvas-10", "type": "trade_volume", "target": {"trades": 10}, "assign": [{"farm": "breakout"}], "on_complete": "none"},
        {"name": "never", "type": "profit_target", "target": {"profit": "1000000"}, "assign": [{"farm": "price-action"}], "deadline": {"bars": 500}},
    ]
    if inline:
        for farm in raw["farms"]:
            farm["runtime"] = {"agents": "inline"}
    return config_from_dict(raw)


@pytest.mark.slow
def test_a_completed_goal_collects_the_agents_profit_to_the_master_once():
    config = _goal_config(every=1)
    bars = _demo_bars(config, 1500)
    result = run_paper(config, bars=bars, local=True)
    goals = {g["name"]: g for g in result.report["goals"]}
    gator, darvas, never = goals["gator-300"], goals["darvas-10"], goals["never"]
    assert gator["status"] == "completed" and gator["progress"] == "100" and gator["completing_trade"]
    assert darvas["status"] == "completed" and darvas["collected"] == "0"  # on_complete: none
    assert never["status"] == "failed" and Decimal(never["progress"]) < 100
    # Checked every bar: the collection happens at the close of the completing trade's
    # bar, and takes exactly the profit above the agent's principal (34,200).
    collected = Decimal(gator["collected"])
    assert collected >= Decimal("300")
    assert Decimal(result.report["master"]["cash"]) == Decimal("10000") + collected
    assert result.audit.ok and result.audit.residual == 0
    # The money left the agent: its equity plus what was collected is what it earned.
    agent = result.report["farms"][0]["agents"][0]
    earned = sum(Decimal(t["pnl"]) for t in agent["trades"])
    assert abs(Decimal(agent["equity"]) + collected - Decimal("34200") - earned - Decimal(agent["unrealized_pnl"])) < Decimal("0.0001")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::cival.session.PaceWarning")  # paced only to feed bar by bar
def test_goals_act_at_the_same_bars_whatever_the_batching_and_wherever_agents_run():
    config = _goal_config(every=10)
    bars = _demo_bars(config, 1500)
    runs = [
        run_paper(config, bars=bars, local=True, speed="max", batch_size=10_000),
        run_paper(config, bars=bars, local=True, speed=1e12),  # one bar at a time
        run_paper(_goal_config(every=10, inline=True), bars=bars, local=True),
    ]
    reports = [_comparable(r.report) for r in runs]
    assert reports[0] == reports[1] == reports[2]
    assert any(g["status"] == "completed" and Decimal(g["collected"]) > 0 for g in reports[0]["goals"])


@pytest.mark.slow
def test_a_checkpoint_delivered_again_collects_nothing_more():
    config = _goal_config(every=1)
    cluster = LocalCluster(cluster_spec(config))
    cluster.fund()
    trades = []
    goals = None
    for i, batch in enumerate(replay_batches(_demo_bars(config, 1500), "max", 1)):
        updates = cluster.submit(batch)
        trades = [t for u in updates for t in u.trades]
        now = timestamp_of(int(batch.ts[-1]))
        goals = cluster.checkpoint(trades, i + 1, now, {})
        if trades and any(g["status"] == "completed" and g["name"] == "gator-300" for g in goals):
            break
    before = combine(cluster.summaries())
    # The same checkpoint again (a retried call): the goal does not fire twice.
    again = cluster.checkpoint(trades, i + 1, now, {})
    assert again == goals
    after = combine(cluster.summaries())
    assert (after.transactions, after.cash) == (before.transactions, before.cash)
    # And the Collect itself delivered twice books nothing.
    msg = Collect(id="goal:gator-300>agent:gator-13-8-5", source="agent:gator-13-8-5", basis="profit")
    farm = cluster.farms["trend"]
    ports = cluster.farm_ports["trend"]
    transfer = ports.agent_collect(msg)
    assert transfer == cluster.agents["gator-13-8-5"].on_collect(msg)
    farm.goal_taken(msg, transfer)
    cluster.master.on_goal_transfer(msg, farm.run_goal_collect(ports, msg))
    assert combine(cluster.summaries()).transactions == before.transactions
    assert {g["name"]: g["collected"] for g in cluster.goal_states()} == {g["name"]: g["collected"] for g in goals}


def _fills_after(agent, when):
    return [f for f in agent.fills if f.at > when]


@pytest.mark.slow
def test_a_farm_at_its_drawdown_limit_exits_at_the_next_open_and_stops_trading():
    config = load_config(ROOT / "configs" / "demo.yaml")  # farm_max_drawdown_pct: 25
    cluster = LocalCluster(cluster_spec(config))
    result = run_paper(config, local=True)
    farms = {f["name"]: f for f in result.report["farms"]}
    assert all(f["halted"] for f in farms.values())
    assert result.audit.ok and result.audit.residual == 0
    # Replay again by hand to look at the fills around the halt.
    cluster.fund()
    bars = session_bars(config)
    every = config.checkpoint.every_bars
    halted_at = {}
    for i, batch in enumerate(replay_batches(bars, "max", every)):
        updates = cluster.submit(batch)
        now = timestamp_of(int(batch.ts[-1]))
        cluster.checkpoint([t for u in updates for t in u.trades], (i + 1) * every, now, {}, {u.name: u.report for u in updates})
        for name, farm in cluster.farms.items():
            if farm.halted and name not in halted_at:
                halted_at[name] = now
    assert set(halted_at) == {"trend", "breakout", "price-action"}
    index = list(bars.index)
    for name, farm in cluster.farms.items():
        assert "farm drawdown" in farm.halted and "limit of 25.00 %" in farm.halted
        agent = cluster.agents[farm.agent_names[0]]
        after = _fills_after(agent, halted_at[name])
        assert all(f.side == "sell" for f in after) and len(after) <= 1
        if after:  # the position held at the halt was sold at the very next open
            next_open = index[index.index(pd.Timestamp(halted_at[name])) + 1]
            assert after[0].at == next_open.to_pydatetime() and after[0].reason == "signal"
        assert not agent.broker.in_position
    assert {f["name"]: f["trade_count"] for f in farms.values()} == {
        n: len(cluster.agents[f.agent_names[0]].executions) // 2 for n, f in cluster.farms.items()
    }


@pytest.mark.slow
def test_the_master_daily_loss_limit_halts_every_farm():
    raw = parse_yaml((ROOT / "configs" / "demo.yaml").read_text(), "demo")
    raw["data"]["path"] = str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")
    raw["risk"] = {"master_daily_loss_pct": 1}
    raw["goals"] = []
    config = config_from_dict(raw)
    result = run_paper(config, local=True, bars=_demo_bars(config, 3000))
    master = result.report["master"]
    assert len(master["halts"]) == 1 and "daily loss" in master["halts"][0]["reason"]
    for farm in result.report["farms"]:
        assert farm["halted"] == master["halts"][0]["reason"]
        assert farm["halts"][0]["at"] == master["halts"][0]["at"]
        assert all(not a["positions"] for a in farm["agents"])  # everyone exited
    assert result.audit.ok and result.audit.residual == 0


def test_halt_and_resume_by_hand():
    raw = parse_yaml((ROOT / "configs" / "demo.yaml").read_text(), "demo")
    raw["data"]["path"] = str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")
    raw["risk"] = {}
    raw["goals"] = []
    config = config_from_dict(raw)
    cluster = LocalCluster(cluster_spec(config))
    cluster.fund()
    batches = list(replay_batches(_demo_bars(config, 3000), "max", 500))
    cluster.submit(batches[0])
    gator = cluster.agents["gator-13-8-5"]
    cluster.halt("agent:gator-13-8-5", reason="checking something")
    before = len(gator.fills)
    cluster.submit(batches[1])
    during = gator.fills[before:]
    assert all(f.side == "sell" for f in during) and len(during) <= 1 and not gator.broker.in_position
    assert gator.halts == [{"reason": "checking something", "at": gator.halts[0]["at"], "resumed": False}]
    cluster.halt("agent:gator-13-8-5", reason="checked", resume=True)
    count = len(gator.fills)
    for batch in batches[2:]:
        cluster.submit(batch)
    assert any(f.side == "buy" for f in gator.fills[count:])  # trading again
    assert gator.halted is None and gator.halts[-1]["resumed"] is True
    assert combine(cluster.summaries()).ok


def test_scheduled_rebalancing_moves_free_cash_to_the_policys_shares():
    config = _rebalance_config({"policy": "equal"})
    cluster = LocalCluster(cluster_spec(config))
    cluster.fund()
    for i, batch in enumerate(replay_batches(_demo_bars(config, 400), "max", 100)):
        cluster.submit(batch)
        bars = (i + 1) * 100
        if bars % 200 == 0:
            cash = {n: a.books.cash(a.ref).amount for n, a in cluster.agents.items()}
            flat = [n for n, a in cluster.agents.items() if not a.broker.in_position]
            pool = cluster.farms["trend"].books.cash("farm:trend").amount + sum(cash.values())
            cluster.checkpoint([], bars, timestamp_of(int(batch.ts[-1])), {}, {})
            after = {n: a.books.cash(a.ref).amount for n, a in cluster.agents.items()}
            # Free cash only moved: each agent now holds exactly its equal share of the pool.
            shares = split_equal(pool, ["fast", "mid", "slow"], Decimal("1e-8")).shares
            assert after == shares, (cash, after, flat)
            assert combine(cluster.summaries()).ok
            # Delivered again (a retried checkpoint): nothing more moves.
            cluster.checkpoint([], bars, timestamp_of(int(batch.ts[-1])), {}, {})
            assert {n: a.books.cash(a.ref).amount for n, a in cluster.agents.items()} == after


@pytest.mark.slow
def test_performance_rebalancing_favours_the_better_agent_the_same_inline_or_not():
    policy = {"policy": "performance", "metric": "return", "lookback_bars": 200, "min_share": 0.1}
    bars = _demo_bars(_rebalance_config(policy), 2000)
    actors = run_paper(_rebalance_config(policy), bars=bars, local=True)
    inline = run_paper(_rebalance_config(policy, inline=True), bars=bars, local=True)
    assert _comparable(actors.report) == _comparable(inline.report)
    farm = actors.report["farms"][0]
    assert len(farm["rebalances"]) == 2000 // 200
    # Some rebalance moved money between agents, and every one kept the books exact.
    assert any(Decimal(d) != 0 for r in farm["rebalances"] for d in r["moves"].values())
    assert actors.audit.ok and actors.audit.residual == 0
    # The equal policy, on the same bars, ends elsewhere: the policy mattered.
    equal = run_paper(_rebalance_config({"policy": "equal"}), bars=bars, local=True)
    assert equal.report["ledger"]["total_equity"] != actors.report["ledger"]["total_equity"]


def test_rebalancing_must_fall_on_checkpoints():
    with pytest.raises(Exception, match=r"farms\[0\]\.rebalance\.every_bars: 150 is not a multiple of checkpoint\.every_bars \(100\)"):
        _rebalance_config({"policy": "equal"}, every=150)


@pytest.mark.slow
def test_collect_all_halts_the_agents_then_takes_all_their_cash_at_the_next_checkpoint():
    raw = parse_yaml((ROOT / "configs" / "demo.yaml").read_text(), "demo")
    raw["data"]["path"] = str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")
    raw["risk"] = {}
    raw["checkpoint"] = {"every_bars": 10}
    raw["goals"] = [
        {"name": "enough", "type": "profit_target", "target": {"profit": "300"}, "assign": [{"agent": "gator-13-8-5"}], "on_complete": "collect_all"}
    ]
    config = config_from_dict(raw)
    for inline in (False, True):
        result = run_paper(config, bars=_demo_bars(config, 1500), local=True, inline=inline)
        goal = result.report["goals"][0]
        gator = result.report["farms"][0]["agents"][0]
        assert goal["status"] == "completed" and gator["halted"] == "goal enough completed: collect_all"
        # Flat, emptied, and everything it had is with the master.
        assert gator["positions"] == [] and Decimal(gator["cash"]) == 0
        assert Decimal(result.report["master"]["cash"]) == Decimal("10000") + Decimal(goal["collected"])
        assert Decimal(goal["collected"]) > Decimal("34200")  # principal and profit
        # Halted at the checkpoint after the completing trade (at most 10 bars on), it sold at
        # the next open and traded no more.
        completed = pd.Timestamp(goal["completed_at"])
        assert pd.Timestamp(gator["trades"][-1]["exit_time"]) <= completed + pd.Timedelta(hours=11)
        assert result.audit.ok and result.audit.residual == 0


def test_master_rebalancing_moves_free_cash_between_farms_by_its_policy():
    config = _master_rebalance_config()
    cluster = LocalCluster(cluster_spec(config))
    cluster.fund()
    checked = 0
    for i, batch in enumerate(replay_batches(_demo_bars(config, 1200), "max", 120)):
        cluster.submit(batch)
        bars = (i + 1) * 120
        now = timestamp_of(int(batch.ts[-1]))
        if bars % 240:
            cluster.checkpoint([], bars, now, {}, {})
            continue
        free = {n: f.run_info(cluster.farm_ports[n])[0] for n, f in cluster.farms.items()}
        pool = cluster.master.books.cash("master").amount + sum(free.values())
        cluster.checkpoint([], bars, now, {}, {})
        after = {n: f.run_info(cluster.farm_ports[n])[0] for n, f in cluster.farms.items()}
        # The master's fixed weights 0.4 / 0.3 / 0.3 after its 10 % reserve, of the pool.
        expected = split(pool, {"trend": Decimal("0.4"), "breakout": Decimal("0.3"), "price-action": Decimal("0.3")}, Decimal("1e-8"), Decimal(10))
        assert after == expected.shares
        assert cluster.master.books.cash("master").amount == expected.reserve
        assert combine(cluster.summaries()).ok and combine(cluster.summaries()).in_flight == 0
        checked += 1
    assert checked == 5


@pytest.mark.slow
def test_master_rebalancing_is_the_same_inline_or_in_agent_actors():
    policy = {"policy": "performance", "metric": "return", "lookback_bars": 240, "min_share": 0.1, "reserve_pct": 5}
    bars = _demo_bars(_master_rebalance_config(policy), 2400)
    a = run_paper(_master_rebalance_config(policy), bars=bars, local=True)
    b = run_paper(_master_rebalance_config(policy, inline=True), bars=bars, local=True)
    assert _comparable(a.report) == _comparable(b.report)
    moves = a.report["master"]["rebalances"]
    assert len(moves) == 10 and any(Decimal(d) != 0 for r in moves for d in r["moves"].values())
    assert a.audit.ok and a.audit.residual == 0


def test_an_agents_own_stop_loss_and_position_limit_apply_as_in_the_backtest(shared_data):
    path = shared_data / "daily_us_equities" / "backtrader_NVDA.csv"
    bars = load_bars(path)
    raw = {
        "name": "risky",
        "master": {"initial_deposit": "10000"},
        "risk": {"max_position_fraction": 0.9, "stop_loss_pct": 20},
        "farms": [
            {
                "name": "b",
                "type": "breakout",
                "agents": [
                    {"name": "careful", "strategy": "darvas", "risk": {"stop_loss_pct": 3, "take_profit_pct": 8, "max_position_fraction": 0.5}},
                    {"name": "default", "strategy": "darvas"},
                ],
            }
        ],
        "costs": {"fee_bps": 10, "slippage_bps": 5},
        "data": {"source": "file", "path": str(path)},
    }
    result = run_paper(config_from_dict(raw), bars=bars, local=True)
    agents = {a["name"]: a for a in result.report["farms"][0]["agents"]}
    for name, model in (
        ("careful", FillModel(cash=5000.0, fraction=0.5, stop_loss_pct=3.0, take_profit_pct=8.0)),
        ("default", FillModel(cash=5000.0, fraction=0.9, stop_loss_pct=20.0)),  # the cluster's limits
    ):
        expected = backtest("darvas", bars, {}, model).trades
        got = agents[name]["trades"]
        assert len(got) == len(expected) > 10
        assert [Decimal(t["exit_price"]) for t in got] == [Decimal(repr(float(p))) for p in expected["exit_price"]]
        assert [Decimal(t["qty"]) for t in got] == [Decimal(repr(float(q))) for q in expected["qty"]]


def test_money_moved_by_rebalancing_is_not_counted_as_a_return():
    policy = {"policy": "performance", "metric": "return", "lookback_bars": 2000, "min_share": 0.1}
    config = _rebalance_config(policy)
    cluster = LocalCluster(cluster_spec(config))
    cluster.fund()
    for i, batch in enumerate(replay_batches(_demo_bars(config, 2000), "max", 100)):
        cluster.submit(batch)
        cluster.checkpoint([], (i + 1) * 100, timestamp_of(int(batch.ts[-1])), {}, {})
    farm = cluster.farms["trend"]
    assert farm.rebalances and any(Decimal(d) != 0 for r in farm.rebalances for d in r["moves"].values())
    # Hourly BTC never moves 20 % in a bar: a jump that size would be a flow taken for a return.
    for name, returns in farm._returns.items():
        assert returns and max(abs(r) for r in returns) < 0.2, name
    for agent in cluster.agents.values():
        assert agent.performance.max_drawdown < 0.9


@pytest.mark.slow
def test_rebalancing_with_liquidate_sells_first_then_splits_everything():
    raw = _rebalance_config({"policy": "equal"}).model_dump(mode="json")
    raw["farms"][0]["rebalance"] = {"every_bars": 200, "liquidate": True}
    config = config_from_dict(raw)
    cluster = LocalCluster(cluster_spec(config))
    cluster.fund()
    paused_seen = rebalanced_flat = 0
    for i, batch in enumerate(replay_batches(_demo_bars(config, 2000), "max", 100)):
        cluster.submit(batch)
        bars = (i + 1) * 100
        farm = cluster.farms["trend"]
        was_paused = bool(farm._paused)
        if was_paused:
            # Paused at the last checkpoint: everyone sold at the first open since.
            assert not any(a.broker.in_position for a in cluster.agents.values())
            pool = farm.books.cash(farm.ref).amount + sum(a.books.cash(a.ref).amount for a in cluster.agents.values())
        cluster.checkpoint([], bars, timestamp_of(int(batch.ts[-1])), {}, {})
        if farm._paused:
            paused_seen += 1
            assert all(cluster.agents[n].halted == "paused: selling to rebalance" for n in farm._paused)
        if was_paused:
            shares = split_equal(pool, ["fast", "mid", "slow"], Decimal("1e-8")).shares
            assert {n: a.books.cash(a.ref).amount for n, a in cluster.agents.items()} == shares
            assert all(a.halted is None for a in cluster.agents.values())  # trading again
            rebalanced_flat += 1
    assert paused_seen > 0 and rebalanced_flat >= paused_seen - 1  # the last pause may be at the end
    assert combine(cluster.summaries()).ok
    inline_raw = dict(raw)
    inline_raw["farms"] = [dict(raw["farms"][0], runtime={"agents": "inline"})]
    bars = _demo_bars(config, 2000)
    assert _comparable(run_paper(config, bars=bars, local=True).report) == _comparable(
        run_paper(config_from_dict(inline_raw), bars=bars, local=True).report
    )


def _spiky_file(folder) -> str:
    """The bundled bars' first 200 rows, the 100th with a close 1000 times the one before."""
    frame = pd.read_csv(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz", nrows=200)
    columns = [c for c in frame.columns if c.lower() in ("open", "high", "low", "close")]
    frame.loc[99, columns] = frame.loc[99, columns] * 1000
    path = folder / "spiky.csv"
    frame.to_csv(path, index=False)
    return str(path)


def test_session_bars_take_the_move_limit_from_the_config(tmp_path):
    from cival.data import DataError

    path = _spiky_file(tmp_path)
    raw = {"name": "moves", "master": {"initial_deposit": 1000}, "data": {"source": "file", "path": path},
           "farms": [{"name": "f", "type": "breakout", "agents": [{"name": "a", "strategy": "darvas"}]}]}
    config = config_from_dict(raw)
    assert config.data.max_move == 10.0
    with pytest.raises(DataError, match=r"row 100 \(line 101, .*\): price moved beyond 10x the previous close"):
        session_bars(config)
    assert len(session_bars(config, max_move=None)) == 200  # --max-move off
    off = config_from_dict({**raw, "data": {"source": "file", "path": path, "max_move": None}})
    assert len(session_bars(off)) == 200
    assert len(session_bars(config_from_dict({**raw, "data": {"source": "file", "path": path, "max_move": 2000}}))) == 200
    # Another file for a synthetic config gets the default for files.
    synthetic = config_from_dict({**raw, "data": {"source": "synthetic", "bars": 50}})
    assert synthetic.data.max_move is None and len(session_bars(synthetic)) == 50
    with pytest.raises(DataError, match="moved beyond 10x"):
        session_bars(synthetic, data=path)
