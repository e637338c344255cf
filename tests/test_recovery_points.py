"""Crashes at chosen points, in one process: a node dies just before or just after one of
its commits, is rebuilt from the store, and its caller retries the call it was making,
as Ray does for a restarted actor. Whatever the node and the point (funding, a batch, a
checkpoint's halts, rebalances, releases, goal collections, the moves of a farm that
sells to rebalance), the session ends exactly as uninterrupted: the same report, the
same ledgers, the same events.

The Ray test (test_recovery.py) kills real actors at random moments; this one walks the
crash points deliberately, so that every kind of step is covered every time.
"""

from __future__ import annotations

from collections import Counter

import pytest

import cival.session as session
from cival.runtime import LocalCluster, _LocalFarmPorts, _LocalMasterPorts
from cival.session import run_paper, session_bars
from cival.store.sqlite import SqliteStore
from tests.helpers import recovery_config

pytestmark = pytest.mark.slow  # every test here runs a session, a cluster or the command line of its own

BARS = 2000


class Crash(Exception):
    """A node died (raised from its commit: before or after the write)."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.source = source


def _retry(cluster: LocalCluster, callees: set[str], call):  # type: ignore[no-untyped-def]
    """Make ``call``; if one of ``callees`` died in it, rebuild that node and call again."""
    while True:
        try:
            return call()
        except Crash as crash:
            if crash.source not in callees:
                raise
            cluster.restore(crash.source)


class _FarmPorts(_LocalFarmPorts):
    def agent_allocate(self, msg):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, {msg.target}, lambda: super(_FarmPorts, self).agent_allocate(msg))

    def collect_from(self, msg):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, {msg.source}, lambda: super(_FarmPorts, self).collect_from(msg))

    def agent_halt(self, msg):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, {msg.entity}, lambda: super(_FarmPorts, self).agent_halt(msg))


class _MasterPorts(_LocalMasterPorts):
    def _of(self, agent: str) -> set[str]:
        return {f"farm:{self.cluster.master.farm_of[agent.removeprefix('agent:')]}"}

    def farm_allocate(self, msg):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, {msg.target}, lambda: super(_MasterPorts, self).farm_allocate(msg))

    def farm_collect(self, msg):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, {msg.source}, lambda: super(_MasterPorts, self).farm_collect(msg))

    def farm_halt(self, msg):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, {msg.entity}, lambda: super(_MasterPorts, self).farm_halt(msg))

    def agent_halt(self, msg):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, self._of(msg.entity), lambda: super(_MasterPorts, self).agent_halt(msg))

    def farm_rebalance(self, farms, bars, now):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, {f"farm:{f}" for f in farms}, lambda: super(_MasterPorts, self).farm_rebalance(farms, bars, now))

    def farm_info(self, farm):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, {f"farm:{farm}"}, lambda: super(_MasterPorts, self).farm_info(farm))

    def farm_release(self, msg):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, {msg.source}, lambda: super(_MasterPorts, self).farm_release(msg))

    def goal_collect(self, msg):  # type: ignore[no-untyped-def]
        return _retry(self.cluster, self._of(msg.source), lambda: super(_MasterPorts, self).goal_collect(msg))


class CrashingCluster(LocalCluster):
    """The in-process cluster whose node ``victim`` dies once, at its ``at``-th commit."""

    victim = ""
    at = 0
    before = False
    crashed: list[str] = []

    def __init__(self, spec, store=None, run_id=None):  # type: ignore[no-untyped-def]
        super().__init__(spec, store, run_id)
        self.ports = _MasterPorts(self)
        self.commits: Counter[str] = Counter()

    def _ports(self, name):  # type: ignore[no-untyped-def]
        ports = super()._ports(name)  # inline agents die with their farm: nothing to retry
        return _FarmPorts(self, name) if isinstance(ports, _LocalFarmPorts) else ports

    def commit(self, node):  # type: ignore[no-untyped-def]
        source = self.journals[id(node)].source
        self.commits[source] += 1
        hit = not self.crashed and source == self.victim and self.commits[source] == self.at
        if hit and self.before:
            self.crashed.append(f"{source} before commit {self.at}")
            raise Crash(source)
        super().commit(node)
        if hit:
            self.crashed.append(f"{source} after commit {self.at}")
            raise Crash(source)

    # The driver's calls: retried on a rebuilt master (or farm, or agent).
    def fund(self, *args, **kw):  # type: ignore[no-untyped-def]
        return _retry(self, {"master"}, lambda: super(CrashingCluster, self).fund(*args, **kw))

    def checkpoint(self, *args, **kw):  # type: ignore[no-untyped-def]
        return _retry(self, {"master"}, lambda: super(CrashingCluster, self).checkpoint(*args, **kw))

    def submit_farm(self, name, batch):  # type: ignore[no-untyped-def]
        return _retry(self, {f"farm:{name}"}, lambda: super(CrashingCluster, self).submit_farm(name, batch))

    def submit_agent(self, name, batch):  # type: ignore[no-untyped-def]
        return _retry(self, {f"agent:{name}"}, lambda: super(CrashingCluster, self).submit_agent(name, batch))


def _ledgers(store, run_id):  # type: ignore[no-untyped-def]
    return {
        s: [(t.seq, t.idempotency_key, t.postings) for t in store.transactions(run_id, s)] for s in store.node_sources(run_id)
    }


AFTER = 240
"""Bars a crash session runs past the batch of its crash (ten checkpoints: rebalances of
every farm and of the master, goals and risk checks on the rebuilt node)."""

LENGTHS = (600, 1200, BARS)
"""The session lengths: each crash session runs the shortest one that has AFTER bars past
its crash point, against a calm session of the same length (the first bars of a session
do not depend on its length: batches end on checkpoints)."""


@pytest.fixture(scope="module")
def calm(tmp_path_factory):
    """The calm session of BARS bars, with how many bars had run when each node made each
    of its commits; ``calm.of(length)`` is the calm session of that many bars."""
    store = SqliteStore(tmp_path_factory.mktemp("calm") / "store.sqlite3")
    store.migrate()
    config = recovery_config()
    bars = session_bars(config, max_bars=BARS)
    clusters: list[CrashingCluster] = []
    reached: list[tuple[int, Counter[str]]] = []
    counting = type("Counting", (CrashingCluster,), {"victim": "", "crashed": []})
    original = session.LocalCluster
    session.LocalCluster = counting
    try:
        result = run_paper(
            config, bars=bars, local=True, store=store, on_cluster=clusters.append,
            on_progress=lambda p: reached.append((p.bars, Counter(clusters[-1].commits))),
        )
    finally:
        session.LocalCluster = original
    yield Calm(config, bars, store, reached, {BARS: result})
    store.close()


class Calm:
    """The calm sessions every crash session must equal, one per length, run once each."""

    def __init__(self, config, bars, store, reached, runs) -> None:  # type: ignore[no-untyped-def]
        self.config, self.bars, self.store, self.reached, self.runs = config, bars, store, reached, runs

    def length(self, victim: str, at: int) -> int:
        """The shortest of LENGTHS with AFTER bars past the batch of ``victim``'s commit ``at``."""
        seen = next((bars for bars, commits in self.reached if commits[victim] >= at), BARS)
        return next(n for n in LENGTHS if n >= min(seen + AFTER, BARS))

    def of(self, length: int):  # type: ignore[no-untyped-def]
        if length not in self.runs:
            self.runs[length] = run_paper(self.config, bars=self.bars.iloc[:length], local=True, store=self.store)
        return self.runs[length]


