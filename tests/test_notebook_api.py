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
        tree = cluster.wallet_tree()
        assert list(tree.index) == ["master", "trend", "gator-13-8-5", "breakout", "darvas-20-3", "price-action", "elliott-5pct"]
        assert list(tree["kind"]) == ["master", "farm", "agent", "farm", "agent", "farm", "agent"]
        farms = tree[tree["kind"] == "farm"]
        assert tree.loc["master", "equity"] == tree.loc["master", "cash"] + sum(farms["equity"])
        trades = cluster.trades()
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
        before = cluster.wallet_tree()
        cluster.allocate("trend", "5000")
        after = cluster.wallet_tree()
        assert after.loc["master", "cash"] == before.loc["master", "cash"] - 5000
        # The farm splits it by its policy: equal, keeping a 5 % reserve.
        assert after.loc["trend", "cash"] == before.loc["trend", "cash"] + 250
        assert after.loc["gator-13-8-5", "cash"] == before.loc["gator-13-8-5", "cash"] + 4750
        with pytest.raises(Exception, match=r"has 5,000.00 USD available"):
            cluster.allocate("breakout", "5000.01")
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
