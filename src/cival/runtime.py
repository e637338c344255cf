"""Building a cluster from a config and running a paper-trading session on it.

* :func:`build_wallets` / :func:`fund`: a whole cluster's books in one ledger (one
  process), for inspecting a config's funding (``cival validate``, notebooks).
* :class:`RayCluster`: the master wallet, farms and agents as Ray actors, each with its
  own books. :class:`LocalCluster`: the same nodes in this process (agents of non-inline
  farms still keep books of their own, so the bookkeeping is the actors'); tests and
  notebooks use it, and it gives the same results.
* :func:`run_paper`: fund a cluster, replay bars through it (in batches at ``speed="max"``,
  else bar by bar at N x the bars' pace), and report: wallets, trades and the reconciled
  ledger. Ctrl-C or SIGTERM stops it cleanly: the batches already sent finish, and the
  report is made from what was booked (from the store, when a SIGTERM sent to all of the
  session's processes stopped Ray's too).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from cival.actors.agent import Agent, AgentUpdate
from cival.actors.books import BooksSummary, ClusterAudit, combine, summarize
from cival.actors.journal import Journal, batch_key
from cival.actors.nodes import (
    ClusterSpec,
    FarmNode,
    FarmUpdate,
    MasterNode,
    NodeError,
    cluster_spec,
)
from cival.allocation import AllocationPlan, plan_for
from cival.config import ClusterConfig, FileData, SyntheticData, config_from_dict
from cival.core.bar import BarBatch
from cival.core.costs import (
    DEFAULT_CASH,
    DEFAULT_FEE_BPS,
    DEFAULT_FRACTION,
    DEFAULT_SLIPPAGE_BPS,
)
from cival.core.errors import CivalError, Terminated
from cival.core.fmt import iso_utc as iso
from cival.core.fmt import plain_decimal as dec
from cival.core.messages import Allocate, Collect, Halt, Transfer
from cival.core.money import DEFAULT_QTY_STEP, AmountError, check_amount, to_decimal
from cival.core.wallets import AllocationRecord, WalletTree, agent_ref, farm_ref
from cival.data.feeds import ReplayFeed, parse_speed
from cival.rayconnect import RaySession, RayUnavailable, connect, local_processes_alive
from cival.store.base import Store, StoreError, StoreLocation, new_run_id

DEFAULT_BATCH = 10_000
"""Bars per batch when replaying at full speed (each batch costs a few actor calls)."""


SMALL_BATCH = 256
"""Batches up to this many bars are sent by value (no object store round trip)."""


class RuntimeFailure(CivalError):
    """The cluster could not be started or reached, or a session could not run."""


class ClusterLost(RuntimeFailure):
    """The local Ray's own processes stopped while the session still needed its actors."""


# -- one-ledger funding (inspection) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class FundingReport:
    """What :func:`fund` did: the master's plan, each farm's plan and the allocations booked."""

    master_plan: AllocationPlan
    farm_plans: dict[str, AllocationPlan]
    allocations: list[AllocationRecord]


def build_wallets(config: ClusterConfig) -> WalletTree:
    """An empty wallet tree with the config's master, farms and agents."""
    tree = WalletTree(
        master_name=config.master.name, currency=config.master.base_currency
    )
    for farm in config.farms:
        tree.add_farm(farm.name)
        for agent in farm.agents:
            tree.add_agent(farm.name, agent.name)
    return tree


