"""Crash recovery on real Ray actors and a real PostgreSQL store.

The promise: a replay in which the master, a farm and an agent are each killed once (with
restart allowed) at random moments ends with exactly the trades, balances and goal
outcomes of the same run uninterrupted; the books audit; and the store holds every
ledger transaction and every event once, none missing. The cluster exercises everything
that carries state across calls: rebalancing by performance within a farm, selling to
rebalance (liquidate), the master's rebalancing by volatility, goals that collect the
profit or everything, a risk limit, an inline farm.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from cival.runtime import RayCluster  # noqa: E402
from cival.session import (  # noqa: E402
    rebuild_report,  # noqa: E402
    run_paper,
    session_bars,
)
from cival.store.postgres import PostgresStore  # noqa: E402
from tests.helpers import recovery_config  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("local_ray")]  # sessions on the module's Ray

BARS = 5000


@pytest.fixture(scope="module")
def store(postgres_url):
    s = PostgresStore(postgres_url)
    s.migrate()
    yield s
    s.close()


def _comparable(report):
    out = dict(report)
    out.pop("generated_at")
    out.pop("mode")
    return out


def _ledgers(store, run_id):
    """Every ledger of a run, transactions as (seq, type, key, postings); times left out
    (funding is stamped with the wall clock)."""
    return {
        source: [(t.seq, t.type, t.idempotency_key, t.postings) for t in store.transactions(run_id, source)]
        for source in store.node_sources(run_id)
    }


def test_killed_actors_come_back_and_the_run_ends_exactly_as_uninterrupted(store):
    config = recovery_config()
    bars = session_bars(config, max_bars=BARS)

    calm = run_paper(config, bars=bars, local=True, store=store)
    assert calm.audit.ok

    rng = random.Random(int(os.environ.get("CIVAL_RECOVERY_SEED", "20261201")))
    clusters: list[RayCluster] = []
    killed: dict[str, tuple[float, int, int]] = {}
    problems: list[BaseException] = []

    def killer() -> None:
        try:
            while not clusters or clusters[0].master is None or not clusters[0].farms:
                time.sleep(0.01)
            cluster = clusters[0]
            time.sleep(1.0)  # funding done, bars flowing
            targets = [("master", cluster.master), ("farm:trend", cluster.farms["trend"]), ("agent:darvas-b", cluster.agents["darvas-b"])]
            rng.shuffle(targets)
            for name, handle in targets:
                time.sleep(rng.uniform(0.2, 1.0))
                pid = ray.get(handle.process.remote())
                ray.kill(handle, no_restart=False)
                at = time.monotonic()
                # Back, in a new process (ray.kill returns before the process is gone; a call
                # after the restart waits for it).
                new, deadline = pid, at + 120
                while new == pid and time.monotonic() < deadline:
                    time.sleep(0.1)
                    new = ray.get(handle.process.remote(), timeout=120)
                killed[name] = (at, pid, new)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            problems.append(exc)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    stormy = run_paper(config, bars=bars, store=store, on_cluster=clusters.append)
    finished = time.monotonic()
    thread.join(timeout=60)
    assert not problems, problems
    assert set(killed) == {"master", "farm:trend", "agent:darvas-b"}, killed
    assert all(before != after for _, before, after in killed.values()), "each actor restarted in a new process"
    assert all(at < finished for at, _, _ in killed.values()), "every kill happened during the session"

    # The same run: trades, balances, goals, halts, rebalances, the reconciled books.
    assert _comparable(stormy.report) == _comparable(calm.report)
    assert stormy.audit.ok and stormy.audit.residual == 0
    goals = {g["name"]: g["status"] for g in stormy.report["goals"]}
    assert goals["gator-profit"] == "completed"

    # The store: every ledger transaction once, the same as the calm run's.
    stormy_ledgers, calm_ledgers = _ledgers(store, stormy.run_id), _ledgers(store, calm.run_id)
    assert stormy_ledgers == calm_ledgers
    assert sum(len(v) for v in stormy_ledgers.values()) == stormy.report["ledger"]["transactions"]
    # Every event once, numbered 1..N without gaps, the same events as the calm run's.
    stormy_events, calm_events = store.events(stormy.run_id), store.events(calm.run_id)
    assert [e.seq for e in stormy_events] == list(range(1, len(stormy_events) + 1))
    assert len({e.id for e in stormy_events}) == len(stormy_events)

    def content(events):
        return {e.id: (e.type, e.entity, e.data) for e in events if e.type != "run_started"}  # its mode differs

    assert content(stormy_events) == content(calm_events)
    for table in ("fills", "orders", "fund_allocations", "halts"):
        strip = lambda rows: [{k: v for k, v in r.items() if k not in ("run_id", "at")} for r in rows]  # noqa: E731
        assert strip(store.rows(table, stormy.run_id)) == strip(store.rows(table, calm.run_id)), table
    # And the report rebuilt from the store alone is the live one.
    rebuilt, audit = rebuild_report(store, stormy.run_id)
    assert rebuilt == stormy.report and audit.ok
