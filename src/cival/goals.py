"""Goals: what a farm or an agent is asked to achieve, and when it has.

A :class:`GoalTracker` follows one configured goal over the closed trades of the agents
it is assigned to (a farm assignment covers all of the farm's agents), each counted with
its assignment's ``weight``:

* ``trade_volume``: progress = weighted count of closed trades (only those with a net
  P&L of at least ``min_profit_per_trade``, when set) over ``trades``.
* ``profit_target``: progress = weighted sum of the trades' net P&L (after both fees)
  over ``profit``.
* ``strategy_performance``: after at least ``min_trades`` (weighted) trades, the win rate
  of the trades and/or the latest Sharpe ratio reported for the assignees reach their
  targets; progress is the trade count over ``min_trades`` until then (capped at 99 %
  while the ratios are short).

Progress is a percentage from 0 to 100, to 2 places. A goal completes on the trade that
completes it, exactly once: trades are recognised by id, so one delivered twice counts
once, and a completed, failed or cancelled goal never changes again. With a ``deadline``
(a number of bars, or a time), a goal still active when it passes has ``failed``. An
operator may cancel an active goal (:meth:`GoalTracker.cancel`): it counts nothing more
and collects nothing.

:func:`collectable` says how much a completed goal's action takes back to the master.
Nothing here does I/O or moves money; the runtime books the collection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum
from typing import Any

from cival.core.codec import StateModel, apply, capture
from cival.core.errors import CivalError
from cival.core.fmt import iso_utc, plain_decimal

ZERO = Decimal(0)
HUNDRED = Decimal(100)
PLACES = Decimal("0.01")


class GoalError(CivalError):
    """A goal was given something it cannot use (an unknown agent, a bad trade)."""


class GoalStatus(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """What a goal needs of a closed trade."""

    id: str
    agent: str
    exit_time: datetime
    pnl: Decimal
    """Net of both fills' fees."""


@dataclass(frozen=True, slots=True)
class GoalEvent:
    """A goal changed status."""

    goal: str
    status: GoalStatus
    at: datetime
    trade_id: str | None = None
    """The trade that completed it (None for a deadline)."""


class GoalState(StateModel):
    """What a :class:`GoalTracker` has seen (its config comes from the cluster's)."""

    status: GoalStatus
    completed_at: datetime | None
    completing_trade: str | None
    collected: Decimal
    count: Decimal
    profit: Decimal
    wins: Decimal
    trades: Decimal
    sharpe: float | None
    seen: list[str]
    """Ids of the trades counted (each once)."""


