"""The master wallet and the farms as plain classes: their books and their message handlers.

Each node keeps its own books (a :class:`~cival.core.wallets.WalletTree` rooted at its
wallet) and handles messages; a handler returns the messages it sends on, and something
else (the Ray actors of :mod:`cival.actors.remote`, or the in-process cluster of
:mod:`cival.runtime`) delivers them. Keeping delivery out of the nodes is what lets the
same code run as Ray actors, in one process, and under a test that delivers messages in
a random order, twice, or not yet.

Money between nodes: the sender books the sending under the message id before the
message leaves; the receiver books the receipt under the same id. A duplicate message is
booked once.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import numpy as np

from cival.actors.agent import Agent, AgentUpdate
from cival.actors.books import send_up
from cival.actors.performance import PerformanceTracker
from cival.actors.state import CheckpointStep, FarmState, MasterState, RebalanceStep
from cival.allocation import plan_for, split
from cival.config import ClusterConfig, ConfigError, FarmConfig, data_symbol, goal_from_dict, symbol_issues
from cival.core.bar import BarBatch, timestamp_of
from cival.core.codec import apply, capture
from cival.core.errors import CivalError
from cival.core.events import (
    EventDraft,
    EventLog,
    FarmPerformanceUpdatePayload,
    FarmRebalancePayload,
    GoalAssignmentPayload,
    GoalCompletedPayload,
    GoalCreatedPayload,
    GoalProgressUpdatePayload,
    HaltPayload,
)
from cival.core.fmt import format_amount, iso_utc, percent, plain_decimal
from cival.core.ledger import ZERO, TxType
from cival.core.messages import Allocate, Collect, GoalChange, Halt, PerformanceReport, Transfer
from cival.core.wallets import MASTER, EntityKind, WalletTree, agent_ref, farm_ref
from cival.execution.fills import FillModel
from cival.goals import ClosedTrade, GoalError, GoalStatus, GoalTracker

PAUSED = "paused: selling to rebalance"


class NodeError(CivalError):
    """A message reached a node it is not for, or asks for something impossible."""


# -- specs: what each node is built from (picklable, sent to actors) ----------------------


@dataclass(frozen=True)
class AgentSpec:
    name: str
    farm: str
    strategy: str
    params: dict[str, Any]
    model: FillModel
    symbol: str
    currency: str = "USD"

    def build(self, books: WalletTree | None = None) -> Agent:
        """The agent, with books of its own (``books=None``) or inside a farm's books."""
        if books is None:
            books = WalletTree.rooted(
                EntityKind.AGENT,
                self.name,
                parent=farm_ref(self.farm),
                currency=self.currency,
                qty_step=Decimal(repr(self.model.qty_step)),
            )
        return Agent(
            self.name,
            self.strategy,
            self.params,
            self.model,
            self.symbol,
            farm=self.farm,
            books=books,
        )


@dataclass(frozen=True)
class FarmSpec:
    config: FarmConfig
    agents: tuple[AgentSpec, ...]
    currency: str = "USD"
    master_lookback: int = 0
    """Bar returns of the farm the master's policy reads (0: none)."""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def inline(self) -> bool:
        return self.config.inline


@dataclass(frozen=True)
class ClusterSpec:
    """Everything needed to build a cluster's nodes from a config."""

    config: ClusterConfig
    farms: tuple[FarmSpec, ...]
    symbol: str

    @property
    def currency(self) -> str:
        return self.config.master.base_currency

    @property
    def agents(self) -> list[AgentSpec]:
        return [a for f in self.farms for a in f.agents]


