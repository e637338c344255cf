"""The buses, against a real Redis: entries in seq order under explicit ids, exactly once
even when published twice, a global copy, consumer groups; and a bus whose Redis is away
(never there, there later, gone for a while) that never blocks, counts what it drops and
resynchronises consumers with a snapshot.

No Redis is mocked. Each test has its own key prefix and run id and deletes its keys."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from ag_ui.core import (
    CustomEvent,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
)

from cival.events import (
    RESYNC_ENTRY,
    AguiEncoder,
    BusStats,
    EventError,
    InProcessBus,
    RedisBus,
    open_bus,
    parse_event,
    redact,
)
from tests.conftest import wait_for
from tests.helpers import Keys, apply, orders, run_events, stored, with_

AGUI_MODELS = {"CUSTOM": CustomEvent, "RUN_STARTED": RunStartedEvent, "RUN_FINISHED": RunFinishedEvent,
               "RUN_ERROR": RunErrorEvent, "STATE_SNAPSHOT": StateSnapshotEvent, "STATE_DELTA": StateDeltaEvent}


@pytest.fixture
def keys(redis_url):
    k = Keys(redis_url)
    yield k
    k.cleanup()


def balances(run: str, first: int, count: int) -> list:
    """``count`` balance updates of a few wallets (two entries each: CUSTOM and STATE_DELTA)."""
    out = []
    for seq in range(first, first + count):
        wallet = f"agent:a{seq % 5}"
        data = with_("wallet_balance_update", wallet=wallet, cash=f"{1000 + seq}.5")
        out.append(parse_event(stored("wallet_balance_update", seq, data=data, entity=wallet, run_id=run)))
    return out


def expected_entries(run: str, events: list) -> list[tuple[str, dict[str, str]]]:
    """What the stream must hold: an independent encoder's output under ``{seq}-{k}``."""
    encoder = AguiEncoder(run)
    out = []
    for event in events:
        for k, model in enumerate(encoder.encode(event)):
            out.append((f"{event.seq}-{k}", {
                "run_id": run, "seq": str(event.seq), "id": event.id, "type": event.type, "entity": event.entity,
                "agui_type": model.type.value,
                "event": model.model_dump(by_alias=True, exclude_none=True, mode="json"),
            }))
    return out


