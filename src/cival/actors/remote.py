"""The Ray actors: a master wallet, one actor per farm, and one per agent.

Each wraps a plain node (:mod:`cival.actors.nodes`, :mod:`cival.actors.agent`) and
delivers the messages its node sends: the master to its farms, a farm to its agents.
Calls only go down the hierarchy (replies come back as return values), so no two actors
ever wait on each other. Ray runs one actor's calls one at a time, in the order each
caller sent them, which is the order the nodes need.

With a store, every actor journals its node (:mod:`cival.actors.journal`) before each
reply and before each message that moves money leaves it. Actors are restarted after a
crash: the new process rebuilds the node from the store and Ray retries the calls that
were under way. A retried call is harmless: money messages are booked under their ids,
halts are recognised by theirs, a batch of bars already handled is answered with the
reply journaled for it, and a checkpoint resumes where its journaled steps end
(:meth:`~cival.actors.nodes.MasterNode.run_checkpoint`). Retried calls may run out of
order, so each caller keeps at most one call in flight per actor.

Bars reach the farms as a :class:`~cival.core.bar.BarBatch`: small batches (live bars)
by value, in the call itself; large ones (replay) as an object reference, wrapped in a
list so Ray passes the reference on rather than the value. A farm with agent actors
forwards what it got, so a large batch is stored once however many agents read it.

Each actor process keeps a growing journal of small objects; with Python's default
collector thresholds, full collections walk that whole heap again and again (a quarter
of an agent's time on a busy replay). The actors raise the thresholds (:func:`_tune_gc`):
collections still run, far less often.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import ray

from cival.actors.agent import AgentUpdate, warm_up
from cival.actors.books import BooksSummary, summarize
from cival.actors.farm_ports import AgentMessages, InlineAgents
from cival.actors.journal import Journal, batch_key
from cival.actors.nodes import (
    AgentSpec,
    ClusterSpec,
    FarmNode,
    FarmPorts,
    FarmSpec,
    FarmUpdate,
    MasterNode,
)
from cival.actors.performance import PerformanceTracker
from cival.core.bar import BarBatch
from cival.core.messages import Allocate, Collect, GoalChange, Halt, Transfer
from cival.store.base import StoreLocation


def _tune_gc() -> None:
    """Fewer collections in a process that only accumulates (see the module docstring)."""
    import gc

    gc.set_threshold(50_000, 20, 100)


def _restartable() -> dict[str, Any]:
    """Actor options: restarted after a crash (its state comes back from the store) with
    the calls it was handling retried, so callers see nothing but a delay. Each caller
    keeps at most one call in flight per actor, as retried calls may run out of order."""
    return {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}


def _journal(node: Any, where: StoreLocation | None, run_id: str | None) -> tuple[Journal | None, Any]:
    """The node's journal (None without a store) and the reply it restored, if any."""
    if where is None or run_id is None:
        return None, None
    journal = Journal(where.open(wait=True), run_id, node)  # restarting during an outage: wait for the server
    return journal, journal.restore()


@ray.remote(**_restartable())
class AgentActor:
    """One agent with books of its own."""

    def __init__(self, spec: AgentSpec, where: StoreLocation | None = None, run_id: str | None = None) -> None:
        _tune_gc()
        warm_up(spec.strategy, spec.model)
        self.agent = spec.build()
        self.journal, self._last = _journal(self.agent, where, run_id)

    def _commit(self) -> None:
        if self.journal is not None:
            self.journal.commit(self._last)

    def on_allocate(self, msg: Allocate) -> None:
        self.agent.on_allocate(msg)
        self._commit()

    def on_collect(self, msg: Collect) -> Transfer:
        transfer = self.agent.on_collect(msg)
        self._commit()
        return transfer

    def on_halt(self, msg: Halt) -> None:
        self.agent.on_halt(msg)
        self._commit()

    def cash(self) -> tuple[Any, str | None]:
        """The agent's cash now, and why it is halted (None when it trades)."""
        assert self.agent.books is not None
        return self.agent.books.cash(self.agent.ref).amount, self.agent.halted

    def on_batch(self, batch: BarBatch) -> AgentUpdate:
        key = batch_key(batch)
        if self._last is not None and self._last[0] == key:
            return self._last[1]  # a retried call: done before, journaled with its reply
        update = self.agent.on_batch(batch)
        self._last = (key, update)
        self._commit()
        return update

    def snapshot(self) -> dict[str, Any]:
        return self.agent.snapshot()

    def books(self) -> BooksSummary:
        assert self.agent.books is not None
        return summarize(self.agent.books)

    def ping(self) -> str:
        return self.agent.name

    def process(self) -> int:
        """This actor's process id (a restart changes it)."""
        return os.getpid()


