"""``from cival import Cluster``: driving a cluster by hand gives what ``run_paper`` gives,
and the tables it shows add up."""

from decimal import Decimal

import pytest

from cival import Cluster
from cival.config import load_config
from cival.session import run_paper, session_bars
from tests.conftest import ROOT
from tests.helpers import comparable

DEMO = ROOT / "configs" / "demo.yaml"


@pytest.mark.slow
def test_stepping_by_hand_equals_a_whole_session():
    bars = session_bars(load_config(DEMO), max_bars=2000)
    with Cluster.from_config(DEMO, bars=bars) as cluster:
        for n in (7, 500, 33, 1, 460):  # steps that cut across the checkpoints
            cluster.step(n)
        assert cluster.seen == 1001 and not cluster.done
        cluster.run()
        assert cluster.done and cluster.seen == 2000
        by_hand = cluster.report()
    whole = run_paper(cluster.config, bars=bars, local=True).report
    a, b = comparable(by_hand), comparable(whole)
    for r in (a, b):
        r.pop("data"), r.pop("interrupted")
    assert a == b


def test_tables_add_up_and_halts_act():
    with Cluster.from_config(DEMO, bars=session_bars(load_config(DEMO), max_bars=3000)) as cluster:
        cluster.step(1000)
        tree = cluster.wallet_tree(exact=True)
        assert list(tree.index) == ["master", "trend", "gator-13-8-5", "breakout", "darvas-20-3", "price-action", "elliott-5pct"]
        assert list(tree["kind"]) == ["master", "farm", "agent", "farm", "agent", "farm", "agent"]
        farms = tree[tree["kind"] == "farm"]
        assert tree.loc["master", "equity"] == tree.loc["master", "cash"] + sum(farms["equity"])
        trades = cluster.trades(exact=True)
        assert len(trades) == sum(tree[tree["kind"] == "agent"]["trades"])
        gator = trades[trades["agent"] == "gator-13-8-5"]
        assert sum(gator["pnl"]) == sum(Decimal(t["pnl"]) for t in cluster.report()["farms"][0]["agents"][0]["trades"])
        goals = cluster.goals()
        assert list(goals.index) == ["trend-profit", "breakout-volume", "price-action-quality"]

        cluster.halt("gator-13-8-5", "looking into it")
        halted_at = cluster.last
        cluster.step(500)
        assert cluster.wallet_tree().loc["gator-13-8-5", "halted"] == "looking into it"
        later = cluster.trades()
        gator_later = later[(later["agent"] == "gator-13-8-5") & (later["exit_time"] > halted_at)]
        assert len(gator_later) <= 1 and not any(gator_later["entry_time"] > halted_at)  # at most the exit of the open one
        assert not cluster.report()["farms"][0]["agents"][0]["positions"]
        transfer = cluster.collect("breakout")
        assert transfer.amount > 0 and cluster.audit().ok
        with pytest.raises(Exception, match="no farm or agent named 'nobody'"):
            cluster.halt("nobody")


def test_allocating_by_hand_goes_through_the_same_checks():
    with Cluster.from_config(DEMO, bars=session_bars(load_config(DEMO), max_bars=200)) as cluster:
        cluster.step(100)
        before = cluster.wallet_tree(exact=True)
        booked = cluster.allocate("trend", "5000")
        assert (booked.kind, booked.source, booked.target, booked.amount) == ("allocate", "master", "farm:trend", Decimal(5000))
        after = cluster.wallet_tree(exact=True)
        assert after.loc["master", "cash"] == before.loc["master", "cash"] - 5000
        # The farm splits it by its policy: equal, keeping a 5 % reserve.
        assert after.loc["trend", "cash"] == before.loc["trend", "cash"] + 250
        assert after.loc["gator-13-8-5", "cash"] == before.loc["gator-13-8-5", "cash"] + 4750
        with pytest.raises(Exception, match=r"the master has 5,000.00 USD of free cash, less than the 5,000.01 asked.*collect.*deposit"):
            cluster.allocate("breakout", "5000.01")
        assert cluster.wallet_tree(exact=True).equals(after)  # refused: nothing moved
        with pytest.raises(Exception, match="an allocation must be positive, got -1"):
            cluster.allocate("breakout", "-1")
        cluster.set_policy("trend", {"policy": "performance", "min_share": 0.5})
        with pytest.raises(Exception):
            cluster.set_policy("trend", {"policy": "fixed", "weights": {"nobody": 1}})
        assert cluster.audit().ok