def fund(
    tree: WalletTree, config: ClusterConfig, at: datetime | None = None
) -> FundingReport:
    """Deposit ``master.initial_deposit`` and allocate it down the hierarchy.

    The master splits its cash across the farms by ``master.allocation``; each farm
    splits what it received across its agents by its own ``allocation``. Reserves stay
    with the parent. Idempotency keys are ``deposit:initial`` and ``fund:<wallet>``.
    """
    tree.deposit(config.master.initial_deposit, key="deposit:initial", at=at)
    # Plans are made from the configured amounts, not from current balances, so that
    # delivering the funding again reproduces the same movements (and books none).
    master_plan = plan_for(
        config.master.allocation,
        config.master.initial_deposit,
        [f.name for f in config.farms],
        tree.ledger.quantum,
    )
    records: list[AllocationRecord] = []
    for farm, amount in master_plan.shares.items():
        if amount > 0:
            records.append(
                tree.allocate(
                    farm_ref(farm), amount, key=f"fund:{farm_ref(farm)}", at=at
                )
            )
    farm_plans: dict[str, AllocationPlan] = {}
    for farm in config.farms:
        plan = plan_for(
            farm.allocation,
            master_plan.shares[farm.name],
            [a.name for a in farm.agents],
            tree.ledger.quantum,
        )
        farm_plans[farm.name] = plan
        for agent, amount in plan.shares.items():
            if amount > 0:
                records.append(
                    tree.allocate(
                        agent_ref(agent), amount, key=f"fund:{agent_ref(agent)}", at=at
                    )
                )
    return FundingReport(
        master_plan=master_plan, farm_plans=farm_plans, allocations=records
    )


# -- clusters ---------------------------------------------------------------------------


class _LocalFarmPorts:
    """A farm's agents in this process (those with books of their own)."""

    def __init__(self, cluster: LocalCluster, farm: FarmNode) -> None:
        self.cluster = cluster
        self.farm = farm

    def _agent(self, entity: str) -> Agent:
        return self.cluster.agents[entity.removeprefix("agent:")]

    def commit(self) -> None:
        self.cluster.commit(self.farm)

    def agent_allocate(self, msg: Allocate) -> None:
        agent = self._agent(msg.target)
        agent.on_allocate(msg)
        self.cluster.commit(agent)

    def agent_collect(self, msg: Collect) -> Transfer:
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