def read_all(client: Any, key: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for stream_id, fields in client.xrange(key):
        text = {k.decode(): v.decode() for k, v in fields.items()}
        model = AGUI_MODELS[text["agui_type"]]
        event = model.model_validate_json(text["event"])  # the ag_ui package accepts it
        assert event.type.value == text["agui_type"]
        text["event"] = json.loads(text["event"])
        out.append((stream_id.decode(), text))
    return out


# -- Redis bus ----------------------------------------------------------------------------------


def test_published_events_are_in_the_run_stream_in_seq_order_under_explicit_ids(keys):
    events = run_events(keys.run, extra_orders=30)
    bus = keys.bus()
    try:
        bus.publish(events[:5])
        for event in events[5:]:
            bus.publish([event])
        assert bus.flush(10) is True
        stats = bus.stats()
    finally:
        bus.close()
    assert stats == BusStats(published=len(events), delivered=len(events), dropped=0, buffered=0, errors=0,
                             last_error=None, connected=True, duplicates=0)
    entries = read_all(keys.client, keys.stream)
    assert entries == expected_entries(keys.run, events)
    assert entries[0][1]["agui_type"] == "RUN_STARTED" and entries[-1][1]["agui_type"] == "RUN_FINISHED"
    # The global stream got the same entries, in the same order, under its own ids.
    copies = read_all(keys.client, keys.global_stream)
    assert [fields for _, fields in copies] == [fields for _, fields in entries]
    assert all(int(sid.split("-")[0]) > 10**12 for sid, _ in copies)  # automatic ids: milliseconds


def test_publishing_again_adds_nothing_and_is_no_error(keys):
    events = run_events(keys.run, extra_orders=10)
    bus = keys.bus()
    try:
        bus.publish(events)
        assert bus.flush(10)
        bus.publish(events)  # the same bus: already taken
        assert bus.flush(10)
        stats = bus.stats()
    finally:
        bus.close()
    assert (stats.published, stats.delivered, stats.duplicates, stats.errors) == (
        2 * len(events), 2 * len(events), len(events), 0)

    again = keys.bus()  # a new bus (a restarted process): Redis refuses the known ids
    try:
        again.publish(events)
        assert again.flush(10)
        stats = again.stats()
    finally:
        again.close()
    assert (stats.delivered, stats.duplicates, stats.errors, stats.dropped) == (len(events), len(events), 0, 0)
    assert read_all(keys.client, keys.stream) == expected_entries(keys.run, events)
    assert keys.client.xlen(keys.global_stream) == keys.client.xlen(keys.stream)


def test_a_consumer_group_reads_and_acknowledges(keys):
    from cival.events import read_stream

    events = run_events(keys.run)
    bus = keys.bus()
    try:
        bus.ensure_group("dash")
        bus.ensure_group("dash")  # an existing group is fine
        bus.publish(events)
        assert bus.flush(10)
    finally:
        bus.close()
    reader = read_stream(keys.url, keys.run, group="dash", consumer="c1", prefix=keys.prefix)
    first = [next(reader) for _ in range(3)]
    reader.close()  # stopped while handling the third
    # Two acknowledged; the third and the rest of the page read with it stay pending.
    assert keys.client.xpending(keys.stream, "dash")["pending"] == len(expected_entries(keys.run, events)) - 2
    rest = list(read_stream(keys.url, keys.run, group="dash", consumer="c1", prefix=keys.prefix))
    assert rest[0].stream_id == first[2].stream_id  # delivered again (at least once)
    got = [e.stream_id for e in first[:2] + rest]
    assert got == [sid for sid, _ in expected_entries(keys.run, events)]
    assert keys.client.xpending(keys.stream, "dash")["pending"] == 0


def test_an_unreachable_redis_never_blocks_publish(keys):
    bus = keys.bus("redis://127.0.0.1:1/0")
    try:
        events = run_events(keys.run)
        bus.publish(events)  # returns: nothing to assert about how fast
        assert wait_for(lambda: bus.stats().errors > 0)
        stats = bus.stats()
        assert stats.connected is False and stats.buffered == len(events) and stats.delivered == 0
        assert stats.last_error and "ConnectionError" in stats.last_error
        assert bus.flush(0.2) is False
    finally:
        bus.close(0.2)
    closed = bus.stats()
    assert closed.dropped == len(events) and closed.buffered == 0  # never to be sent: counted
    bus.publish(orders(keys.run, 100, 1))  # after close: dropped, not raised
    assert bus.stats().dropped == len(events) + 1


def test_a_full_buffer_drops_the_oldest_events_and_counts_them(keys):
    bus = keys.bus("redis://127.0.0.1:1/0", buffer=10)
    try:
        for event in orders(keys.run, 1, 25):
            bus.publish([event])
        stats = bus.stats()
    finally:
        bus.close(0.1)
    assert (stats.published, stats.dropped, stats.buffered, stats.delivered) == (25, 15, 10, 0)


def replay(entries: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """What a consumer holds after reading ``entries`` from the start."""
    state: Any = None
    for _, fields in entries:
        body = fields["event"]
        if body["type"] == "STATE_SNAPSHOT":
            state = copy.deepcopy(body["snapshot"])
        elif body["type"] == "STATE_DELTA":
            state = apply(state, body["delta"])
    return state


def test_after_a_drop_a_snapshot_resynchronises_consumers(keys, private_redis):
    start = run_events(keys.run)[:8]  # run_started ... allocations: the state is set up
    later = balances(keys.run, 9, 60)
    everything = start + later
    bus = keys.bus(private_redis.url, buffer=20)
    try:
        bus.publish(start)
        # The sender takes these and fails: they are in flight, and stay so until Redis is up.
        assert wait_for(lambda: bus.stats().errors > 0)
        for event in later:
            bus.publish([event])
        assert bus.stats().dropped == len(later) - 20 + len(start)  # the buffer holds 20, in flight included
        private_redis.start()
        assert bus.flush(15) is False  # everything handled, but not everything delivered
        stats = bus.stats()
    finally:
        bus.close()
    assert stats.delivered + stats.dropped == stats.published == len(everything)
    assert stats.buffered == 0 and stats.connected

    import redis

    entries = read_all(redis.Redis.from_url(private_redis.url), keys.stream)
    resyncs = [i for i, (_, f) in enumerate(entries) if f["type"] == "resync"]
    assert len(resyncs) == 1
    i = resyncs[0]
    sid, fields = entries[i]
    last_dropped = int(fields["seq"])
    assert sid == f"{last_dropped}-{RESYNC_ENTRY}" and fields["agui_type"] == "STATE_SNAPSHOT"
    seqs_before = [int(f["seq"]) for _, f in entries[:i]]
    seqs_after = [int(f["seq"]) for _, f in entries[i + 1:]]
    assert seqs_after[0] == last_dropped + 1 and seqs_after[-1] == len(everything)  # nothing after the gap lost
    assert sorted(set(seqs_after)) == list(range(last_dropped + 1, len(everything) + 1))
    # Before the gap: what the sender had taken when Redis was away; events being sent are
    # never dropped.
    assert sorted(set(seqs_before)) == list(range(1, len(start) + 1))
    assert seqs_before == sorted(seqs_before)
    dropped = last_dropped - len(set(seqs_before))
    assert dropped == stats.dropped
    # The snapshot is the state as of the entries after it: a consumer ends with the
    # publisher's state even though events are missing.
    encoder = AguiEncoder(keys.run)
    for event in everything:
        encoder.encode(event)
    assert replay(entries) == encoder.state
    # And it equals the state after the last dropped event.
    upto = AguiEncoder(keys.run)
    for event in everything[:last_dropped]:
        upto.encode(event)
    assert fields["event"]["snapshot"] == upto.state


def test_a_redis_that_comes_up_later_gets_everything_in_order_once(keys, private_redis):
    events = run_events(keys.run, extra_orders=40)
    bus = keys.bus(private_redis.url)
    try:
        bus.publish(events[:20])
        assert wait_for(lambda: bus.stats().errors > 0)
        assert bus.stats().connected is False
        private_redis.start()
        bus.publish(events[20:])
        assert bus.flush(15) is True
        stats = bus.stats()
    finally:
        bus.close()
    assert (stats.delivered, stats.dropped, stats.buffered, stats.connected) == (len(events), 0, 0, True)
    import redis

    client = redis.Redis.from_url(private_redis.url)
    assert read_all(client, keys.stream) == expected_entries(keys.run, events)
    assert client.xlen(f"{keys.prefix}:events") == client.xlen(keys.stream)


def test_an_outage_in_the_middle_loses_and_repeats_nothing(keys, private_redis):
    import redis

    events = run_events(keys.run, extra_orders=200)
    private_redis.start()
    bus = keys.bus(private_redis.url)
    try:
        bus.publish(events[:50])
        assert bus.flush(10)
        private_redis.stop()
        bus.publish(events[50:150])
        assert wait_for(lambda: bus.stats().errors > 0)
        assert bus.stats().connected is False and bus.stats().buffered > 0
        private_redis.start()  # same port, same directory: the stream survived
        bus.publish(events[150:])
        assert bus.flush(15) is True
        stats = bus.stats()
    finally:
        bus.close()
    assert (stats.delivered, stats.dropped, stats.connected) == (len(events), 0, True)
    client = redis.Redis.from_url(private_redis.url)
    assert read_all(client, keys.stream) == expected_entries(keys.run, events)
    assert client.xlen(f"{keys.prefix}:events") == client.xlen(keys.stream)


def test_streams_are_capped(keys):
    bus = keys.bus(maxlen=100, global_maxlen=50)
    try:
        bus.publish(orders(keys.run, 1, 3000))
        assert bus.flush(10)
    finally:
        bus.close()
    # MAXLEN ~ trims whole macro nodes: a little above the cap, never the whole history.
    assert 100 <= keys.client.xlen(keys.stream) < 1000
    assert 50 <= keys.client.xlen(keys.global_stream) < 1000
    assert keys.client.xrange(keys.stream, count=1, max="+")  # still readable
    assert keys.client.xrevrange(keys.stream, count=1)[0][0] == b"3000-0"


def test_a_malformed_url_is_refused_without_its_password():
    with pytest.raises(EventError) as caught:
        RedisBus("http://user:hunter2@cache:6379/0", "r")
    assert "hunter2" not in str(caught.value) and "REDIS_URL" in str(caught.value)


# -- open_bus and redact ----------------------------------------------------------------------


def test_open_bus_picks_redis_when_a_url_is_given_or_set(keys, monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert isinstance(open_bus(None, keys.run), InProcessBus)
    monkeypatch.setenv("REDIS_URL", keys.url)
    bus = open_bus(None, keys.run, prefix=keys.prefix)
    try:
        assert isinstance(bus, RedisBus) and bus.url == keys.url
    finally:
        bus.close()
    bus = open_bus(keys.url, keys.run, prefix=keys.prefix, buffer=5)
    try:
        assert isinstance(bus, RedisBus)
    finally:
        bus.close()


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
    ("rediss://app:hunter2@cache:6380/1", "rediss://app:***@cache:6380/1"),
    ("redis://cache:6379/0?password=hunter2&db=1", "redis://cache:6379/0?password=***&db=1"),
    ("redis://cache:6379/0", "redis://cache:6379/0"),
])
def test_redact_hides_passwords(url, shown):
    assert redact(url) == shown
    assert "hunter2" not in redact(url)


# -- in-process bus ---------------------------------------------------------------------------


def test_in_process_bus_delivers_to_every_subscriber_even_when_one_raises():
    bus = InProcessBus()
    seen: list[str] = []
    other: list[str] = []

    def broken(event):
        raise RuntimeError("dashboard bug")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(lambda e: seen.append(e.id))
    bus.subscribe(lambda e: other.append(e.id))
    events = orders("run-x", 1, 3)
    bus.publish(events)
    stats = bus.stats()
    assert seen == other == [e.id for e in events]
    assert (stats.published, stats.delivered, stats.errors, stats.dropped) == (3, 3, 3, 0)
    assert "dashboard bug" in stats.last_error
    unsubscribe()
    bus.publish(orders("run-x", 4, 1))
    assert len(seen) == 3 and len(other) == 4
    assert bus.flush(1) is True


def test_in_process_queue_counts_what_it_could_not_take():
    bus = InProcessBus()
    q = bus.queue(maxsize=2)
    bus.publish(orders("run-x", 1, 5))
    assert [q.get_nowait().seq for _ in range(2)] == [1, 2]
    assert bus.stats().dropped == 3 and bus.flush(1) is False
    bus.remove_queue(q)
    bus.publish(orders("run-x", 6, 1))
    assert q.empty()
    bus.close()
    bus.publish(orders("run-x", 7, 1))
    assert bus.stats().dropped == 4
