"""Outages in the middle of a session, on servers of the tests' own (a private PostgreSQL
and a private Redis on other ports, stopped and started again; the shared services are
never touched): writes wait and nothing is lost, events are streamed late but every one
of them, once, in order.

PostgreSQL goes away both ways a server does: ``fast`` (each session is told, 57P01
admin shutdown, and ended: a restart by an administrator) and ``immediate`` (every
connection cut: a crash), at seeded random moments of short sessions, so that the stop
falls between writes, in the middle of a commit, while the pool resets a connection...
Each session must end exactly as the calm one did. Errors that are not outages (a
constraint violation, bad SQL, a wrong password) still fail at once.
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from cival.events import RedisBus, run_stream_key
from cival.events.watch import parse_entry
from cival.session import run_paper, session_bars
from cival.store.base import StoreError
from cival.store.postgres import PostgresStore
from tests.helpers import recovery_config

ray = pytest.importorskip("ray")

BARS = 300
"""Bars per session: a dozen checkpoints, a few seconds on a small machine."""

CASES = [("fast", seed) for seed in range(12)] + [("immediate", seed) for seed in range(100, 110)]
"""In-process sessions: (how the server stops, seed of where and for how long)."""


@pytest.fixture(scope="module")
def calm(private_postgres_module):
    """The store on the module's private server and the session every stormy one must equal."""
    store = PostgresStore(private_postgres_module.url, retry_for=60)
    store.migrate()
    config = recovery_config()
    bars = session_bars(config, max_bars=BARS)
    result = run_paper(config, bars=bars, local=True, store=store)
    assert result.audit.ok and result.report["ledger"]["transactions"] > 0
    yield store, config, bars, result
    store.close()