class _LocalMasterPorts:
    """The farms in this process."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def _farm(self, entity: str) -> tuple[FarmNode, _LocalFarmPorts]:
        name = entity.removeprefix("farm:")
        return self.cluster.farms[name], self.cluster.farm_ports[name]

    def _farm_of(self, agent: str) -> tuple[FarmNode, _LocalFarmPorts]:
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
        self.farm_ports = {name: _LocalFarmPorts(self, farm) for name, farm in self.farms.items()}
        self.ports = _LocalMasterPorts(self)
        self.store = store
        self.run_id = run_id
        self.journals: dict[int, Journal] = {}
        self.replies: dict[str, Any] = {}
        """Node ref -> (batch key, reply) of the last batch it handled (journaled with it)."""
        if store is not None and run_id is not None:
            for node in [self.master, *self.farms.values(), *self.agents.values()]:
                self.journals[id(node)] = Journal(store, run_id, node)

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
            self.farm_ports[name].farm = node
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

    def start(self) -> float:
        return 0.0

    def fund(self) -> None:
        self.master.run_fund(self.ports)

    def collect(self, farm: str, amount: Decimal | None = None, reason: str = "") -> Transfer:
        return self.master.run_collect(self.ports, self.master.collect(farm, amount, reason))

    def submit(self, batch: BarBatch) -> list[FarmUpdate]:
        return [self.submit_farm(name, batch) for name in self.farms]

    def submit_farm(self, name: str, batch: BarBatch) -> FarmUpdate:
        """One farm's part of a batch (what a farm actor's ``on_bars`` does)."""
        farm = self.farms[name]

        def handle() -> FarmUpdate:
            if farm.spec.inline:
                updates = farm.run_inline(batch)
            else:
                updates = [self.submit_agent(agent, batch) for agent in farm.agent_names]
            return farm.on_updates(batch, updates)

        return self._answer(farm, farm.ref, batch, handle)  # type: ignore[no-any-return]

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

    def set_policy(self, farm: str, policy: Any) -> None:
        self.farms[farm].set_policy(policy)
        self.commit(self.farms[farm])

    def allocate(self, farm: str, amount: Decimal) -> None:
        """Allocate ``amount`` of the master's cash to ``farm`` (which splits it by its policy)."""
        self.master.run_allocate(self.ports, Allocate(source="master", target=f"farm:{farm}", amount=amount))

    def halt(self, entity: str, reason: str = "halted by hand", resume: bool = False) -> None:
        """Halt (or resume) ``farm:<name>`` or ``agent:<name>``."""
        self.master.run_halt(self.ports, Halt(entity=entity, reason=reason, resume=resume))

    def master_snapshot(self) -> dict[str, Any]:
        return self.master.snapshot()

    def farm_snapshots(self) -> list[dict[str, Any]]:
        out = []
        for farm in self.farms.values():
            agents = (
                None
                if farm.spec.inline
                else [self.agents[n].snapshot() for n in farm.agent_names]
            )
            out.append(farm.snapshot(agents))
        return out

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

    def start(self) -> float:
        """Connect to Ray and create the actors; returns the seconds it took."""
        from cival.actors.remote import AgentActor, FarmActor, MasterActor

        t0 = time.perf_counter()
        self.ray = connect_ray(self.address)
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

    def fund(self) -> None:
        self._get(self.master.fund.remote())

    def collect(
        self, farm: str, amount: Decimal | None = None, reason: str = ""
    ) -> Transfer:
        if farm not in {f.name for f in self.spec.farms}:
            raise NodeError(f"no farm named {farm!r}; farms: {', '.join(f.name for f in self.spec.farms)}")
        # The id is made here, once: a call retried after a restart carries the same one.
        msg = Collect(source=f"farm:{farm}", amount=amount, reason=reason)
        return self._get(self.master.collect.remote(msg))  # type: ignore[no-any-return]

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
        self._get(self.master.allocate.remote(Allocate(source="master", target=f"farm:{farm}", amount=amount)))

    def halt(self, entity: str, reason: str = "halted by hand", resume: bool = False) -> None:
        """Halt (or resume) ``farm:<name>`` or ``agent:<name>``."""
        self._get(self.master.halt.remote(Halt(entity=entity, reason=reason, resume=resume)))

    def goal_states(self) -> list[dict[str, Any]]:
        return self._get(self.master.goal_states.remote())  # type: ignore[no-any-return]

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
                    except Exception:  # noqa: S110 - already gone
                        pass
        self.master, self.farms, self.agents = None, {}, {}
        if session is not None:
            session.close()


# -- sessions ---------------------------------------------------------------------------


@dataclass
class Progress:
    """What a session's observer sees after each batch."""

    bars: int
    total: int | None
    last_time: pd.Timestamp | None
    farms: list[FarmUpdate]
    master_cash: Decimal
    elapsed: float
    goals: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PaperResult:
    """A finished (or interrupted) session: the report and the reconciled books."""

    report: dict[str, Any]
    audit: ClusterAudit
    bars: int
    seconds: float
    start_seconds: float
    interrupted: bool = False
    latencies_ns: list[int] = field(default_factory=list)
    """Per booked fill: from its bar's delivery to the booking (same machine clock)."""
    run_id: str | None = None
    store: StoreLocation | None = None
    """Where the run is kept (None: it was not persisted)."""
    events: Any = None
    """The event relay's final counts (:class:`cival.events.relay.RelayStats`), if persisted."""
    terminated: bool = False
    """A SIGTERM stopped the session (the CLI exits with 143, 128 + SIGTERM)."""
    rebuilt: bool = False
    """Ray's processes stopped with the session: the report was rebuilt from the store."""


