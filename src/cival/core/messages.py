"""Messages between the master wallet, farms and agents: data, not calls.

Every message is a frozen pydantic model with an ``id`` (unique per message, the
idempotency key of what it causes), a UTC ``at`` timestamp and a ``schema_version``.
Commands ask for something (:class:`Allocate`, :class:`Collect`, :class:`OrderIntent`);
events report what happened (:class:`Fill`, :class:`PerformanceReport`). Amounts are
exact decimal strings on the wire (Decimal in Python), never floats.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cival.core.fields import ExactDecimal

SCHEMA_VERSION = 1


def new_id() -> str:
    return uuid.uuid4().hex


class Message(BaseModel):
    """Base of every message: frozen, no unknown fields, an id and a UTC time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=new_id, min_length=1)
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    schema_version: Literal[1] = SCHEMA_VERSION

    @field_validator("at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is UTC:
            return value
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("must carry a time zone (UTC)")
        return value.astimezone(UTC)


class Allocate(Message):
    """Command: move ``amount`` from the sender's wallet down to ``target``."""

    kind: Literal["allocate"] = "allocate"
    source: str
    target: str
    amount: ExactDecimal = Field(gt=0)


class Collect(Message):
    """Command: send money from ``source`` up to its parent: ``amount``, or (``amount`` None)
    all its cash, or with ``basis="profit"`` its profit above the principal it was given
    (a goal's ``collect_profit``)."""

    kind: Literal["collect"] = "collect"
    source: str
    amount: ExactDecimal | None = Field(default=None, gt=0)
    reason: str = ""
    basis: Literal["amount", "all", "profit"] | None = None

    @property
    def effective_basis(self) -> str:
        return self.basis or ("amount" if self.amount is not None else "all")


class Transfer(Message):
    """Event: money sent up from ``source`` to ``target`` in answer to a :class:`Collect`
    (``cause`` is that Collect's id). The sender booked it under this message's id; the
    receiver books it under the same id, so a duplicate changes nothing."""

    kind: Literal["transfer"] = "transfer"
    source: str
    target: str
    amount: ExactDecimal = Field(ge=0)
    cause: str = ""


class OrderIntent(Message):
    """Command: what an agent's signals want filled at the next bar's open."""

    kind: Literal["order_intent"] = "order_intent"
    agent: str
    symbol: str
    side: Literal["buy", "sell"]
    signal_at: datetime
    """Close time of the bar whose signal asked for it."""


class Fill(Message):
    """Event: an order was filled. ``qty``, ``price`` and ``fee`` are exact decimals."""

    kind: Literal["fill"] = "fill"
    agent: str
    symbol: str
    side: Literal["buy", "sell"]
    qty: ExactDecimal = Field(gt=0)
    price: ExactDecimal = Field(gt=0)
    """Fill price per unit of the instrument, slippage included."""
    fee: ExactDecimal = Field(ge=0)
    reason: Literal["signal", "stop"] = "signal"
    notional: ExactDecimal | None = Field(default=None, gt=0)
    """The fill's cost or proceeds, fee excluded: quantity x price rounded half-even to the
    ledger's scale, as the fill model computed it (None: quantity x price, rounded against
    the holder)."""
    order_id: str | None = None
    """The OrderIntent this fill answers (None for a stop)."""


class Halt(Message):
    """Command: stop ``entity`` trading (``resume=True``: let it trade again). A halted agent
    exits its position at the next open and takes no new entries."""

    kind: Literal["halt"] = "halt"
    entity: str
    reason: str
    resume: bool = False
    only: str | None = None
    """With ``resume``: lift only a halt for this reason (None: any)."""


class GoalChange(Message):
    """Command: change the master's goals while the run goes on: ``add`` the goal ``config``
    (as in a config's ``goals``), ``assign`` it further (``assign``: assignments as in a
    config), or ``cancel`` it. ``id`` makes a repeat change nothing."""

    kind: Literal["goal_change"] = "goal_change"
    action: Literal["add", "assign", "cancel"]
    goal: str = Field(min_length=1)
    config: dict[str, Any] | None = None
    assign: list[dict[str, Any]] | None = None
    reason: str = ""


class PerformanceReport(Message):
    """Event: an entity's figures at a bar's close."""

    kind: Literal["performance"] = "performance"
    entity: str
    equity: ExactDecimal
    realized_pnl: ExactDecimal = Decimal(0)
    trades: int = Field(0, ge=0)
    in_position: bool = False
    cash: ExactDecimal | None = None
    unrealized_pnl: ExactDecimal = Decimal(0)
    fees: ExactDecimal = Decimal(0)
    max_drawdown: float | None = None
    """Largest fall from a peak of equity so far, as a fraction (bar closes)."""
    sharpe: float | None = None
    """Annualised Sharpe ratio of bar returns so far (as in ``cival backtest``)."""
    bars: int = Field(0, ge=0)


__all__ = [
    "SCHEMA_VERSION",
    "Allocate",
    "Collect",
    "Fill",
    "GoalChange",
    "Halt",
    "Message",
    "OrderIntent",
    "PerformanceReport",
    "Transfer",
    "new_id",
]