@dataclass
class GoalTracker:
    """Follows one goal (a config ``GoalConfig``) over its assignees' trades."""

    config: Any
    weights: dict[str, Decimal]
    """Agent name -> contribution weight."""
    status: GoalStatus = GoalStatus.ACTIVE
    completed_at: datetime | None = None
    completing_trade: str | None = None
    collected: Decimal = ZERO
    count: Decimal = ZERO
    """Weighted number of qualifying trades."""
    profit: Decimal = ZERO
    """Weighted net P&L of the trades."""
    wins: Decimal = ZERO
    trades: Decimal = ZERO
    """Weighted number of all trades."""
    sharpe: float | None = None
    _seen: set[str] = field(default_factory=set)

    @classmethod
    def for_goal(cls, goal: Any, farms: Mapping[str, Iterable[str]]) -> GoalTracker:
        """A tracker for ``goal``; ``farms`` maps each farm to its agents' names."""
        return cls(config=goal, weights=cls.weights_of(goal, farms))

    @staticmethod
    def weights_of(goal: Any, farms: Mapping[str, Iterable[str]]) -> dict[str, Decimal]:
        """Each agent's weight under ``goal``'s assignments (a farm assignment covers all
        its agents; an agent assigned twice counts with the sum)."""
        weights: dict[str, Decimal] = {}
        agents = {a for names in farms.values() for a in names}
        for assignment in goal.assign:
            if assignment.farm is not None:
                if assignment.farm not in farms:
                    raise GoalError(f"goal {goal.name!r}: no farm named {assignment.farm!r}")
                members = list(farms[assignment.farm])
            else:
                if assignment.agent not in agents:
                    raise GoalError(f"goal {goal.name!r}: no agent named {assignment.agent!r}")
                members = [assignment.agent]
            for name in members:
                weights[name] = weights.get(name, ZERO) + Decimal(assignment.weight)
        return weights

    def reassign(self, goal: Any, farms: Mapping[str, Iterable[str]]) -> None:
        """Take ``goal`` (this goal's config with more assignments) from now on: trades
        already counted stay counted; the new assignees' trades count from now."""
        if goal.name != self.name or goal.type != self.type:
            raise GoalError(f"goal {self.name!r}: a reassignment must keep its name and type")
        self.weights = self.weights_of(goal, farms)
        self.config = goal

    def cancel(self, at: datetime) -> GoalEvent | None:
        """Stop following the goal (an active one only): it counts and collects nothing more."""
        if self.status is not GoalStatus.ACTIVE:
            return None
        self.status = GoalStatus.CANCELLED
        self.completed_at = at
        return GoalEvent(self.name, GoalStatus.CANCELLED, at)

    @property
    def name(self) -> str:
        return str(self.config.name)

    @property
    def type(self) -> str:
        return str(self.config.type)

    @property
    def agents(self) -> list[str]:
        return list(self.weights)

    # -- evidence ---------------------------------------------------------------------

    def on_trade(self, trade: ClosedTrade) -> GoalEvent | None:
        """Count a closed trade; returns the completion event if this trade completed the goal."""
        weight = self.weights.get(trade.agent)
        if weight is None or trade.id in self._seen or self.status is not GoalStatus.ACTIVE:
            return None
        self._seen.add(trade.id)
        target = self.config.target
        self.trades += weight
        self.profit += weight * trade.pnl
        if trade.pnl > 0:
            self.wins += weight
        if self.type != "trade_volume" or target.min_profit_per_trade is None or trade.pnl >= target.min_profit_per_trade:
            self.count += weight
        if self._met():
            return self._complete(trade.exit_time, trade.id)
        return None

    def on_sharpe(self, sharpe: float | None) -> None:
        """The assignees' latest Sharpe ratio (annualised, as the session reports it)."""
        self.sharpe = sharpe

    def on_bar(self, bars: int, now: datetime) -> GoalEvent | None:
        """Time passes: ``bars`` bars since the session began, ``now`` the latest bar's time.
        Returns the failure event when the deadline has passed with the goal unmet."""
        deadline = self.config.deadline
        if self.status is not GoalStatus.ACTIVE or deadline is None:
            return None
        if (deadline.bars is not None and bars >= deadline.bars) or (deadline.time is not None and now >= deadline.time):
            self.status = GoalStatus.FAILED
            self.completed_at = now
            return GoalEvent(self.name, GoalStatus.FAILED, now)
        return None

    # -- state ------------------------------------------------------------------------

    def state(self) -> GoalState:
        """What the tracker has seen, for a journal."""
        return capture(self, GoalState)

    def restore(self, state: GoalState) -> None:
        """Take up a :meth:`state` (same goal config)."""
        apply(self, state, f"goal {self.name}")

    @property
    def progress(self) -> Decimal:
        """0 to 100, to 2 places (100 exactly when completed)."""
        if self.status is GoalStatus.COMPLETED:
            return HUNDRED
        target = self.config.target
        if self.type == "trade_volume":
            ratio = self.count / Decimal(target.trades)
        elif self.type == "profit_target":
            ratio = max(self.profit, ZERO) / Decimal(target.profit)
        else:
            ratio = min(self.trades / Decimal(target.min_trades), Decimal("0.99"))
        return min(ratio * HUNDRED, HUNDRED).quantize(PLACES, ROUND_DOWN)

    @property
    def win_rate(self) -> float | None:
        return float(self.wins / self.trades) if self.trades else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "status": self.status.value,
            "progress": plain_decimal(self.progress),
            "completed_at": iso_utc(self.completed_at) if self.completed_at is not None else None,
            "completing_trade": self.completing_trade,
            "collected": plain_decimal(self.collected),
            "on_complete": self.config.on_complete,
            "assigned": {a: plain_decimal(w) for a, w in self.weights.items()},
            "assign": [a.model_dump(mode="json", exclude_none=True) for a in self.config.assign],
        }

    def _met(self) -> bool:
        target = self.config.target
        if self.type == "trade_volume":
            return self.count >= target.trades
        if self.type == "profit_target":
            return self.profit >= target.profit
        if self.trades < target.min_trades:
            return False
        ok = True
        if target.min_win_rate is not None:
            ok = ok and self.wins / self.trades >= Decimal(repr(float(target.min_win_rate)))
        if target.min_sharpe is not None:
            ok = ok and self.sharpe is not None and self.sharpe >= target.min_sharpe
        return ok

    def _complete(self, at: datetime, trade_id: str) -> GoalEvent:
        self.status = GoalStatus.COMPLETED
        self.completed_at = at
        self.completing_trade = trade_id
        return GoalEvent(self.name, GoalStatus.COMPLETED, at, trade_id)


def collectable(action: str, principal: Decimal, cash: Decimal, positions_at_cost: Decimal) -> Decimal | None:
    """What a completed goal's action takes from a wallet back to the master.

    ``collect_profit``: the realised profit above the allocated ``principal``, that is
    ``cash + positions at cost - principal``, as far as the cash covers it (never
    negative). ``collect_all``: all the cash (positions are closed first, by the
    runtime). ``none``: nothing (None).
    """
    if action == "none":
        return None
    if action == "collect_all":
        return cash
    if action == "collect_profit":
        return max(ZERO, min(cash, cash + positions_at_cost - principal))
    raise GoalError(f"unknown goal action {action!r}; use collect_profit, collect_all or none")


__all__ = ["ClosedTrade", "GoalError", "GoalEvent", "GoalState", "GoalStatus", "GoalTracker", "collectable"]