def session_bars(
    config: ClusterConfig,
    data: str | Path | None = None,
    max_bars: int | None = None,
    max_move: float | None | Literal["config"] = "config",
) -> pd.DataFrame:
    """The bars a session replays: ``data`` if given, else the config's data source.

    ``max_move`` is the plausibility limit on bar-to-bar moves (see
    :func:`cival.data.load_bars`): ``"config"`` takes the config's ``data.max_move`` (for
    a ``data`` file given here, the config's if its data is a file too, else the default);
    a number or None (off) overrides it.
    """
    from cival.data import DEFAULT_MAX_MOVE, load_bars, validate_bars
    from cival.data.synthetic import synthetic_bars

    if max_move == "config":
        max_move = config.data.max_move if isinstance(config.data, FileData) or data is None else DEFAULT_MAX_MOVE
    if data is not None:
        frame = load_bars(data, max_move=max_move)
    elif isinstance(config.data, FileData):
        path = config.data_path()
        assert path is not None
        frame = load_bars(path, max_move=max_move)
    else:
        assert isinstance(config.data, SyntheticData)
        frame = synthetic_bars(
            config.data.bars,
            seed=config.data.seed,
            timeframe=config.data.timeframe,
            start_price=float(config.data.start_price),
        )
        validate_bars(frame, frame.attrs["source"], max_move=max_move)
    if max_bars is not None:
        if max_bars < 1:
            raise RuntimeFailure(f"--bars must be at least 1, got {max_bars}")
        frame = frame.iloc[:max_bars]
    if frame.empty:
        raise RuntimeFailure("no bars to replay")
    return frame


def replay_batches(
    frame: pd.DataFrame, speed: float | str = "max", batch_size: int = DEFAULT_BATCH
) -> Iterator[BarBatch]:
    """Columnar batches of ``frame``: large ones at full speed, else one bar at a time, paced."""
    if parse_speed(speed) is None:
        whole = BarBatch.from_frame(frame)
        for i in range(0, len(whole), batch_size):
            yield whole.slice(i, i + batch_size)
        return
    for bars in ReplayFeed(frame, speed=speed, batch_size=1).batches():
        yield BarBatch.from_bars(bars)


