"""Reading a run's stream back (real Redis) and the terminal lines of ``cival watch``."""

from __future__ import annotations

import re
import threading

import pytest

from cival.events import (
    EventError,
    StreamEntry,
    format_event,
    matches,
    parse_event,
    read_stream,
    tail_lines,
)
from tests.helpers import RUN, Keys, orders, run_events, stored, with_


@pytest.fixture
def keys(redis_url):
    k = Keys(redis_url)
    yield k
    k.cleanup()


def publish(keys: Keys, events: list) -> None:
    bus = keys.bus()
    try:
        bus.publish(events)
        assert bus.flush(10)
    finally:
        bus.close()


def test_read_stream_gives_back_what_was_published(keys):
    events = run_events(keys.run, extra_orders=5)
    publish(keys, events)
    entries = list(read_stream(keys.url, keys.run, prefix=keys.prefix, count=7))  # several pages
    customs = [e for e in entries if e.agui_type == "CUSTOM"]
    assert [e.event() for e in customs] == events
    assert [(e.seq, e.id, e.type, e.entity) for e in customs] == [(ev.seq, ev.id, ev.type, ev.entity)
                                                                  for ev in events]
    assert entries[0].agui_type == "RUN_STARTED" and entries[0].agui["runId"] == keys.run
    assert all(e.run_id == keys.run for e in entries)
    assert [e.stream_id for e in entries] == sorted({e.stream_id for e in entries},
                                                    key=lambda s: tuple(map(int, s.split("-"))))

    later = list(read_stream(keys.url, keys.run, after_seq=20, prefix=keys.prefix))
    assert later and {e.seq for e in later} == set(range(21, len(events) + 1))


def test_follow_waits_for_new_entries_and_stops_at_run_finished(keys):
    events = run_events(keys.run, extra_orders=3)
    publish(keys, events[:4])
    got: list[StreamEntry] = []
    failure: list[BaseException] = []

    def follow() -> None:
        try:
            got.extend(read_stream(keys.url, keys.run, follow=True, block_ms=100, prefix=keys.prefix))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    bus = keys.bus()
    try:
        bus.publish(events[4:])
        assert bus.flush(10)
        bus.publish(orders(keys.run, len(events) + 1, 2))  # after run_finished: not read
        assert bus.flush(10)
    finally:
        bus.close()
    reader.join(15)
    assert not reader.is_alive() and not failure
    assert got[-1].agui_type == "RUN_FINISHED" and got[-1].type == "run_finished"
    assert [e.event() for e in got if e.agui_type == "CUSTOM"] == events


def test_an_unreachable_redis_is_an_error_without_the_password():
    with pytest.raises(EventError) as caught:
        list(read_stream("redis://:hunter2@127.0.0.1:1/0", RUN))
    assert "hunter2" not in str(caught.value) and "REDIS_URL" in str(caught.value)


# -- lines ------------------------------------------------------------------------------------


def line(event_type: str, seq: int = 412, **changes) -> str:
    return format_event(parse_event(stored(event_type, seq, data=with_(event_type, **changes) if changes else None)))


def test_format_event_lines():
    assert line("order_filled") == (
        "#   412 2024-11-16 20:00Z order_filled        agent:gator-13-8-5  buy 0.5 BTCUSDT @ 71,234.50 fee 35.60")
    assert line("order_filled", qty="0.50000000", price="7E+4", reason="stop").endswith(
        "buy 0.5 BTCUSDT @ 70,000.00 fee 35.60 (stop)")
    assert line("wallet_balance_update").endswith(
        "agent:gator-13-8-5  cash 14,347.15 USD, BTCUSDT 0.5 (cost 35,617.25)")
    assert line("wallet_balance_update", positions=[]).endswith("cash 14,347.15 USD, flat")
    assert line("fund_allocation").endswith("farm:trend          master -> farm:trend 60,000.00 [fund:master>farm:trend]")
    assert line("fund_collection").endswith("farm:trend -> master 512.34 collected [goal:first-profit:collect]")
    assert line("goal_progress_update").endswith(
        "goal:first-profit   first-profit active 45.50 % collected 0.00 (bar 400)")
    assert line("halt").endswith("halted: drawdown")
    assert line("halt", resume=True).endswith("resumed (drawdown)")
    assert line("farm_rebalance").endswith("master at bar 400: trend +250.50, breakout -250.50")
    assert line("run_finished").endswith(
        "finished after 720 bars (2024-10-01 00:00Z .. 2024-10-30 23:00Z), total equity 100,512.34, audit ok")
    # net P&L = 498.7 + 13.64 - 71.2, with its parts named
    assert line("farm_performance_update").endswith(
        "equity 60,512.34, cash 24,895.09, net P&L +441.14 (realised +498.70 + unrealised +13.64 - fees 71.20), "
        "4 trades, in position, drawdown 2.13 %, Sharpe 1.37 (bar 412)")
    assert "1 trade, " in line("farm_performance_update", trades=1)
    assert line("wallet_transaction").endswith(
        "trade_buy #17 [fill:gator:412] agent:gator-13-8-5/cash -35,617.25, "
        "agent:gator-13-8-5/position/BTCUSDT +35,617.25 (qty +0.5) - buy 0.5 BTCUSDT @ 71,234.50")
    assert line("run_started").endswith(
        "demo: local, BTCUSDT from data/btcusdt_1h.parquet, 1 farms, 1 agents, USD; store sqlite, streams redis")