def test_a_cluster_by_hand_is_a_run_in_the_store_with_its_events(tmp_path):
    from cival.session import rebuild_report
    from cival.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "store.sqlite3")
    store.migrate()
    seen = []
    cluster = Cluster.from_config(DEMO, bars=session_bars(load_config(DEMO), max_bars=800), store=store)
    cluster.events.subscribe(seen.append)
    cluster.step(400)
    cluster.halt("farm:trend", "looking")
    assert store.run(cluster.run_id).status == "running"
    cluster.close()
    record = store.run(cluster.run_id)
    assert record.status == "interrupted" and record.meta["bars"] == 400  # closed with bars left
    rebuilt, audit = rebuild_report(store, cluster.run_id)
    assert audit.ok and rebuilt["farms"][0]["halted"] == "looking" and rebuilt["bars"] == 400
    stored = store.events(cluster.run_id)
    # Subscribed after the first events were published: what it got is the tail, in order.
    assert [e.seq for e in seen] == [s.seq for s in stored][-len(seen):] and seen[-1].type == "run_finished"
    assert any(e.type == "halt" and e.entity == "farm:trend" for e in seen)
    store.close()


def test_money_by_hand_moves_what_its_name_says_and_returns_what_was_booked():
    with Cluster(DEMO, bars=session_bars(load_config(DEMO), max_bars=1200)) as cluster:  # a path is a config
        cluster.step(600)
        tree = cluster.wallet_tree(exact=True)
        own, agent = tree.loc["breakout", "cash"], tree.loc["darvas-20-3", "cash"]
        # An amount beyond the farm's own cash comes from its agents' (the farm's own first).
        amount = own + (agent / 4).quantize(Decimal("0.01"))
        booked = cluster.collect("breakout", amount)
        assert (booked.kind, booked.source, booked.target, booked.amount) == ("collect", "farm:breakout", "master", amount)
        after = cluster.wallet_tree(exact=True)
        assert after.loc["breakout", "cash"] == 0
        assert after.loc["darvas-20-3", "cash"] == agent - (amount - own)
        assert after.loc["master", "cash"] == tree.loc["master", "cash"] + amount
        # More than the farm's free cash: refused before anything moves, saying what there is.
        with pytest.raises(Exception, match=r"farm breakout has [\d,.]+ USD of free cash .*less than the 1,000,000.00 asked"):
            cluster.collect("breakout", "1000000")
        assert cluster.wallet_tree(exact=True).equals(after)
        # A deposit, then an allocation of it.
        deposit = cluster.deposit("2500.50")
        assert (deposit.kind, deposit.target, deposit.amount) == ("deposit", "master", Decimal("2500.50"))
        free = cluster.wallet_tree(exact=True).loc["master", "cash"]
        assert free == after.loc["master", "cash"] + Decimal("2500.50")
        assert cluster.allocate("trend", free).amount == free
        assert cluster.wallet_tree(exact=True).loc["master", "cash"] == 0
        audit = cluster.audit()
        assert audit.ok and audit.deposits == load_config(DEMO).master.initial_deposit + Decimal("2500.50")
        cluster.run()
        assert cluster.audit().ok


def test_tables_are_floats_to_plot_and_exact_on_request():
    with Cluster(load_config(DEMO), bars=session_bars(load_config(DEMO), max_bars=1500), persist=False) as cluster:
        empty = cluster.trades()
        assert len(empty) == 0 and empty["pnl"].dtype == "float64"
        cluster.run()
        tree, exact = cluster.wallet_tree(), cluster.wallet_tree(exact=True)
        for column in ("cash", "equity", "net_pnl", "fees"):
            assert tree[column].dtype == "float64"
            assert all(isinstance(v, Decimal) for v in exact[column])
            assert list(tree[column]) == [float(v) for v in exact[column]]
        trades, exact_trades = cluster.trades(), cluster.trades(exact=True)
        assert len(trades) > 10 and not trades.isna().any().any()
        assert trades["pnl"].dtype == "float64" and trades["pnl"].sum() == pytest.approx(float(sum(exact_trades["pnl"])))
        assert all(isinstance(v, Decimal) for v in exact_trades["pnl"])


def test_a_config_is_taken_as_a_path_a_model_or_a_mapping(tmp_path):
    from cival.session import Session, as_config

    config = load_config(DEMO)
    assert as_config(DEMO) == config and as_config(str(DEMO)) == config
    raw = config.model_dump(mode="json") | {"data": {"source": "synthetic", "bars": 100}}
    assert as_config(raw).farms == config.farms
    with pytest.raises(Exception, match="a config is a ClusterConfig, the path of a YAML file or a mapping, not int"):
        as_config(3)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="nowhere.yaml"):
        run_paper(tmp_path / "nowhere.yaml")
    result = run_paper(str(DEMO), bars=session_bars(config, max_bars=300), local=True, persist=False)
    assert result.report["bars"] == 300
    with Session(DEMO) as session:
        assert session.config == config