def run_paper(
    config: ClusterConfig,
    *,
    bars: pd.DataFrame | None = None,
    batches: Iterable[BarBatch] | None = None,
    speed: float | str = "max",
    batch_size: int = DEFAULT_BATCH,
    local: bool = False,
    inline: bool | None = None,
    address: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    window: int = 0,
    source: str | None = None,
    symbol: str | None = None,
    store: Store | StoreLocation | str | None = None,
    persist: bool = True,
    migrate: bool | None = None,
    on_start: Callable[[str, StoreLocation], None] | None = None,
    on_cluster: Callable[[LocalCluster | RayCluster], None] | None = None,
    events: Any = None,
) -> PaperResult:
    """Run a paper-trading session of ``config`` and return its report.

    Bars come from ``batches`` (any iterable of BarBatch, e.g. a live-like feed), else
    ``bars`` (a frame), else the config's data source. ``local=True`` runs the nodes in
    this process instead of Ray actors; ``inline`` forces every farm's agents inline or
    into actors. ``stop`` (set it from another thread) ends the session after the batches
    already sent; so do Ctrl-C and SIGTERM when it runs in the main thread (which holds
    the SIGTERM handler for the session's duration: ``terminated`` in the result). When a
    SIGTERM sent to every process of the session stopped Ray's own too, the report is
    rebuilt from the store (``rebuilt``).

    The session is a run in the store (``store``: a Store, a location or a PostgreSQL
    URL; default: :func:`cival.runs.store_location`), whose id ``on_start`` gets before
    the first bar; ``migrate`` (default: ``storage.migrate``) applies pending schema
    versions first. ``persist=False`` keeps nothing. ``window`` is how many batches may
    wait behind the one in flight (0: one at a time; more only without a store, since an
    actor restarted after a crash may run retried calls out of order).

    The run's events are published, as they are committed, to ``events`` (an
    :class:`~cival.events.bus.EventBus`, or a function of the run id that makes one;
    default: Redis Streams when ``streams.url`` or ``REDIS_URL`` is set, else an
    in-process bus).
    """
    from cival.events.bus import RedisBus, open_bus
    from cival.events.relay import Relay
    from cival.runs import finish_run, interrupted_report, start_run, store_location

    spec = cluster_spec(config, symbol=symbol, inline=inline)
    every = config.checkpoint.every_bars if needs_checkpoints(config) else None
    if every is not None:
        # Batches end on checkpoints and run one at a time, so that goals act at the same
        # bars whatever the batch size.
        batch_size, window = every, 0
    if batches is None:
        frame = bars if bars is not None else session_bars(config)
        total: int | None = len(frame)
        batches = replay_batches(frame, speed, batch_size)
        source = source or frame.attrs.get("source")
    else:
        total = None
    where: StoreLocation | None = None
    driver_store: Store | None = None
    run_id: str | None = None
    relay: Relay | None = None
    if persist:
        where = store_location(config, store)
        driver_store = store if isinstance(store, Store) else where.open()
        try:
            if migrate if migrate is not None else config.storage.migrate:
                driver_store.migrate()
            else:
                driver_store.check_schema()
            run_id = new_run_id()
            if events is None:
                bus = open_bus(config.streams.url, run_id, buffer=config.streams.buffer)
            else:
                bus = events(run_id) if callable(events) else events
            streams = "redis" if isinstance(bus, RedisBus) else "in-process"
            run_id = start_run(
                driver_store, config, spec, mode="local" if local else "ray", source=source, streams=streams, inline=inline,
                run_id=run_id,
            )
            relay = Relay(where, run_id, bus)
        except BaseException:
            if driver_store is not store:
                driver_store.close()
            raise
        window = 0
        if on_start is not None:
            on_start(run_id, where)
    cluster: LocalCluster | RayCluster = (
        LocalCluster(spec, driver_store, run_id) if local else RayCluster(spec, address, where, run_id)
    )
    if on_cluster is not None:
        on_cluster(cluster)
    status = "failed"
    interrupted = False
    latencies: list[int] = []
    seen = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    start_seconds = 0.0
    t0 = time.perf_counter()
    sigterm = SigtermStop()
    sigterm.install()
    try:
        start_seconds = cluster.start()
        sigterm.install()  # ray.init puts its own SIGTERM handler (an abrupt exit) in place of ours
        cluster.fund()
        master_cash = Decimal(cluster.master_snapshot()["cash"])
        t0 = time.perf_counter()
        inflight: deque[tuple[BarBatch, Any, int]] = deque()

        checkpoints = Checkpoints(every)
        goals: list[dict[str, Any]] = cluster.goal_states()

        def finish(item: tuple[BarBatch, Any, int]) -> None:
            nonlocal seen, last, goals, master_cash
            batch, handle, sent_ns = item
            updates = cluster.wait(handle)
            seen += len(batch)
            last = pd.Timestamp(int(batch.ts[-1]), tz="UTC")
            for u in updates:
                latencies.extend(b - sent_ns for b in u.booked_ns)
            at_end = total is not None and seen >= total
            states = checkpoints.after_batch(cluster, updates, seen, last.to_pydatetime(), at_end)
            if relay is not None:
                relay.nudge()
            if states is not None:
                goals = states
                master_cash = Decimal(cluster.master_snapshot()["cash"])
            if on_progress is not None:
                on_progress(Progress(seen, total, last, updates, master_cash, time.perf_counter() - t0, goals))

        try:
            for batch in batches:
                if stop is not None and stop.is_set():
                    interrupted = True
                    break
                if len(batch) == 0:
                    continue
                if first is None:
                    first = pd.Timestamp(int(batch.ts[0]), tz="UTC")
                arrived = time.monotonic_ns()
                inflight.append((batch, cluster.submit(batch), arrived))
                while len(inflight) > (window if cluster.mode == "ray" else 0):
                    finish(inflight.popleft())
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated)
            interrupted = True
        # The session is ending: a SIGTERM from now on is noted, not raised, and waits on
        # the actors watch whether Ray's processes are still there to answer.
        sigterm.armed = False
        if isinstance(cluster, RayCluster):
            cluster.stopping = True
        rebuilt = False
        try:
            # Let the batches already sent finish, so the books are at rest for the report.
            while inflight:
                try:
                    finish(inflight.popleft())
                except KeyboardInterrupt:
                    interrupted = True
            seconds = time.perf_counter() - t0
            report, audit = session_report(
                cluster, config, spec, source, seen, first, last, interrupted
            )
        except ClusterLost:
            seconds = time.perf_counter() - t0
            # A signal sent to every process of the session (a service manager stopping
            # it) stopped Ray's too. The actors cannot report, but each node journaled
            # before it replied: the report is the store's.
            if not (interrupted or sigterm.received):
                raise
            if driver_store is None or run_id is None:
                raise RuntimeFailure(
                    "Ray's processes stopped with the session, which kept no store: there is no report"
                ) from None
            interrupted = rebuilt = True
            cluster.close()  # now: Ray ends a process whose GCS stays away for a minute
            report, audit = interrupted_report(driver_store, run_id, seen, first, last)
        status = "interrupted" if interrupted else "finished"
        relayed = None
        if driver_store is not None and run_id is not None:
            finish_run(driver_store, run_id, report, status)
        if relay is not None:
            relayed, relay = relay.close(), None
            assert driver_store is not None and run_id is not None
            driver_store.update_run(
                run_id, meta={"events_delivered": relayed.bus.delivered, "events_dropped": relayed.bus.dropped}
            )
        return PaperResult(
            report, audit, seen, seconds, start_seconds, interrupted, latencies, run_id, where, relayed,
            terminated=sigterm.received, rebuilt=rebuilt,
        )
    except Exception as exc:
        failure = actor_error(exc)
        if isinstance(failure, StoreError) and driver_store is not None and run_id is not None:
            # The store refused a write (full, read-only, unreachable too long): what was
            # committed before is consistent, so the run is interrupted there, not failed.
            status = "interrupted"
            raise stopped_by_store(driver_store, run_id, failure, seen, first, last) from None
        if failure is not exc:
            raise failure from None  # an actor's own error, not Ray's account of it
        raise
    finally:
        try:
            cluster.close()
        finally:
            sigterm.restore()
            if relay is not None:
                relay.close(timeout=2.0)
            if driver_store is not None:
                if status == "failed" and run_id is not None:
                    try:
                        driver_store.update_run(run_id, status="failed", finished=True)
                    except Exception:  # noqa: BLE001 - the original error matters more
                        pass
                if driver_store is not store:
                    driver_store.close()


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


