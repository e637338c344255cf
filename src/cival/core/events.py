"""Domain events as the nodes record them: what happened, before it is stored or streamed.

A node (master, farm, agent) appends an :class:`EventDraft` for each thing that happened
while it handled a message; its journal writes the drafts to the store in the same
database transaction as the ledger entries and the state they describe, and the store
gives each one the run's id and the run-wide sequence number (in commit order). The
typed, validated events that readers receive are built from the stored rows
(:mod:`cival.events`).

Ids are deterministic: the same happening gets the same id however often a message is
retried or an actor restarted, so the store keeps it once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cival.core.fmt import iso_utc, plain_decimal

EVENT_TYPES: tuple[str, ...] = (
    # the seed's
    "wallet_balance_update",
    "fund_allocation",
    "fund_collection",
    "wallet_transaction",
    "farm_created",
    "farm_performance_update",
    "agent_farm_assignment",
    "farm_rebalance",
    "goal_created",
    "goal_progress_update",
    "goal_completed",
    "goal_assignment",
    # the runtime's
    "order_submitted",
    "order_rejected",
    "order_filled",
    "halt",
    "run_started",
    "run_finished",
)
"""Every domain event type, in the order the documentation lists them."""


@dataclass(frozen=True, slots=True)
class EventDraft:
    """One domain event, before the store numbers it.

    ``entity`` is what the event is about: ``master``, ``farm:NAME``, ``agent:NAME``,
    ``goal:NAME`` or ``run``. ``at`` is the domain time (the bar's time for trading
    events), UTC. ``data`` holds JSON values only: amounts as decimal strings, times as
    ISO 8601 strings, no NaN.
    """

    id: str
    type: str
    entity: str
    at: datetime
    data: dict[str, Any] = field(default_factory=dict)


class EventLog(list[EventDraft]):
    """The events a node recorded and its journal has not taken yet. Kept only once a
    journal takes them (``keep``): a node that nobody journals does not grow."""

    keep = False

    def record(self, event: EventDraft) -> None:
        if self.keep:
            self.append(event)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as the store keeps it: the draft with its run and its run-wide sequence
    number (1, 2, 3... in commit order, no gaps) and the node that wrote it."""

    run_id: str
    seq: int
    id: str
    source: str
    type: str
    entity: str
    at: datetime
    data: dict[str, Any]


def tx_event_data(ledger: str, tx: Any) -> dict[str, Any]:
    """A ``wallet_transaction`` event's data: ledger transaction ``tx`` of ``ledger``."""
    return {
        "ledger": ledger,
        "tx_seq": tx.seq,
        "tx_type": tx.type.value,
        "key": tx.idempotency_key,
        "postings": [{"account": p.account, "amount": plain_decimal(p.amount), "quantity": plain_decimal(p.quantity)} for p in tx.postings],
        "memo": tx.memo,
    }


def fill_event_data(fill: Any) -> dict[str, Any]:
    """An ``order_filled`` event's data, from a fill (a Fill message or a ``fills`` row:
    attributes or keys ``id``, ``order_id``, ``agent``, ``symbol``, ``side``, ``qty``,
    ``price``, ``fee``, ``notional``, ``reason``)."""
    get = fill.get if isinstance(fill, dict) else lambda k: getattr(fill, k)
    notional = get("notional")
    return {
        "fill_id": get("id"),
        "order_id": get("order_id"),
        "agent": get("agent"),
        "symbol": get("symbol"),
        "side": get("side"),
        "qty": plain_decimal(get("qty")),
        "price": plain_decimal(get("price")),
        "fee": plain_decimal(get("fee")),
        "notional": None if notional is None else plain_decimal(notional),
        "reason": get("reason"),
    }


def order_event_data(order: dict[str, Any]) -> dict[str, Any]:
    """An ``order_submitted`` event's data, from an ``orders`` row."""
    return {
        "order_id": order["id"],
        "agent": order["agent"],
        "symbol": order["symbol"],
        "side": order["side"],
        "signal_at": iso_utc(order["signal_at"]),
    }


BY_REFERENCE = {"wallet_transaction": "tx_seq", "order_filled": "fill_id", "order_submitted": "order_id"}
"""Event types stored as a reference to the rows they repeat (a ledger transaction, a
fill, an order): their data holds only the reference (``ledger`` and ``tx_seq``;
``fill_id``; ``order_id``) and a store expands it from those rows when it reads them back
(the same data as written out in full), instead of keeping everything twice."""


__all__ = [
    "BY_REFERENCE", "EVENT_TYPES", "EventDraft", "EventLog", "StoredEvent", "fill_event_data", "order_event_data", "tx_event_data",
]
