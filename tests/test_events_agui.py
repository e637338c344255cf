"""The AG-UI encoding: every produced event is valid for the ag_ui package's own models,
and a consumer that applies the snapshot and then every delta holds the encoder's state."""

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
from ag_ui.core import (
    Event as AguiEvent,
)
from pydantic import TypeAdapter

from cival.events import AguiEncoder, EventError, apply_patch, parse_event
from tests.helpers import RUN, SAMPLES, SEQUENCE, apply, stored, with_

ANY_AGUI = TypeAdapter(AguiEvent)


def round_trip(event: Any) -> dict[str, Any]:
    """The event's wire JSON, validated back through its own class and the AG-UI union."""
    text = event.model_dump_json(by_alias=True, exclude_none=True)
    again = type(event).model_validate_json(text)
    assert again == event
    assert type(ANY_AGUI.validate_json(text)) is type(event)
    return json.loads(text)


def sequence_events():
    return [parse_event(stored(t, seq, data=data, entity=entity)) for seq, (t, data, entity)
            in enumerate(SEQUENCE, start=1)]


def test_a_whole_run_encodes_to_valid_agui_and_the_deltas_rebuild_the_state():
    events = sequence_events()
    encoder = AguiEncoder(RUN, "thread")
    out = []
    for event in events:
        produced = encoder.encode(event)
        assert produced and all(p.timestamp == int(event.at.timestamp() * 1000) for p in produced)
        out.extend(produced)

    assert isinstance(out[0], RunStartedEvent) and isinstance(out[-1], RunFinishedEvent)
    assert out[0].run_id == RUN and out[0].thread_id == "demo" and out[0].protocol_version == "1.0"
    assert (out[-1].run_id, out[-1].thread_id) == (RUN, "demo")
    assert out[-1].outcome is None  # success
    assert out[-1].result == {"status": "finished", "bars": 720, "total_equity": "100512.34", "audit_ok": True}
    wire = [round_trip(p) for p in out]

    customs = [p for p in out if isinstance(p, CustomEvent)]
    assert [c.name for c in customs] == [t for t, _, _ in SEQUENCE]
    for custom, event in zip(customs, events, strict=True):
        assert custom.value == {"id": event.id, "seq": event.seq, "entity": event.entity, "source": event.source,
                                "at": event.at.isoformat().replace("+00:00", "Z"), **event.fields()}

    # A consumer: the snapshot after RUN_STARTED, then every delta, from the JSON it received.
    assert wire[2]["type"] == "STATE_SNAPSHOT"
    state = None
    for body in wire:
        if body["type"] == "STATE_SNAPSHOT":
            state = copy.deepcopy(body["snapshot"])
        elif body["type"] == "STATE_DELTA":
            assert state is not None
            state = apply(state, body["delta"])
    assert state == encoder.state == encoder.snapshot().snapshot

    agent = state["wallets"]["agent:gator-13-8-5"]
    assert agent == {"kind": "agent", "parent": "farm:trend", "cash": "14347.15000000",
                     "positions": {"BTCUSDT": {"qty": "0.5", "cost": "35617.25"}}, "allocated": "50000",
                     "collected": "0", "halted": "drawdown"}
    assert state["wallets"]["farm:trend"]["allocated"] == "60000.00"
    assert state["wallets"]["farm:trend"]["collected"] == "512.34"
    assert state["wallets"]["farm:trend"]["cash"] == "60000"
    assert state["farms"]["trend"]["equity"] == "60512.34" and state["farms"]["trend"]["trades"] == 4
    assert state["farms"]["trend"]["farm_type"] == "trend_following"
    assert state["agents"]["gator-13-8-5"] == {"farm": "trend", "strategy": "alligator", "symbol": "BTCUSDT"}
    goal = state["goals"]["first-profit"]
    assert (goal["status"], goal["progress"], goal["collected"]) == ("completed", "100", "512.34")
    assert goal["completed_at"] == "2024-10-30T16:00:00Z" and goal["assignments"] == {"farm:trend": "1"}
    assert state["run"]["status"] == "finished" and state["run"]["bars"] == 720
    assert state["run"]["total_equity"] == "100512.34" and state["run"]["audit_ok"] is True


def test_which_domain_events_change_the_state():
    encoder = AguiEncoder(RUN)
    kinds = {}
    for event in sequence_events():
        kinds.setdefault(event.type, []).append([type(p).__name__ for p in encoder.encode(event)])
    assert kinds["run_started"] == [["RunStartedEvent", "CustomEvent", "StateSnapshotEvent"]]
    assert kinds["run_finished"] == [["CustomEvent", "StateDeltaEvent", "RunFinishedEvent"]]
    for custom_only in ("order_submitted", "order_filled", "wallet_transaction", "farm_rebalance"):
        assert kinds[custom_only] == [["CustomEvent"]], custom_only
    for stateful in ("wallet_balance_update", "fund_allocation", "fund_collection", "farm_performance_update",
                     "goal_progress_update", "goal_completed", "halt", "farm_created", "goal_created"):
        assert all(k == ["CustomEvent", "StateDeltaEvent"] for k in kinds[stateful]), stateful