def cluster_spec(
    config: ClusterConfig, symbol: str | None = None, inline: bool | None = None
) -> ClusterSpec:
    """The node specs of a config. ``symbol`` (of the bars replayed) defaults to the data's;
    an agent naming another symbol is a :class:`ConfigError` (a cluster trades one
    instrument). ``inline`` forces every farm's agents inline (True) or into actors (False)."""
    if symbol is None:
        symbol, whence = data_symbol(config.data)
    else:
        whence = "the symbol of the bars this session replays"
    named = (
        (f"farms[{i}].agents[{j}]", agent.symbol)
        for i, farm in enumerate(config.farms)
        for j, agent in enumerate(farm.agents)
    )
    issues = list(symbol_issues(named, symbol, whence))
    if issues:
        raise ConfigError(str(config.source or f"the config of cluster {config.name!r}"), issues)
    currency = config.master.base_currency
    risk = config.risk
    farms = []
    for farm in config.farms:
        if inline is not None:
            farm = farm.model_copy(
                update={
                    "runtime": farm.runtime.model_copy(
                        update={"agents": "inline" if inline else "actors"}
                    )
                }
            )
        agents = []
        for agent in farm.agents:
            model = FillModel(
                cash=1.0,  # replaced by the allocation the agent receives
                fee_bps=config.costs.fee_bps,
                slippage_bps=config.costs.slippage_bps,
                fraction=float(
                    min(agent.sizing.fraction, agent.risk.max_position_fraction or risk.max_position_fraction)
                ),
                qty_step=float(agent.sizing.qty_step),
                stop_loss_pct=_float(agent.risk.stop_loss_pct if agent.risk.stop_loss_pct is not None else risk.stop_loss_pct),
                take_profit_pct=_float(agent.risk.take_profit_pct),
            )
            agents.append(
                AgentSpec(
                    name=agent.name,
                    farm=farm.name,
                    strategy=agent.strategy,
                    params=agent.params.model_dump(),
                    model=model,
                    symbol=agent.symbol or symbol,
                    currency=currency,
                )
            )
        master_lookback = int(getattr(config.master.allocation, "lookback_bars", 0) or 0)
        farms.append(FarmSpec(config=farm, agents=tuple(agents), currency=currency, master_lookback=master_lookback))
    return ClusterSpec(config=config, farms=tuple(farms), symbol=symbol)


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def performance_data(report: PerformanceReport) -> dict[str, Any]:
    """A report's figures as an event's data (amounts as decimal strings, no NaN)."""
    return {
        "equity": plain_decimal(report.equity),
        "cash": plain_decimal(report.cash if report.cash is not None else ZERO),
        "realized_pnl": plain_decimal(report.realized_pnl),
        "unrealized_pnl": plain_decimal(report.unrealized_pnl),
        "fees": plain_decimal(report.fees),
        "trades": report.trades,
        "in_position": report.in_position,
        "max_drawdown": _finite(report.max_drawdown),
        "sharpe": _finite(report.sharpe),
        "bars": report.bars,
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


# -- how nodes reach each other --------------------------------------------------------


class MasterPorts(Protocol):
    """How the master reaches its farms (direct calls in one process, actor calls on Ray),
    and journals itself (``commit``: its books, state and events to the store, before the
    messages that depend on them leave)."""

    def commit(self) -> None: ...
    def farm_allocate(self, msg: Allocate) -> None: ...
    def farm_collect(self, msg: Collect) -> Transfer: ...
    def farm_halt(self, msg: Halt) -> None: ...
    def agent_halt(self, msg: Halt) -> None: ...
    def farm_rebalance(self, farms: list[str], bars: int, now: datetime) -> None: ...
    def farm_info(self, farm: str) -> tuple[Decimal, list[float]]: ...
    def farm_release(self, msg: Collect) -> Transfer: ...
    def goal_collect(self, msg: Collect) -> Transfer: ...


class FarmPorts(Protocol):
    """How a farm reaches its agents, and journals itself (see :class:`MasterPorts`).

    The farm speaks to its agents only through these, whatever they are: actors, agents
    with books of their own in this process, or inline agents sharing the farm's books
    (:mod:`cival.actors.farm_ports` has both kinds). ``book_allocation`` books the farm's
    side of an allocation before the farm commits (True when it was new);
    ``agent_allocate`` delivers it after. ``agent_collect`` delivers a Collect and books
    what came back on the farm's side; it returns the Transfer.
    """

    def commit(self) -> None: ...
    def book_allocation(self, msg: Allocate) -> bool: ...
    def agent_allocate(self, msg: Allocate) -> None: ...
    def agent_collect(self, msg: Collect) -> Transfer: ...
    def agent_halt(self, msg: Halt) -> None: ...
    def agent_cash(self) -> dict[str, Decimal]: ...
    def agent_batch(self, batch: BarBatch) -> list[AgentUpdate]: ...
    def agent_snapshots(self) -> list[dict[str, Any]]: ...


def goal_config(raw: dict[str, Any]) -> Any:
    """A goal's config from its JSON (as in a config's ``goals``), or NodeError naming the field."""
    try:
        return goal_from_dict(raw)
    except ConfigError as exc:
        raise NodeError("; ".join(str(i) for i in exc.issues)) from None


# -- master -----------------------------------------------------------------------------


class MasterNode:
    """The master wallet: takes deposits, funds farms, receives collections."""

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        config = spec.config
        self.books = WalletTree.rooted(
            EntityKind.MASTER, config.master.name, currency=spec.currency
        )
        self.farms = [f.name for f in spec.farms]
        self.farm_agents = {f.name: [a.name for a in f.agents] for f in spec.farms}
        self.farm_of = {a: f for f, names in self.farm_agents.items() for a in names}
        self.goals = [GoalTracker.for_goal(g, self.farm_agents) for g in config.goals]
        self.goal_configs: list[dict[str, Any]] | None = None
        """Every goal's config now, once an operator changed them (None: the cluster config's)."""
        self.goal_changes: list[str] | None = None
        """Ids of the :class:`GoalChange` messages applied (each applies once; None: none yet)."""
        self.events = EventLog()
        """What happened that the books do not say, for the journal to take."""
        self._liquidating: list[tuple[str, str]] = []
        """(goal, agent) halted by a collect_all goal, to empty at the next checkpoint."""
        self.rebalances: list[dict[str, Any]] = []
        self.halts: list[dict[str, Any]] = []
        self.halted_farms: set[str] = set()
        self._day: tuple[Any, float] | None = None
        """(UTC date, total equity at the last checkpoint before that day)."""
        self._last_equity: float | None = None
        self._goal_shown: dict[str, list[str]] = {}
        """Goal name -> (status, progress, collected) last published."""
        self._checkpoint: CheckpointStep | None = None
        """The checkpoint under way: its bar count and the messages of its steps so far."""
        self.checkpoint_done = 0
        """The bar count of the last checkpoint finished."""

    # journal

    def state(self) -> MasterState:
        """Everything the master knows but its books, so that :meth:`restore` on a new
        master of the same spec carries on."""
        return capture(self, MasterState)

    def restore(self, state: MasterState) -> None:
        """Take up a :meth:`state` (after the books' restore)."""
        if state.goal_configs is not None:
            self.goals = [GoalTracker.for_goal(goal_config(c), self.farm_agents) for c in state.goal_configs]
        apply(self, state, "master")

    # goals changed by hand

    def change_goal(self, msg: GoalChange) -> dict[str, Any]:
        """Add, reassign or cancel a goal (see :class:`GoalChange`); returns the goal's state.
        A new goal counts the trades closed from its first checkpoint on. A change already
        applied (same id) changes nothing."""
        if msg.id in (self.goal_changes or ()):
            return self._goal(msg.goal).as_dict()
        at = msg.at
        if msg.action == "add":
            if any(g.name == msg.goal for g in self.goals):
                raise NodeError(f"a goal named {msg.goal!r} exists; give the new goal another name")
            config = goal_config(msg.config or {})
            try:
                tracker = GoalTracker.for_goal(config, self.farm_agents)
            except GoalError as exc:
                raise NodeError(str(exc)) from None
            self.goals.append(tracker)
            raw = config.model_dump(mode="json")
            created = GoalCreatedPayload(goal=config.name, goal_type=config.type, target=raw["target"],
                                         on_complete=config.on_complete, deadline=raw.get("deadline"))
            self.events.record(EventDraft(f"goal:{config.name}:created", f"goal:{config.name}", at, created))
            self._goal_assigned(tracker, 0, at)
        elif msg.action == "assign":
            tracker = self._goal(msg.goal)
            if tracker.status is not GoalStatus.ACTIVE:
                raise NodeError(f"goal {msg.goal!r} is {tracker.status.value}; only an active goal takes assignments")
            before = len(tracker.config.assign)
            raw = tracker.config.model_dump(mode="json")
            raw["assign"] = raw["assign"] + list(msg.assign or [])
            try:
                tracker.reassign(goal_config(raw), self.farm_agents)
            except GoalError as exc:
                raise NodeError(str(exc)) from None
            self._goal_assigned(tracker, before, at)
        else:
            tracker = self._goal(msg.goal)
            if tracker.cancel(at) is None:
                raise NodeError(f"goal {msg.goal!r} is {tracker.status.value}; only an active goal can be cancelled")
            shown = [tracker.status.value, plain_decimal(tracker.progress), plain_decimal(tracker.collected)]
            self._goal_shown[tracker.name] = shown
            data = GoalProgressUpdatePayload(goal=tracker.name, status=shown[0], progress=shown[1], collected=shown[2],
                                             bars=self.checkpoint_done)
            self.events.record(EventDraft(f"goal:{tracker.name}:cancelled", f"goal:{tracker.name}", at, data))
        self.goal_configs = [g.config.model_dump(mode="json") for g in self.goals]
        self.goal_changes = [*(self.goal_changes or ()), msg.id]
        return tracker.as_dict()

    def run_change_goal(self, ports: MasterPorts, msg: GoalChange) -> dict[str, Any]:
        """A goal changed by hand (see :meth:`change_goal`), journaled."""
        out = self.change_goal(msg)
        ports.commit()
        return out

    def _goal(self, name: str) -> GoalTracker:
        for goal in self.goals:
            if goal.name == name:
                return goal
        names = ", ".join(g.name for g in self.goals) or "none"
        raise NodeError(f"no goal named {name!r}; goals: {names}")

    def _goal_assigned(self, tracker: GoalTracker, start: int, at: datetime) -> None:
        for i, a in enumerate(tracker.config.assign[start:], start):
            data = GoalAssignmentPayload(goal=tracker.name, farm=a.farm, agent=a.agent, weight=Decimal(a.weight))
            self.events.record(EventDraft(f"goal:{tracker.name}:assigned:{i}", f"goal:{tracker.name}", at, data))

    def goal_updates(self, bars: int, now: datetime) -> None:
        """After a checkpoint: an event for each goal whose status, progress or collected
        amount changed since the last one published."""
        for goal in self.goals:
            shown = [goal.status.value, plain_decimal(goal.progress), plain_decimal(goal.collected)]
            if self._goal_shown.get(goal.name) == shown:
                continue
            self._goal_shown[goal.name] = shown
            data = GoalProgressUpdatePayload(goal=goal.name, status=shown[0], progress=shown[1], collected=shown[2], bars=bars)
            self.events.record(EventDraft(f"goal:{goal.name}:progress:{bars}", f"goal:{goal.name}", now, data))

    def deposit(self, amount: Decimal, key: str, at: datetime | None = None) -> None:
        """Book a deposit into the master's cash (``key`` makes a repeat book nothing)."""
        self.books.deposit(amount, key=key, at=at)

    def fund(self, at: datetime | None = None) -> list[Allocate]:
        """Deposit the initial capital and split it across the farms by the master's policy.

        Returns the Allocate messages to deliver (each already booked as sent). The
        message ids are deterministic: funding again books nothing and returns the same
        messages, whose second delivery books nothing either. ``at``: the funding's time
        (a replay's first bar, so that its books do not depend on the wall clock; None:
        now).
        """
        config = self.spec.config
        at = at or datetime.now(UTC)
        self.books.deposit(config.master.initial_deposit, key="deposit:initial", at=at)
        plan = plan_for(
            config.master.allocation,
            config.master.initial_deposit,
            self.farms,
            self.books.ledger.quantum,
        )
        out = []
        for farm, amount in plan.shares.items():
            if amount > 0:
                msg = Allocate(
                    id=f"fund:{farm_ref(farm)}",
                    at=at,
                    source=MASTER,
                    target=farm_ref(farm),
                    amount=amount,
                )
                out.append(self.allocate(msg))
        return out

    def allocate(self, msg: Allocate) -> Allocate:
        """Book an allocation to a farm as sent; returns the message to deliver."""
        if (
            msg.source != MASTER
            or not msg.target.startswith("farm:")
            or msg.target[5:] not in self.farms
        ):
            raise NodeError(
                f"the master allocates to its farms ({', '.join(self.farms)}), not {msg.target}"
            )
        self.books.send(
            MASTER,
            msg.target,
            msg.amount,
            key=msg.id,
            at=msg.at,
            type=TxType.ALLOCATION,
        )
        return msg

    def collect(
        self,
        farm: str,
        amount: Decimal | None = None,
        reason: str = "",
        id: str | None = None,
    ) -> Collect:
        """A Collect to send to ``farm`` (its reply, a Transfer, goes to :meth:`on_transfer`)."""
        if farm not in self.farms:
            raise NodeError(f"no farm named {farm!r}; farms: {', '.join(self.farms)}")
        extra = {"id": id} if id else {}
        return Collect(source=farm_ref(farm), amount=amount, reason=reason, **extra)

    def on_transfer(self, msg: Transfer) -> None:
        if msg.target != MASTER:
            raise NodeError(f"the master received a transfer for {msg.target}")
        self.books.receive(
            MASTER,
            msg.source,
            msg.amount,
            key=msg.id,
            at=msg.at,
            type=TxType.COLLECTION,
        )

    # goals

    def on_checkpoint(
        self, trades: list[ClosedTrade], bars: int, now: datetime, sharpes: Mapping[str, float | None]
    ) -> list[Collect | Halt]:
        """Goals see the trades closed since the last checkpoint (in time order), the latest
        Sharpe ratios (by wallet reference) and the time; returns what completed goals ask
        for, to deliver through each agent's farm: a Collect per assigned agent
        (``collect_profit``), or for ``collect_all`` first a Halt per agent (it sells at the
        next open) and, at the next checkpoint, a Collect of all its cash."""
        out: list[Collect | Halt] = []
        for goal_name, agent in self._liquidating:
            out.append(
                Collect(
                    id=f"goal:{goal_name}>{agent_ref(agent)}",
                    at=now,
                    source=agent_ref(agent),
                    basis="all",
                    reason=f"goal {goal_name} completed: collect_all",
                )
            )
        self._liquidating = []
        for goal in self.goals:
            first = goal.config.assign[0]
            ref = farm_ref(first.farm) if first.farm is not None else agent_ref(first.agent)
            goal.on_sharpe(sharpes.get(ref))
        for trade in sorted(trades, key=lambda t: (t.exit_time, t.id)):
            for goal in self.goals:
                event = goal.on_trade(trade)
                if event is not None:
                    data = GoalCompletedPayload(
                        goal=goal.name,
                        completed_at=iso_utc(event.at),
                        completing_trade=event.trade_id,
                        on_complete=goal.config.on_complete,
                    )
                    self.events.record(EventDraft(f"goal:{goal.name}:completed", f"goal:{goal.name}", event.at, data))
                    out += self._goal_collects(goal)
        for goal in self.goals:
            goal.on_bar(bars, now)  # a failure shows in the goal's next progress update
        return out

    def risk_halts(self, now: datetime, farms: Mapping[str, PerformanceReport]) -> list[Halt]:
        """At a checkpoint, with each farm's latest report: a farm whose drawdown reached
        ``risk.farm_max_drawdown_pct`` is halted; if the cluster's equity fell by
        ``risk.master_daily_loss_pct`` since the last checkpoint before the day began (UTC
        days), every farm is. Returns the Halt messages to deliver to the farms (each sent once)."""
        risk = self.spec.config.risk
        out: list[Halt] = []
        if risk.farm_max_drawdown_pct is not None:
            limit = float(risk.farm_max_drawdown_pct) / 100
            for name, report in farms.items():
                if name not in self.halted_farms and report.max_drawdown is not None and report.max_drawdown >= limit:
                    reason = f"farm drawdown {percent(report.max_drawdown)} reached the limit of {percent(limit)}"
                    out.append(self._halt_farm(name, reason, now))
        if risk.master_daily_loss_pct is not None:
            equity = float(self.books.cash(MASTER).amount) + sum(float(r.equity) for r in farms.values())
            today = now.date()
            if self._day is None or self._day[0] != today:
                # The day starts from the equity at the last checkpoint before it.
                self._day = (today, self._last_equity if self._last_equity is not None else equity)
            self._last_equity = equity
            start = self._day[1]
            loss = (start - equity) / start if start > 0 else 0.0
            limit = float(risk.master_daily_loss_pct) / 100
            if loss >= limit and len(self.halted_farms) < len(self.farms):
                reason = f"daily loss {percent(loss)} of the cluster reached the limit of {percent(limit)}"
                self.halts.append({"reason": reason, "at": iso_utc(now), "resumed": False})
                out += [self._halt_farm(f, reason, now) for f in self.farms if f not in self.halted_farms]
        return out

    def rebalance_due(self, bars: int) -> bool:
        every = self.spec.config.master.rebalance.every_bars
        return every is not None and bars % every == 0

    def rebalance(
        self, bars: int, now: datetime, free: Mapping[str, Decimal], returns: Mapping[str, list[float]]
    ) -> tuple[list[Collect], list[Allocate]]:
        """Re-split free cash across the trading farms by the master's policy (``free``: each
        farm's own and its agents' cash, ``returns``: each farm's bar returns). The pool is
        the master's cash and the farms' free cash; the policy's reserve stays with the
        master. Farms above their share give back the difference (Collects, delivered
        first), then those below are topped up (Allocates, already booked as sent when
        :meth:`send_allocations` is called). Ids carry the bar count."""
        names = [f for f in self.farms if f in free and f not in self.halted_farms]
        if not names:
            return [], []
        pool = self.books.cash(MASTER).amount + sum((free[f] for f in names), ZERO)
        plan = plan_for(self.spec.config.master.allocation, pool, names, self.books.ledger.quantum, returns)
        collects, allocs = [], []
        for farm in names:
            delta = plan.shares[farm] - free[farm]
            key = f"rebalance:master:{bars}>{farm_ref(farm)}"
            if delta < 0:
                collects.append(Collect(id=key, at=now, source=farm_ref(farm), amount=-delta, reason="rebalance"))
            elif delta > 0:
                allocs.append(Allocate(id=key, at=now, source=MASTER, target=farm_ref(farm), amount=delta))
        moves = {f: plain_decimal(plan.shares[f] - free[f]) for f in names}
        self.rebalances.append({"bars": bars, "at": iso_utc(now), "moves": moves})
        data = FarmRebalancePayload(wallet=MASTER, bars=bars, moves=moves)
        self.events.record(EventDraft(f"rebalance:master:{bars}", MASTER, now, data))
        return collects, allocs

    def send_allocations(self, allocs: list[Allocate]) -> list[Allocate]:
        return [self.allocate(m) for m in allocs]

    def _halt_farm(self, farm: str, reason: str, now: datetime) -> Halt:
        self.halted_farms.add(farm)
        return Halt(id=f"halt:{farm}:{now.isoformat()}", at=now, entity=farm_ref(farm), reason=reason)

    def _goal_collects(self, goal: GoalTracker) -> list[Collect | Halt]:
        action = goal.config.on_complete
        if action == "none":
            return []
        at = goal.completed_at or datetime.now(UTC)
        if action == "collect_all":
            self._liquidating += [(goal.name, a) for a in goal.agents]
            reason = f"goal {goal.name} completed: collect_all"
            return [Halt(id=f"goal:{goal.name}>halt>{agent_ref(a)}", at=at, entity=agent_ref(a), reason=reason) for a in goal.agents]
        basis = "profit"
        return [
            Collect(
                id=f"goal:{goal.name}>{agent_ref(a)}",
                at=goal.completed_at or datetime.now(UTC),
                source=agent_ref(a),
                basis=basis,
                reason=f"goal {goal.name} completed: {action}",
            )
            for a in goal.agents
        ]

    def on_goal_transfer(self, msg: Collect, transfer: Transfer) -> None:
        """Book what a goal's Collect brought up, and count it for the goal (once)."""
        self.on_transfer(transfer)
        if self.books.ledger.posted(transfer.id):
            name = msg.id.removeprefix("goal:").split(">", 1)[0]
            for goal in self.goals:
                if goal.name == name:
                    goal.collected += transfer.amount

    def goal_states(self) -> list[dict[str, Any]]:
        return [g.as_dict() for g in self.goals]

    # -- with its farms: each step journaled before the messages that depend on it leave

    def run_fund(self, ports: MasterPorts, at: datetime | None = None) -> None:
        """Deposit the initial capital and fund the farms (see :meth:`fund`)."""
        out = self.fund(at)
        ports.commit()
        for msg in out:
            ports.farm_allocate(msg)

    def run_deposit(self, ports: MasterPorts, amount: Decimal, key: str, at: datetime | None = None) -> None:
        """A deposit by hand (see :meth:`deposit`), journaled."""
        self.deposit(amount, key, at)
        ports.commit()

    def run_allocate(self, ports: MasterPorts, msg: Allocate) -> None:
        """An allocation by hand to one farm (booked as sent, then delivered)."""
        self.allocate(msg)
        ports.commit()
        ports.farm_allocate(msg)

    def run_collect(self, ports: MasterPorts, msg: Collect) -> Transfer:
        """Collect from a farm (``msg.amount``, or everything) and book what arrives."""
        transfer = ports.farm_collect(msg)
        self.on_transfer(transfer)
        ports.commit()
        return transfer

    def run_halt(self, ports: MasterPorts, msg: Halt) -> None:
        """A halt (or resume) by hand, for a farm or an agent."""
        if msg.entity.startswith("farm:"):
            if msg.entity.removeprefix("farm:") not in self.farms:
                raise NodeError(f"no farm named {msg.entity[5:]!r}; farms: {', '.join(self.farms)}")
            ports.farm_halt(msg)
        else:
            if msg.entity.removeprefix("agent:") not in self.farm_of:
                raise NodeError(f"no agent named {msg.entity.removeprefix('agent:')!r}")
            ports.agent_halt(msg)

    def run_checkpoint(
        self,
        ports: MasterPorts,
        trades: list[ClosedTrade],
        bars: int,
        now: datetime,
        sharpes: Mapping[str, float | None],
        farms: Mapping[str, PerformanceReport],
    ) -> list[dict[str, Any]]:
        """A checkpoint, in order: risk halts, the farms' rebalances, the master's rebalance,
        goals (and what completed goals collect). Each step's messages are journaled before
        they leave, so a repeat of the same checkpoint (a retried call after a restart)
        delivers the same messages again, which change nothing where they arrived, and
        finishes the rest. Returns the goals' states."""
        if bars <= self.checkpoint_done:
            return self.goal_states()
        step = self._checkpoint if self._checkpoint is not None and self._checkpoint.bars == bars else None
        if step is None:
            step = self._checkpoint = CheckpointStep(bars=bars)
        if step.halts is None:
            halts = self.risk_halts(now, farms)
            step = self._checkpoint = step.model_copy(update={"halts": halts})
            if halts:
                ports.commit()
        for halt in step.halts or ():
            ports.farm_halt(halt)
        rebalancing = [f.name for f in self.spec.farms if f.config.rebalance.every_bars is not None]
        if rebalancing:
            ports.farm_rebalance(rebalancing, bars, now)
        if self.rebalance_due(bars):
            if step.collects is None or step.allocs is None:
                infos = {f: ports.farm_info(f) for f in self.farms}
                collects, allocs = self.rebalance(
                    bars, now, {f: i[0] for f, i in infos.items()}, {f: i[1] for f, i in infos.items()}
                )
                step = self._checkpoint = step.model_copy(update={"collects": collects, "allocs": allocs})
                ports.commit()
            for collect in step.collects or ():
                self.on_transfer(ports.farm_release(collect))
            if step.allocs:
                allocs = self.send_allocations(list(step.allocs))
                ports.commit()
                for msg in allocs:
                    ports.farm_allocate(msg)
        if step.goals is None:
            out = self.on_checkpoint(trades, bars, now, sharpes)
            step = self._checkpoint = step.model_copy(update={"goals": out})
            if out:
                ports.commit()
        for msg in step.goals or ():
            if isinstance(msg, Halt):
                self.run_halt(ports, msg)
                continue
            self.on_goal_transfer(msg, ports.goal_collect(msg))
        self.goal_updates(bars, now)
        self._checkpoint = None
        self.checkpoint_done = bars
        ports.commit()
        return self.goal_states()

    def snapshot(self) -> dict[str, Any]:
        b = self.books
        cash = b.cash(MASTER).amount
        return {
            "name": self.spec.config.master.name,
            "cash": plain_decimal(cash),
            "positions": [],
            "equity": plain_decimal(cash),
            "realized_pnl": "0",
            "unrealized_pnl": "0",
            "fees": "0",
            "trades": [],
            "halts": list(self.halts),
            "rebalances": list(self.rebalances),
            "allocated": plain_decimal(
                sum(
                    (b.link_balance(MASTER, farm_ref(f)) for f in self.farms),
                    Decimal(0),
                )
            ),
        }


# -- farm -------------------------------------------------------------------------------


@dataclass
class FarmUpdate:
    """What a farm reports after a batch of bars."""

    name: str
    report: PerformanceReport
    agents: list[PerformanceReport]
    fills: int
    booked_ns: list[int] = field(default_factory=list)
    positions: dict[str, str] = field(default_factory=dict)
    """Agent name -> open quantity (decimal string, '0' when flat)."""
    trades: list[ClosedTrade] = field(default_factory=list)
    """Trades the farm's agents closed in the batch."""
    halted: str | None = None
    """Why the farm is halted (None when it trades)."""


class FarmNode:
    """A farm: funds its agents by its policy and aggregates their performance.

    It speaks to its agents in messages only, through its :class:`FarmPorts`, whether they
    are actors or inline. With ``spec.inline`` the farm also holds them (:attr:`agents`:
    :class:`Agent` objects sharing the farm's books, journaled with it), for the inline
    port (:class:`~cival.actors.farm_ports.InlineAgents`) to reach.
    """

    def __init__(self, spec: FarmSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.ref = farm_ref(spec.name)
        self.books = WalletTree.rooted(
            EntityKind.FARM, spec.name, parent=MASTER, currency=spec.currency
        )
        self.agent_names = [a.name for a in spec.agents]
        self.agents: dict[str, Agent] = {}
        if spec.inline:
            self.agents = {a.name: a.build(self.books) for a in spec.agents}
        self.reports: dict[str, PerformanceReport] = {}
        self.positions: dict[str, str] = {a: "0" for a in self.agent_names}
        self.performance = PerformanceTracker()
        self.fill_count = 0
        self.halted: str | None = None
        self.halts: list[dict[str, Any]] = []
        self.rebalances: list[dict[str, Any]] = []
        self._paused: list[str] = []
        """Agents paused to sell before a rebalance (``rebalance.liquidate``)."""
        policy = spec.config.allocation
        self._lookback = int(getattr(policy, "lookback_bars", 0))
        self._returns: dict[str, deque[float]] = {a: deque(maxlen=max(self._lookback, 1)) for a in self.agent_names}
        self._returns["farm"] = deque(maxlen=max(spec.master_lookback, 1))  # the farm's own, for its master's policy
        self._last_equity: dict[str, float] = {}
        self._taken: dict[str, Decimal] = {}
        """Goal Collect id -> what it took from the agent (forwarded to the master)."""
        self.events = EventLog()
        """What happened that the books do not say, for the journal to take."""
        self._halt_ids: set[str] = set()
        """Halt messages already applied (a redelivered one changes nothing)."""
        self._releases: dict[str, list[Collect]] = {}
        """Master's rebalance Collect id -> the Collects it made for agent actors."""
        self._rebalance: RebalanceStep | None = None
        """The rebalance under way: its bar count and, once planned, its messages."""
        self.rebalanced_upto = 0
        """The bar count of the last checkpoint whose rebalance step is done."""

    # journal

    def state(self) -> FarmState:
        """Everything the farm knows but its books (and its inline agents' fills), so that
        :meth:`restore` on a new farm of the same spec carries on."""
        return capture(self, FarmState, allocation=self.spec.config.allocation)

    def restore(self, state: FarmState) -> None:
        """Take up a :meth:`state` (after the books' and the inline agents' fills' restore)."""
        if state.allocation != self.spec.config.allocation:
            self.set_policy(state.allocation)
        apply(self, state, self.ref, skip=("allocation",))

    # money

    def on_allocate(self, msg: Allocate, ports: FarmPorts) -> list[Allocate]:
        """Book the allocation received, split it across the agents by the farm's policy;
        returns the Allocate messages for the agents, booked (``ports.book_allocation``)
        but not delivered."""
        if msg.target != self.ref:
            raise NodeError(f"farm {self.name} received an allocation for {msg.target}")
        self.books.receive(
            self.ref,
            msg.source,
            msg.amount,
            key=msg.id,
            at=msg.at,
            type=TxType.ALLOCATION,
        )
        if self.books.ledger.posted(msg.id):
            self._flow("farm", msg.amount)
        plan = plan_for(
            self.spec.config.allocation,
            msg.amount,
            self.agent_names,
            self.books.ledger.quantum,
        )
        out = []
        for name, amount in plan.shares.items():
            if amount <= 0:
                continue
            child = Allocate(
                id=f"{msg.id}>{agent_ref(name)}",
                at=msg.at,
                source=self.ref,
                target=agent_ref(name),
                amount=amount,
            )
            if ports.book_allocation(child):
                self._flow(name, amount)
            out.append(child)
        return out

    def collect_agents(self, msg: Collect) -> list[Collect]:
        """For a "collect everything" (``msg.amount`` None): the Collects that first take
        every agent's cash into the farm."""
        out = []
        for name in self.agent_names:
            self._last_equity.pop(name, None)  # emptied: its next return starts afresh
            out.append(Collect(id=f"{msg.id}>{agent_ref(name)}", at=msg.at, source=agent_ref(name), amount=None, reason=msg.reason))
        return out

    def on_transfer(self, msg: Transfer) -> None:
        """Book the receipt of what an agent with books of its own sent."""
        if msg.target != self.ref:
            raise NodeError(f"farm {self.name} received a transfer for {msg.target}")
        self.books.receive(
            self.ref,
            msg.source,
            msg.amount,
            key=msg.id,
            at=msg.at,
            type=TxType.COLLECTION,
        )

    def on_collect(self, msg: Collect) -> Transfer:
        """Send the farm's own cash up to the master (``msg.amount``, or all of it)."""
        if msg.source != self.ref:
            raise NodeError(f"farm {self.name} received a collection for {msg.source}")
        transfer = send_up(self.books, self.ref, MASTER, msg)
        if self.books.ledger.posted(transfer.id):
            self._flow("farm", -transfer.amount)
        return transfer

    def on_halt(self, msg: Halt) -> list[Halt]:
        """Halt (or resume) the farm: all its agents. Returns the messages for them (again for
        a redelivered message, which changes nothing here)."""
        if msg.id not in self._halt_ids:
            self._halt_ids.add(msg.id)
            changed = False
            if msg.resume:
                if self.halted is not None:
                    self.halts.append({"reason": msg.reason, "at": iso_utc(msg.at), "resumed": True})
                    changed = True
                self.halted = None
            elif self.halted is None:
                self.halted = msg.reason
                self.halts.append({"reason": msg.reason, "at": iso_utc(msg.at), "resumed": False})
                changed = True
            if changed:
                data = HaltPayload(reason=msg.reason, resume=msg.resume)
                self.events.record(EventDraft(f"halt:{msg.id}>{self.ref}", self.ref, msg.at, data))
        return [
            Halt(id=f"{msg.id}>{agent_ref(name)}", at=msg.at, entity=agent_ref(name), reason=msg.reason, resume=msg.resume)
            for name in self.agent_names
        ]

    # rebalancing

    def _flow(self, name: str, amount: Decimal) -> None:
        """Money moved in (+) or out (-) of ``name`` (an agent, or "farm") between bars: move
        the return baseline with it, so that it does not count as a return."""
        if name in self._last_equity:
            self._last_equity[name] += float(amount)
        if name == "farm":
            self.performance.flow(float(amount))

    def _record_returns(self, name: str, equity: np.ndarray) -> None:
        """Keep the agent's last bar returns, for the policies that need them."""
        if equity.shape[0] == 0 or (not self._lookback and name != "farm"):
            return
        last = self._last_equity.get(name)
        series = np.concatenate(([last], equity)) if last is not None else equity
        with np.errstate(divide="ignore", invalid="ignore"):
            returns = series[1:] / series[:-1] - 1.0
        self._returns[name].extend(returns[np.isfinite(returns)].tolist())
        self._last_equity[name] = float(equity[-1])

    def set_policy(self, policy: Any) -> None:
        """Use another allocation policy from now on (a config allocation model or a dict)."""
        from pydantic import TypeAdapter

        from cival.config import AllocationPolicy

        model = TypeAdapter(AllocationPolicy).validate_python(policy)
        config = self.spec.config.model_copy(update={"allocation": model})
        from cival.config import weight_issues

        issues = list(weight_issues("allocation", model, self.agent_names, "agent"))
        if issues:
            raise NodeError("; ".join(str(i) for i in issues))
        self.spec = FarmSpec(config=config, agents=self.spec.agents, currency=self.spec.currency)
        self._lookback = int(getattr(model, "lookback_bars", 0))
        self._returns = {
            **{a: deque(self._returns.get(a, ()), maxlen=max(self._lookback, 1)) for a in self.agent_names},
            "farm": self._returns["farm"],
        }

    def rebalance_due(self, bars: int) -> bool:
        every = self.spec.config.rebalance.every_bars
        return every is not None and bars % every == 0

    def liquidation(self, now: datetime) -> list[Halt]:
        """With ``rebalance.liquidate``, when some agent holds a position: pause every trading
        agent, so that those in a position sell at the next open and none enters; the
        rebalance then runs at the next checkpoint, after :meth:`resume_paused`. Returns the
        pauses; empty when nobody holds a position (rebalance now). Positions are those the
        agents reported with their last batch; a halted agent ignores a pause."""
        if not self.spec.config.rebalance.liquidate or self.halted is not None:
            return []
        if not any(self.positions.get(n, "0") != "0" for n in self.agent_names):
            return []
        self._paused = list(self.agent_names)
        return [
            Halt(id=f"rebalance:{self.name}:{now.isoformat()}>{agent_ref(name)}", at=now, entity=agent_ref(name), reason=PAUSED)
            for name in self._paused
        ]

    def resume_paused(self, now: datetime) -> list[Halt]:
        """Let the agents paused for a rebalance trade again (see :meth:`liquidation`)."""
        out = [
            Halt(
                id=f"rebalance:{self.name}:{now.isoformat()}:resume>{agent_ref(name)}",
                at=now, entity=agent_ref(name), reason="rebalanced", resume=True, only=PAUSED,
            )
            for name in self._paused
        ]
        self._paused = []
        return out

    def rebalance(self, bars: int, now: datetime, cash: Mapping[str, Decimal]) -> tuple[list[Collect], list[Allocate]]:
        """Re-split the farm's free cash across its agents by its policy (``cash``: each
        agent's cash now). Free cash only: positions stay. The pool is the farm's own cash
        and its trading agents' cash; the policy's reserve stays with the farm. Agents above
        their share give back the difference first, then agents below it are topped up.
        Halted agents (absent from ``cash``) are left out. Returns the messages to send;
        ids carry the bar count, so a repeat books nothing."""
        names = [n for n in self.agent_names if n in cash]
        if self.halted is not None or not names:
            return [], []
        own = self.books.cash(self.ref).amount
        pool = own + sum((cash[n] for n in names), Decimal(0))
        returns = {n: list(self._returns[n]) for n in names}
        plan = plan_for(self.spec.config.allocation, pool, names, self.books.ledger.quantum, returns)
        collects: list[Collect] = []
        allocs: list[Allocate] = []
        moves = {}
        for name in names:
            delta = plan.shares[name] - cash[name]
            moves[name] = plain_decimal(delta)
            key = f"rebalance:{self.name}:{bars}>{agent_ref(name)}"
            if delta != 0 and not any(r["bars"] == bars for r in self.rebalances):
                self._flow(name, delta)
            if delta < 0:
                collects.append(Collect(id=key, at=now, source=agent_ref(name), amount=-delta, reason="rebalance"))
        for name in names:
            delta = plan.shares[name] - cash[name]
            key = f"rebalance:{self.name}:{bars}>{agent_ref(name)}"
            if delta > 0:
                allocs.append(Allocate(id=key, at=now, source=self.ref, target=agent_ref(name), amount=delta))
        if not any(r["bars"] == bars for r in self.rebalances):
            self.rebalances.append({"bars": bars, "at": iso_utc(now), "moves": moves})
            data = FarmRebalancePayload(wallet=self.ref, bars=bars, moves=moves)
            self.events.record(EventDraft(f"rebalance:{self.name}:{bars}", self.ref, now, data))
        return collects, allocs

    def free_cash(self, cash: Mapping[str, Decimal]) -> Decimal:
        """The farm's own cash and its trading agents' (``cash``: each agent's cash now)."""
        if self.halted is not None:
            return ZERO
        return self.books.cash(self.ref).amount + sum((v for v in cash.values()), ZERO)

    def farm_returns(self) -> list[float]:
        return list(self._returns["farm"])

    def release(self, msg: Collect, cash: Mapping[str, Decimal]) -> list[Collect]:
        """The master takes ``msg.amount`` of free cash back (a rebalance): from the farm's own
        cash first, the rest from its trading agents in proportion to their cash (exact
        split). Returns the Collects for the agents; then :meth:`send_released`."""
        if msg.id in self._releases:
            return list(self._releases[msg.id])
        own = self.books.cash(self.ref).amount
        rest = max(ZERO, Decimal(msg.amount or 0) - own)
        out: list[Collect] = []
        if rest > 0:
            weights = {n: v for n, v in cash.items() if v > 0}
            plan = split(rest, weights, self.books.ledger.quantum) if weights else None
            for name, amount in (plan.shares.items() if plan else []):
                if amount <= 0:
                    continue
                self._flow(name, -amount)
                out.append(Collect(id=f"{msg.id}>{agent_ref(name)}", at=msg.at, source=agent_ref(name), amount=amount, reason=msg.reason))
        self._taken[msg.id] = Decimal(msg.amount or 0)
        self._releases[msg.id] = list(out)
        return out

    def send_released(self, msg: Collect) -> Transfer:
        """Send what :meth:`release` gathered up to the master."""
        transfer = send_up(self.books, self.ref, MASTER, msg, amount=self._taken[msg.id])
        if self.books.ledger.posted(transfer.id):
            self._flow("farm", -self._taken[msg.id])
        return transfer

    def goal_taken(self, msg: Collect, transfer: Transfer) -> None:
        """Note what an agent sent (booked by ``ports.agent_collect``) for a goal's Collect,
        for :meth:`forward_up`. Once per Collect."""
        if msg.id not in self._taken:
            self._flow(msg.source.removeprefix("agent:"), -transfer.amount)
            self._taken[msg.id] = transfer.amount

    def forward_up(self, msg: Collect) -> Transfer:
        """Send what a goal's Collect took from an agent on up to the master: the same
        amount, under a key derived from the Collect's (a duplicate books nothing)."""
        if msg.id not in self._taken:
            raise NodeError(f"farm {self.name}: nothing was collected under {msg.id!r} yet")
        up = msg.model_copy(update={"id": f"{msg.id}:up", "source": self.ref})
        transfer = send_up(self.books, self.ref, MASTER, up, amount=self._taken[msg.id])
        if self.books.ledger.posted(transfer.id):
            self._flow("farm", -self._taken[msg.id])
        return transfer

    # -- with its agents: each step journaled before the messages that depend on it leave

    def run_allocate(self, ports: FarmPorts, msg: Allocate) -> None:
        """Receive an allocation and fund the agents by the farm's policy."""
        out = self.on_allocate(msg, ports)
        ports.commit()
        for child in out:
            ports.agent_allocate(child)

    def run_collect(self, ports: FarmPorts, msg: Collect) -> Transfer:
        """Send cash up to the master: everything (no amount; the agents' cash first, halted
        agents' too), or ``msg.amount`` of the farm's free cash: its own first, the rest from
        its trading agents in proportion to their cash (as :meth:`run_release` does). More
        than the free cash is refused before anything moves."""
        if msg.amount is not None:
            if msg.id not in self._releases:  # a repeat was checked (and journaled) before
                own = self.books.cash(self.ref).amount
                agents = sum(ports.agent_cash().values(), ZERO)
                if msg.amount > own + agents:
                    currency = self.spec.currency
                    raise NodeError(
                        f"farm {self.name} has {format_amount(own + agents)} {currency} of free cash "
                        f"(its own {format_amount(own)}, its trading agents' {format_amount(agents)}), "
                        f"less than the {format_amount(msg.amount)} asked; collect less, or everything "
                        "(no amount: the agents' positions stay, halted agents' cash comes too)"
                    )
            return self.run_release(ports, msg)
        for child in self.collect_agents(msg):
            ports.agent_collect(child)
        transfer = self.on_collect(msg)
        ports.commit()
        return transfer

    def run_halt(self, ports: FarmPorts, msg: Halt) -> None:
        """Halt (or resume) the farm and all its agents."""
        children = self.on_halt(msg)
        ports.commit()
        for child in children:
            ports.agent_halt(child)

    def run_halt_agent(self, ports: FarmPorts, msg: Halt) -> None:
        """Halt (or resume) one agent of the farm."""
        name = msg.entity.removeprefix("agent:")
        if name not in self.agent_names:
            raise NodeError(f"farm {self.name} has no agent {name!r}")
        ports.agent_halt(msg)

    def run_rebalance(self, ports: FarmPorts, bars: int, now: datetime) -> None:
        """The farm's part of a checkpoint: its scheduled rebalance (with ``liquidate``, the
        pause first and the rebalance at the next checkpoint). The step's messages are
        journaled before they leave; a repeat for the same checkpoint (a retried call)
        delivers them again, which changes nothing where they arrived, and finishes the rest."""
        if bars <= self.rebalanced_upto:
            return
        step = self._rebalance
        if step is None or step.bars != bars:
            if self._paused:  # they sold at the open after the last checkpoint: rebalance now
                halts, plan = self.resume_paused(now), True
            elif self.rebalance_due(bars):
                halts = self.liquidation(now)
                plan = not (halts or self._paused)  # else at the next checkpoint, once they are flat
            else:
                self.rebalanced_upto = bars
                return
            step = self._rebalance = RebalanceStep(bars=bars, halts=halts, plan=plan)
            if halts:
                ports.commit()
        for halt in step.halts:
            ports.agent_halt(halt)
        allocs: list[Allocate] = []
        if step.plan:
            if step.collects is None or step.allocs is None:
                collects, planned = self.rebalance(bars, now, ports.agent_cash())
                step = self._rebalance = step.model_copy(update={"collects": collects, "allocs": planned})
                ports.commit()
            for collect in step.collects or ():
                ports.agent_collect(collect)
            allocs = list(step.allocs or ())
            for msg in allocs:  # booked as sent once the collections arrived
                ports.book_allocation(msg)
            if allocs:
                ports.commit()
            for msg in allocs:
                ports.agent_allocate(msg)
        self._rebalance = None
        self.rebalanced_upto = bars
        if step.halts or step.plan:
            # Done, and journaled as done (with the receipts of the agents' transfers): the
            # next call may be a batch, not a repeat of this one, and a crash before its
            # commit must not lose them.
            ports.commit()

    def run_info(self, ports: FarmPorts) -> tuple[Decimal, list[float]]:
        """The farm's free cash now and its bar returns (for the master's policy)."""
        return self.free_cash(ports.agent_cash()), self.farm_returns()

    def run_release(self, ports: FarmPorts, msg: Collect) -> Transfer:
        """Give free cash back to the master (its rebalance): own cash first, then the
        agents'. A repeat returns the same Transfer and moves nothing more."""
        fresh = msg.id not in self._releases
        children = self.release(msg, ports.agent_cash() if fresh else {})
        if fresh and children:
            ports.commit()
        for child in children:
            ports.agent_collect(child)
        transfer = self.send_released(msg)
        ports.commit()
        return transfer

    def run_goal_collect(self, ports: FarmPorts, msg: Collect) -> Transfer:
        """A goal's Collect for one of this farm's agents: take the money, send it up. A
        redelivered Collect (its money taken before) only sends it up again."""
        name = msg.source.removeprefix("agent:")
        if name not in self.agent_names:
            raise NodeError(f"farm {self.name} has no agent {name!r}")
        if msg.id not in self._taken:
            self.goal_taken(msg, ports.agent_collect(msg))
        transfer = self.forward_up(msg)
        ports.commit()
        return transfer

    # bars

    def run_batch(self, ports: FarmPorts, batch: BarBatch) -> FarmUpdate:
        """A batch of bars: the agents trade it, the farm sums them up."""
        return self.on_updates(batch, ports.agent_batch(batch))

    def on_updates(self, batch: BarBatch, updates: list[AgentUpdate]) -> FarmUpdate:
        """Aggregate the agents' updates for a batch: the farm's equity per bar is its own
        cash plus its agents' equity."""
        own = float(self.books.cash(self.ref).amount)
        equity = np.full(len(batch), own)
        booked: list[int] = []
        for u in updates:
            if u.equity.shape[0] == len(batch):
                equity += u.equity
            self.reports[u.name] = u.report
            self.positions[u.name] = plain_decimal(u.position_qty)
            self.fill_count += u.fills
            booked += u.booked_ns
            self._record_returns(u.name, u.equity)
        # Starting equity: what the farm received from the master, net.
        self.performance.start(float(-self.books.link_balance(self.ref, MASTER)))
        self._record_returns("farm", equity)
        self.performance.update(batch.ts, equity)
        report = self.report()
        if len(batch):
            self.events.record(
                EventDraft(
                    f"performance:{self.name}:{self.performance.bars}",
                    self.ref,
                    timestamp_of(int(batch.ts[-1])),
                    FarmPerformanceUpdatePayload(farm=self.name, **performance_data(report)),
                )
            )
        return FarmUpdate(
            self.name,
            report,
            list(self.reports.values()),
            self.fill_count,
            booked,
            dict(self.positions),
            [t for u in updates for t in u.trades],
            self.halted,
        )

    def report(self) -> PerformanceReport:
        own = self.books.cash(self.ref).amount
        reports = list(self.reports.values())
        total = own + sum((r.equity for r in reports), Decimal(0))
        # Of the bar its agents last reported (the same report, however often made).
        extra = {"at": max(r.at for r in reports)} if reports else {}
        return PerformanceReport(
            id=f"{self.ref}:report:{self.performance.bars}",
            **extra,
            entity=self.ref,
            equity=total,
            cash=own,
            realized_pnl=sum((r.realized_pnl for r in reports), Decimal(0)),
            unrealized_pnl=sum((r.unrealized_pnl for r in reports), Decimal(0)),
            fees=sum((r.fees for r in reports), Decimal(0)),
            trades=sum(r.trades for r in reports),
            in_position=any(r.in_position for r in reports),
            max_drawdown=self.performance.max_drawdown
            if self.performance.bars
            else None,
            sharpe=self.performance.sharpe,
            bars=self.performance.bars,
        )

    def snapshot(self, agents: list[dict[str, Any]]) -> dict[str, Any]:
        """The farm's part of a session report; ``agents`` are the agents' snapshots
        (``ports.agent_snapshots()``)."""
        cash = self.books.cash(self.ref).amount
        total = cash + sum((Decimal(a["equity"]) for a in agents), Decimal(0))
        return {
            "name": self.name,
            "type": self.spec.config.type,
            "agents_mode": "inline" if self.spec.inline else "actors",
            "cash": plain_decimal(cash),
            "positions": [],
            "equity": plain_decimal(cash),
            "total_equity": plain_decimal(total),
            "realized_pnl": plain_decimal(
                sum((Decimal(a["realized_pnl"]) for a in agents), Decimal(0))
            ),
            "unrealized_pnl": plain_decimal(
                sum((Decimal(a["unrealized_pnl"]) for a in agents), Decimal(0))
            ),
            "fees": plain_decimal(sum((Decimal(a["fees"]) for a in agents), Decimal(0))),
            "trades": [],
            "trade_count": sum(a["trade_count"] for a in agents),
            **self.performance.figures(),  # max_drawdown, sharpe, total_return, cagr, sortino, calmar
            "halts": list(self.halts),
            "halted": self.halted,
            "rebalances": list(self.rebalances),
            "agents": agents,
        }


__all__ = [
    "AgentSpec",
    "ClusterSpec",
    "FarmNode",
    "FarmSpec",
    "FarmUpdate",
    "MasterNode",
    "NodeError",
    "cluster_spec",
]
