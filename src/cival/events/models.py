"""Typed domain events: one frozen pydantic model per event type.

Each model is its type's payload class from :data:`cival.core.events.PAYLOADS` (what a
node builds when it records the event) with the envelope added, so the fields a node
writes and the fields a reader gets are declared once, and the types are listed once.

The store gives back rows (:class:`StoredEvent`); :func:`parse_event` checks a row's
``data`` against its type and returns the matching model, whose payload fields are
top-level attributes (``event.amount``, not ``event.data["amount"]``).
:meth:`Event.payload` gives the ``data`` back, JSON-ready, exactly as stored.

Amounts are exact: in ``data`` they are plain decimal strings (``"71234.5"``), in the
models :class:`~decimal.Decimal`. A float where an amount is expected is refused, since
it has already lost the exact value the ledger booked; so are integers and booleans,
which would not round-trip to the same ``data``.

One name is shared by the envelope and a payload: ``source``. In the envelope it is the
node that wrote the event (``master``, ``farm:NAME``...); in ``fund_allocation`` and
``fund_collection`` it is the wallet the money comes from. The models keep the envelope's
meaning for ``source`` and call the payload's ``source_wallet``; ``data`` and
:meth:`Event.payload` still use the key ``source``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from cival.core.errors import CivalError
from cival.core.events import (
    ENVELOPE,
    EVENT_TYPES,
    PAYLOADS,
    AgentFarmAssignmentPayload,
    Amount,
    FarmCreatedPayload,
    FarmPerformanceUpdatePayload,
    FarmRebalancePayload,
    FundAllocationPayload,
    FundCollectionPayload,
    GoalAssignmentPayload,
    GoalCompletedPayload,
    GoalCreatedPayload,
    GoalProgressUpdatePayload,
    HaltPayload,
    OperatorActionPayload,
    Name,
    OrderFilledPayload,
    OrderRejectedPayload,
    OrderSubmittedPayload,
    PositionLine,
    PostingLine,
    RunFinishedPayload,
    RunStartedPayload,
    WalletBalanceUpdatePayload,
    WalletNode,
    WalletTransactionPayload,
    plain,
)
from cival.core.events import StoredEvent as _CoreStoredEvent

# The store's row type lives in the core (the store and this package both use it); it is
# re-exported here because readers of events meet it together with the models.
StoredEvent = _CoreStoredEvent
"""One domain event as the store gives it back: ``run_id``, ``seq`` (run-wide, 1, 2, 3... in
commit order, no gaps), ``id`` (unique within the run, deterministic), ``source`` (the node
that wrote it), ``type``, ``entity``, ``at`` (UTC) and ``data`` (JSON values only)."""


class EventError(CivalError):
    """A stored event that cannot be read as its type: unknown type, missing, extra or
    malformed payload fields. ``problems`` lists ``(field, message)`` pairs."""

    def __init__(self, message: str, *, event_id: str = "", seq: int | None = None,
                 problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.event_id = event_id
        self.seq = seq
        self.problems = problems


def _utc(value: datetime) -> datetime:
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a time zone (UTC); the store gives aware UTC times")
    return value.astimezone(UTC)


# -- the envelope -------------------------------------------------------------------------


class Event(BaseModel):
    """Base of every domain event: the envelope. Each type's model adds its payload's
    fields by deriving from its payload class (:data:`cival.core.events.PAYLOADS`), so the
    fields a node records and the fields readers get are defined once.

    ``at`` is normalised to UTC; a naive time is refused. Build events from store rows
    with :func:`parse_event`, not by hand, so that the payload is checked the same way
    everywhere.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Name
    run_id: Name
    seq: Annotated[int, Field(strict=True, ge=1)]
    at: datetime
    type: str
    entity: Name
    source: Name

    _data_keys: ClassVar[dict[str, str]] = {}
    """Model attribute -> ``data`` key, where they differ (see the module's docstring)."""
    _payload_fields: ClassVar[tuple[str, ...]] = ()
    _payload_set: ClassVar[frozenset[str]] = frozenset()

    @field_validator("at")
    @classmethod
    def _at_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._payload_fields = tuple(name for name in cls.model_fields if name not in ENVELOPE)
        cls._payload_set = frozenset(cls._payload_fields)

    def payload(self) -> dict[str, Any]:
        """The payload as ``data`` holds it: JSON values, amounts as plain decimal strings
        (trailing zeros as stored), keys as stored (``source`` for ``source_wallet``)."""
        out = self.model_dump(mode="json", include=self._payload_set)
        if self._data_keys:
            out = {self._data_keys.get(name, name): value for name, value in out.items()}
        return out

    def fields(self) -> dict[str, Any]:
        """The payload under the model's attribute names (``source_wallet``, not ``source``),
        JSON-ready: what the AG-UI ``CUSTOM`` value carries besides the envelope."""
        return self.model_dump(mode="json", include=self._payload_set)


# -- one model per type: the envelope and the type's payload ------------------------------
# (payload first among the bases, so that its ``_data_keys`` is the one the model uses)