def stopped_by_store(
    store: Store, run_id: str, failure: StoreError, bars: int, first: pd.Timestamp | None, last: pd.Timestamp | None
) -> StoreError:
    """The error a session ends with when its store refused a write: the store's message,
    and what became of the run: marked ``interrupted`` after ``bars`` bars if the store
    still takes that small write, else left ``running`` (said so)."""
    meta = {"bars": bars, "start": iso(first) if first is not None else None, "end": iso(last) if last is not None else None, "interrupted": True}
    try:
        store.update_run(run_id, status="interrupted", meta=meta, finished=True)
    except Exception as again:  # noqa: BLE001 - the store refused this too: the message says so
        fate = (
            f"run {run_id} could not be marked interrupted ({again}), so it is listed as running; what it stored "
            f"is consistent: once the store takes writes again, `cival report {run_id}` shows it"
        )
    else:
        fate = f"run {run_id} is marked interrupted after {bars:,} bars; `cival report {run_id}` shows what it stored"
    return StoreError(f"{failure}\n{fate}")


class SigtermStop:
    """SIGTERM, what service managers send, handled as Ctrl-C is: while ``armed`` it raises
    :class:`~cival.core.errors.Terminated` (a KeyboardInterrupt) in the main thread, where
    the session stops cleanly; once the session is ending it is only noted (``received``).

    Python runs signal handlers in the main thread only: elsewhere nothing is installed.
    ``restore()`` puts back the handler found by the first ``install()``.
    """

    def __init__(self) -> None:
        self.received = False
        self.armed = True
        self._installed = False
        self._previous: Any = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGTERM)
        if not self._installed:
            self._previous, self._installed = current, True
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received:  # a second one while stopping: the first is being handled
            return
        self.received = True
        if self.armed:
            raise Terminated()

    def restore(self) -> None:
        if self._installed:
            self._installed = False
            signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)


