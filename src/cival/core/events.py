"""Domain events as the nodes record them: what happened, before it is stored or streamed.

Each event type has one **payload** class here (:data:`PAYLOADS`, type -> class): a
frozen pydantic model whose fields are the event's ``data``. A node builds the payload
where the thing happens and records it in an :class:`EventDraft`, so a misspelt or
missing field fails there (``ValidationError``), in the producer's own test, not later in
the thread that publishes events. Its journal writes the drafts to the store in the same
database transaction as the ledger entries and the state they describe, and the store
gives each one the run's id and the run-wide sequence number (in commit order). The
typed events that readers receive (:mod:`cival.events.models`) are these payloads with
the envelope (id, run, seq, time, entity, source) added: one definition of each field.

``data`` holds JSON values only: amounts as plain decimal strings without exponent or
trailing zeros (``"71234.5"``, ``"0"``), times as ISO 8601 strings, no NaN.

Ids are deterministic: the same happening gets the same id however often a message is
retried or an actor restarted, so the store keeps it once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from cival.core.fmt import iso_utc, plain_decimal

# -- field types --------------------------------------------------------------------------


def plain(value: Decimal) -> str:
    """A Decimal as a plain decimal string, never with an exponent (``1E-8`` -> ``0.00000001``).

    Trailing zeros are kept, so ``"100.50"`` reads back as ``"100.50"``: what readers of
    stored events give back. Producers write :func:`cival.core.fmt.plain_decimal` amounts.
    """
    return format(value, "f")


def _exact_amount(value: Any) -> Any:
    # Refuse what cannot be the exact amount the ledger booked, before pydantic's lax
    # coercion would quietly turn a float into its binary approximation.
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"must be a finite amount, not {value}")
        return value
    if isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"must be a decimal string such as '12.5', not {value!r}") from None
        if not amount.is_finite():
            raise ValueError(f"must be a finite amount, not {value!r}")
        return amount
    if isinstance(value, float):
        raise ValueError(f"must be a decimal string such as '12.5', not the float {value!r}: "  # noqa: TRY004 - pydantic reports a ValueError as the field's error
                         "floats lose precision; write amounts as strings, e.g. str(Decimal)")
    raise ValueError(f"must be a decimal string such as '12.5', not {type(value).__name__} {value!r}")


Amount = Annotated[
    Decimal,
    BeforeValidator(_exact_amount),
    PlainSerializer(plain, return_type=str, when_used="json"),
]
"""An exact amount: a decimal string or Decimal in, Decimal in Python, a plain string in JSON."""


def _iso_time(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO 8601 time string such as '2024-10-30T16:00:00Z', not {value!r}")  # noqa: TRY004
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"must be an ISO 8601 time such as '2024-10-30T16:00:00Z', not {value!r}") from None
    if when.tzinfo is None:
        raise ValueError(f"must carry a time zone (UTC, 'Z'), not {value!r}")
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number or null, not {value!r}")  # noqa: TRY004
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number or null, not {value!r}")
    return float(value)


Text = Annotated[str, Field(strict=True)]
Name = Annotated[str, Field(strict=True, min_length=1)]
Count = Annotated[int, Field(strict=True, ge=0)]
Flag = Annotated[bool, Field(strict=True)]
IsoTime = Annotated[str, BeforeValidator(_iso_time)]
"""An ISO 8601 time with a zone, kept as the string that was written."""
Ratio = Annotated[float, BeforeValidator(_finite)]
JsonObject = dict[str, Any]


_AS_IS = (str, int, float, type(None))  # bool is an int


def _json(value: Any) -> Any:
    """A payload's value as ``data`` holds it (see :meth:`Payload.to_data`)."""
    if isinstance(value, Decimal):
        return plain_decimal(value)
    if isinstance(value, _AS_IS):
        return value
    if isinstance(value, BaseModel):  # a part (a posting, a position...): its fields, in order
        return {name: _json(v) for name, v in value.__dict__.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WalletNode(_Part):
    """One wallet of the tree in ``run_started``: its ref, kind and parent ref."""

    ref: Name
    kind: Literal["master", "farm", "agent"]
    parent: Text | None


class PostingLine(_Part):
    """One leg of a ledger transaction: ``amount`` in the run's currency, ``quantity`` the
    change of units held (position accounts only, else 0)."""

    account: Name
    amount: Amount
    quantity: Amount


class PositionLine(_Part):
    """Units of ``symbol`` held and their cost basis."""

    symbol: Name
    qty: Amount
    cost: Amount


# -- payloads -----------------------------------------------------------------------------

ENVELOPE: tuple[str, ...] = ("id", "run_id", "seq", "at", "type", "entity", "source")
"""The fields every stored event has besides its payload; no payload field takes one of
these names (``fund_allocation``'s wallet ``source`` is the field ``source_wallet``)."""


class Payload(BaseModel):
    """Base of every event type's payload: the event's ``data`` as a checked model.

    Unknown, missing or malformed fields raise ``pydantic.ValidationError`` when the
    payload is built. ``event_type`` is the type it is the payload of.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str] = ""
    _payload_fields: ClassVar[tuple[str, ...]] = ()
    _data_keys: ClassVar[dict[str, str]] = {}
    """Field -> ``data`` key, where they differ (``source_wallet`` is stored as ``source``:
    in the typed events ``source`` is the envelope's, the node that wrote the event)."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._payload_fields = tuple(name for name in cls.model_fields if name not in ENVELOPE)

    def to_data(self) -> dict[str, Any]:
        """The payload as the store keeps it in ``data``: JSON values, amounts as
        :func:`~cival.core.fmt.plain_decimal` strings, keys as stored."""
        values = self.__dict__
        keys = self._data_keys
        if keys:
            return {keys.get(name, name): _json(values[name]) for name in self._payload_fields}
        return {name: _json(values[name]) for name in self._payload_fields}


# One payload per type, in the order the documentation lists them (docs/events.md).


class WalletBalanceUpdatePayload(Payload):
    """A wallet's cash and positions after a change. Entity: the wallet ref."""

    event_type: ClassVar[str] = "wallet_balance_update"
    wallet: Name
    cash: Amount
    currency: Name
    positions: list[PositionLine]


class FundAllocationPayload(Payload):
    """Money moved down the tree, from ``source_wallet`` (data key ``source``) to ``target``.
    Entity: the wallet funded."""

    event_type: ClassVar[str] = "fund_allocation"
    source_wallet: Name
    target: Name
    amount: Amount
    key: Name
    kind: Literal["allocation", "rebalance"]

    _data_keys: ClassVar[dict[str, str]] = {"source_wallet": "source"}


class FundCollectionPayload(Payload):
    """Money sent back up the tree, from ``source_wallet`` (data key ``source``) to its
    parent ``target``. Entity: the wallet giving money back."""

    event_type: ClassVar[str] = "fund_collection"
    source_wallet: Name
    target: Name
    amount: Amount
    key: Name

    _data_keys: ClassVar[dict[str, str]] = {"source_wallet": "source"}


class WalletTransactionPayload(Payload):
    """One balanced ledger transaction of ``ledger`` (number ``tx_seq`` there). Entity:
    the wallet it belongs to. Recorded by reference (:class:`WalletTransactionRef`)."""

    event_type: ClassVar[str] = "wallet_transaction"
    ledger: Name
    tx_seq: Count
    tx_type: Literal["deposit", "withdrawal", "allocation", "collection", "trade_buy", "trade_sell", "fee",
                     "rebalance"]
    key: Name
    postings: list[PostingLine]
    memo: Text


class FarmCreatedPayload(Payload):
    """A farm was set up with its agents. Entity: ``farm:NAME``."""

    event_type: ClassVar[str] = "farm_created"
    farm: Name
    farm_type: Name
    agents_mode: Literal["actors", "inline"]
    allocation: JsonObject
    agents: list[Name]


class FarmPerformanceUpdatePayload(Payload):
    """A farm's figures at a bar's close. Entity: ``farm:NAME``."""

    event_type: ClassVar[str] = "farm_performance_update"
    farm: Name
    equity: Amount
    cash: Amount
    realized_pnl: Amount
    unrealized_pnl: Amount
    fees: Amount
    trades: Count
    in_position: Flag
    max_drawdown: Ratio | None
    """Largest fall from a peak of equity so far, as a fraction (0.05 = 5 %)."""
    sharpe: Ratio | None
    bars: Count


class AgentFarmAssignmentPayload(Payload):
    """An agent was placed in a farm with its strategy. Entity: ``agent:NAME``."""

    event_type: ClassVar[str] = "agent_farm_assignment"
    agent: Name
    farm: Name
    strategy: Name
    params: JsonObject
    symbol: Name


class FarmRebalancePayload(Payload):
    """A wallet rebalanced its children at bar ``bars``; ``moves`` maps each child's name to
    the signed change of its funds. Entity: ``farm:NAME`` or ``master``."""

    event_type: ClassVar[str] = "farm_rebalance"
    wallet: Name
    bars: Count
    moves: dict[str, Amount]


class GoalCreatedPayload(Payload):
    """A goal was set. Entity: ``goal:NAME``."""

    event_type: ClassVar[str] = "goal_created"
    goal: Name
    goal_type: Name
    target: JsonObject
    on_complete: Name
    deadline: JsonObject | None


class GoalProgressUpdatePayload(Payload):
    """A goal's status, progress (percent, 0-100) or collected amount changed. Entity: ``goal:NAME``."""

    event_type: ClassVar[str] = "goal_progress_update"
    goal: Name
    status: Literal["active", "completed", "failed", "cancelled"]
    progress: Amount
    collected: Amount
    bars: Count


class GoalCompletedPayload(Payload):
    """A goal was reached (by ``completing_trade``, if a trade did it). Entity: ``goal:NAME``."""

    event_type: ClassVar[str] = "goal_completed"
    goal: Name
    completed_at: IsoTime
    completing_trade: Text | None
    on_complete: Name


class GoalAssignmentPayload(Payload):
    """A goal was given to a farm or an agent with a weight. Entity: ``goal:NAME``."""

    event_type: ClassVar[str] = "goal_assignment"
    goal: Name
    farm: Text | None
    agent: Text | None
    weight: Amount


class OrderSubmittedPayload(Payload):
    """An agent's signal asked for an order at the next open. Entity: ``agent:NAME``.
    Recorded by reference (:class:`OrderSubmittedRef`)."""

    event_type: ClassVar[str] = "order_submitted"
    order_id: Name
    agent: Name
    symbol: Name
    side: Literal["buy", "sell"]
    signal_at: IsoTime


class OrderRejectedPayload(Payload):
    """An agent's signal asked for a buy that cannot be placed (less than one unit
    affordable): none is submitted. Said once, until a buy is placed, a fill happens or
    money moves in or out. Entity: ``agent:NAME``."""

    event_type: ClassVar[str] = "order_rejected"
    agent: Name
    symbol: Name
    side: Literal["buy", "sell"]
    reason: Text
    signal_at: IsoTime


class OrderFilledPayload(Payload):
    """An order was filled (``reason`` "stop": by a stop, not a signal). Entity: ``agent:NAME``.
    Recorded by reference (:class:`OrderFilledRef`)."""

    event_type: ClassVar[str] = "order_filled"
    fill_id: Name
    order_id: Text | None
    agent: Name
    symbol: Name
    side: Literal["buy", "sell"]
    qty: Amount
    price: Amount
    fee: Amount
    notional: Amount | None
    reason: Literal["signal", "stop"]


class HaltPayload(Payload):
    """A farm or agent was halted (``resume`` False) or allowed to trade again (``resume``
    True). Entity: ``farm:NAME`` or ``agent:NAME``."""

    event_type: ClassVar[str] = "halt"
    reason: Name
    resume: Flag


class OperatorActionPayload(Payload):
    """An operator's command to a running session (number ``n``): what it was (``command``,
    ``target``), who gave it (``by``), and what it did (``status`` ``applied`` or
    ``refused``; ``result``: what it booked, or the error). Entity: ``run``."""

    event_type: ClassVar[str] = "operator_action"
    n: Count
    command: Name
    target: Name
    by: Name
    status: Literal["applied", "refused"]
    result: JsonObject


class RunStartedPayload(Payload):
    """A run began: where it runs, what it trades, its wallet tree and config. Entity: ``run``."""

    event_type: ClassVar[str] = "run_started"
    cluster: Name
    mode: Literal["ray", "local"]
    symbol: Name
    data: Text | None
    """Where bars come from (a file path, ``synthetic``...), None if not known."""
    store: Literal["postgres", "sqlite"]
    streams: Literal["redis", "in-process"]
    currency: Name
    wallets: list[WalletNode]
    config: JsonObject


class RunFinishedPayload(Payload):
    """A run ended. ``start``/``end``: ISO times of the first and last bar (None: no bars).
    Entity: ``run``."""

    event_type: ClassVar[str] = "run_finished"
    status: Literal["finished", "interrupted", "failed"]
    bars: Count
    start: IsoTime | None
    end: IsoTime | None
    total_equity: Amount
    audit_ok: Flag


PAYLOADS: dict[str, type[Payload]] = {
    cls.event_type: cls
    for cls in (
        WalletBalanceUpdatePayload, FundAllocationPayload, FundCollectionPayload, WalletTransactionPayload,
        FarmCreatedPayload, FarmPerformanceUpdatePayload, AgentFarmAssignmentPayload, FarmRebalancePayload,
        GoalCreatedPayload, GoalProgressUpdatePayload, GoalCompletedPayload, GoalAssignmentPayload,
        OrderSubmittedPayload, OrderRejectedPayload, OrderFilledPayload, HaltPayload, OperatorActionPayload,
        RunStartedPayload, RunFinishedPayload,
    )
}
"""Every domain event type -> its payload class, in the order the documentation lists
them: the one list of event types (the typed events, ``cival watch`` and the AG-UI
encoder are keyed on it)."""

EVENT_TYPES: tuple[str, ...] = tuple(PAYLOADS)
"""Every domain event type, in the order the documentation lists them."""


# -- by reference -------------------------------------------------------------------------


class WalletTransactionRef(Payload):
    """A ``wallet_transaction`` as recorded: a reference to transaction ``tx_seq`` of ``ledger``."""

    event_type: ClassVar[str] = "wallet_transaction"
    ledger: Name
    tx_seq: Count


class OrderFilledRef(Payload):
    """An ``order_filled`` as recorded: a reference to the ``fills`` row ``fill_id``."""

    event_type: ClassVar[str] = "order_filled"
    fill_id: Name


class OrderSubmittedRef(Payload):
    """An ``order_submitted`` as recorded: a reference to the ``orders`` row ``order_id``."""

    event_type: ClassVar[str] = "order_submitted"
    order_id: Name


REFERENCES: dict[str, type[Payload]] = {
    cls.event_type: cls for cls in (WalletTransactionRef, OrderFilledRef, OrderSubmittedRef)
}
"""Event types recorded by reference -> the reference's payload class."""

BY_REFERENCE = {"wallet_transaction": "tx_seq", "order_filled": "fill_id", "order_submitted": "order_id"}
"""Event types stored as a reference to the rows they repeat (a ledger transaction, a
fill, an order): their data holds only the reference (``ledger`` and ``tx_seq``;
``fill_id``; ``order_id``, see :data:`REFERENCES`) and a store expands it from those
rows when it reads them back (the same data as written out in full), instead of keeping
everything twice."""


# -- drafts and stored events ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class EventDraft:
    """One domain event, before the store numbers it: built from a :class:`Payload`,
    whose type and ``data`` (:meth:`Payload.to_data`) it takes.

    ``entity`` is what the event is about: ``master``, ``farm:NAME``, ``agent:NAME``,
    ``goal:NAME`` or ``run``. ``at`` is the domain time (the bar's time for trading
    events), UTC.
    """

    id: str
    type: str
    entity: str
    at: datetime
    data: dict[str, Any]

    def __init__(self, id: str, entity: str, at: datetime, payload: Payload) -> None:
        if not isinstance(payload, Payload) or not payload.event_type:
            raise TypeError(f"event {id!r}: the payload must be one of cival.core.events.PAYLOADS (or a reference), "
                            f"not {type(payload).__name__}")
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "type", payload.event_type)
        object.__setattr__(self, "entity", entity)
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "data", payload.to_data())


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