# A price and fee as a float-fed fill records them: every digit of the float's binary value.
NOISY = {"qty": "0.56729293", "price": "2409.5946000000004", "fee": "10.612928550617275", "notional": "1366.9"}


def test_a_fill_line_has_no_float_noise():
    text = line("order_filled", **NOISY)
    assert text.endswith("buy 0.56729293 BTCUSDT @ 2,409.59 fee 10.61")
    assert "0000000" not in text and "9999999" not in text
    # every number after the envelope has at most 8 decimals (a quantity), money at most 2
    detail = text.split("  ", 1)[1]
    assert all(len(d) <= 8 for d in re.findall(r"\.(\d+)", detail))


def test_a_memo_price_is_shown_as_a_price():
    memo = "sell 0.56729293 BTCUSDT @ 60159.895005000004"
    text = line("wallet_transaction", memo=memo)
    assert text.endswith(" - sell 0.56729293 BTCUSDT @ 60,159.90")
    assert line("wallet_transaction", memo="fee").endswith(" - fee")  # other memos as they are


def test_performance_line_parts_add_up_to_net_pnl():
    from decimal import Decimal

    changes = {"realized_pnl": "826.666", "unrealized_pnl": "-12.004", "fees": "40.5"}
    text = line("farm_performance_update", **changes)
    found = re.search(r"net P&L ([-+][\d,.]+) \(realised ([-+][\d,.]+) \+ unrealised ([-+][\d,.]+) - fees ([\d,.]+)\)", text)
    assert found, text
    net, realised, unrealised, fees = (Decimal(g.replace(",", "")) for g in found.groups())
    assert net == Decimal("774.16")  # 826.666 - 12.004 - 40.5 = 774.162, rounded once
    assert abs(realised + unrealised - fees - net) <= Decimal("0.02")  # each part rounded to the cent


def test_every_type_has_a_specific_line():
    from cival.core.events import EVENT_TYPES

    for seq, event_type in enumerate(EVENT_TYPES, start=1):
        event = parse_event(stored(event_type, seq))
        text = format_event(event)
        assert text.startswith(f"#{seq:>6} ") and f" {event_type} " in text
        assert not re.search(r"\d[eE][+-]?\d", text), text  # no exponent anywhere
        assert not re.search(r"\.\d{9,}", text), text  # no float noise: at most 8 decimals
        generic = ", ".join(f"{k}={v}" for k, v in event.fields().items())
        assert not text.endswith(generic), f"{event_type} has no line of its own"


def test_matches_types_and_entity_globs():
    assert matches("order_filled", "agent:gator-13-8-5")
    assert matches("order_filled", "agent:gator-13-8-5", types={"order_filled", "halt"})
    assert not matches("order_filled", "agent:gator-13-8-5", types={"halt"})
    assert matches("halt", "farm:trend", entities=["farm:trend"])
    assert not matches("halt", "farm:trend-2", entities=["farm:trend"])
    assert matches("halt", "agent:gator-13-8-5", entities=["farm:trend", "agent:gator*"])
    assert not matches("halt", "agent:darvas-1", entities=["agent:gator*"])
    assert not matches("halt", "agent:gator-1", types={"order_filled"}, entities=["agent:gator*"])
    assert matches("halt", "goal:[x]", entities=["goal:[x]"])  # an exact name wins over glob syntax


def test_tail_lines_filters_and_shows_resyncs():
    events = [parse_event(stored(t, seq)) for seq, t in enumerate(["run_started", "halt", "order_filled"], 1)]
    entries = []
    for event in events:
        value = {"id": event.id, "seq": event.seq, "entity": event.entity, "source": event.source,
                 "at": event.at.isoformat(), **event.fields()}
        entries.append(StreamEntry(RUN, event.seq, event.id, event.type, event.entity, "CUSTOM",
                                   {"type": "CUSTOM", "name": event.type, "value": value}, f"{event.seq}-0"))
    entries.insert(2, StreamEntry(RUN, 2, "resync:2", "resync", "run", "STATE_SNAPSHOT",
                                  {"type": "STATE_SNAPSHOT", "snapshot": {}}, "2-999999"))
    lines = list(tail_lines(entries, entities=["agent:*"]))
    assert lines == [format_event(events[1]), "#     2 -- the publisher dropped events up to here; "
                     "state resynchronised from a snapshot", format_event(events[2])]
    assert list(tail_lines(entries, types={"run_started"}))[0] == format_event(events[0])