def test_add_for_new_members_replace_for_changed_ones_nothing_when_unchanged():
    encoder = AguiEncoder(RUN)
    first = encoder.encode(parse_event(stored("wallet_balance_update", 1)))
    assert isinstance(first[1], StateDeltaEvent)
    ops = [op.model_dump() for op in first[1].delta]
    assert ops == [{"op": "add", "path": "/wallets/agent:gator-13-8-5", "value": {
        "kind": "agent", "parent": None, "cash": "14347.15000000",
        "positions": {"BTCUSDT": {"qty": "0.5", "cost": "35617.25"}}, "allocated": "0", "collected": "0",
        "halted": None}}]

    second = encoder.encode(parse_event(stored("wallet_balance_update", 2, data=with_(
        "wallet_balance_update", cash="100", positions=[]))))
    assert [op.model_dump() for op in second[1].delta] == [
        {"op": "replace", "path": "/wallets/agent:gator-13-8-5/cash", "value": "100"},
        {"op": "replace", "path": "/wallets/agent:gator-13-8-5/positions", "value": {}},
    ]
    same = encoder.encode(parse_event(stored("wallet_balance_update", 3, data=with_(
        "wallet_balance_update", cash="100", positions=[]))))
    assert [type(p) for p in same] == [CustomEvent]


def test_pointer_tokens_are_escaped():
    encoder = AguiEncoder(RUN)
    before = encoder.state
    odd = "agent:a/b~c"
    produced = encoder.encode(parse_event(stored("halt", 1, entity=odd)))
    body = round_trip(produced[1])
    assert body["delta"][0]["path"] == "/wallets/agent:a~1b~0c"
    assert apply(before, body["delta"]) == encoder.state
    assert encoder.state["wallets"][odd]["halted"] == "drawdown"


def test_halt_and_resume():
    encoder = AguiEncoder(RUN)
    encoder.encode(parse_event(stored("run_started", 1)))
    encoder.encode(parse_event(stored("halt", 2)))
    assert encoder.state["wallets"]["agent:gator-13-8-5"]["halted"] == "drawdown"
    out = encoder.encode(parse_event(stored("halt", 3, data={"reason": "drawdown", "resume": True})))
    assert [op.model_dump() for op in out[1].delta] == [
        {"op": "replace", "path": "/wallets/agent:gator-13-8-5/halted", "value": None}]


@pytest.mark.parametrize(("status", "last"), [("failed", RunErrorEvent), ("interrupted", RunFinishedEvent)])
def test_a_failed_run_ends_with_run_error_an_interrupted_one_cancelled(status, last):
    encoder = AguiEncoder(RUN)
    encoder.encode(parse_event(stored("run_started", 1)))
    out = encoder.encode(parse_event(stored("run_finished", 2, data=with_("run_finished", status=status))))
    assert isinstance(out[-1], last)
    assert [op.model_dump() for op in out[1].delta][0] == {"op": "replace", "path": "/run/status", "value": status}
    body = round_trip(out[-1])
    if status == "failed":
        assert "failed after 720 bars" in body["message"] and body["code"] == "run_failed"
    else:
        assert body["outcome"] == {"type": "cancelled"}


def test_the_state_stays_bounded():
    encoder = AguiEncoder(RUN)
    encoder.encode(parse_event(stored("run_started", 1)))
    sizes = []
    for seq in range(2, 2002):
        kind = ("wallet_balance_update", "farm_performance_update", "goal_progress_update", "order_filled")[seq % 4]
        data = with_(kind, bars=seq % 9) if kind in ("farm_performance_update", "goal_progress_update") else None
        encoder.encode(parse_event(stored(kind, seq, data=data)))
        if seq in (101, 2001):
            sizes.append(len(json.dumps(encoder.state)))
    assert sizes[0] == sizes[1]


def test_state_and_snapshot_are_copies():
    encoder = AguiEncoder(RUN)
    encoder.encode(parse_event(stored("run_started", 1)))
    state = encoder.state
    state["wallets"]["master"]["cash"] = "1"
    snap = encoder.snapshot()
    snap.snapshot["run"]["status"] = "tampered"
    assert encoder.state["wallets"]["master"]["cash"] is None
    assert encoder.state["run"]["status"] == "running"
    assert isinstance(round_trip(snap)["snapshot"], dict)


def test_deltas_handed_out_do_not_change_afterwards():
    encoder = AguiEncoder(RUN)
    first = encoder.encode(parse_event(stored("wallet_balance_update", 1)))
    kept = first[1].model_dump(by_alias=True)
    encoder.encode(parse_event(stored("wallet_balance_update", 2, data=with_("wallet_balance_update", cash="1"))))
    assert first[1].model_dump(by_alias=True) == kept


def test_an_event_of_another_run_is_refused():
    with pytest.raises(EventError, match="one encoder per run"):
        AguiEncoder("other-run").encode(parse_event(stored("halt", 1)))


def test_the_packaged_applier_agrees_with_the_test_applier():
    encoder = AguiEncoder(RUN)
    mine: dict[str, Any] = {}
    theirs: dict[str, Any] = {}
    for event in sequence_events():
        for wire in encoder.encode_wire(event):
            if wire.agui_type == "STATE_SNAPSHOT":
                mine = copy.deepcopy(wire.body["snapshot"])
                apply_patch(theirs, [{"op": "replace", "path": "", "value": wire.body["snapshot"]}])
            elif wire.agui_type == "STATE_DELTA":
                mine = apply(mine, wire.body["delta"])
                apply_patch(theirs, wire.body["delta"])
    assert mine == theirs == encoder.state
    with pytest.raises(EventError, match="resynchronise"):
        apply_patch(theirs, [{"op": "replace", "path": "/wallets/nobody/cash", "value": "1"}])


def test_the_wire_form_is_the_models_dump():
    encoder, twin = AguiEncoder(RUN), AguiEncoder(RUN)
    for event in sequence_events():
        models = encoder.encode(event)
        wires = twin.encode_wire(event)
        assert [m.model_dump(by_alias=True, exclude_none=True, mode="json") for m in models] == [
            w.body for w in wires]
    assert isinstance(twin.snapshot(), StateSnapshotEvent)
    assert SAMPLES  # the samples module is shared