# -- events expanded from the rows they refer to --------------------------------------------


def tx_event_data(ledger: str, tx: Any) -> dict[str, Any]:
    """A ``wallet_transaction`` event's data: ledger transaction ``tx`` of ``ledger``."""
    return WalletTransactionPayload(
        ledger=ledger,
        tx_seq=tx.seq,
        tx_type=tx.type.value,
        key=tx.idempotency_key,
        postings=[PostingLine(account=p.account, amount=p.amount, quantity=p.quantity) for p in tx.postings],
        memo=tx.memo,
    ).to_data()


def fill_event_data(fill: Any) -> dict[str, Any]:
    """An ``order_filled`` event's data, from a fill (a Fill message or a ``fills`` row:
    attributes or keys ``id``, ``order_id``, ``agent``, ``symbol``, ``side``, ``qty``,
    ``price``, ``fee``, ``notional``, ``reason``)."""
    get = fill.get if isinstance(fill, dict) else lambda k: getattr(fill, k)
    return OrderFilledPayload(
        fill_id=get("id"),
        order_id=get("order_id"),
        agent=get("agent"),
        symbol=get("symbol"),
        side=get("side"),
        qty=_decimal(get("qty")),
        price=_decimal(get("price")),
        fee=_decimal(get("fee")),
        notional=None if get("notional") is None else _decimal(get("notional")),
        reason=get("reason"),
    ).to_data()


