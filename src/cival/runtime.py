"""Building a cluster from a config: its nodes as Ray actors or in this process.

* :class:`RayCluster`: the master wallet, farms and agents as Ray actors, each with its
  own books. :class:`LocalCluster`: the same nodes in this process (agents of non-inline
  farms still keep books of their own, so the bookkeeping is the actors'); tests and
  notebooks use it, and it gives the same results.
* :func:`single_agent_config`: the one-farm, one-agent cluster of ``cival paper --strategy``.

A :class:`~cival.session.Session` drives either: it feeds them bars, runs checkpoints and
applies commands through the methods both share.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from cival.actors.agent import Agent, AgentUpdate
from cival.actors.books import BooksSummary, summarize
from cival.actors.farm_ports import AgentMessages, InlineAgents
from cival.actors.journal import Journal, batch_key
from cival.actors.nodes import (
    ClusterSpec,
    FarmNode,
    FarmPorts,
    FarmUpdate,
    MasterNode,
    NodeError,
)
from cival.config import ClusterConfig, config_from_dict
from cival.core.bar import BarBatch
from cival.core.costs import (
    DEFAULT_CASH,
    DEFAULT_FEE_BPS,
    DEFAULT_FRACTION,
    DEFAULT_SLIPPAGE_BPS,
)
from cival.core.errors import CivalError
from cival.core.messages import Allocate, Collect, GoalChange, Halt, Transfer
from cival.core.money import DEFAULT_QTY_STEP, AmountError, check_amount, to_decimal
from cival.core.urls import redact
from cival.rayconnect import RaySession, RayUnavailable, connect, local_processes_alive, ray_address
from cival.store.base import Store, StoreLocation

DEFAULT_BATCH = 10_000
"""Bars per batch when replaying at full speed (each batch costs a few actor calls)."""


SMALL_BATCH = 256
"""Batches up to this many bars are sent by value (no object store round trip)."""


class RuntimeFailure(CivalError):
    """The cluster could not be started or reached, or a session could not run."""


class ClusterLost(RuntimeFailure):
    """The local Ray's own processes stopped while the session still needed its actors."""


# -- clusters ---------------------------------------------------------------------------