class _FarmPorts(AgentMessages):
    """A farm actor's agent actors, called one at a time."""

    def __init__(self, actor: FarmActor) -> None:
        self.actor = actor

    @property
    def farm(self) -> FarmNode:
        return self.actor.node

    def _handle(self, entity: str) -> Any:
        return self.actor.handles[entity.removeprefix("agent:")]

    def commit(self) -> None:
        self.actor._commit()

    def agent_allocate(self, msg: Allocate) -> None:
        ray.get(self._handle(msg.target).on_allocate.remote(msg))

    def collect_from(self, msg: Collect) -> Transfer:
        return ray.get(self._handle(msg.source).on_collect.remote(msg))  # type: ignore[no-any-return]

    def agent_halt(self, msg: Halt) -> None:
        ray.get(self._handle(msg.entity).on_halt.remote(msg))

    def agent_cash(self) -> dict[str, Any]:
        handles = self.actor.handles
        states = ray.get([h.cash.remote() for h in handles.values()])
        return {name: amount for name, (amount, halted) in zip(handles, states, strict=True) if halted is None}

    def agent_batch(self, batch: BarBatch) -> list[AgentUpdate]:
        item = self.actor.batch_item  # as the farm received it: a reference for a large batch
        return ray.get([h.on_batch.remote(item) for h in self.actor.handles.values()])  # type: ignore[no-any-return]

    def agent_snapshots(self) -> list[dict[str, Any]]:
        return ray.get([h.snapshot.remote() for h in self.actor.handles.values()])  # type: ignore[no-any-return]


@ray.remote(**_restartable())
class FarmActor:
    """A farm, with its agents inline or as :class:`AgentActor` handles."""

    def __init__(
        self, spec: FarmSpec, agents: dict[str, str] | None = None, where: StoreLocation | None = None, run_id: str | None = None
    ) -> None:
        _tune_gc()
        if spec.inline:
            for strategy in {a.strategy for a in spec.agents}:
                warm_up(strategy, spec.agents[0].model)
        PerformanceTracker().update(np.array([0, 1], dtype=np.int64), np.array([1.0, 1.0]))  # load its compiled loop
        self.node = FarmNode(spec)
        self._agent_names = agents or {}
        self._handles: dict[str, Any] | None = None
        self.batch_item: Any = None
        self.ports: FarmPorts = InlineAgents(self.node, self._commit) if spec.inline else _FarmPorts(self)
        self.journal, self._last = _journal(self.node, where, run_id)

    @property
    def handles(self) -> dict[str, Any]:
        """The agent actors, looked up by name (handles as constructor arguments would keep
        Ray from restarting this actor once they went out of scope)."""
        if self._handles is None:
            self._handles = {agent: ray.get_actor(name) for agent, name in self._agent_names.items()}
        return self._handles

    def _commit(self) -> None:
        if self.journal is not None:
            self.journal.commit(self._last)

    def on_allocate(self, msg: Allocate) -> None:
        self.node.run_allocate(self.ports, msg)

    def on_collect(self, msg: Collect) -> Transfer:
        return self.node.run_collect(self.ports, msg)

    def on_halt(self, msg: Halt) -> None:
        self.node.run_halt(self.ports, msg)

    def rebalance(self, bars: int, now: Any) -> None:
        """At a checkpoint: re-split the agents' free cash if the farm's schedule says so."""
        self.node.run_rebalance(self.ports, bars, now)

    def rebalance_info(self) -> tuple[Any, list[float]]:
        """The farm's free cash now and its bar returns (for the master's policy)."""
        return self.node.run_info(self.ports)

    def release(self, msg: Collect) -> Transfer:
        """Give back free cash to the master (a rebalance): own cash first, then the agents'."""
        return self.node.run_release(self.ports, msg)

    def set_policy(self, policy: Any) -> None:
        self.node.set_policy(policy)
        self._commit()

    def halt_agent(self, msg: Halt) -> None:
        self.node.run_halt_agent(self.ports, msg)

    def goal_collect(self, msg: Collect) -> Transfer:
        """A goal's Collect for one of this farm's agents: take the money, send it up."""
        return self.node.run_goal_collect(self.ports, msg)

    def on_bars(self, wrapped: list[Any]) -> FarmUpdate:
        """``wrapped[0]`` is a batch, or a reference to one (large batches are stored once)."""
        item = wrapped[0]
        batch = ray.get(item) if isinstance(item, ray.ObjectRef) else item
        key = batch_key(batch)
        if self._last is not None and self._last[0] == key:
            return self._last[1]  # a retried call: done before, journaled with its reply
        self.batch_item = item
        update = self.node.run_batch(self.ports, batch)
        self._last = (key, update)
        self._commit()
        return update

    def snapshot(self) -> dict[str, Any]:
        return self.node.snapshot(self.ports.agent_snapshots())

    def books(self) -> list[BooksSummary]:
        """The farm's books and, for agent actors, theirs."""
        own = [summarize(self.node.books)]
        return own + ray.get([h.books.remote() for h in self.handles.values()])

    def ping(self) -> str:
        ray.get([h.ping.remote() for h in self.handles.values()])
        return self.node.name

    def process(self) -> int:
        """This actor's process id (a restart changes it)."""
        return os.getpid()