def order_event_data(order: dict[str, Any]) -> dict[str, Any]:
    """An ``order_submitted`` event's data, from an ``orders`` row."""
    return OrderSubmittedPayload(
        order_id=order["id"],
        agent=order["agent"],
        symbol=order["symbol"],
        side=order["side"],
        signal_at=iso_utc(order["signal_at"]),
    ).to_data()


def _decimal(value: Any) -> Decimal:
    # A row's amount: Decimal from the stores; a float only from a Fill built in memory.
    return value if isinstance(value, Decimal) else Decimal(str(value))


__all__ = [
    "BY_REFERENCE", "ENVELOPE", "EVENT_TYPES", "PAYLOADS", "REFERENCES",
    "AgentFarmAssignmentPayload", "Amount", "Count", "EventDraft", "EventLog", "FarmCreatedPayload",
    "FarmPerformanceUpdatePayload", "FarmRebalancePayload", "Flag", "FundAllocationPayload", "FundCollectionPayload",
    "GoalAssignmentPayload", "GoalCompletedPayload", "GoalCreatedPayload", "GoalProgressUpdatePayload", "HaltPayload",
    "OperatorActionPayload",
    "IsoTime", "JsonObject", "Name", "OrderFilledPayload", "OrderFilledRef", "OrderRejectedPayload",
    "OrderSubmittedPayload", "OrderSubmittedRef", "Payload", "PositionLine", "PostingLine", "Ratio",
    "RunFinishedPayload", "RunStartedPayload", "StoredEvent", "Text", "WalletBalanceUpdatePayload", "WalletNode",
    "WalletTransactionPayload", "WalletTransactionRef", "fill_event_data",
    "order_event_data", "plain", "tx_event_data",
]
