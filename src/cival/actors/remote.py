"""The Ray actors: a master wallet, one actor per farm, and one per agent.

Each wraps a plain node (:mod:`cival.actors.nodes`, :mod:`cival.actors.agent`) and
delivers the messages its node sends: the master to its farms, a farm to its agents.
Calls only go down the hierarchy (replies come back as return values), so no two actors
ever wait on each other. Ray runs one actor's calls one at a time, in the order each
caller sent them, which is the order the nodes need.

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

from typing import Any

import numpy as np
import ray

from cival.actors.agent import AgentUpdate, warm_up
from cival.actors.books import BooksSummary, summarize
from cival.actors.nodes import (
    AgentSpec,
    ClusterSpec,
    FarmNode,
    FarmSpec,
    FarmUpdate,
    MasterNode,
)
from cival.actors.performance import PerformanceTracker
from cival.core.bar import BarBatch
from cival.core.messages import Allocate, Collect, Halt, Transfer


def _tune_gc() -> None:
    """Fewer collections in a process that only accumulates (see the module docstring)."""
    import gc

    gc.set_threshold(50_000, 20, 100)


@ray.remote(num_cpus=0)
class AgentActor:
    """One agent with books of its own."""

    def __init__(self, spec: AgentSpec) -> None:
        _tune_gc()
        warm_up(spec.strategy, spec.model)
        self.agent = spec.build()

    def on_allocate(self, msg: Allocate) -> None:
        self.agent.on_allocate(msg)

    def on_collect(self, msg: Collect) -> Transfer:
        return self.agent.on_collect(msg)

    def on_halt(self, msg: Halt) -> None:
        self.agent.on_halt(msg)

    def cash(self) -> tuple[Any, str | None]:
        """The agent's cash now, and why it is halted (None when it trades)."""
        assert self.agent.books is not None
        return self.agent.books.cash(self.agent.ref).amount, self.agent.halted

    def on_batch(self, batch: BarBatch) -> AgentUpdate:
        return self.agent.on_batch(batch)

    def snapshot(self) -> dict[str, Any]:
        return self.agent.snapshot()

    def books(self) -> BooksSummary:
        assert self.agent.books is not None
        return summarize(self.agent.books)

    def ping(self) -> str:
        return self.agent.name


@ray.remote(num_cpus=0)
class FarmActor:
    """A farm, with its agents inline or as :class:`AgentActor` handles."""

    def __init__(self, spec: FarmSpec, agents: dict[str, Any] | None = None) -> None:
        _tune_gc()
        if spec.inline:
            for strategy in {a.strategy for a in spec.agents}:
                warm_up(strategy, spec.agents[0].model)
        PerformanceTracker().update(np.array([0, 1], dtype=np.int64), np.array([1.0, 1.0]))  # load its compiled loop
        self.node = FarmNode(spec)
        self.handles = agents or {}

    def on_allocate(self, msg: Allocate) -> None:
        out = self.node.on_allocate(msg)
        ray.get(
            [
                self.handles[m.target.removeprefix("agent:")].on_allocate.remote(m)
                for m in out
            ]
        )

    def on_collect(self, msg: Collect) -> Transfer:
        if msg.amount is None:
            out = self.node.collect_agents(msg)
            transfers = ray.get(
                [
                    self.handles[m.source.removeprefix("agent:")].on_collect.remote(m)
                    for m in out
                ]
            )
            for t in transfers:
                self.node.on_transfer(t)
        return self.node.on_collect(msg)

    def on_halt(self, msg: Halt) -> None:
        ray.get([self.handles[c.entity.removeprefix("agent:")].on_halt.remote(c) for c in self.node.on_halt(msg)])

    def rebalance(self, bars: int, now: Any) -> None:
        """At a checkpoint: re-split the agents' free cash if the farm's schedule says so."""
        if self.node._paused:  # they sold at the open after the last checkpoint: rebalance now
            ray.get([self.handles[m.entity.removeprefix("agent:")].on_halt.remote(m) for m in self.node.resume_paused(now)])
        elif self.node.rebalance_due(bars):
            pauses = self.node.liquidation(now)
            ray.get([self.handles[m.entity.removeprefix("agent:")].on_halt.remote(m) for m in pauses])
            if pauses or self.node._paused:
                return
        else:
            return
        collects, allocs = self.node.rebalance(bars, now, self._agent_cash())
        for t in ray.get([self.handles[m.source.removeprefix("agent:")].on_collect.remote(m) for m in collects]):
            self.node.on_transfer(t)
        ray.get([self.handles[m.target.removeprefix("agent:")].on_allocate.remote(m) for m in self.node.send_allocations(allocs)])

    def _agent_cash(self) -> dict[str, Any]:
        """Each trading agent's cash now (halted agents left out)."""
        if self.node.spec.inline:
            agents = self.node.agents
            return {n: a.books.cash(a.ref).amount for n, a in agents.items() if a.halted is None}
        states = ray.get([h.cash.remote() for h in self.handles.values()])
        return {name: amount for name, (amount, halted) in zip(self.handles, states, strict=True) if halted is None}

    def rebalance_info(self) -> tuple[Any, list[float]]:
        """The farm's free cash now and its bar returns (for the master's policy)."""
        return self.node.free_cash(self._agent_cash()), self.node.farm_returns()

    def release(self, msg: Collect) -> Transfer:
        """Give back free cash to the master (a rebalance): own cash first, then the agents'."""
        for child in self.node.release(msg, self._agent_cash()):
            self.node.on_transfer(ray.get(self.handles[child.source.removeprefix("agent:")].on_collect.remote(child)))
        return self.node.send_released(msg)

    def set_policy(self, policy: Any) -> None:
        self.node.set_policy(policy)

    def halt_agent(self, msg: Halt) -> None:
        name = msg.entity.removeprefix("agent:")
        if self.node.spec.inline:
            self.node.agents[name].on_halt(msg)
        else:
            ray.get(self.handles[name].on_halt.remote(msg))

    def goal_collect(self, msg: Collect) -> Transfer:
        """A goal's Collect for one of this farm's agents: take the money, send it up."""
        relay = self.node.goal_collect(msg)
        if relay is not None:
            transfer = ray.get(self.handles[relay.source.removeprefix("agent:")].on_collect.remote(relay))
            self.node.on_goal_transfer(msg, transfer)
        return self.node.forward_up(msg)

    def on_bars(self, wrapped: list[Any]) -> FarmUpdate:
        """``wrapped[0]`` is a batch, or a reference to one (large batches are stored once)."""
        item = wrapped[0]
        batch = ray.get(item) if isinstance(item, ray.ObjectRef) else item
        if self.node.spec.inline:
            updates = self.node.run_inline(batch)
        else:
            updates = ray.get([h.on_batch.remote(item) for h in self.handles.values()])
        return self.node.on_updates(batch, updates)

    def snapshot(self) -> dict[str, Any]:
        agents = (
            None
            if self.node.spec.inline
            else ray.get([h.snapshot.remote() for h in self.handles.values()])
        )
        return self.node.snapshot(agents)

    def books(self) -> list[BooksSummary]:
        """The farm's books and, for agent actors, theirs."""
        own = [summarize(self.node.books)]
        return own + ray.get([h.books.remote() for h in self.handles.values()])

    def ping(self) -> str:
        ray.get([h.ping.remote() for h in self.handles.values()])
        return self.node.name