class _LocalFarmPorts(AgentMessages):
    """A farm's agents in this process (those with books of their own)."""

    def __init__(self, cluster: LocalCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name

    @property
    def farm(self) -> FarmNode:
        return self.cluster.farms[self.name]

    def _agent(self, entity: str) -> Agent:
        return self.cluster.agents[entity.removeprefix("agent:")]

    def commit(self) -> None:
        self.cluster.commit(self.farm)

    def agent_allocate(self, msg: Allocate) -> None:
        agent = self._agent(msg.target)
        agent.on_allocate(msg)
        self.cluster.commit(agent)

    def collect_from(self, msg: Collect) -> Transfer:
        agent = self._agent(msg.source)
        transfer = agent.on_collect(msg)
        self.cluster.commit(agent)
        return transfer

    def agent_halt(self, msg: Halt) -> None:
        agent = self._agent(msg.entity)
        agent.on_halt(msg)
        self.cluster.commit(agent)

    def agent_cash(self) -> dict[str, Decimal]:
        agents = [self.cluster.agents[n] for n in self.farm.agent_names]
        return {a.name: a.books.cash(a.ref).amount for a in agents if a.halted is None}  # type: ignore[union-attr]

    def agent_batch(self, batch: BarBatch) -> list[AgentUpdate]:
        return [self.cluster.submit_agent(agent, batch) for agent in self.farm.agent_names]

    def agent_snapshots(self) -> list[dict[str, Any]]:
        return [self.cluster.agents[n].snapshot() for n in self.farm.agent_names]


class _LocalMasterPorts:
    """The farms in this process."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def _farm(self, entity: str) -> tuple[FarmNode, FarmPorts]:
        name = entity.removeprefix("farm:")
        return self.cluster.farms[name], self.cluster.farm_ports[name]

    def _farm_of(self, agent: str) -> tuple[FarmNode, FarmPorts]:
        return self._farm(self.cluster.master.farm_of[agent.removeprefix("agent:")])

    def commit(self) -> None:
        self.cluster.commit(self.cluster.master)

    def farm_allocate(self, msg: Allocate) -> None:
        farm, ports = self._farm(msg.target)
        farm.run_allocate(ports, msg)

    def farm_collect(self, msg: Collect) -> Transfer:
        farm, ports = self._farm(msg.source)
        return farm.run_collect(ports, msg)

    def farm_halt(self, msg: Halt) -> None:
        farm, ports = self._farm(msg.entity)
        farm.run_halt(ports, msg)

    def agent_halt(self, msg: Halt) -> None:
        farm, ports = self._farm_of(msg.entity)
        farm.run_halt_agent(ports, msg)

    def farm_rebalance(self, farms: list[str], bars: int, now: datetime) -> None:
        for farm in farms:
            node, ports = self._farm(farm)
            node.run_rebalance(ports, bars, now)

    def farm_info(self, farm: str) -> tuple[Decimal, list[float]]:
        node, ports = self._farm(farm)
        return node.run_info(ports)

    def farm_release(self, msg: Collect) -> Transfer:
        farm, ports = self._farm(msg.source)
        return farm.run_release(ports, msg)

    def goal_collect(self, msg: Collect) -> Transfer:
        farm, ports = self._farm_of(msg.source)
        return farm.run_goal_collect(ports, msg)


class LocalCluster:
    """The cluster's nodes in this process; messages are delivered by direct calls. With a
    store (and a run id), each node journals itself exactly as the actors do."""

    mode = "local"

    def __init__(self, spec: ClusterSpec, store: Store | None = None, run_id: str | None = None) -> None:
        self.spec = spec
        self.master = MasterNode(spec)
        self.farms = {f.name: FarmNode(f) for f in spec.farms}
        self.agents: dict[str, Agent] = {
            a.name: a.build() for f in spec.farms if not f.inline for a in f.agents
        }
        self.farm_ports = {f.name: self._ports(f.name) for f in spec.farms}
        self.ports = _LocalMasterPorts(self)
        self.store = store
        self.run_id = run_id
        self.journals: dict[int, Journal] = {}
        self.replies: dict[str, Any] = {}
        """Node ref -> (batch key, reply) of the last batch it handled (journaled with it)."""
        if store is not None and run_id is not None:
            for node in [self.master, *self.farms.values(), *self.agents.values()]:
                self.journals[id(node)] = Journal(store, run_id, node)

    def _ports(self, name: str) -> FarmPorts:
        """How the farm ``name`` reaches its agents: in its own books, or as objects here."""
        farm = self.farms[name]
        if farm.spec.inline:
            return InlineAgents(farm, lambda: self.commit(farm))
        return _LocalFarmPorts(self, name)

    def commit(self, node: Any) -> None:
        journal = self.journals.get(id(node))
        if journal is not None:
            journal.commit(self.replies.get(journal.source))

    def restore(self, ref: str) -> None:
        """Replace the node ``ref`` (``master``, ``farm:NAME``, ``agent:NAME``) by one rebuilt
        from the store, as an actor restarted after a crash is."""
        assert self.store is not None and self.run_id is not None, "restoring needs a store"
        kind, _, name = ref.partition(":")
        old: Any
        if kind == "master":
            old, node = self.master, MasterNode(self.spec)
            self.master = node
        elif kind == "farm":
            old = self.farms[name]
            node = FarmNode(old.spec)
            self.farms[name] = node
            self.farm_ports[name] = self._ports(name)
        else:
            old = self.agents[name]
            node = next(a for a in self.spec.agents if a.name == name).build()
            self.agents[name] = node
        del self.journals[id(old)]
        journal = self.journals[id(node)] = Journal(self.store, self.run_id, node)
        reply = journal.restore()
        if reply is None:
            self.replies.pop(ref, None)
        else:
            self.replies[ref] = reply

    def _answer(self, node: Any, ref: str, batch: BarBatch, handle: Callable[[], Any]) -> Any:
        """A node's reply to a batch: from the journal when it handled this batch already
        (a retried call), else ``handle()``, journaled with its reply."""
        key = batch_key(batch)
        last = self.replies.get(ref)
        if last is not None and last[0] == key:
            return last[1]
        reply = handle()
        self.replies[ref] = (key, reply)
        self.commit(node)
        return reply

    def start(self, on_stage: Callable[[str], None] | None = None) -> float:
        """Nothing to start: the nodes are here already."""
        return 0.0

    def fund(self, at: datetime | None = None) -> None:
        """Deposit the initial capital and fund the farms, stamped ``at`` (None: now)."""
        self.master.run_fund(self.ports, at)

    def collect(self, farm: str, amount: Decimal | None = None, reason: str = "") -> Transfer:
        return self.send_collect(self.master.collect(farm, amount, reason))

    def send_collect(self, msg: Collect) -> Transfer:
        """Collect from a farm (``msg.amount``, or everything); returns what arrived."""
        return self.master.run_collect(self.ports, msg)

    def send_allocate(self, msg: Allocate) -> None:
        """Allocate ``msg.amount`` of the master's cash to the farm ``msg.target``."""
        self.master.run_allocate(self.ports, msg)

    def send_deposit(self, amount: Decimal, key: str, at: datetime | None = None) -> None:
        """Deposit ``amount`` into the master's cash (``key``: a repeat books nothing)."""
        self.master.run_deposit(self.ports, amount, key, at)

    def send_halt(self, msg: Halt) -> None:
        """Halt (or, ``msg.resume``, resume) a farm or an agent."""
        self.master.run_halt(self.ports, msg)

    def submit(self, batch: BarBatch) -> list[FarmUpdate]:
        return [self.submit_farm(name, batch) for name in self.farms]

    def submit_farm(self, name: str, batch: BarBatch) -> FarmUpdate:
        """One farm's part of a batch (what a farm actor's ``on_bars`` does)."""
        farm = self.farms[name]

        return self._answer(farm, farm.ref, batch, lambda: farm.run_batch(self.farm_ports[name], batch))  # type: ignore[no-any-return]

    def submit_agent(self, name: str, batch: BarBatch) -> AgentUpdate:
        """One agent's part of a batch (what an agent actor's ``on_batch`` does)."""
        agent = self.agents[name]
        return self._answer(agent, agent.ref, batch, lambda: agent.on_batch(batch))  # type: ignore[no-any-return]

    def wait(self, handle: list[FarmUpdate]) -> list[FarmUpdate]:
        return handle

    def checkpoint(
        self, trades: list[Any], bars: int, now: datetime, sharpes: dict[str, Any], farms: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return self.master.run_checkpoint(self.ports, trades, bars, now, sharpes, farms or {})

    def goal_states(self) -> list[dict[str, Any]]:
        return self.master.goal_states()

    def change_goal(self, msg: GoalChange) -> dict[str, Any]:
        """Add, reassign or cancel a goal (see :meth:`MasterNode.change_goal`)."""
        return self.master.run_change_goal(self.ports, msg)

    def set_policy(self, farm: str, policy: Any) -> None:
        self.farms[farm].set_policy(policy)
        self.commit(self.farms[farm])

    def allocate(self, farm: str, amount: Decimal) -> None:
        """Allocate ``amount`` of the master's cash to ``farm`` (which splits it by its policy)."""
        self.send_allocate(Allocate(source="master", target=f"farm:{farm}", amount=amount))

    def halt(self, entity: str, reason: str = "halted by hand", resume: bool = False) -> None:
        """Halt (or resume) ``farm:<name>`` or ``agent:<name>``."""
        self.send_halt(Halt(entity=entity, reason=reason, resume=resume))

    def master_snapshot(self) -> dict[str, Any]:
        return self.master.snapshot()

    def farm_snapshots(self) -> list[dict[str, Any]]:
        return [farm.snapshot(self.farm_ports[name].agent_snapshots()) for name, farm in self.farms.items()]

    def summaries(self) -> list[BooksSummary]:
        books = [self.master.books, *(f.books for f in self.farms.values())]
        books += [a.books for a in self.agents.values() if a.books is not None]
        return [summarize(b) for b in books]

    def close(self) -> None:
        pass


def connect_ray(address: str | None = None) -> RaySession:
    """Start a local Ray (no address) or join the cluster at ``address`` (or RAY_ADDRESS);
    see :mod:`cival.rayconnect` for how each is secured.

    ``close()`` on the result shuts down a Ray started here (a Ray already running in this
    process is used and left alone). Fails fast, with a message saying what to check,
    when the address does not answer or refuses the connection.
    """
    try:
        return connect(address, log_to_driver=True, logging_level="ERROR")
    except RayUnavailable as exc:
        raise RuntimeFailure(str(exc)) from None


class RayCluster:
    """The master wallet, one actor per farm, and one per agent (of non-inline farms)."""

    mode = "ray"

    def __init__(
        self, spec: ClusterSpec, address: str | None = None, where: StoreLocation | None = None, run_id: str | None = None
    ) -> None:
        self.spec = spec
        self.address = address
        self.where = where
        self.run_id = run_id
        self.ray: RaySession | None = None
        self.stopping = False
        """Set when the session is ending: from then on every wait watches whether Ray's
        own processes are still alive (a SIGTERM may have stopped them too)."""
        self.lost = False
        self.master: Any = None
        self.farms: dict[str, Any] = {}
        self.agents: dict[str, Any] = {}

    def start(self, on_stage: Callable[[str], None] | None = None) -> float:
        """Connect to Ray and create the actors; returns the seconds it took. ``on_stage``
        is told each step (starting Ray, starting the actors)."""
        from cival.actors.remote import AgentActor, FarmActor, MasterActor

        say = on_stage or (lambda text: None)
        t0 = time.perf_counter()
        joining = ray_address(self.address)
        say(f"joining Ray at {redact(joining)}" if joining else "starting a local Ray")
        self.ray = connect_ray(self.address)
        agents = sum(len(f.agents) for f in self.spec.farms if not f.inline)
        say(
            f"starting {1 + len(self.spec.farms) + agents} actors (the master, {len(self.spec.farms)} farms, {agents} agents); "
            "each compiles its strategy's loops on first use"
        )
        prefix = f"cival:{self.spec.config.name}:{os.getpid()}:{time.time_ns()}"
        farm_names: dict[str, str] = {}
        try:
            for farm in self.spec.farms:
                names = {}
                if not farm.inline:
                    for a in farm.agents:
                        names[a.name] = f"{prefix}:agent:{a.name}"
                        self.agents[a.name] = AgentActor.options(name=names[a.name]).remote(a, self.where, self.run_id)
                farm_names[farm.name] = f"{prefix}:farm:{farm.name}"
                self.farms[farm.name] = FarmActor.options(name=farm_names[farm.name]).remote(
                    farm, names, self.where, self.run_id
                )
            self.master = MasterActor.options(name=f"{prefix}:master").remote(
                self.spec, farm_names, self.where, self.run_id
            )
            self._get([f.ping.remote() for f in self.farms.values()])
        except Exception:
            self.close()
            raise
        return time.perf_counter() - t0

    def fund(self, at: datetime | None = None) -> None:
        """Deposit the initial capital and fund the farms, stamped ``at`` (None: now)."""
        self._get(self.master.fund.remote(at))

    def collect(
        self, farm: str, amount: Decimal | None = None, reason: str = ""
    ) -> Transfer:
        if farm not in {f.name for f in self.spec.farms}:
            raise NodeError(f"no farm named {farm!r}; farms: {', '.join(f.name for f in self.spec.farms)}")
        # The id is made here, once: a call retried after a restart carries the same one.
        return self.send_collect(Collect(source=f"farm:{farm}", amount=amount, reason=reason))

    def send_collect(self, msg: Collect) -> Transfer:
        """Collect from a farm (``msg.amount``, or everything); returns what arrived."""
        return self._get(self.master.collect.remote(msg))  # type: ignore[no-any-return]

    def send_allocate(self, msg: Allocate) -> None:
        """Allocate ``msg.amount`` of the master's cash to the farm ``msg.target``."""
        self._get(self.master.allocate.remote(msg))

    def send_deposit(self, amount: Decimal, key: str, at: datetime | None = None) -> None:
        """Deposit ``amount`` into the master's cash (``key``: a repeat books nothing)."""
        self._get(self.master.deposit.remote(amount, key, at))

    def send_halt(self, msg: Halt) -> None:
        """Halt (or, ``msg.resume``, resume) a farm or an agent."""
        self._get(self.master.halt.remote(msg))

    def submit(self, batch: BarBatch) -> list[Any]:
        import ray

        # A few bars travel in the call itself; a large batch is stored once and shared.
        item = batch if len(batch) <= SMALL_BATCH else ray.put(batch)
        return [farm.on_bars.remote([item]) for farm in self.farms.values()]

    def wait(self, handle: list[Any]) -> list[FarmUpdate]:
        return self._get(handle)  # type: ignore[no-any-return]

    def checkpoint(
        self, trades: list[Any], bars: int, now: datetime, sharpes: dict[str, Any], farms: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return self._get(self.master.checkpoint.remote(trades, bars, now, sharpes, farms or {}))  # type: ignore[no-any-return]

    def set_policy(self, farm: str, policy: Any) -> None:
        self._get(self.farms[farm].set_policy.remote(policy))

    def allocate(self, farm: str, amount: Decimal) -> None:
        """Allocate ``amount`` of the master's cash to ``farm`` (which splits it by its policy)."""
        self.send_allocate(Allocate(source="master", target=f"farm:{farm}", amount=amount))

    def halt(self, entity: str, reason: str = "halted by hand", resume: bool = False) -> None:
        """Halt (or resume) ``farm:<name>`` or ``agent:<name>``."""
        self.send_halt(Halt(entity=entity, reason=reason, resume=resume))

    def goal_states(self) -> list[dict[str, Any]]:
        return self._get(self.master.goal_states.remote())  # type: ignore[no-any-return]

    def change_goal(self, msg: GoalChange) -> dict[str, Any]:
        """Add, reassign or cancel a goal (see :meth:`MasterNode.change_goal`)."""
        return self._get(self.master.change_goal.remote(msg))  # type: ignore[no-any-return]

    def master_snapshot(self) -> dict[str, Any]:
        return self._get(self.master.snapshot.remote())  # type: ignore[no-any-return]

    def farm_snapshots(self) -> list[dict[str, Any]]:
        return self._get([f.snapshot.remote() for f in self.farms.values()])  # type: ignore[no-any-return]

    def summaries(self) -> list[BooksSummary]:
        out = [self._get(self.master.books.remote())]
        for books in self._get([f.books.remote() for f in self.farms.values()]):
            out += books
        return out

    def _get(self, refs: Any) -> Any:
        """``ray.get``; once the session is stopping, in short waits that give up (with
        :class:`ClusterLost`) when the local Ray's processes have died: ``ray.get`` would
        wait for them for a minute, then Ray would end this process."""
        import ray
        from ray.exceptions import RayError

        pending = list(refs) if isinstance(refs, list) else [refs]
        if not self.stopping or not pending:
            return ray.get(refs)
        try:
            while True:
                ready, _ = ray.wait(pending, num_returns=len(pending), timeout=0.25)
                if len(ready) == len(pending):
                    return ray.get(refs)
                if not local_processes_alive():
                    break
        except RayError:
            if local_processes_alive():
                raise
        self.lost = True
        raise ClusterLost("Ray's own processes stopped before the session's actors answered")

    def close(self) -> None:
        import ray

        session, self.ray = self.ray, None
        if not ray.is_initialized():
            return
        if not self.lost:
            for handle in [self.master, *self.farms.values(), *self.agents.values()]:
                if handle is not None:
                    try:
                        ray.kill(handle)
                    except Exception:  # noqa: BLE001, S110 - already gone
                        pass
        self.master, self.farms, self.agents = None, {}, {}
        if session is not None:
            session.close()


def actor_error(exc: BaseException) -> BaseException:
    """The Cival error that a Ray actor raised, if ``exc`` is Ray's report of one (a task
    error wraps the actor's exception; an actor's call to another wraps it again); else
    ``exc`` itself."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None:
        return exc
    inner: BaseException = exc
    while isinstance(inner, ray.exceptions.RayTaskError) and isinstance(inner.cause, BaseException):
        inner = inner.cause
    return inner if isinstance(inner, CivalError) else exc


def single_agent_config(
    strategy: str,
    params: dict[str, Any] | None = None,
    *,
    data: str | Path,
    cash: Decimal | str | int = DEFAULT_CASH,
    fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
    fraction: float = DEFAULT_FRACTION,
    qty_step: Decimal | str = DEFAULT_QTY_STEP,
    symbol: str | None = None,
) -> ClusterConfig:
    """A one-farm, one-agent cluster trading ``strategy`` on ``data``: the quickest paper
    session, with the backtest's defaults (all of ``cash`` to the agent).

    ``cash`` is exact (a Decimal, an int or a numeric string; a float is refused): an
    AmountError names it when it is not positive, beyond the books' capacity or finer
    than their 8 decimal places."""
    from cival.strategies import FAMILY_BY_STRATEGY, get_strategy

    get_strategy(strategy)
    deposit = check_amount(to_decimal(cash, what="cash"), what="cash")
    if deposit <= 0:
        raise AmountError(f"cash: must be more than 0, got {deposit}")
    path = Path(data).expanduser().resolve()
    raw = {
        "name": f"paper-{strategy}",
        "master": {"initial_deposit": str(deposit)},
        "farms": [
            {
                "name": strategy,
                "type": FAMILY_BY_STRATEGY[strategy],
                "agents": [
                    {
                        "name": f"{strategy}-1",
                        "strategy": strategy,
                        "params": dict(params or {}),
                        "sizing": {"fraction": fraction, "qty_step": str(qty_step)},
                    }
                ],
            }
        ],
        "costs": {"fee_bps": fee_bps, "slippage_bps": slippage_bps},
        "data": {
            "source": "file",
            "path": str(path),
            **({"symbol": symbol} if symbol else {}),
        },
    }
    return config_from_dict(raw, source="<command line>")


__all__ = [
    "DEFAULT_BATCH",
    "ClusterLost",
    "LocalCluster",
    "RayCluster",
    "RuntimeFailure",
    "actor_error",
    "connect_ray",
    "single_agent_config",
]
