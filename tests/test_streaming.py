"""A session's events on a real Redis: every event type, in AG-UI shape (checked with the
ag_ui package's own models), exactly the events the store holds; ``cival watch`` following
a running session; and trading that does not wait for a Redis that is not there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
from pydantic import TypeAdapter

from cival.core.events import EVENT_TYPES
from cival.core.fmt import price, quantity
from cival.events import RedisBus, run_stream_key
from cival.events.watch import parse_entry
from cival.session import run_paper, session_bars
from cival.store.sqlite import SqliteStore
from tests.conftest import ROOT
from tests.helpers import recovery_config

pytestmark = pytest.mark.slow  # every test here runs a session, a cluster or the command line of its own


@pytest.fixture
def prefix(redis_url):
    import redis

    name = f"cival-test-{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def _with_an_idle_farm():
    """recovery_config and a farm whose agent can never afford one unit (a whole BTC per
    step): its buys are rejected, said once each time money moves."""
    from cival.config import config_from_dict

    raw = recovery_config().model_dump(mode="json", exclude_none=True)
    raw["farms"].append({"name": "idle", "type": "breakout",
                         "agents": [{"name": "idle-darvas", "strategy": "darvas", "sizing": {"qty_step": "1"}}]})
    return config_from_dict(raw)


def test_every_event_type_reaches_redis_as_ag_ui_events_exactly_as_stored(redis_url, prefix, tmp_path):
    from ag_ui.core import Event as AguiEvent

    config = _with_an_idle_farm()
    store = SqliteStore(tmp_path / "store.sqlite3")
    store.migrate()
    from cival.session import Session, SessionConfig

    session = Session(
        config, SessionConfig(local=True), bars=session_bars(config, max_bars=3000), store=store,
        events=lambda run: RedisBus(redis_url, run, prefix=prefix),
    ).open()
    session.step(1000)
    session.deposit("10", by="tester")  # an operator_action
    result = session.run()
    stored = store.events(result.run_id)
    import redis

    client = redis.Redis.from_url(redis_url)
    entries = [parse_entry(i, f) for i, f in client.xrange(run_stream_key(result.run_id, prefix))]
    client.close()
    assert result.events.bus.delivered == len(stored) and result.events.bus.dropped == 0
    # The wire: AG-UI events, RUN_STARTED first and RUN_FINISHED last, each valid by the package's models.
    wire = TypeAdapter(AguiEvent)
    for entry in entries:
        assert wire.validate_python(entry.agui).type.value == entry.agui_type
    assert (entries[0].agui_type, entries[-1].agui_type) == ("RUN_STARTED", "RUN_FINISHED")
    assert {e.agui_type for e in entries} >= {"STATE_SNAPSHOT", "STATE_DELTA", "CUSTOM"}
    # One CUSTOM entry per stored event, in order, carrying the stored payload.
    custom = [e for e in entries if e.agui_type == "CUSTOM"]
    assert [(e.seq, e.id, e.type) for e in custom] == [(s.seq, s.id, s.type) for s in stored]
    assert set(EVENT_TYPES) == {e.type for e in custom}, "every event type was published"
    for entry, row in zip(custom, stored, strict=True):
        assert entry.event().payload() == row.data
    assert [e.stream_id for e in entries] == sorted((e.stream_id for e in entries), key=lambda i: tuple(map(int, i.split("-"))))
    store.close()


def test_trading_does_not_wait_for_a_redis_that_is_not_there(tmp_path):
    config = recovery_config()
    bars = session_bars(config, max_bars=1500)
    store = SqliteStore(tmp_path / "store.sqlite3")
    store.migrate()
    calm = run_paper(config, bars=bars, local=True, store=store)
    away = run_paper(
        config, bars=bars, local=True, store=store, events=lambda run: RedisBus("redis://127.0.0.1:1/0", run, buffer=50)
    )
    for key in ("generated_at",):
        calm.report.pop(key), away.report.pop(key)
    assert away.report == calm.report  # the same trading
    stats = away.events.bus
    assert stats.published == len(store.events(away.run_id)) > 50
    assert stats.delivered == 0 and stats.dropped == stats.published and not stats.connected
    assert store.run(away.run_id).meta["events_dropped"] == stats.dropped  # reported with the run
    store.close()


def test_cival_watch_follows_a_running_session_on_redis_until_it_ends(redis_url, tmp_path):
    env = dict(os.environ, REDIS_URL=redis_url, CIVAL_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT / "src"))
    config = tmp_path / "watched.yaml"
    config.write_text(
        (ROOT / "configs" / "demo.yaml").read_text().replace("path: data/", f"path: {ROOT / 'configs' / 'data'}/")
    )
    session = subprocess.Popen(
        [sys.executable, "-m", "cival", "paper", str(config), "--local", "--bars", "1200", "--speed", "3000000", "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        announced = session.stdout.readline()
        assert announced.startswith("run "), announced + session.stderr.read()
        run_id = announced.split()[1]
        watch = subprocess.run(
            [sys.executable, "-m", "cival", "watch", run_id, "--type", "order_filled", "--type", "run_finished"],
            env=env, capture_output=True, text=True, timeout=300,
        )
        session.wait(timeout=300)
    finally:
        if session.poll() is None:
            session.kill()
    assert session.returncode == 0
    assert watch.returncode == 0, watch.stderr
    assert "events from Redis at redis://" in watch.stderr
    lines = watch.stdout.splitlines()
    store = SqliteStore(tmp_path / "cival.sqlite3")
    fills = [e for e in store.events(run_id) if e.type == "order_filled"]
    store.close()
    assert len(fills) > 10
    assert [line for line in lines if "order_filled" in line] == [line for line in lines[:-1]]
    assert len(lines) == len(fills) + 1 and "run_finished" in lines[-1]
    first = fills[0].data
    assert f"{first['side']} {quantity(first['qty'])} {first['symbol']} @ {price(first['price'])}" in lines[0]
    # A finished run, from the store, with an entity filter.
    again = subprocess.run(
        [sys.executable, "-m", "cival", "watch", run_id, "--from-store", "--entity", "farm:tr*", "--no-follow"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 0 and "events from the sqlite store" in again.stderr
    assert again.stdout and all("farm:trend" in line for line in again.stdout.splitlines())


def test_cival_runs_lists_runs_and_report_rebuilds_them(tmp_path, capsys):
    from cival.cli import main

    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    store.migrate()
    config = recovery_config()
    first = run_paper(config, bars=session_bars(config, max_bars=600), local=True, store=store)
    second = run_paper(config, bars=session_bars(config, max_bars=300), local=True, store=store)
    store.close()
    assert main(["runs", "--path", str(path), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in runs] == [second.run_id, first.run_id]
    assert [(r["status"], r["bars"]) for r in runs] == [("finished", 300), ("finished", 600)]
    assert runs[0]["events"] > 0 and runs[0]["symbol"] == "BTCUSDT-1h"
    assert main(["runs", "--path", str(path)]) == 0
    table = capsys.readouterr().out
    assert first.run_id in table and second.run_id in table
    assert main(["report", first.run_id, "--path", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == first.report
    assert main(["report", second.run_id[:-3], "--path", str(path)]) == 0
    text = capsys.readouterr().out
    assert "Session finished: 300 bars" in text and "audit OK" in text
    assert main(["report", "nope", "--path", str(path)]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