class WalletBalanceUpdate(WalletBalanceUpdatePayload, Event):
    """A wallet's cash and positions after a change. Entity: the wallet ref."""

    type: Literal["wallet_balance_update"] = "wallet_balance_update"


class FundAllocation(FundAllocationPayload, Event):
    """Money moved down the tree, from ``source_wallet`` (data key ``source``) to ``target``.
    Entity: the wallet funded."""

    type: Literal["fund_allocation"] = "fund_allocation"


class FundCollection(FundCollectionPayload, Event):
    """Money sent back up the tree, from ``source_wallet`` (data key ``source``) to its
    parent ``target``. Entity: the wallet giving money back."""

    type: Literal["fund_collection"] = "fund_collection"


class WalletTransaction(WalletTransactionPayload, Event):
    """One balanced ledger transaction of ``ledger`` (number ``tx_seq`` there). Entity:
    the wallet it belongs to."""

    type: Literal["wallet_transaction"] = "wallet_transaction"


class FarmCreated(FarmCreatedPayload, Event):
    """A farm was set up with its agents. Entity: ``farm:NAME``."""

    type: Literal["farm_created"] = "farm_created"


class FarmPerformanceUpdate(FarmPerformanceUpdatePayload, Event):
    """A farm's figures at a bar's close. Entity: ``farm:NAME``."""

    type: Literal["farm_performance_update"] = "farm_performance_update"


class AgentFarmAssignment(AgentFarmAssignmentPayload, Event):
    """An agent was placed in a farm with its strategy. Entity: ``agent:NAME``."""

    type: Literal["agent_farm_assignment"] = "agent_farm_assignment"


class FarmRebalance(FarmRebalancePayload, Event):
    """A wallet rebalanced its children at bar ``bars``; ``moves`` maps each child's name to
    the signed change of its funds. Entity: ``farm:NAME`` or ``master``."""

    type: Literal["farm_rebalance"] = "farm_rebalance"


class GoalCreated(GoalCreatedPayload, Event):
    """A goal was set. Entity: ``goal:NAME``."""

    type: Literal["goal_created"] = "goal_created"


class GoalProgressUpdate(GoalProgressUpdatePayload, Event):
    """A goal's status, progress (percent, 0-100) or collected amount changed. Entity: ``goal:NAME``."""

    type: Literal["goal_progress_update"] = "goal_progress_update"


class GoalCompleted(GoalCompletedPayload, Event):
    """A goal was reached (by ``completing_trade``, if a trade did it). Entity: ``goal:NAME``."""

    type: Literal["goal_completed"] = "goal_completed"


class GoalAssignment(GoalAssignmentPayload, Event):
    """A goal was given to a farm or an agent with a weight. Entity: ``goal:NAME``."""

    type: Literal["goal_assignment"] = "goal_assignment"


class OrderSubmitted(OrderSubmittedPayload, Event):
    """An agent's signal asked for an order at the next open. Entity: ``agent:NAME``."""

    type: Literal["order_submitted"] = "order_submitted"


class OrderRejected(OrderRejectedPayload, Event):
    """An agent's signal asked for a buy that cannot be placed (less than one unit
    affordable): none is submitted. Said once, until a buy is placed, a fill happens or
    money moves in or out. Entity: ``agent:NAME``."""

    type: Literal["order_rejected"] = "order_rejected"


class OrderFilled(OrderFilledPayload, Event):
    """An order was filled (``reason`` "stop": by a stop, not a signal). Entity: ``agent:NAME``."""

    type: Literal["order_filled"] = "order_filled"


class Halt(HaltPayload, Event):
    """A farm or agent was halted (``resume`` False) or allowed to trade again (``resume``
    True). Entity: ``farm:NAME`` or ``agent:NAME``."""

    type: Literal["halt"] = "halt"


class OperatorAction(OperatorActionPayload, Event):
    """An operator's command to a running session, who gave it and what it did. Entity: ``run``."""

    type: Literal["operator_action"] = "operator_action"


class RunStarted(RunStartedPayload, Event):
    """A run began: where it runs, what it trades, its wallet tree and config. Entity: ``run``."""

    type: Literal["run_started"] = "run_started"


class RunFinished(RunFinishedPayload, Event):
    """A run ended. ``start``/``end``: ISO times of the first and last bar (None: no bars).
    Entity: ``run``."""

    type: Literal["run_finished"] = "run_finished"


def _models() -> dict[str, type[Event]]:
    out: dict[str, type[Event]] = {}
    for event_type, payload in PAYLOADS.items():
        found = [cls for cls in Event.__subclasses__() if issubclass(cls, payload)]
        if len(found) != 1 or found[0].model_fields["type"].default != event_type:
            raise TypeError(f"cival.events.models needs exactly one Event model deriving from {payload.__name__} "
                            f"with type {event_type!r}; found {[cls.__name__ for cls in found]}")
        out[event_type] = found[0]
    return out


EVENT_CLASSES: dict[str, type[Event]] = _models()
"""Event type -> its model, for every type of :data:`cival.core.events.PAYLOADS` (same order)."""

