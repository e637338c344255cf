"""Outages of a few seconds in the middle of a session, on servers of the tests' own (a
private PostgreSQL and a private Redis on other ports, stopped and started again; the
shared services are never touched): writes wait and nothing is lost, events are
streamed late but every one of them, once, in order."""

from __future__ import annotations

import threading
import time

import pytest

from cival.events import RedisBus, run_stream_key
from cival.events.watch import parse_entry
from cival.runtime import run_paper, session_bars
from cival.store.postgres import PostgresStore
from tests.test_recovery import recovery_config

ray = pytest.importorskip("ray")

BARS = 3000


@pytest.fixture(scope="module")
def ray_cluster(local_ray):
    return local_ray


def _outage(at_bars: int, stop, start, seconds: float = 3.0):
    """An on_progress callback: when the session has passed ``at_bars``, ``stop`` the server
    and ``start`` it again ``seconds`` later (on a timer: the session carries on meanwhile)."""
    state: dict[str, object] = {}

    def restart() -> None:
        start()
        state["restarted"] = time.monotonic()

    def on_progress(progress) -> None:
        if "stopped" not in state and progress.bars >= at_bars:
            stop()
            state["stopped"] = progress.bars
            timer = threading.Timer(seconds, restart)
            timer.start()
            state["timer"] = timer

    return on_progress, state


def _comparable(report):
    return {k: v for k, v in report.items() if k not in ("generated_at", "mode")}


@pytest.mark.parametrize("local", [True, False], ids=["in-process", "ray"])
def test_a_postgres_outage_delays_writes_and_loses_none(private_postgres, local, request):
    if not local:
        request.getfixturevalue("ray_cluster")
    config = recovery_config()
    bars = session_bars(config, max_bars=BARS)
    store = PostgresStore(private_postgres.url)
    store.migrate()
    calm = run_paper(config, bars=bars, local=True, store=store)
    on_progress, state = _outage(1000, private_postgres.stop, private_postgres.start)
    stormy = run_paper(config, bars=bars, local=local, store=store, on_progress=on_progress)
    finished = time.monotonic()
    state["timer"].join()
    # The server went away mid-session and came back before it ended: the writes meanwhile waited.
    assert state["stopped"] < BARS and state["restarted"] < finished
    assert _comparable(stormy.report) == _comparable(calm.report) and stormy.audit.ok
    for source in store.node_sources(calm.run_id):
        ours = [(t.seq, t.idempotency_key, t.postings) for t in store.transactions(stormy.run_id, source)]
        assert ours == [(t.seq, t.idempotency_key, t.postings) for t in store.transactions(calm.run_id, source)], source
    events = store.events(stormy.run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert {e.id for e in events} == {e.id for e in store.events(calm.run_id)}
    assert store.run(stormy.run_id).status == "finished"
    store.close()


def test_a_redis_outage_delays_the_stream_and_loses_nothing(private_redis, tmp_path):
    import redis

    from cival.store.sqlite import SqliteStore

    private_redis.start()
    config = recovery_config()
    store = SqliteStore(tmp_path / "store.sqlite3")
    store.migrate()
    on_progress, state = _outage(1000, private_redis.stop, private_redis.start)
    result = run_paper(
        config, bars=session_bars(config, max_bars=BARS), local=True, store=store, on_progress=on_progress,
        events=lambda run: RedisBus(private_redis.url, run),
    )
    state["timer"].join()
    stats = result.events.bus
    assert state["stopped"] and stats.errors >= 1  # sending failed while the server was away...
    assert stats.dropped == 0 and stats.delivered == stats.published == len(store.events(result.run_id))  # ...and caught up
    client = redis.Redis.from_url(private_redis.url)
    entries = [parse_entry(i, f) for i, f in client.xrange(run_stream_key(result.run_id))]
    client.close()
    custom = [e for e in entries if e.agui_type == "CUSTOM"]
    assert [e.seq for e in custom] == list(range(1, len(store.events(result.run_id)) + 1))  # every one, once, in order
    assert entries[-1].agui_type == "RUN_FINISHED"
    store.close()
