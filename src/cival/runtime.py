"""Building a cluster from a config and running a paper-trading session on it.

* :func:`build_wallets` / :func:`fund`: a whole cluster's books in one ledger (one
  process), for inspecting a config's funding (``cival validate``, notebooks).
* :class:`RayCluster`: the master wallet, farms and agents as Ray actors, each with its
  own books. :class:`LocalCluster`: the same nodes in this process (agents of non-inline
  farms still keep books of their own, so the bookkeeping is the actors'); tests and
  notebooks use it, and it gives the same results.
* :func:`run_paper`: fund a cluster, replay bars through it (in batches at ``speed="max"``,
  else bar by bar at N x the bars' pace), and report: wallets, trades and the reconciled
  ledger. Ctrl-C stops it cleanly: the batches already sent finish, and the report is made
  from what was booked.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from cival.actors.agent import Agent, dec, iso
from cival.actors.books import BooksSummary, ClusterAudit, combine, summarize
from cival.actors.nodes import (
    ClusterSpec,
    FarmNode,
    FarmUpdate,
    MasterNode,
    cluster_spec,
)
from cival.allocation import AllocationPlan, plan_for
from cival.config import ClusterConfig, FileData, SyntheticData, config_from_dict
from cival.core.bar import BarBatch
from cival.core.errors import CivalError
from cival.core.messages import Allocate, Halt, Transfer
from cival.core.wallets import AllocationRecord, WalletTree, agent_ref, farm_ref
from cival.data.feeds import ReplayFeed, parse_speed

DEFAULT_BATCH = 10_000
"""Bars per batch when replaying at full speed (each batch costs a few actor calls)."""


SMALL_BATCH = 256
"""Batches up to this many bars are sent by value (no object store round trip)."""


class RuntimeFailure(CivalError):
    """The cluster could not be started or reached, or a session could not run."""


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


class LocalCluster:
    """The cluster's nodes in this process; messages are delivered by direct calls."""

    mode = "local"

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self.master = MasterNode(spec)
        self.farms = {f.name: FarmNode(f) for f in spec.farms}
        self.agents: dict[str, Agent] = {
            a.name: a.build() for f in spec.farms if not f.inline for a in f.agents
        }

    def start(self) -> float:
        return 0.0

    def fund(self) -> None:
        for msg in self.master.fund():
            farm = self.farms[msg.target.removeprefix("farm:")]
            for child in farm.on_allocate(msg):
                self.agents[child.target.removeprefix("agent:")].on_allocate(child)

    def collect(
        self, farm: str, amount: Decimal | None = None, reason: str = ""
    ) -> Transfer:
        msg = self.master.collect(farm, amount, reason)
        node = self.farms[farm]
        if amount is None:
            for child in node.collect_agents(msg):
                node.on_transfer(
                    self.agents[child.source.removeprefix("agent:")].on_collect(child)
                )
        transfer = node.on_collect(msg)
        self.master.on_transfer(transfer)
        return transfer

    def submit(self, batch: BarBatch) -> list[FarmUpdate]:
        out = []
        for farm in self.farms.values():
            if farm.spec.inline:
                updates = farm.run_inline(batch)
            else:
                updates = [
                    self.agents[name].on_batch(batch) for name in farm.agent_names
                ]
            out.append(farm.on_updates(batch, updates))
        return out

    def wait(self, handle: list[FarmUpdate]) -> list[FarmUpdate]:
        return handle

    def checkpoint(
        self, trades: list[Any], bars: int, now: datetime, sharpes: dict[str, Any], farms: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        for halt in self.master.risk_halts(now, farms or {}):
            self._halt_farm(halt)
        for farm in self.farms.values():
            if not farm._paused and not farm.rebalance_due(bars):
                continue
            if farm._paused:  # they sold at the open after the last checkpoint: rebalance now
                for msg in farm.resume_paused(now):
                    self.agents[msg.entity.removeprefix("agent:")].on_halt(msg)
            else:
                pauses = farm.liquidation(now)
                for msg in pauses:
                    self.agents[msg.entity.removeprefix("agent:")].on_halt(msg)
                if farm._paused:
                    continue  # rebalance at the next checkpoint, once they are flat
            collects, allocs = farm.rebalance(bars, now, self._agent_cash(farm))
            for msg in collects:
                farm.on_transfer(self.agents[msg.source.removeprefix("agent:")].on_collect(msg))
            for msg in farm.send_allocations(allocs):
                self.agents[msg.target.removeprefix("agent:")].on_allocate(msg)
        if self.master.rebalance_due(bars):
            free = {name: f.free_cash(self._agent_cash(f)) for name, f in self.farms.items()}
            returns = {name: f.farm_returns() for name, f in self.farms.items()}
            collects, allocs = self.master.rebalance(bars, now, free, returns)
            for msg in collects:
                farm = self.farms[msg.source.removeprefix("farm:")]
                for child in farm.release(msg, self._agent_cash(farm)):
                    farm.on_transfer(self.agents[child.source.removeprefix("agent:")].on_collect(child))
                self.master.on_transfer(farm.send_released(msg))
            for msg in self.master.send_allocations(allocs):
                for child in self.farms[msg.target.removeprefix("farm:")].on_allocate(msg):
                    self.agents[child.target.removeprefix("agent:")].on_allocate(child)
        for msg in self.master.on_checkpoint(trades, bars, now, sharpes):
            if isinstance(msg, Halt):
                self.halt(msg.entity, msg.reason)
                continue
            farm = self.farms[self.master.farm_of[msg.source.removeprefix("agent:")]]
            relay = farm.goal_collect(msg)
            if relay is not None:
                farm.on_goal_transfer(msg, self.agents[relay.source.removeprefix("agent:")].on_collect(relay))
            self.master.on_goal_transfer(msg, farm.forward_up(msg))
        return self.master.goal_states()

    def goal_states(self) -> list[dict[str, Any]]:
        return self.master.goal_states()

    def _agent_cash(self, farm: FarmNode) -> dict[str, Decimal]:
        """Each trading agent's cash now (halted agents left out)."""
        agents = farm.agents if farm.spec.inline else {n: self.agents[n] for n in farm.agent_names}
        return {n: a.books.cash(a.ref).amount for n, a in agents.items() if a.halted is None}

    def set_policy(self, farm: str, policy: Any) -> None:
        self.farms[farm].set_policy(policy)

    def allocate(self, farm: str, amount: Decimal) -> None:
        """Allocate ``amount`` of the master's cash to ``farm`` (which splits it by its policy)."""
        msg = self.master.allocate(Allocate(source="master", target=f"farm:{farm}", amount=amount))
        for child in self.farms[farm].on_allocate(msg):
            self.agents[child.target.removeprefix("agent:")].on_allocate(child)

    def halt(self, entity: str, reason: str = "halted by hand", resume: bool = False) -> None:
        """Halt (or resume) ``farm:<name>`` or ``agent:<name>``."""
        msg = Halt(entity=entity, reason=reason, resume=resume)
        if entity.startswith("farm:"):
            self._halt_farm(msg)
        else:
            name = entity.removeprefix("agent:")
            farm = self.farms[self.master.farm_of[name]]
            agent = farm.agents.get(name) or self.agents[name]
            agent.on_halt(msg)

    def _halt_farm(self, msg: Halt) -> None:
        for child in self.farms[msg.entity.removeprefix("farm:")].on_halt(msg):
            self.agents[child.entity.removeprefix("agent:")].on_halt(child)

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


def connect_ray(address: str | None = None) -> bool:
    """Start a local Ray (no address) or join the cluster at ``address`` (or RAY_ADDRESS).

    Returns whether Ray was started here (and so should be shut down here). Fails fast,
    with a message saying what to check, when the address does not answer.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if address:
        from cival.backtest.sweep import RayUnavailable, _check_reachable

        try:
            _check_reachable(address)
        except RayUnavailable as exc:
            raise RuntimeFailure(str(exc)) from None
    try:
        if address:
            ray.init(address=address, log_to_driver=True, logging_level="ERROR")
        else:
            ray.init(
                num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR"
            )
    except Exception as exc:  # ray raises ConnectionError, RuntimeError, ValueError...
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise RuntimeFailure(
            f"could not start or reach {where} ({type(exc).__name__}: {exc})"
        ) from None
    return True


class RayCluster:
    """The master wallet, one actor per farm, and one per agent (of non-inline farms)."""

    mode = "ray"

    def __init__(self, spec: ClusterSpec, address: str | None = None) -> None:
        self.spec = spec
        self.address = address
        self.started_here = False
        self.master: Any = None
        self.farms: dict[str, Any] = {}
        self.agents: dict[str, Any] = {}

    def start(self) -> float:
        """Connect to Ray and create the actors; returns the seconds it took."""
        import ray

        from cival.actors.remote import AgentActor, FarmActor, MasterActor

        t0 = time.perf_counter()
        self.started_here = connect_ray(self.address)
        prefix = f"cival:{self.spec.config.name}:{os.getpid()}:{time.time_ns()}"
        try:
            for farm in self.spec.farms:
                handles = {}
                if not farm.inline:
                    for a in farm.agents:
                        handles[a.name] = AgentActor.options(
                            name=f"{prefix}:agent:{a.name}"
                        ).remote(a)
                    self.agents.update(handles)
                self.farms[farm.name] = FarmActor.options(
                    name=f"{prefix}:farm:{farm.name}"
                ).remote(farm, handles)
            self.master = MasterActor.options(name=f"{prefix}:master").remote(
                self.spec, self.farms
            )
            ray.get([f.ping.remote() for f in self.farms.values()])
        except Exception:
            self.close()
            raise
        return time.perf_counter() - t0

    def fund(self) -> None:
        import ray

        ray.get(self.master.fund.remote())

    def collect(
        self, farm: str, amount: Decimal | None = None, reason: str = ""
    ) -> Transfer:
        import ray

        return ray.get(self.master.collect.remote(farm, amount, reason))  # type: ignore[no-any-return]

    def submit(self, batch: BarBatch) -> list[Any]:
        import ray

        # A few bars travel in the call itself; a large batch is stored once and shared.
        item = batch if len(batch) <= SMALL_BATCH else ray.put(batch)
        return [farm.on_bars.remote([item]) for farm in self.farms.values()]

    def wait(self, handle: list[Any]) -> list[FarmUpdate]:
        import ray

        return ray.get(handle)  # type: ignore[no-any-return]

    def checkpoint(
        self, trades: list[Any], bars: int, now: datetime, sharpes: dict[str, Any], farms: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        import ray

        return ray.get(self.master.checkpoint.remote(trades, bars, now, sharpes, farms or {}))  # type: ignore[no-any-return]

    def set_policy(self, farm: str, policy: Any) -> None:
        import ray

        ray.get(self.farms[farm].set_policy.remote(policy))

    def allocate(self, farm: str, amount: Decimal) -> None:
        """Allocate ``amount`` of the master's cash to ``farm`` (which splits it by its policy)."""
        import ray

        ray.get(self.master.allocate.remote(Allocate(source="master", target=f"farm:{farm}", amount=amount)))

    def halt(self, entity: str, reason: str = "halted by hand", resume: bool = False) -> None:
        """Halt (or resume) ``farm:<name>`` or ``agent:<name>``."""
        import ray

        ray.get(self.master.halt.remote(Halt(entity=entity, reason=reason, resume=resume)))

    def goal_states(self) -> list[dict[str, Any]]:
        import ray

        return ray.get(self.master.goal_states.remote())  # type: ignore[no-any-return]

    def master_snapshot(self) -> dict[str, Any]:
        import ray

        return ray.get(self.master.snapshot.remote())  # type: ignore[no-any-return]

    def farm_snapshots(self) -> list[dict[str, Any]]:
        import ray

        return ray.get([f.snapshot.remote() for f in self.farms.values()])  # type: ignore[no-any-return]

    def summaries(self) -> list[BooksSummary]:
        import ray

        out = [ray.get(self.master.books.remote())]
        for books in ray.get([f.books.remote() for f in self.farms.values()]):
            out += books
        return out

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        for handle in [self.master, *self.farms.values(), *self.agents.values()]:
            if handle is not None:
                try:
                    ray.kill(handle)
                except Exception:  # noqa: S110 - already gone
                    pass
        self.master, self.farms, self.agents = None, {}, {}
        if self.started_here:
            ray.shutdown()
            self.started_here = False


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


def session_bars(
    config: ClusterConfig, data: str | Path | None = None, max_bars: int | None = None
) -> pd.DataFrame:
    """The bars a session replays: ``data`` if given, else the config's data source."""
    from cival.data import load_bars
    from cival.data.synthetic import synthetic_bars

    if data is not None:
        frame = load_bars(data)
    elif isinstance(config.data, FileData):
        path = config.data_path()
        assert path is not None
        frame = load_bars(path)
    else:
        assert isinstance(config.data, SyntheticData)
        frame = synthetic_bars(
            config.data.bars,
            seed=config.data.seed,
            timeframe=config.data.timeframe,
            start_price=float(config.data.start_price),
        )
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
    window: int = 2,
    source: str | None = None,
    symbol: str | None = None,
) -> PaperResult:
    """Run a paper-trading session of ``config`` and return its report.

    Bars come from ``batches`` (any iterable of BarBatch, e.g. a live-like feed), else
    ``bars`` (a frame), else the config's data source. ``local=True`` runs the nodes in
    this process instead of Ray actors; ``inline`` forces every farm's agents inline or
    into actors. ``stop`` (set it from another thread) ends the session after the batches
    already sent; so does Ctrl-C in the calling thread.
    """
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
    cluster: LocalCluster | RayCluster = (
        LocalCluster(spec) if local else RayCluster(spec, address)
    )
    interrupted = False
    latencies: list[int] = []
    seen = 0
    first: pd.Timestamp | None = None
    last: pd.Timestamp | None = None
    start_seconds = 0.0
    t0 = time.perf_counter()
    try:
        start_seconds = cluster.start()
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
        except KeyboardInterrupt:
            interrupted = True
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
        return PaperResult(
            report, audit, seen, seconds, start_seconds, interrupted, latencies
        )
    finally:
        cluster.close()


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
    cash: float | str | Decimal = 10_000,
    fee_bps: float = 10.0,
    slippage_bps: float = 5.0,
    fraction: float = 1.0,
    qty_step: float = 1e-8,
    symbol: str | None = None,
) -> ClusterConfig:
    """A one-farm, one-agent cluster trading ``strategy`` on ``data``: the quickest paper
    session, with the backtest's defaults (all of ``cash`` to the agent)."""
    from cival.strategies import FAMILY_BY_STRATEGY, get_strategy

    get_strategy(strategy)
    deposit = Decimal(repr(cash)) if isinstance(cash, float) else Decimal(str(cash))
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
                        "sizing": {"fraction": fraction, "qty_step": qty_step},
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
    "RuntimeFailure",
    "build_wallets",
    "connect_ray",
    "fund",
    "replay_batches",
    "run_paper",
    "session_bars",
    "session_report",
    "single_agent_config",
]