class _MasterPorts:
    """The master actor's farm actors, called one at a time."""

    def __init__(self, actor: MasterActor) -> None:
        self.actor = actor

    def _farm(self, entity: str) -> Any:
        return self.actor.farms[entity.removeprefix("farm:")]

    def _farm_of(self, agent: str) -> Any:
        return self.actor.farms[self.actor.node.farm_of[agent.removeprefix("agent:")]]

    def commit(self) -> None:
        self.actor._commit()

    def farm_allocate(self, msg: Allocate) -> None:
        ray.get(self._farm(msg.target).on_allocate.remote(msg))

    def farm_collect(self, msg: Collect) -> Transfer:
        return ray.get(self._farm(msg.source).on_collect.remote(msg))  # type: ignore[no-any-return]

    def farm_halt(self, msg: Halt) -> None:
        ray.get(self._farm(msg.entity).on_halt.remote(msg))

    def agent_halt(self, msg: Halt) -> None:
        ray.get(self._farm_of(msg.entity).halt_agent.remote(msg))

    def farm_rebalance(self, farms: list[str], bars: int, now: Any) -> None:
        ray.get([self.actor.farms[farm].rebalance.remote(bars, now) for farm in farms])  # one call per farm

    def farm_info(self, farm: str) -> tuple[Any, list[float]]:
        return ray.get(self.actor.farms[farm].rebalance_info.remote())  # type: ignore[no-any-return]

    def farm_release(self, msg: Collect) -> Transfer:
        return ray.get(self._farm(msg.source).release.remote(msg))  # type: ignore[no-any-return]

    def goal_collect(self, msg: Collect) -> Transfer:
        return ray.get(self._farm_of(msg.source).goal_collect.remote(msg))  # type: ignore[no-any-return]


@ray.remote(**_restartable())
class MasterActor:
    """The master wallet, with handles to its farms."""

    def __init__(self, spec: ClusterSpec, farms: dict[str, str], where: StoreLocation | None = None, run_id: str | None = None) -> None:
        _tune_gc()
        self.node = MasterNode(spec)
        self._farm_names = farms
        self._farms: dict[str, Any] | None = None
        self.ports = _MasterPorts(self)
        self.journal, _ = _journal(self.node, where, run_id)

    @property
    def farms(self) -> dict[str, Any]:
        """The farm actors, looked up by name (see FarmActor.handles)."""
        if self._farms is None:
            self._farms = {farm: ray.get_actor(name) for farm, name in self._farm_names.items()}
        return self._farms

    def _commit(self) -> None:
        if self.journal is not None:
            self.journal.commit()

    def fund(self, at: Any = None) -> None:
        self.node.run_fund(self.ports, at)

    def deposit(self, amount: Any, key: str, at: Any = None) -> None:
        self.node.run_deposit(self.ports, amount, key, at)

    def allocate(self, msg: Allocate) -> None:
        """An allocation by hand to one farm (booked as sent, then delivered)."""
        self.node.run_allocate(self.ports, msg)

    def collect(self, msg: Collect) -> Transfer:
        return self.node.run_collect(self.ports, msg)

    def checkpoint(
        self, trades: list[Any], bars: int, now: Any, sharpes: dict[str, Any], farms: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Risk limits, rebalancing and goals at a checkpoint (see MasterNode.run_checkpoint)."""
        return self.node.run_checkpoint(self.ports, trades, bars, now, sharpes, farms)

    def goal_states(self) -> list[dict[str, Any]]:
        return self.node.goal_states()

    def change_goal(self, msg: GoalChange) -> dict[str, Any]:
        """A goal added, reassigned or cancelled by hand (journaled)."""
        return self.node.run_change_goal(self.ports, msg)

    def halt(self, msg: Halt) -> None:
        """A halt (or resume) by hand, for a farm or an agent."""
        self.node.run_halt(self.ports, msg)

    def snapshot(self) -> dict[str, Any]:
        return self.node.snapshot()

    def books(self) -> BooksSummary:
        return summarize(self.node.books)

    def process(self) -> int:
        """This actor's process id (a restart changes it)."""
        return os.getpid()


__all__ = ["AgentActor", "FarmActor", "MasterActor"]