class Storm:
    """Stops a server during a session (pass ``on_progress`` to ``run_paper``), once per
    mode in ``modes``, and starts it again ``down`` seconds later each time: after the
    batch that passes a seeded random bar, at a random moment within ``delay`` seconds
    of it, so that the stop falls anywhere in what the session (or its actors) is doing.
    The session's last batch waits until the last stop has happened, so that every
    outage falls within the session."""

    def __init__(self, stop, start, modes: list[str], seed: int, bars: int) -> None:
        rng = random.Random(seed)
        self.stop = stop
        self.start = start
        at = sorted(rng.sample(range(24, bars * 2 // 3), len(modes)))
        self.outages = [(bar, mode, rng.uniform(0.0, 0.3), rng.uniform(0.5, 1.0)) for bar, mode in zip(at, modes, strict=True)]
        """(after bar, how it stops, delay, seconds down) of each outage."""
        self.bars = 0
        self.moved = threading.Condition()
        self.stopped = threading.Event()
        """Set once the last stop has happened."""
        self.restarted: float | None = None
        self.problems: list[BaseException] = []
        self.thread = threading.Thread(target=self._outages, daemon=True)

    def on_progress(self, progress) -> None:
        if not self.thread.is_alive() and not self.stopped.is_set():
            self.thread.start()
        with self.moved:
            self.bars = progress.bars
            self.moved.notify_all()
        if progress.total is not None and progress.bars >= progress.total:
            self.stopped.wait(60)

    def _outages(self) -> None:
        try:
            for bar, mode, delay, down in self.outages:
                with self.moved:
                    self.moved.wait_for(lambda bar=bar: self.bars >= bar, timeout=60)
                time.sleep(delay)
                try:
                    self.stop(mode)
                finally:
                    if (bar, mode, delay, down) == self.outages[-1]:
                        self.stopped.set()
                time.sleep(down)
                self.start()
                self.restarted = time.monotonic()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.problems.append(exc)
            self.stopped.set()

    def join(self) -> None:
        self.thread.join(120)
        assert self.stopped.is_set() and not self.thread.is_alive() and not self.problems, self.problems


def _comparable(report):
    return {k: v for k, v in report.items() if k not in ("generated_at", "mode")}


def _ledgers(store, run_id):
    """Every ledger of a run, transaction for transaction (times left out: funding is
    stamped with the wall clock)."""
    return {
        source: [(t.seq, t.type, t.idempotency_key, t.postings) for t in store.transactions(run_id, source)]
        for source in store.node_sources(run_id)
    }


def _content(events):
    return {e.id: (e.type, e.entity, e.data) for e in events if e.type != "run_started"}  # its mode differs


def assert_same_run(store, stormy, calm) -> None:
    """The stormy session ended exactly as the calm one: report, books, ledgers in the
    store, every event once and numbered 1..N, status finished."""
    assert _comparable(stormy.report) == _comparable(calm.report)
    assert stormy.audit.ok and stormy.audit.residual == 0
    assert _ledgers(store, stormy.run_id) == _ledgers(store, calm.run_id)
    events = store.events(stormy.run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert len({e.id for e in events}) == len(events)
    assert _content(events) == _content(store.events(calm.run_id))
    assert store.run(stormy.run_id).status == "finished"


def _storm(calm, server, modes: list[str], seed: int, local: bool) -> None:
    store, config, bars, quiet = calm
    storm = Storm(server.stop, server.start, modes, seed, len(bars))
    stormy = run_paper(config, bars=bars, local=local, store=store, on_progress=storm.on_progress)
    finished = time.monotonic()
    storm.join()
    # The server went away mid-session (before its last batch) and the session's last
    # writes waited for it to come back.
    assert storm.restarted is not None and storm.restarted < finished
    assert_same_run(store, stormy, quiet)


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "seed"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_a_postgres_outage_delays_writes_and_loses_none(calm, private_postgres_module, mode, seed):
    _storm(calm, private_postgres_module, [mode], seed, local=True)


@pytest.mark.slow
def test_postgres_outages_delay_the_actors_writes_and_lose_none(calm, private_postgres_module, local_ray):
    """On Ray (one session: starting its actors is the slow part), two outages, one each way."""
    _storm(calm, private_postgres_module, ["fast", "immediate"], 200, local=False)


REAL_ERRORS = {
    "syntax": ("SELEC 1",),
    "constraint": ("INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, 'again', now())",),
    "argument count": ("SELECT $1::int", 1, 2),
    "argument type": ("SELECT $1::int", "one"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", REAL_ERRORS)
def test_an_error_that_is_not_an_outage_fails_at_once_and_spoils_nothing(calm, case):
    store = calm[0]
    sql, *args = REAL_ERRORS[case]
    outages = store.outages
    with pytest.raises(StoreError) as caught:
        store._call(lambda con: con.execute(sql, *args))
    assert store.outages == outages, "retried as if the server were away"
    assert "unreachable" not in str(caught.value) and str(store.location) in str(caught.value)
    assert [m.version for m in store.status() if m.applied_at is None] == []  # the next operation works


def test_a_wrong_password_fails_at_once_even_for_an_actor_that_waits(private_postgres_module):
    server = private_postgres_module
    with PostgresStore(server.url) as admin:
        admin._call(lambda con: con.execute("CREATE ROLE cival_locked LOGIN PASSWORD 'right-one'"), transaction=False)
    server.require_password("cival_locked")
    url = f"postgresql://cival_locked:wrong-one@127.0.0.1:{server.port}/postgres"
    for wait in (False, True):
        with pytest.raises(StoreError) as caught:
            PostgresStore(url, wait=wait, retry_for=60)
        assert "wrong-one" not in str(caught.value) and "password" in str(caught.value).lower()


@pytest.mark.slow
def test_a_redis_outage_delays_the_stream_and_loses_nothing(private_redis, tmp_path):
    import redis

    from cival.store.sqlite import SqliteStore

    private_redis.start()
    config = recovery_config()
    store = SqliteStore(tmp_path / "store.sqlite3")
    store.migrate()
    storm = Storm(lambda mode: private_redis.stop(), private_redis.start, ["stop"], 7, BARS)
    result = run_paper(
        config, bars=session_bars(config, max_bars=BARS), local=True, store=store, on_progress=storm.on_progress,
        events=lambda run: RedisBus(private_redis.url, run),
    )
    storm.join()
    stats = result.events.bus
    assert stats.errors >= 1  # sending failed while the server was away...
    assert stats.dropped == 0 and stats.delivered == stats.published == len(store.events(result.run_id))  # ...and caught up
    client = redis.Redis.from_url(private_redis.url)
    entries = [parse_entry(i, f) for i, f in client.xrange(run_stream_key(result.run_id))]
    client.close()
    custom = [e for e in entries if e.agui_type == "CUSTOM"]
    assert [e.seq for e in custom] == list(range(1, len(store.events(result.run_id)) + 1))  # every one, once, in order
    assert entries[-1].agui_type == "RUN_FINISHED"
    store.close()