# (node, which of its commits, what that commit is), found from a calm run's commits.
POINTS = [
    ("master", 1, "funding: the farms' allocations booked as sent"),
    ("master", 5, "its rebalance planned"),
    ("master", 6, "its rebalance's allocations booked as sent"),
    ("master", 7, "a checkpoint done"),
    ("master", 51, "a goal's collection asked for"),
    ("master", 118, "collect_all: the agents' halts asked for"),
    ("master", 120, "collect_all: their cash collected"),
    ("master", 122, "risk halts decided"),
    ("farm:trend", 3, "a batch"),
    ("farm:trend", 4, "its rebalance planned"),
    ("farm:trend", 5, "its rebalance's allocations booked as sent"),
    ("farm:trend", 34, "a release for the master planned"),
    ("farm:trend", 35, "a release sent up"),
    ("farm:trend", 95, "a goal's collection sent up"),
    ("farm:breakout", 1, "funding: the agents' allocations booked as sent"),
    ("farm:breakout", 12, "paused to sell before a rebalance"),
    ("farm:breakout", 197, "collect_all: an agent's cash sent up"),
    ("farm:breakout", 200, "halted by a risk limit"),
    ("farm:waves", 2, "a batch of its inline agent"),
    ("farm:waves", 6, "a release from its inline agent"),
    ("agent:gator-a", 1, "funded"),
    ("agent:darvas-b", 3, "a batch"),
    ("agent:darvas-b", 5, "a rebalance's collection sent up"),
    ("agent:darvas-b", 10, "paused"),
    ("agent:darvas-b", 12, "resumed"),
    ("farm:breakout", 28, "a rebalance's transfers received, journaled as done"),
    ("farm:breakout", 29, "the batch after a rebalance (its receipts must not be lost with it)"),
]


@pytest.mark.parametrize("before", [False, True], ids=["after-commit", "before-commit"])
@pytest.mark.parametrize("victim, at, step", POINTS, ids=[f"{v}#{a}" for v, a, _ in POINTS])
def test_a_node_dying_at_any_step_changes_nothing(calm, monkeypatch, victim, at, step, before):
    length = calm.length(victim, at)
    config, bars, store, expected = calm.config, calm.bars.iloc[:length], calm.store, calm.of(length)
    crashed: list[str] = []
    cls = type("Crashing", (CrashingCluster,), {"victim": victim, "at": at, "before": before, "crashed": crashed})
    monkeypatch.setattr(session, "LocalCluster", cls)  # the class the Session builds
    result = run_paper(config, bars=bars, local=True, store=store)
    assert crashed, f"{victim} never reached commit {at}"
    ours, theirs = dict(result.report), dict(expected.report)
    ours.pop("generated_at"), theirs.pop("generated_at")
    assert ours == theirs and result.audit.ok
    assert _ledgers(store, result.run_id) == _ledgers(store, expected.run_id)
    events, calm_events = store.events(result.run_id), store.events(expected.run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    content = lambda rows: {e.id: (e.type, e.entity, e.data) for e in rows if e.type != "run_started"}  # noqa: E731
    assert content(events) == content(calm_events)
