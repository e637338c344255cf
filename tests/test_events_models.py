"""The typed domain events: every type reads from a stored row and gives the same data
back; malformed rows are refused with the event and the field named. (``SAMPLES`` and
:func:`stored`, the sample events of every test_events file, are in tests/helpers.py.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from cival.core.events import EVENT_TYPES
from cival.events import (
    EVENT_CLASSES,
    EventError,
    FundAllocation,
    OrderFilled,
    StoredEvent,
    event_from_fields,
    parse_event,
)
from tests.helpers import RUN, SAMPLES, T0, stored, with_


def test_every_event_type_has_a_model_and_a_sample():
    assert tuple(EVENT_CLASSES) == EVENT_TYPES
    assert set(SAMPLES) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_every_type_round_trips_from_the_stored_row(event_type):
    row = stored(event_type, seq=41)
    event = parse_event(row)

    assert type(event) is EVENT_CLASSES[event_type]
    assert (event.id, event.run_id, event.seq, event.type, event.entity, event.source) == (
        row.id, RUN, 41, event_type, row.entity, row.source)
    assert event.at == row.at and event.at.tzinfo is UTC
    assert event.payload() == row.data
    json.dumps(event.payload())  # JSON-ready: no Decimal or datetime left
    # The AG-UI value form (attribute names, envelope beside the payload) reads back the same.
    value = {"id": event.id, "seq": event.seq, "entity": event.entity, "source": event.source,
             "at": event.at.isoformat(), **event.fields()}
    assert event_from_fields(event_type, RUN, value) == event


def test_amounts_are_exact_decimals_and_come_back_without_exponent():
    row = stored("order_filled", data=with_("order_filled", qty="1E-8", price="71234.50", fee="0E-8"))
    event = parse_event(row)
    assert isinstance(event, OrderFilled)
    assert event.qty == Decimal("0.00000001") and isinstance(event.price, Decimal)
    assert event.payload()["qty"] == "0.00000001"
    assert event.payload()["price"] == "71234.50"  # trailing zeros as written
    assert event.payload()["fee"] == "0.00000000"
    assert "E" not in json.dumps(event.payload())


@pytest.mark.parametrize("bad", [0.1, 35617, True, "NaN", "Infinity", "12,5", ""])
def test_an_amount_must_be_a_decimal_string(bad):
    row = stored("fund_allocation", seq=9, data=with_("fund_allocation", amount=bad), event_id="fund:9")
    with pytest.raises(EventError) as caught:
        parse_event(row)
    message = str(caught.value)
    assert "'fund:9'" in message and "seq 9" in message and "'amount'" in message
    assert caught.value.event_id == "fund:9" and caught.value.seq == 9
    assert [field for field, _ in caught.value.problems] == ["amount"]


def test_a_float_amount_is_refused_with_the_reason():
    with pytest.raises(EventError, match="float 0.1: floats lose precision"):
        parse_event(stored("fund_allocation", data=with_("fund_allocation", amount=0.1)))


def test_a_nested_bad_amount_names_its_path():
    data = with_("wallet_transaction")
    data["postings"][1]["amount"] = 35617.25
    with pytest.raises(EventError) as caught:
        parse_event(stored("wallet_transaction", data=data))
    assert [field for field, _ in caught.value.problems] == ["postings[1].amount"]


def test_a_misspelt_field_is_named_twice_missing_and_unknown():
    data = with_("order_filled", fee=..., fees="35.6")
    with pytest.raises(EventError) as caught:
        parse_event(stored("order_filled", seq=3, data=data))
    problems = dict(caught.value.problems)
    assert problems == {"fee": "is missing", "fees": "is not a field of this event type"}
    assert "fill_id, order_id, agent, symbol, side, qty, price, fee, notional, reason" in str(caught.value)


def test_every_payload_field_is_required_even_when_it_may_be_null():
    with pytest.raises(EventError) as caught:
        parse_event(stored("order_filled", data=with_("order_filled", notional=...)))
    assert dict(caught.value.problems) == {"notional": "is missing"}
    event = parse_event(stored("order_filled", data=with_("order_filled", notional=None, order_id=None)))
    assert event.notional is None and event.payload()["notional"] is None


@pytest.mark.parametrize(("event_type", "field", "bad"), [
    ("farm_performance_update", "trades", True),  # a boolean is not a count
    ("farm_performance_update", "trades", "4"),
    ("farm_performance_update", "in_position", 1),
    ("farm_performance_update", "max_drawdown", float("nan")),
    ("farm_performance_update", "sharpe", "1.37"),
    ("order_filled", "side", "long"),
    ("order_filled", "reason", "take_profit"),
    ("run_started", "mode", "cluster"),
    ("run_started", "streams", "kafka"),
    ("goal_completed", "completed_at", "yesterday"),
    ("goal_completed", "completed_at", "2024-10-30T16:00:00"),  # no zone
    ("goal_progress_update", "status", "done"),
    ("wallet_transaction", "tx_type", "transfer"),
    ("run_started", "wallets", [{"ref": "master", "kind": "master"}]),
])
def test_bad_payload_values_are_refused_naming_the_field(event_type, field, bad):
    with pytest.raises(EventError) as caught:
        parse_event(stored(event_type, data=with_(event_type, **{field: bad})))
    assert caught.value.problems and all(name.startswith(field) for name, _ in caught.value.problems)


def test_unknown_type_is_refused_with_the_known_types():
    row = StoredEvent(RUN, 5, "x:5", "master", "wallet_exploded", "master", T0, {})
    with pytest.raises(EventError, match=r"'x:5' \(seq 5\) has the unknown type 'wallet_exploded'.*run_started"):
        parse_event(row)


def test_naive_time_is_refused_and_other_zones_become_utc():
    with pytest.raises(EventError) as caught:
        parse_event(stored("halt", at=datetime(2024, 10, 30, 16, 0)))
    assert [field for field, _ in caught.value.problems] == ["at"]
    paris = timezone(timedelta(hours=1))
    event = parse_event(stored("halt", at=datetime(2024, 10, 30, 17, 0, tzinfo=paris)))
    assert event.at == T0 and event.at.tzinfo is UTC


def test_envelope_keys_in_data_are_refused():
    with pytest.raises(EventError, match="belong to the envelope: seq"):
        parse_event(stored("halt", data={"reason": "drawdown", "resume": False, "seq": 3}))


def test_seq_starts_at_one():
    with pytest.raises(EventError) as caught:
        parse_event(stored("halt", seq=0))
    assert [field for field, _ in caught.value.problems] == ["seq"]


def test_fund_source_wallet_is_not_the_envelope_source():
    row = stored("fund_allocation", data=with_("fund_allocation", source="farm:trend",
                                               target="agent:gator-13-8-5"))
    event = parse_event(row)
    assert isinstance(event, FundAllocation)
    assert event.source == "master"  # who wrote it
    assert event.source_wallet == "farm:trend"  # where the money came from
    assert event.payload()["source"] == "farm:trend" and "source_wallet" not in event.payload()
    assert event.fields()["source_wallet"] == "farm:trend"


def test_events_are_frozen():
    event = parse_event(stored("halt"))
    with pytest.raises(ValidationError):
        event.reason = "other"  # type: ignore[misc]