class Checkpoints:
    """Gathers the trades closed since the last checkpoint and, when a batch ends on one
    (every ``every`` bars, or at the end of the data), hands them to the cluster with the
    latest reports: the one rule ``run_paper`` and the notebook ``Cluster`` share."""

    def __init__(self, every: int | None) -> None:
        self.every = every
        self.pending: list[Any] = []

    def after_batch(
        self, cluster: LocalCluster | RayCluster, updates: list[FarmUpdate], bars: int, now: datetime, at_end: bool
    ) -> list[dict[str, Any]] | None:
        """Returns the goals' states when a checkpoint ran, else None."""
        if self.every is None:
            return None
        self.pending.extend(t for u in updates for t in u.trades)
        if bars % self.every != 0 and not at_end:
            return None
        sharpes = {u.report.entity: u.report.sharpe for u in updates}
        sharpes.update({a.entity: a.sharpe for u in updates for a in u.agents})
        farms = {u.name: u.report for u in updates}
        goals = cluster.checkpoint(self.pending, bars, now, sharpes, farms)
        self.pending = []
        return goals


def needs_checkpoints(config: ClusterConfig) -> bool:
    """Whether goals, risk limits or scheduled rebalancing need the session's checkpoints."""
    risk = config.risk
    return bool(
        config.goals
        or risk.farm_max_drawdown_pct is not None
        or risk.master_daily_loss_pct is not None
        or config.master.rebalance.every_bars is not None
        or any(f.rebalance.every_bars is not None for f in config.farms)
    )


def session_report(
    cluster: LocalCluster | RayCluster,
    config: ClusterConfig,
    spec: ClusterSpec,
    source: str | None,
    bars: int,
    first: pd.Timestamp | None,
    last: pd.Timestamp | None,
    interrupted: bool,
) -> tuple[dict[str, Any], ClusterAudit]:
    """The JSON report of a session (amounts as decimal strings, times ISO 8601 UTC)."""
    master = cluster.master_snapshot()
    farms = cluster.farm_snapshots()
    audit = combine(cluster.summaries(), spec.currency)
    agents = [a for f in farms for a in f["agents"]]
    unrealized = sum((Decimal(a["unrealized_pnl"]) for a in agents), Decimal(0))
    total_equity = (
        Decimal(master["cash"])
        + sum((Decimal(f["total_equity"]) for f in farms), Decimal(0))
        + audit.in_flight
    )
    ledger = {
        "currency": spec.currency,
        "deposits": dec(audit.deposits),
        "withdrawals": dec(audit.withdrawals),
        "fees": dec(audit.fees),
        "realized_pnl": dec(audit.realized_pnl),
        "unrealized_pnl": dec(unrealized),
        "total_equity": dec(total_equity),
        "audit_ok": audit.ok,
        "residual": dec(audit.residual),
        "in_flight": dec(audit.in_flight),
        "ledgers": audit.ledgers,
        "transactions": audit.transactions,
        "problems": list(audit.problems),
    }
    report = {
        "cluster": config.name,
        "mode": cluster.mode,
        "symbol": spec.symbol,
        "data": source,
        "bars": bars,
        "start": iso(first) if first is not None else None,
        "end": iso(last) if last is not None else None,
        "interrupted": interrupted,
        "generated_at": iso(datetime.now(UTC)),
        "costs": config.costs.model_dump(),
        "master": master,
        "farms": farms,
        "goals": cluster.goal_states(),
        "ledger": ledger,
    }
    return report, audit


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
    "Checkpoints",
    "FundingReport",
    "LocalCluster",
    "PaperResult",
    "Progress",
    "RayCluster",
    "ClusterLost",
    "RuntimeFailure",
    "actor_error",
    "SigtermStop",
    "build_wallets",
    "connect_ray",
    "fund",
    "replay_batches",
    "run_paper",
    "session_bars",
    "session_report",
    "single_agent_config",
]
