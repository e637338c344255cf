"""Events are typed where they are recorded: each type's payload class refuses a misspelt,
missing or malformed field when it is built; the typed events, ``cival watch`` and the
AG-UI encoder are keyed on the one list of types; and a session that goes through every
producer stores only events that read back strictly as their type, with the data their
payload class writes."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from cival.core.events import (
    BY_REFERENCE,
    ENVELOPE,
    EVENT_TYPES,
    PAYLOADS,
    REFERENCES,
    EventDraft,
    FarmPerformanceUpdatePayload,
    FundAllocationPayload,
    FundCollectionPayload,
    HaltPayload,
    OrderRejectedPayload,
    PositionLine,
    WalletBalanceUpdatePayload,
    WalletTransactionRef,
)
from cival.events import EVENT_CLASSES, parse_event
from cival.events.agui import CUSTOM_ONLY, STATE_CHANGES
from cival.events.watch import DETAILS

T0 = datetime(2024, 10, 30, 16, 0, tzinfo=UTC)


# -- payloads built by hand -------------------------------------------------------------------


def test_a_payload_gives_the_data_the_store_keeps():
    payload = FundAllocationPayload(source_wallet="master", target="farm:trend", amount=Decimal("60000.00000000"),
                                    key="fund:farm:trend", kind="allocation")
    draft = EventDraft("allocation:fund:farm:trend", "farm:trend", T0, payload)
    assert draft.type == "fund_allocation"
    assert draft.data == {"source": "master", "target": "farm:trend", "amount": "60000", "key": "fund:farm:trend",
                          "kind": "allocation"}
    assert list(draft.data) == ["source", "target", "amount", "key", "kind"]  # the stored key order
    balance = WalletBalanceUpdatePayload(wallet="agent:a", cash=Decimal("0E-8"), currency="USD",
                                         positions=[PositionLine(symbol="BTC", qty=Decimal("1E-8"), cost="35617.250")])
    assert balance.to_data() == {"wallet": "agent:a", "cash": "0", "currency": "USD",
                                 "positions": [{"symbol": "BTC", "qty": "0.00000001", "cost": "35617.25"}]}


@pytest.mark.parametrize(
    ("amount", "stored"),
    [("100.50000000", "100.5"), ("0.00000000", "0"), ("-0", "0"), ("1E-8", "0.00000001"), ("1E+3", "1000"),
     ("71234.5", "71234.5"), ("-250.50", "-250.5")],
)
def test_amounts_are_stored_plain_without_trailing_zeros(amount, stored):
    payload = FundCollectionPayload(source_wallet="farm:a", target="master", amount=Decimal(amount), key="k")
    assert payload.to_data()["amount"] == stored
    # A string amount is the same amount.
    assert FundCollectionPayload(source_wallet="farm:a", target="master", amount=amount, key="k").to_data() == payload.to_data()


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: HaltPayload(reason="drawdown", resumed=False), "resumed"),  # misspelt
        (lambda: HaltPayload(reason="drawdown"), "resume"),  # missing
        (lambda: HaltPayload(reason="drawdown", resume=1), "resume"),  # not a flag
        (lambda: FundAllocationPayload(source="master", target="farm:a", amount="1", key="k", kind="allocation"),
         "source"),  # the data key is not the field
        (lambda: FundCollectionPayload(source_wallet="farm:a", target="master", amount=0.1, key="k"), "amount"),
        (lambda: OrderRejectedPayload(agent="a", symbol="X", side="buy", reason="r", signal_at="2024-10-30 16:00"),
         "signal_at"),  # no zone
        (lambda: FarmPerformanceUpdatePayload(farm="f", equity="1", cash="1", realized_pnl="0", unrealized_pnl="0",
                                              fees="0", trades=1, in_position=False, max_drawdown=None, sharpe=None,
                                              bar=3), "bar"),
        (lambda: WalletBalanceUpdatePayload(wallet="w", cash="1", currency="USD",
                                            positions=[{"symbol": "X", "quantity": "1", "cost": "1"}]), "quantity"),
        (lambda: WalletTransactionRef(ledger="agent:a", seq=3), "seq"),
    ],
)
def test_a_wrong_field_fails_where_the_payload_is_built(build, field):
    with pytest.raises(ValidationError) as caught:
        build()
    assert any(field in (str(part) for part in error["loc"]) for error in caught.value.errors())


def test_a_draft_takes_only_a_payload():
    with pytest.raises(TypeError, match="payload"):
        EventDraft("halt:1", "agent:a", T0, {"reason": "drawdown", "resume": False})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        EventDraft("halt:1", "halt", "agent:a", T0, HaltPayload(reason="drawdown", resume=False))  # type: ignore[call-arg]


# -- one list of types --------------------------------------------------------------------------


def test_the_typed_events_are_the_payloads_with_the_envelope():
    assert tuple(EVENT_CLASSES) == EVENT_TYPES == tuple(PAYLOADS)
    for event_type, model in EVENT_CLASSES.items():
        payload = PAYLOADS[event_type]
        assert issubclass(model, payload) and payload.event_type == event_type
        assert model.model_fields["type"].default == event_type
        assert list(model.model_fields) == [*ENVELOPE, *payload.model_fields], event_type
        for name, field in payload.model_fields.items():
            assert model.model_fields[name].annotation == field.annotation, (event_type, name)
        assert model._data_keys == payload._data_keys


def test_references_name_fields_of_the_full_payload():
    assert set(REFERENCES) == set(BY_REFERENCE)
    for event_type, ref in REFERENCES.items():
        fields = set(ref.model_fields)
        assert BY_REFERENCE[event_type] in fields
        assert fields <= set(PAYLOADS[event_type].model_fields)


def test_watch_and_the_ag_ui_encoder_handle_every_type_of_the_list():
    assert set(DETAILS) == set(EVENT_TYPES)
    assert not set(STATE_CHANGES) & CUSTOM_ONLY and "run_started" not in set(STATE_CHANGES) | CUSTOM_ONLY
    assert set(STATE_CHANGES) | CUSTOM_ONLY | {"run_started"} == set(EVENT_TYPES)


# -- every producer, in a session -----------------------------------------------------------------


def _session_config():
    """The recovery cluster on seeded synthetic bars, with a farm whose agent can never
    afford one unit (its buys are rejected)."""
    from cival.config import config_from_dict
    from tests.helpers import recovery_config

    raw = recovery_config().model_dump(mode="json", exclude_none=True)
    raw["farms"].append({"name": "idle", "type": "breakout",
                         "agents": [{"name": "idle-darvas", "strategy": "darvas", "sizing": {"qty_step": "100000"}}]})
    raw["data"] = {"source": "synthetic", "bars": 2000, "seed": 7}
    return config_from_dict(raw)


def _payload_of(event_type: str, data: dict[str, Any]):
    cls = PAYLOADS[event_type]
    fields = {next((f for f, k in cls._data_keys.items() if k == key), key): value for key, value in data.items()}
    return cls.model_validate(fields)


@pytest.mark.slow
def test_a_session_through_every_producer_stores_only_events_that_read_back_strictly(tmp_path):
    from cival.session import Session, SessionConfig, session_bars
    from cival.store.sqlite import SqliteStore

    config = _session_config()
    clusters: list[Any] = []
    done: list[str] = []
    by_hand = (
        (300, "halt an agent", lambda c: c.halt("agent:gator-b", "checking by hand")),
        (600, "resume it", lambda c: c.halt("agent:gator-b", "checked", resume=True)),
        (800, "collect", lambda c: c.collect("trend", Decimal("100.50"), "by hand")),
        (900, "halt a farm", lambda c: c.halt("farm:waves", "too volatile")),
        (1000, "an operator's command", lambda c: session.deposit("10", by="tester")),
    )

    def on_progress(progress: Any) -> None:
        for bars, what, act in by_hand:
            if progress.bars >= bars and what not in done:
                done.append(what)
                act(clusters[0])

    store = SqliteStore(tmp_path / "store.sqlite3")
    store.migrate()
    session = Session(config, SessionConfig(local=True, batch_size=100), bars=session_bars(config), store=store,
                      on_cluster=clusters.append, on_progress=on_progress)
    result = session.run()
    assert len(done) == len(by_hand) and result.audit.ok
    rows = store.events(result.run_id)
    store.close()
    seen = Counter(row.type for row in rows)
    assert set(seen) == set(EVENT_TYPES), f"types no producer recorded: {set(EVENT_TYPES) - set(seen)}"
    # Each producer of a type that several nodes record was reached.
    entities = {(row.type, row.entity.split(":", 1)[0]) for row in rows}
    assert {("halt", "agent"), ("halt", "farm"), ("farm_rebalance", "master"), ("farm_rebalance", "farm")} <= entities
    reasons = {row.data.get("reason") for row in rows if row.type == "halt"}
    assert {"checking by hand", "checked", "too volatile"} <= reasons and any("drawdown" in str(r) for r in reasons)
    (action,) = [row for row in rows if row.type == "operator_action"]
    assert (action.data["command"], action.data["by"], action.data["status"], action.data["result"]["amount"]) == (
        "deposit", "tester", "applied", "10")
    hand = [row for row in rows if row.type == "fund_collection" and row.data["amount"] == "100.5"]
    assert hand and hand[0].data["source"] == "farm:trend"
    for row in rows:
        event = parse_event(row)  # every model forbids unknown keys and requires every field
        assert event.payload() == row.data
        # Exactly the data the payload class writes: nothing a producer added on the side,
        # amounts in the one stored form.
        assert _payload_of(row.type, row.data).to_data() == row.data, row