@ray.remote(num_cpus=0)
class MasterActor:
    """The master wallet, with handles to its farms."""

    def __init__(self, spec: ClusterSpec, farms: dict[str, Any]) -> None:
        _tune_gc()
        self.node = MasterNode(spec)
        self.farms = farms

    def fund(self) -> list[Allocate]:
        out = self.node.fund()
        ray.get(
            [
                self.farms[m.target.removeprefix("farm:")].on_allocate.remote(m)
                for m in out
            ]
        )
        return out

    def allocate(self, msg: Allocate) -> None:
        """An allocation by hand to one farm (booked as sent, then delivered)."""
        msg = self.node.allocate(msg)
        ray.get(self.farms[msg.target.removeprefix("farm:")].on_allocate.remote(msg))

    def collect(self, farm: str, amount: Any = None, reason: str = "") -> Transfer:
        msg = self.node.collect(farm, amount, reason)
        transfer = ray.get(self.farms[farm].on_collect.remote(msg))
        self.node.on_transfer(transfer)
        return transfer

    def checkpoint(
        self, trades: list[Any], bars: int, now: Any, sharpes: dict[str, Any], farms: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Risk limits and goals at a checkpoint; halts and completed goals' collections are
        made before returning."""
        ray.get([self.farms[h.entity.removeprefix("farm:")].on_halt.remote(h) for h in self.node.risk_halts(now, farms)])
        ray.get([f.rebalance.remote(bars, now) for f in self.farms.values()])
        if self.node.rebalance_due(bars):
            infos = dict(zip(self.farms, ray.get([f.rebalance_info.remote() for f in self.farms.values()]), strict=True))
            free = {name: info[0] for name, info in infos.items()}
            returns = {name: info[1] for name, info in infos.items()}
            collects, allocs = self.node.rebalance(bars, now, free, returns)
            for msg in collects:
                self.node.on_transfer(ray.get(self.farms[msg.source.removeprefix("farm:")].release.remote(msg)))
            ray.get([self.farms[m.target.removeprefix("farm:")].on_allocate.remote(m) for m in self.node.send_allocations(allocs)])
        for msg in self.node.on_checkpoint(trades, bars, now, sharpes):
            if isinstance(msg, Halt):
                self.halt(msg)
                continue
            farm = self.farms[self.node.farm_of[msg.source.removeprefix("agent:")]]
            self.node.on_goal_transfer(msg, ray.get(farm.goal_collect.remote(msg)))
        return self.node.goal_states()

    def goal_states(self) -> list[dict[str, Any]]:
        return self.node.goal_states()

    def halt(self, msg: Halt) -> None:
        """A halt (or resume) by hand, for a farm or an agent."""
        if msg.entity.startswith("farm:"):
            ray.get(self.farms[msg.entity.removeprefix("farm:")].on_halt.remote(msg))
        else:
            farm = self.node.farm_of[msg.entity.removeprefix("agent:")]
            ray.get(self.farms[farm].halt_agent.remote(msg))

    def snapshot(self) -> dict[str, Any]:
        return self.node.snapshot()

    def books(self) -> BooksSummary:
        return summarize(self.node.books)


__all__ = ["AgentActor", "FarmActor", "MasterActor"]