AnyEvent = Annotated[Union[tuple(EVENT_CLASSES.values())], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
"""Any domain event, discriminated by ``type``."""

ANY_EVENT: TypeAdapter[Event] = TypeAdapter(AnyEvent)


# -- reading rows -------------------------------------------------------------------------


def _where(loc: tuple[Any, ...], renames: dict[str, str]) -> str:
    text = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            name = renames.get(part, part) if i == 0 else part
            text += name if not text else f".{name}"
    return text or "(event)"


def _problems(exc: ValidationError, renames: dict[str, str]) -> tuple[tuple[str, str], ...]:
    out = []
    for err in exc.errors(include_url=False):
        where = _where(tuple(err["loc"]), renames)
        kind = err["type"]
        if kind == "missing":
            message = "is missing"
        elif kind == "extra_forbidden":
            message = "is not a field of this event type"
        else:
            message = err["msg"].removeprefix("Value error, ")
        out.append((where, message))
    return tuple(out)


def _raise(cls: type[Event], exc: ValidationError, event_id: str, seq: Any, renames: dict[str, str]) -> None:
    problems = _problems(exc, renames)
    listing = "; ".join(f"{field!r} {message}" for field, message in problems)
    expected = ", ".join(cls._data_keys.get(n, n) for n in cls._payload_fields)
    raise EventError(
        f"event {event_id!r} (seq {seq}, type {cls.model_fields['type'].default}) is malformed: {listing}. "
        f"Its data must have exactly these keys: {expected}; fix the node that recorded it.",
        event_id=event_id, seq=seq if isinstance(seq, int) else None, problems=problems,
    ) from None


def parse_event(row: StoredEvent) -> Event:
    """The typed event of a stored row; raises :class:`EventError` (naming the event's id,
    seq and the offending fields) for an unknown type or a payload that does not match it."""
    cls = EVENT_CLASSES.get(row.type)
    if cls is None:
        raise EventError(
            f"event {row.id!r} (seq {row.seq}) has the unknown type {row.type!r}; known types: "
            f"{', '.join(EVENT_TYPES)}. Upgrade cival or fix the node that recorded it.",
            event_id=row.id, seq=row.seq, problems=(("type", f"unknown type {row.type!r}"),),
        )
    data = dict(row.data)
    renames: dict[str, str] = {}  # model attribute -> data key, for the error messages
    for attr, key in cls._data_keys.items():
        if key in data:
            data[attr] = data.pop(key)
        renames[attr] = key
    clashes = [key for key in data if key in ENVELOPE]
    if clashes:
        raise EventError(
            f"event {row.id!r} (seq {row.seq}, type {row.type}) has data keys that belong to the envelope: "
            f"{', '.join(clashes)}; rename them in the node that recorded it.",
            event_id=row.id, seq=row.seq, problems=tuple((k, "belongs to the envelope") for k in clashes),
        )
    envelope = {"id": row.id, "run_id": row.run_id, "seq": row.seq, "at": row.at, "type": row.type,
                "entity": row.entity, "source": row.source}
    try:
        return cls.model_validate({**data, **envelope})
    except ValidationError as exc:
        _raise(cls, exc, row.id, row.seq, renames)
        raise  # unreachable: _raise always raises


def event_from_fields(event_type: str, run_id: str, fields: dict[str, Any]) -> Event:
    """The typed event of an envelope-and-payload mapping under the model's attribute names,
    as an AG-UI ``CUSTOM`` value carries it (``id``, ``seq``, ``entity``, ``source``, ``at``
    and the payload); raises :class:`EventError` like :func:`parse_event`."""
    cls = EVENT_CLASSES.get(event_type)
    event_id = str(fields.get("id", ""))
    if cls is None:
        raise EventError(
            f"event {event_id!r} (seq {fields.get('seq')}) has the unknown type {event_type!r}; "
            "upgrade cival to read it.",
            event_id=event_id, problems=(("type", f"unknown type {event_type!r}"),),
        )
    try:
        return cls.model_validate({**fields, "type": event_type, "run_id": run_id})
    except ValidationError as exc:
        _raise(cls, exc, event_id, fields.get("seq"), {})
        raise


__all__ = [
    "ANY_EVENT",
    "ENVELOPE",
    "EVENT_CLASSES",
    "AgentFarmAssignment",
    "Amount",
    "AnyEvent",
    "Event",
    "EventError",
    "FarmCreated",
    "FarmPerformanceUpdate",
    "FarmRebalance",
    "FundAllocation",
    "FundCollection",
    "GoalAssignment",
    "GoalCompleted",
    "GoalCreated",
    "GoalProgressUpdate",
    "Halt",
    "OperatorAction",
    "OrderFilled",
    "OrderRejected",
    "OrderSubmitted",
    "PositionLine",
    "PostingLine",
    "RunFinished",
    "RunStarted",
    "StoredEvent",
    "WalletBalanceUpdate",
    "WalletNode",
    "WalletTransaction",
    "event_from_fields",
    "parse_event",
    "plain",
]
