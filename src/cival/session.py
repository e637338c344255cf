"""The Session: one run of a cluster, however it is driven.

A :class:`Session` owns a running cluster from start to end: it opens the store, the
event bus and the relay, records the run (or takes up a run whose driver died), starts
the cluster (Ray actors, or the nodes in this process) and funds it, feeds it bars in
batches, runs the checkpoints (goals, risk limits, scheduled rebalancing), applies the
operator's commands between batches, builds the report, and closes. ``cival paper``
(through :func:`run_paper`), the notebook :class:`~cival.notebook.Cluster` and the
operator server all drive a Session; none repeats its steps.

::

    session = Session(config, SessionConfig(local=True)).open()
    session.step(500)                        # the next 500 bars
    session.allocate("trend", "1000")        # from any thread: applied at the next batch boundary
    result = session.run()                   # the rest, then the report; the session is closed

**Commands** (allocate, collect, halt, resume, set policy) may come from any thread while
bars flow: each is applied at the next batch boundary, in arrival order, journaled in the
store (``operator_commands``) before it is applied, and answered with its result or the
error that refused it. A command journaled by a driver that died before it was applied
is applied when the run resumes; its messages carry the command's number as their id,
so applying it twice moves no money twice.

**Resuming.** While it drives a run the session holds the run's lease in the store
(``runs.driver``, renewed every ``heartbeat`` seconds by a thread of its own). A run
whose driver died (``kill -9`` included) stays ``running`` in the store with a stale
lease; :meth:`Session.resume` takes the lease over, rebuilds every node from the store,
and reattaches the feed at the first bar not yet handled by every farm: a file replay
ends exactly as an uninterrupted one (same ledgers, fills, events and report). A lease
still held by a live driver is refused with a clear message.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Self

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cival.actors.books import ClusterAudit, combine
from cival.actors.nodes import ClusterSpec, FarmUpdate, NodeError, cluster_spec
from cival.config import Assignment, ClusterConfig, ConfigError, FileData, SyntheticData, config_from_dict, goal_from_dict, load_config
from cival.core.bar import BarBatch, timestamp_of
from cival.core.errors import CivalError, Terminated
from cival.core.events import (
    AgentFarmAssignmentPayload,
    EventDraft,
    FarmCreatedPayload,
    GoalAssignmentPayload,
    GoalCreatedPayload,
    OperatorActionPayload,
    RunFinishedPayload,
    RunStartedPayload,
)
from cival.core.fmt import format_amount
from cival.core.fmt import iso_utc as iso
from cival.core.fmt import plain_decimal as dec
from cival.core.messages import Allocate, Collect, GoalChange, Halt
from cival.core.urls import redact
from cival.core.wallets import MASTER, agent_ref, farm_ref
from cival.data.feeds import ReplayFeed, parse_speed
from cival.runtime import (
    DEFAULT_BATCH,
    ClusterLost,
    LocalCluster,
    RayCluster,
    RuntimeFailure,
    actor_error,
)
from cival.store.base import (
    JournalBatch,
    RunRecord,
    Store,
    StoreError,
    StoreLocation,
    locate,
    new_run_id,
)

HEARTBEAT = 2.0
"""Seconds between renewals of a driver's lease."""

STALE_AFTER = 5
"""A lease not renewed for this many heartbeats is stale: its driver is gone."""


ConfigSource = ClusterConfig | str | os.PathLike[str] | Mapping[str, Any]
"""What a session takes as its config: the model, a YAML file's path, or a mapping (see :func:`as_config`)."""


class SessionError(CivalError):
    """A session was used in a way it cannot be (a bad option, a closed session, ...)."""


class RunBusy(SessionError):
    """The run is driven by another process that is still alive."""


class CommandError(SessionError):
    """An operator command was refused (unknown farm, amount beyond the balance, ...)."""


# -- options ----------------------------------------------------------------------------


class SessionConfig(BaseModel):
    """How a session runs (the config says what runs). Frozen; a wrong field is refused
    with its name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    local: bool = False
    """The nodes in this process instead of Ray actors."""
    inline: bool | None = None
    """Every farm's agents inside the farm (True) or in actors of their own (False);
    None: as each farm's config says."""
    address: str | None = None
    """A Ray cluster to join (default: RAY_ADDRESS, else a local Ray)."""
    speed: float | str = "max"
    """``max``: as fast as possible, in batches; N: bar by bar at N x the bars' pace."""
    batch_size: int = Field(DEFAULT_BATCH, ge=1)
    """Bars per batch at ``speed="max"`` (with checkpoints: the checkpoint interval)."""
    window: int = Field(0, ge=0)
    """Batches that may wait behind the one in flight (only without a store)."""
    data: str | None = None
    """A bars file to replay instead of the config's data."""
    max_bars: int | None = Field(None, ge=1)
    """Replay only the first N bars."""
    max_move: float | None | Literal["config"] = "config"
    """The plausibility limit on bar-to-bar moves (see :func:`cival.data.load_bars`)."""
    source: str | None = None
    """What the report names as the bars' source (default: the file or ``synthetic``)."""
    symbol: str | None = None
    persist: bool = True
    """Keep the run in the store (False: nothing is kept, and nothing can resume it)."""
    migrate: bool | None = None
    """Apply pending schema versions first (default: the config's ``storage.migrate``)."""
    heartbeat: float = Field(HEARTBEAT, gt=0, le=300)
    """Seconds between renewals of the run's lease."""
    by: str = Field("local", min_length=1, max_length=200)
    """Who drives the session: the author of commands given without one."""
    host: str | None = Field(None, pattern=r"^[a-z][a-z0-9-]{0,31}$")
    """The service hosting the session (``cival serve``), written into the run's lease, so
    that the service takes up its own runs again after a restart."""

    @field_validator("speed")
    @classmethod
    def _speed(cls, value: float | str) -> float | str:
        parse_speed(value)
        return value

    @property
    def mode(self) -> str:
        return "local" if self.local else "ray"


def session_options(options: SessionConfig | None, fields: dict[str, Any]) -> SessionConfig:
    """``options`` with ``fields`` replaced (keyword arguments of :func:`run_paper`); a
    field that does not exist or a wrong value is a :class:`SessionError` naming it."""
    try:
        if options is None:
            return SessionConfig(**fields)
        return options.model_copy(update=SessionConfig(**{**options.model_dump(), **fields}).model_dump()) if fields else options
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(options)'}: "
            + ("not an option of a session" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors(include_url=False)
        )
        raise SessionError(f"session options: {problems}") from None


# -- what a session reports -------------------------------------------------------------


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
    resumed_from: int | None = None
    """For a resumed run: the bar count it took up the feed at."""
    pace: Pace | None = None
    """For a paced replay (a numeric ``speed``): the bars per second asked and achieved."""


class PaceWarning(UserWarning):
    """A paced replay runs slower than its ``speed`` asks: the cluster cannot keep up."""


@dataclass
class Pace:
    """A paced replay's rate: ``asked`` (``speed`` over the bars' interval) and ``achieved``
    (bars fed per second of the feed so far), in bars per second."""

    asked: float
    achieved: float = 0.0

    @property
    def behind(self) -> bool:
        """Slower than 80 % of the asked rate."""
        return self.achieved < 0.8 * self.asked

    def describe(self) -> str:
        return f"{self.achieved:,.1f} bars/s of the {self.asked:,.1f} asked ({100 * self.achieved / self.asked:.0f} %)"


PACE_GRACE = 5.0
"""Seconds of feeding before a paced replay that is behind is warned about (once)."""


@dataclass(frozen=True)
class Command:
    """An operator's command to a running session.

    ``kind``: ``deposit`` (``target`` "master", ``amount``), ``allocate`` (``target`` a farm,
    ``amount``), ``collect`` (a farm; ``amount`` None: everything), ``halt`` / ``resume``
    (``farm:NAME`` or ``agent:NAME``, or a bare name), ``set_policy`` (a farm, ``policy``
    as in a config), ``kill`` (every farm halted: each agent sells what it holds at the next
    open and enters nothing more), ``add_goal`` (``goal``: a goal as in a config's ``goals``;
    ``target`` its name), ``assign_goal`` (``target`` a goal, ``goal``: ``{"assign": [...]}``,
    assignments as in a config), ``cancel_goal`` (``target`` a goal). ``by``: who gave it."""

    kind: Literal["deposit", "allocate", "collect", "halt", "resume", "set_policy", "kill", "add_goal", "assign_goal", "cancel_goal"]
    target: str
    amount: Decimal | None = None
    reason: str = ""
    policy: dict[str, Any] | None = None
    by: str | None = None
    goal: dict[str, Any] | None = None

    def args(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.target}
        if self.amount is not None:
            out["amount"] = dec(self.amount)
        if self.reason:
            out["reason"] = self.reason
        if self.policy is not None:
            out["policy"] = self.policy
        if self.goal is not None:
            out["goal"] = self.goal
        return out

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Command:
        args = row["args"]
        amount = args.get("amount")
        return cls(
            kind=row["kind"], target=args["target"], amount=Decimal(amount) if amount is not None else None,
            reason=args.get("reason", ""), policy=args.get("policy"), by=row["by"], goal=args.get("goal"),
        )


@dataclass(frozen=True)
class Booked:
    """What a money command booked: ``amount`` moved from ``source`` to ``target`` (wallet
    refs; a deposit comes from ``outside``), at ``at`` (the time of the bar it applied
    at), under the ledger key ``key``, by the session's command number ``n``."""

    kind: str
    n: int
    source: str
    target: str
    amount: Decimal
    at: datetime
    key: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (amount as an exact decimal string, time in ISO 8601)."""
        return {
            "command": self.kind, "n": self.n, "source": self.source, "target": self.target,
            "amount": dec(self.amount), "at": iso(self.at), "key": self.key,
        }


# -- bars -------------------------------------------------------------------------------


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


# -- checkpoints ------------------------------------------------------------------------


class Checkpoints:
    """Gathers the trades closed since the last checkpoint and, when a batch ends on one
    (every ``every`` bars, or at the end of the data), hands them to the cluster with the
    latest reports."""

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
        if not self.due(bars, at_end):
            return None
        sharpes = {u.report.entity: u.report.sharpe for u in updates}
        sharpes.update({a.entity: a.sharpe for u in updates for a in u.agents})
        farms = {u.name: u.report for u in updates}
        goals = cluster.checkpoint(self.pending, bars, now, sharpes, farms)
        self.pending = []
        return goals

    def due(self, bars: int, at_end: bool) -> bool:
        return self.every is not None and (bars % self.every == 0 or at_end)


def needs_checkpoints(config: ClusterConfig) -> bool:
    """Whether goals, risk limits or scheduled rebalancing need the session's checkpoints
    (or the config asks for them: ``checkpoint.always``)."""
    risk = config.risk
    return bool(
        config.goals
        or config.checkpoint.always
        or risk.farm_max_drawdown_pct is not None
        or risk.master_daily_loss_pct is not None
        or config.master.rebalance.every_bars is not None
        or any(f.rebalance.every_bars is not None for f in config.farms)
    )


# -- signals ----------------------------------------------------------------------------


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


# -- the lease --------------------------------------------------------------------------


def driver_name(host: str | None = None) -> str:
    """This process as a run's driver: ``machine:pid:token``, the token prefixed with the
    hosting service's name (``serve-…``) when a service hosts the session."""
    token = uuid.uuid4().hex[:12]
    return f"{socket.gethostname()}:{os.getpid()}:{f'{host}-' if host else ''}{token}"


def hosted_by(record: RunRecord, host: str) -> bool:
    """Whether the run's last lease was taken by the service ``host`` (see :func:`driver_name`)."""
    token = (record.driver or "").split(":", 2)[-1]
    return token.startswith(f"{host}-")


def driver_alive(record: RunRecord, heartbeat: float = HEARTBEAT, now: datetime | None = None) -> bool:
    """Whether the run's driver may still be driving it: it holds the lease and renewed it
    within :data:`STALE_AFTER` heartbeats; on this machine, as long as its process exists
    (unless silent for ten minutes)."""
    if record.driver is None or record.heartbeat_at is None:
        return False
    now = now or datetime.now(UTC)
    silent = now - record.heartbeat_at
    host, _, rest = record.driver.partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        # On this machine the process itself says: a driver that stopped beating but still
        # exists (stopped, swapping) could wake up and write; only a long silence (its
        # number taken by another process since) lets the run go.
        pid = int(pid_text)
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        return silent <= timedelta(seconds=max(600.0, heartbeat * STALE_AFTER))
    return silent <= timedelta(seconds=heartbeat * STALE_AFTER)


def run_status(record: RunRecord, heartbeat: float = HEARTBEAT) -> str:
    """A run's status as a reader should see it: ``running`` only while a driver holds a
    live lease; a run left ``running`` by a driver that died is ``interrupted``."""
    if record.status == "running" and not driver_alive(record, heartbeat):
        return "interrupted"
    return record.status


class Lease:
    """This process's lease on a run, renewed every ``heartbeat`` seconds by a thread with a
    store connection of its own. ``lost`` is set if another driver took it over."""

    def __init__(self, where: StoreLocation, run_id: str, driver: str, heartbeat: float) -> None:
        self.where = where
        self.run_id = run_id
        self.driver = driver
        self.heartbeat = heartbeat
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"cival-lease-{run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        store: Store | None = None
        try:
            while not self._stop.wait(self.heartbeat):
                try:
                    store = store or self.where.open()
                    if not store.beat(self.run_id, self.driver):
                        self.lost.set()
                        return
                except Exception:  # noqa: BLE001, S112 - the store is away: the next beat tries again
                    continue
        finally:
            if store is not None:
                store.close()

    def close(self, store: Store | None) -> None:
        """Stop renewing and give the lease up (through ``store``, if it still answers)."""
        self._stop.set()
        self._thread.join(self.heartbeat + 5)
        if store is not None:
            try:
                store.release_run(self.run_id, self.driver)
            except Exception:  # noqa: BLE001, S110 - a lease that is not released goes stale
                pass


def claim(store: Store, record: RunRecord, driver: str, heartbeat: float) -> None:
    """Take the lease of a run whose driver is gone; :class:`RunBusy` if it is alive."""
    if driver_alive(record, heartbeat):
        assert record.heartbeat_at is not None
        ago = (datetime.now(UTC) - record.heartbeat_at).total_seconds()
        raise RunBusy(
            f"run {record.id} is being driven by {record.driver} (its lease was renewed {ago:.0f} s ago); "
            "stop that process first, or wait until its lease goes stale"
        )
    if not store.claim_run(record.id, driver, record.driver):
        raise RunBusy(f"run {record.id} was taken up by another process at the same moment; `cival runs` shows it")


# -- the session ------------------------------------------------------------------------


class Session:
    """One run of a cluster (see the module docstring).

    ``bars`` (a frame) or ``batches`` (any iterable of BarBatch, e.g. a live feed) replace
    the bars of ``options.data`` or of the config. ``store``: a Store, a location or a
    PostgreSQL URL (default: :func:`store_location`). ``events``: an
    :class:`~cival.events.bus.EventBus`, or a function of the run id that makes one
    (default: Redis Streams when ``streams.url`` or ``REDIS_URL`` is set, else an
    in-process bus). ``on_progress`` gets a :class:`Progress` after each batch;
    ``on_start`` the run id and store location before the first bar; ``on_cluster`` the
    cluster once it is built.
    """

    def __init__(
        self,
        config: ConfigSource,
        options: SessionConfig | None = None,
        *,
        bars: pd.DataFrame | None = None,
        batches: Iterable[BarBatch] | None = None,
        store: Store | StoreLocation | str | None = None,
        events: Any = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[str, StoreLocation], None] | None = None,
        on_cluster: Callable[[LocalCluster | RayCluster], None] | None = None,
    ) -> None:
        self.config = config = as_config(config)
        self.options = options or SessionConfig()
        opts = self.options
        self.spec: ClusterSpec = cluster_spec(config, symbol=opts.symbol, inline=opts.inline)
        self.every = config.checkpoint.every_bars if needs_checkpoints(config) else None
        self.batch_size = self.every or opts.batch_size
        """Batches end on checkpoints, so that goals act at the same bars whatever the batch size."""
        self.window = 0 if (self.every is not None or opts.persist) else opts.window
        self.on_progress = on_progress
        self.on_stage: Callable[[str], None] | None = None
        """Told what the session is doing before its first bar (reading the bars, starting Ray...)."""
        self.on_warning: Callable[[str], None] | None = None
        """Told once when a paced replay cannot keep its pace (default: a :class:`PaceWarning`)."""
        self.pace: Pace | None = None
        self._pace_warned = False
        self._seen_at_open = 0
        self.on_start = on_start
        self.on_cluster = on_cluster
        self._store_arg = store
        self._events_arg = events
        self._bars_arg = bars
        self._batches_arg = batches
        self.frame: pd.DataFrame | None = None
        self.total: int | None = None
        self.source: str | None = opts.source
        self.run_id: str | None = None
        self.where: StoreLocation | None = None
        self.store: Store | None = None
        self._own_store = False
        self.bus: Any = None
        """The bus the run's events go to (an InProcessBus by default: ``.subscribe(fn)``)."""
        self.relay: Any = None
        self.cluster: LocalCluster | RayCluster | None = None
        self.lease: Lease | None = None
        self.driver = driver_name(self.options.host)
        self._batches: Iterator[BarBatch] = iter(())
        self._buffer: BarBatch | None = None
        self._checkpoints = Checkpoints(self.every)
        self.seen = 0
        self.first: pd.Timestamp | None = None
        self.last: pd.Timestamp | None = None
        self.latest: list[FarmUpdate] = []
        self.goals: list[dict[str, Any]] = []
        self.master_cash = Decimal(0)
        self.latencies: list[int] = []
        self.start_seconds = 0.0
        self.resumed_from: int | None = None
        self.interrupted = False
        self._t0 = time.perf_counter()
        self._opened = False
        self.ready = threading.Event()
        """Set once the session is open: its run recorded, its cluster started and funded."""
        self._closed = False
        self._result: PaperResult | None = None
        self._lock = threading.RLock()
        """Held while the cluster is used: by the feed between batches, by a command."""
        self._feeding: threading.Thread | None = None
        """The thread feeding bars, while it does (commands from others wait for a boundary)."""
        self._commands: queue.Queue[tuple[Command, Future[Any]]] = queue.Queue()
        self._command_n = 0
        self._unpaused = threading.Event()
        self._unpaused.set()
        self.holding = threading.Event()
        """Set while a paused feed holds at a batch boundary (nothing in flight)."""
        self._stopping = threading.Event()
        self._inflight: deque[tuple[BarBatch, Any, int]] = deque()

    # -- opening ----------------------------------------------------------------------

    def open(self) -> Session:
        """Record the run, start the cluster and fund it. Returns the session."""
        if self._opened:
            raise SessionError("this session is open already")
        self._opened = True
        self._stage("reading the bars")
        self._load_feed(0)
        try:
            if self.options.persist:
                self._stage("opening the store")
                self._open_store()
                self._start_run()
            self._start_cluster()
            self.ready.set()
        except BaseException:
            self._abort()
            raise
        return self

    @classmethod
    def resume(
        cls,
        run_id: str,
        options: SessionConfig | None = None,
        *,
        store: Store | StoreLocation | str | None = None,
        bars: pd.DataFrame | None = None,
        events: Any = None,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[str, StoreLocation], None] | None = None,
        on_cluster: Callable[[LocalCluster | RayCluster], None] | None = None,
    ) -> Session:
        """Take up a run left ``running`` (or ``interrupted``) by a driver that is gone:
        rebuild every node from the store, reattach the feed at the first bar every farm
        has not yet handled, apply the commands journaled but not applied, and return the
        open session (``run()`` carries on to the end).

        ``options``: how this session runs (mode, address...); what the run recorded
        decides the rest (its data, batches, speed). ``bars``: the frame, for a run that
        was fed one by its caller. :class:`RunBusy` if a live driver holds the run."""
        where = store_location(None, store)
        own = not isinstance(store, Store)
        db = store if isinstance(store, Store) else where.open()
        try:
            db.check_schema()
            record = db.run(run_id)
            if record.status not in ("running", "interrupted"):
                raise SessionError(f"run {record.id} is {record.status}: there is nothing to resume")
            feed = record.meta.get("feed")
            if not isinstance(feed, dict):
                raise SessionError(f"run {record.id} did not record how it was fed (it predates resuming); it cannot be resumed")
            if feed.get("kind") == "caller" or (feed.get("kind") == "frame" and bars is None):
                raise SessionError(
                    f"run {record.id} was fed bars by its caller, not from a file: resume it with Session.resume(run_id, bars=...)"
                    if feed.get("kind") == "frame" else f"run {record.id} was fed by its caller's feed; it cannot be resumed"
                )
            stored = {k: v for k, v in record.config.items() if k not in ("storage", "streams")}
            config = config_from_dict(stored, source=f"run {record.id}")
            given = (options or SessionConfig()).model_dump(exclude_unset=True)
            recorded = {k: feed[k] for k in ("speed", "batch_size", "data", "max_bars", "max_move", "source", "symbol", "inline") if k in feed}
            opts = session_options(None, {**recorded, "local": record.mode == "local", **given, "persist": True})
            session = cls(
                config, opts, bars=bars, store=db, events=events,
                on_progress=on_progress, on_start=on_start, on_cluster=on_cluster,
            )
            session.where = where
            session.store, session._own_store = db, own
            session._take_up(record)
        except BaseException:
            if own:
                db.close()
            raise
        return session

    def _take_up(self, record: RunRecord) -> None:
        """The resuming half of :meth:`resume`: lease, cluster, feed position."""
        assert self.store is not None and self.where is not None
        self._opened = True
        self.run_id = record.id
        claim(self.store, record, self.driver, self.options.heartbeat)
        try:
            self.lease = Lease(self.where, record.id, self.driver, self.options.heartbeat)
            start, pending = self._resume_point(record)
            self._load_feed(start)
            self.resumed_from = start
            self._checkpoints.pending = pending
            self._open_bus()
            if self.on_start is not None:
                self.on_start(record.id, self.where)
            self._command_n = len(self.store.rows("operator_commands", record.id))
            self._start_cluster()
            self._redo_commands()
            resumed = [*record.meta.get("resumed", []), {"at": iso(datetime.now(UTC)), "bars": start}]
            self.store.update_run(record.id, status="running", meta={"resumed": resumed})
            self.ready.set()
        except BaseException:
            # Nothing was fed: the run stays as it was (resumable once what failed is fixed).
            self._abort(failed=False)
            raise

    def _resume_point(self, record: RunRecord) -> tuple[int, list[Any]]:
        """Where the feed takes up (a bar count) and the trades the next checkpoint must see
        that were closed before it: rebuilt from the store, as :func:`rebuild_report` does."""
        assert self.store is not None
        frame = self._frame()
        cluster = LocalCluster(self.spec, store=self.store, run_id=record.id)
        for journal in cluster.journals.values():
            reply = journal.restore()
            if reply is not None:
                cluster.replies[journal.source] = reply
        ts = BarBatch.from_frame(frame).ts
        handled: list[tuple[int, int]] = []
        for name in cluster.farms:
            last = cluster.replies.get(farm_ref(name))
            if last is None:
                handled.append((0, 0))
                continue
            _, last_ns, length = last[0]
            at = int(ts.searchsorted(last_ns, side="right"))
            if at == 0 or int(ts[at - 1]) != last_ns:
                raise SessionError(
                    f"run {record.id}: the bars it handled last (up to {iso(timestamp_of(last_ns))}) are not in its data "
                    f"({self.source}); resume it with the data it was started on"
                )
            handled.append((at, length))
        start = min(at for at, _ in handled)
        pending: list[Any] = []
        if self.every is not None:
            done = cluster.master.checkpoint_done
            length = min((n for at, n in handled if at == start), default=0)
            if done < start and start > 0 and self._checkpoints.due(start, start >= len(frame)) and length:
                start -= length  # the checkpoint ending that batch did not finish: the batch again, then it
            if done < start:
                since = int(ts[done - 1]) if done > 0 else None
                until = int(ts[start - 1])
                agents = [a for f in cluster.farms.values() for a in f.agents.values()] + list(cluster.agents.values())
                pending = [
                    t for a in agents for t in a.closed_trades()
                    if (since is None or pd.Timestamp(t.exit_time).value > since) and pd.Timestamp(t.exit_time).value <= until
                ]
        if start > 0:
            self.first = pd.Timestamp(int(ts[0]), tz="UTC")
            self.last = pd.Timestamp(int(ts[start - 1]), tz="UTC")
        self.seen = start
        return start, pending

    def _frame(self) -> pd.DataFrame:
        if self.frame is None:
            opts = self.options
            self.frame = self._bars_arg if self._bars_arg is not None else session_bars(
                self.config, data=opts.data, max_bars=opts.max_bars, max_move=opts.max_move
            )
            self.source = self.source or str(opts.data or self.frame.attrs.get("source") or self.config.data_path() or "synthetic")
        return self.frame

    def _load_feed(self, start: int) -> None:
        if self._batches_arg is not None:
            self._batches = iter(self._batches_arg)
            return
        frame = self._frame()
        self.total = len(frame)
        self._batches = replay_batches(frame.iloc[start:], self.options.speed, self.batch_size)
        speed = parse_speed(self.options.speed)
        if speed is not None and len(frame) > 1:
            step = float(pd.Series(frame.index).diff().median().total_seconds())
            if step > 0:
                self.pace = Pace(asked=speed / step)

    def _feed_record(self) -> dict[str, Any]:
        opts = self.options
        kind = "caller" if self._batches_arg is not None else "frame" if self._bars_arg is not None else "replay"
        data = str(Path(opts.data).expanduser().resolve()) if opts.data else None
        return {
            "kind": kind, "speed": opts.speed, "batch_size": opts.batch_size, "data": data, "max_bars": opts.max_bars,
            "max_move": opts.max_move, "source": self.source, "symbol": opts.symbol, "inline": opts.inline,
        }

    def _open_store(self) -> None:
        opts = self.options
        store = self._store_arg
        self.where = store_location(self.config, store)
        self.store = store if isinstance(store, Store) else self.where.open()
        self._own_store = self.store is not store
        migrate = opts.migrate if opts.migrate is not None else self.config.storage.migrate
        self.store.migrate() if migrate else self.store.check_schema()

    def _open_bus(self) -> None:
        from cival.events.bus import open_bus
        from cival.events.relay import Relay

        assert self.run_id is not None and self.where is not None
        if self._events_arg is None:
            self.bus = open_bus(self.config.streams.url, self.run_id, buffer=self.config.streams.buffer)
        else:
            self.bus = self._events_arg(self.run_id) if callable(self._events_arg) else self._events_arg
        self.relay = Relay(self.where, self.run_id, self.bus)

    def _start_run(self) -> None:
        from cival.events.bus import RedisBus

        assert self.store is not None and self.where is not None
        self.run_id = new_run_id()
        self._open_bus()
        streams = "redis" if isinstance(self.bus, RedisBus) else "in-process"
        start_run(
            self.store, self.config, self.spec, mode=self.options.mode, source=self.source, streams=streams,
            inline=self.options.inline, run_id=self.run_id, meta={"feed": self._feed_record()}, driver=self.driver,
        )
        self.lease = Lease(self.where, self.run_id, self.driver, self.options.heartbeat)
        if self.on_start is not None:
            self.on_start(self.run_id, self.where)

    def _start_cluster(self) -> None:
        opts = self.options
        if opts.local:
            self.cluster = LocalCluster(self.spec, self.store, self.run_id)
            if self.resumed_from is not None:
                for journal in self.cluster.journals.values():
                    reply = journal.restore()
                    if reply is not None:
                        self.cluster.replies[journal.source] = reply
        else:
            self.cluster = RayCluster(self.spec, opts.address, self.where, self.run_id)
        if self.on_cluster is not None:
            self.on_cluster(self.cluster)
        self.start_seconds = self.cluster.start(self._stage)
        self._stage("funding the farms")
        # Funding is idempotent: a resumed run's funding books nothing it booked before.
        self.cluster.fund(self._funding_time())
        self.goals = self.cluster.goal_states()
        self.master_cash = Decimal(self.cluster.master_snapshot()["cash"])
        self._stage("feeding the first batch (strategies compile on first use)")
        self._t0 = time.perf_counter()
        self._seen_at_open = self.seen

    def _stage(self, text: str) -> None:
        """Say what the session is doing before its first bar (``on_stage``)."""
        if self.on_stage is not None:
            self.on_stage(text)

    def _funding_time(self) -> datetime | None:
        """A replay is funded at its first bar, so that its books depend on its bars alone
        (and a resumed run funds at the same time); a caller's feed, now."""
        if self.frame is None or self.frame.empty:
            return None
        return timestamp_of(int(BarBatch.from_frame(self.frame.iloc[:1]).ts[0]))

    def _clock(self) -> datetime:
        """The session's time: the last bar fed (a command is stamped with the bar it
        follows), else the funding's, else now."""
        if self.last is not None:
            return self.last.to_pydatetime()
        return self._funding_time() or datetime.now(UTC)

    # -- feeding ----------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """Every bar of a replay was fed (never, for a caller's open-ended feed)."""
        return self.total is not None and self.seen >= self.total

    def step(self, n: int | None = 1) -> int:
        """Feed the next ``n`` bars (None: all that are left; fewer at the end of the data);
        returns how many were fed. Commands given meanwhile apply at batch boundaries."""
        if n is not None and n < 1:
            raise SessionError(f"step needs at least 1 bar, got {n}")
        self._check_open()
        before = self.seen
        self._pump(n, None)
        return self.seen - before

    def _check_open(self) -> None:
        if not self._opened or self._closed or self.cluster is None:
            raise SessionError("the session is not open" if not self._closed else "the session is closed")

    def _next(self, most: int | None) -> BarBatch | None:
        while True:
            batch = self._buffer if self._buffer is not None else next(self._batches, None)
            self._buffer = None
            if batch is None or len(batch):
                break
        if batch is None:
            return None
        if most is not None and len(batch) > most:  # keep the rest for later: checkpoints stay aligned
            batch, self._buffer = batch.slice(0, most), batch.slice(most, len(batch))
        return batch

    def _pump(self, most: int | None, stop: threading.Event | None, drain: bool = True) -> None:
        """Feed batches (up to ``most`` bars) until the feed ends or ``stop`` is set. The
        batches sent finish before it returns; on Ctrl-C too with ``drain``, else they are
        left to :meth:`_drain` (a session stopping watches whether Ray is still there)."""
        assert self.cluster is not None
        cluster = self.cluster
        inflight = self._inflight
        left = most
        self._feeding = threading.current_thread()
        try:
            while left is None or left > 0:
                if not self._commands.empty():
                    while inflight:
                        self._finish(inflight.popleft())
                    self._apply_commands()
                if not self._unpaused.is_set():
                    while inflight:
                        self._finish(inflight.popleft())
                    self._wait_unpaused(stop)
                if (stop is not None and stop.is_set()) or self._stopping.is_set() or self._lease_lost():
                    self.interrupted = True
                    break
                batch = self._next(left)  # a paced feed waits here: not holding the lock, so reads go on meanwhile
                if batch is None:
                    break
                with self._lock:
                    if self.first is None:
                        self.first = pd.Timestamp(int(batch.ts[0]), tz="UTC")
                    arrived = time.monotonic_ns()
                    inflight.append((batch, cluster.submit(batch), arrived))
                if left is not None:
                    left -= len(batch)
                while len(inflight) > (self.window if cluster.mode == "ray" else 0):
                    self._finish(inflight.popleft())
        except KeyboardInterrupt:
            if drain:
                self._drain()
            raise
        finally:
            self._feeding = None
        self._drain()
        if self._commands.qsize():
            self._apply_commands()

    def _drain(self) -> None:
        """Let the batches already sent finish, so that the books are at rest."""
        while self._inflight:
            try:
                self._finish(self._inflight.popleft())
            except KeyboardInterrupt:
                self.interrupted = True

    def _lease_lost(self) -> bool:
        if self.lease is not None and self.lease.lost.is_set():
            raise RunBusy(f"run {self.run_id}: another process took over its lease; this session stops here")
        return False

    def _wait_unpaused(self, stop: threading.Event | None) -> None:
        self.holding.set()
        try:
            while not self._unpaused.wait(0.05):
                if not self._commands.empty():
                    self._apply_commands()
                if (stop is not None and stop.is_set()) or self._stopping.is_set():
                    return
        finally:
            self.holding.clear()

    def _finish(self, item: tuple[BarBatch, Any, int]) -> None:
        assert self.cluster is not None
        batch, handle, sent_ns = item
        with self._lock:
            updates = self.cluster.wait(handle)
            self.seen += len(batch)
            self.last = pd.Timestamp(int(batch.ts[-1]), tz="UTC")
            for u in updates:
                self.latencies.extend(b - sent_ns for b in u.booked_ns)
            states = self._checkpoints.after_batch(self.cluster, updates, self.seen, self.last.to_pydatetime(), self.done)
            self.latest = updates
            if self.relay is not None:
                self.relay.nudge()
            if states is not None:
                self.goals = states
                self.master_cash = Decimal(self.cluster.master_snapshot()["cash"])
        elapsed = time.perf_counter() - self._t0
        if self.pace is not None:
            self._check_pace(elapsed)
        if self.on_progress is not None:
            self.on_progress(Progress(self.seen, self.total, self.last, updates, self.master_cash, elapsed, self.goals))

    def _check_pace(self, elapsed: float) -> None:
        """Keep the achieved rate; past :data:`PACE_GRACE` seconds, say once if it is behind."""
        assert self.pace is not None
        fed = self.seen - self._seen_at_open
        if elapsed <= 0 or fed < 2:
            return
        self.pace.achieved = fed / elapsed
        if not self._pace_warned and elapsed >= PACE_GRACE and self.pace.behind:
            self._pace_warned = True
            text = (
                f"the cluster keeps up with {self.pace.describe()} (speed {self.options.speed}): bars are fed as "
                "fast as it can take them, so the replay runs slower than asked; the times shown are the real ones"
            )
            if self.on_warning is not None:
                self.on_warning(text)
            else:
                warnings.warn(text, PaceWarning, stacklevel=2)

    def pause(self) -> None:
        """Hold the feed at the next batch boundary (commands still apply) until :meth:`unpause`."""
        self._unpaused.clear()

    def unpause(self) -> None:
        """Let the feed carry on after :meth:`pause`."""
        self._unpaused.set()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    def stop(self) -> None:
        """Ask the feed to stop after the batch in flight (from any thread); the run is then
        interrupted, and may be resumed."""
        self._stopping.set()
        self._unpaused.set()

    # -- commands ---------------------------------------------------------------------

    def deposit(self, amount: Decimal | str | int, by: str | None = None) -> Booked:
        """Deposit ``amount`` into the master's cash (for :meth:`allocate` to hand out)."""
        return self.command(Command("deposit", "master", amount=_amount(amount), by=by))  # type: ignore[no-any-return]

    def allocate(self, farm: str, amount: Decimal | str | int, by: str | None = None) -> Booked:
        """Allocate ``amount`` of the master's free cash to ``farm`` (which splits it across
        its agents by its policy). No overdraft: more than the master's cash is refused,
        saying how to free some."""
        return self.command(Command("allocate", farm, amount=_amount(amount), by=by))  # type: ignore[no-any-return]

    def collect(self, farm: str, amount: Decimal | str | int | None = None, reason: str = "by hand", by: str | None = None) -> Booked:
        """Bring a farm's money back to the master: ``amount`` of its free cash (its own
        first, then its trading agents' in proportion to their cash), or (None) all its
        cash and all its agents' (their positions stay open)."""
        return self.command(Command("collect", farm, amount=_amount(amount) if amount is not None else None, reason=reason, by=by))  # type: ignore[no-any-return]

    def kill(self, reason: str = "", by: str | None = None) -> dict[str, Any]:
        """The kill switch: halt every farm, so that every agent sells what it holds at the
        next open and enters nothing more (``release`` a farm to let it trade again)."""
        return self.command(Command("kill", "master", reason=reason, by=by))  # type: ignore[no-any-return]

    def halt(self, entity: str, reason: str = "halted by hand", by: str | None = None) -> dict[str, Any]:
        """Halt ``farm:<name>`` or ``agent:<name>`` (a bare name is looked up): it exits at
        the next open and takes no new entries."""
        return self.command(Command("halt", entity, reason=reason, by=by))  # type: ignore[no-any-return]

    def release(self, entity: str, reason: str = "resumed by hand", by: str | None = None) -> dict[str, Any]:
        """Let a halted farm or agent trade again."""
        return self.command(Command("resume", entity, reason=reason, by=by))  # type: ignore[no-any-return]

    def set_policy(self, farm: str, policy: dict[str, Any], by: str | None = None) -> dict[str, Any]:
        """Give ``farm`` another allocation policy (as in a config), from now on: it applies
        to new allocations and to its scheduled rebalancing."""
        return self.command(Command("set_policy", farm, policy=dict(policy), by=by))  # type: ignore[no-any-return]

    def add_goal(self, goal: dict[str, Any], by: str | None = None) -> dict[str, Any]:
        """Set a new goal (a mapping as in a config's ``goals``) from now on: it counts the
        trades closed from the next checkpoint. Returns its state."""
        name = goal.get("name") if isinstance(goal, dict) else None
        return self.command(Command("add_goal", str(name or ""), goal=goal, by=by))  # type: ignore[no-any-return]

    def assign_goal(self, goal: str, assign: list[dict[str, Any]], by: str | None = None) -> dict[str, Any]:
        """Give an active goal to more farms or agents (``assign``: as in a config, e.g.
        ``[{"farm": "trend", "weight": 1}]``); their trades count from now on."""
        return self.command(Command("assign_goal", goal, goal={"assign": assign}, by=by))  # type: ignore[no-any-return]

    def cancel_goal(self, goal: str, reason: str = "", by: str | None = None) -> dict[str, Any]:
        """Stop following an active goal: it counts and collects nothing more."""
        return self.command(Command("cancel_goal", goal, reason=reason, by=by))  # type: ignore[no-any-return]

    def command(self, command: Command, timeout: float | None = None) -> Any:
        """Apply ``command`` and return its result (or raise what refused it). From the
        thread feeding bars, or while no bars are being fed, it applies at once; from
        another thread while bars flow, at the next batch boundary (waiting for it, at
        most ``timeout`` seconds)."""
        self._check_open()
        feeding = self._feeding
        if feeding is None or feeding is threading.current_thread():
            with self._lock:
                return self._apply(command)
        future: Future[Any] = Future()
        self._commands.put((command, future))
        if self._feeding is None and not self._closed:  # the feed ended meanwhile: nobody else will apply it
            self._apply_commands()
        return future.result(timeout)

    def submit(self, command: Command) -> Future[Any]:
        """Queue ``command`` for the next batch boundary and return at once; the future
        holds its result or its error. Without bars flowing, it applies now."""
        self._check_open()
        future: Future[Any] = Future()
        if self._feeding is None:
            with self._lock:
                try:
                    future.set_result(self._apply(command))
                except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                    future.set_exception(exc)
            return future
        self._commands.put((command, future))
        return future

    def _apply_commands(self) -> None:
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                return
            with self._lock:
                try:
                    future.set_result(self._apply(command))
                except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
                    future.set_exception(exc)

    def _apply(self, command: Command) -> Any:
        """Check, journal, apply and record one command (the lock is held)."""
        assert self.cluster is not None
        command = self._checked(command)
        n = self._command_n + 1
        row = None
        if self.store is not None and self.run_id is not None:
            row = {
                "run_id": self.run_id, "n": n, "kind": command.kind, "args": command.args(), "by": command.by,
                "at": datetime.now(UTC), "bars": self.seen, "status": "pending", "result": None,
            }
            self.store.commit(self.run_id, JournalBatch(source="session", version=n, rows={"operator_commands": [row]}))
        self._command_n = n
        return self._carry_out(n, command)

    def _carry_out(self, n: int, command: Command) -> Any:
        """Apply a journaled command (again, after a resume: its messages carry ``n`` as
        their id, so nothing is booked twice) and record its result."""
        assert self.cluster is not None
        cluster = self.cluster
        kind = command.kind
        status, result, answer = "applied", None, None
        try:
            if kind == "deposit":
                assert command.amount is not None
                at = self._clock()
                cluster.send_deposit(command.amount, f"command:{n}", at)
                answer = Booked(kind, n, "outside", MASTER, command.amount, at, f"command:{n}")
                result = answer.as_dict()
            elif kind == "allocate":
                assert command.amount is not None
                self._check_master_cash(command)
                msg = Allocate(id=f"command:{n}", at=self._clock(), source=MASTER, target=farm_ref(command.target), amount=command.amount)
                cluster.send_allocate(msg)
                answer = Booked(kind, n, MASTER, msg.target, msg.amount, msg.at, msg.id)
                result = answer.as_dict()
            elif kind == "collect":
                msg = Collect(id=f"command:{n}", at=self._clock(), source=farm_ref(command.target), amount=command.amount, reason=command.reason)
                transfer = cluster.send_collect(msg)
                answer = Booked(kind, n, msg.source, MASTER, transfer.amount, msg.at, transfer.id)
                result = answer.as_dict()
            elif kind == "kill":
                at = self._clock()
                reason = command.reason or f"kill switch by {command.by}"
                farms = [f.name for f in self.spec.farms]
                for farm in farms:
                    cluster.send_halt(Halt(id=f"command:{n}>{farm_ref(farm)}", at=at, entity=farm_ref(farm), reason=reason))
                answer = result = {"command": kind, "n": n, "halted": farms, "reason": reason}
            elif kind in ("halt", "resume"):
                halt = Halt(id=f"command:{n}", at=self._clock(), entity=command.target, reason=command.reason or f"{kind} by {command.by}", resume=kind == "resume")
                cluster.send_halt(halt)
                answer = result = {"command": kind, "n": n, "entity": command.target}
            elif kind in ("add_goal", "assign_goal", "cancel_goal"):
                action = {"add_goal": "add", "assign_goal": "assign", "cancel_goal": "cancel"}[kind]
                change = GoalChange(
                    id=f"command:{n}", at=self._clock(), action=action, goal=command.target,
                    config=command.goal if action == "add" else None,
                    assign=(command.goal or {}).get("assign") if action == "assign" else None, reason=command.reason,
                )
                state = cluster.change_goal(change)
                answer = result = {"command": kind, "n": n, "goal": state}
            else:
                assert command.policy is not None
                cluster.set_policy(command.target, command.policy)
                answer = result = {"command": kind, "n": n, "farm": command.target}
        except CivalError as exc:
            status, result = "refused", {"error": str(exc)}
            self._record_command(n, command, status, result)
            raise CommandError(f"{kind} {command.target}: {exc}") from None
        except Exception as exc:
            failure = actor_error(exc)
            if isinstance(failure, CivalError) and not isinstance(failure, StoreError):
                self._record_command(n, command, "refused", {"error": str(failure)})
                raise CommandError(f"{kind} {command.target}: {failure}") from None
            raise
        self._record_command(n, command, status, result)
        if kind in ("add_goal", "assign_goal", "cancel_goal"):
            self.goals = cluster.goal_states()
        if self.relay is not None:
            self.relay.nudge()
        if kind in ("deposit", "allocate", "collect"):
            self.master_cash = Decimal(cluster.master_snapshot()["cash"])
        return answer

    def _check_master_cash(self, command: Command) -> None:
        """Refuse an allocation beyond the master's cash, saying where cash could come from."""
        assert self.cluster is not None and command.amount is not None
        cash = Decimal(self.cluster.master_snapshot()["cash"])
        if command.amount <= cash:
            return
        master = self.config.master
        currency = master.base_currency
        reserve = getattr(master.allocation, "reserve_pct", Decimal(0))
        raise NodeError(
            f"the master has {format_amount(cash)} {currency} of free cash, less than the {format_amount(command.amount)} asked "
            f"(funding allocated its deposit to the farms, keeping master.allocation.reserve_pct = "
            f"{dec(reserve)} % back). Free some first: collect from a farm "
            f"(collect('{command.target}', amount) or collect(farm) for everything), deposit more "
            "(deposit(amount)), or keep a larger reserve in the config"
        )

    def _record_command(self, n: int, command: Command, status: str, result: dict[str, Any] | None) -> None:
        """The command's outcome in its row, and an ``operator_action`` event (at the bar's
        time, under an id of its own: recorded again after a resume, it is stored once)."""
        if self.store is not None and self.run_id is not None:
            update = {"run_id": self.run_id, "n": n, "status": status, "result": result}
            action = OperatorActionPayload(
                n=n, command=command.kind, target=command.target, by=command.by or self.options.by, status=status,
                result=result or {},
            )
            event = EventDraft(f"operator:{n}", "run", self._clock(), action)
            rows = self._goal_rows(command) if status == "applied" else {}
            self.store.commit(
                self.run_id,
                JournalBatch(source="session", version=n, rows=rows, updates={"operator_commands": [update]}, events=[event]),
            )

    def _goal_rows(self, command: Command) -> dict[str, list[dict[str, Any]]]:
        """The registry rows a goal command adds (a new goal and its assignments; more
        assignments), stored with the command's outcome."""
        assert self.run_id is not None
        rows: dict[str, list[dict[str, Any]]] = {}
        if command.kind == "add_goal":
            goal = goal_from_dict(command.goal)
            raw = goal.model_dump(mode="json")
            rows["goals"] = [{
                "run_id": self.run_id, "name": goal.name, "goal_type": goal.type, "target": raw["target"],
                "on_complete": goal.on_complete, "deadline": raw.get("deadline"), "status": "active",
                "progress": Decimal(0), "collected": Decimal(0),
            }]
            assigned = list(goal.assign)
        elif command.kind == "assign_goal":
            assigned = [Assignment.model_validate(a) for a in (command.goal or {}).get("assign", [])]
        else:
            return rows
        rows["farm_goal_assignments"] = [
            {"run_id": self.run_id, "goal": command.target, "farm": a.farm, "agent": a.agent, "weight": Decimal(str(a.weight))}
            for a in assigned
        ]
        return rows

    def _checked(self, command: Command) -> Command:
        """The command with its target resolved and its author set, or CommandError."""
        farms = [f.name for f in self.spec.farms]
        by = command.by or self.options.by
        if command.kind in ("allocate", "collect", "set_policy") and command.target not in farms:
            raise CommandError(f"{command.kind}: no farm named {command.target!r}; farms: {', '.join(farms)}")
        if command.kind == "allocate" and (command.amount is None or not command.amount > 0):
            raise CommandError(f"allocate {command.target}: an allocation must be positive, got {command.amount}")
        if command.kind == "deposit" and (command.amount is None or not command.amount > 0):
            raise CommandError(f"deposit: the amount must be positive, got {command.amount}")
        if command.kind in ("deposit", "kill"):
            return replace(command, target="master", by=by)
        if command.kind == "collect" and command.amount is not None and not command.amount > 0:
            raise CommandError(f"collect {command.target}: the amount must be positive (or omitted: everything), got {command.amount}")
        if command.kind in ("halt", "resume"):
            return replace(command, target=entity_ref(command.target, self.spec), by=by)
        if command.kind == "set_policy" and not isinstance(command.policy, dict):
            raise CommandError(f"set_policy {command.target}: the policy must be a mapping, as in a config")
        if command.kind in ("add_goal", "assign_goal", "cancel_goal"):
            return replace(command, by=by, **self._checked_goal(command))
        return replace(command, by=by)

    def _checked_goal(self, command: Command) -> dict[str, Any]:
        """A goal command's target and goal, checked against the cluster and its goals."""
        assert self.cluster is not None
        kind = command.kind
        goals = {g["name"]: g for g in self.cluster.goal_states()}
        if kind != "cancel_goal" and self.every is None:
            raise CommandError(
                f"{kind}: this run takes no checkpoints (its config sets no goals, risk limits or scheduled "
                "rebalancing), so a goal would never be judged; start the run with checkpoint.always: true (or a goal, or a risk limit) in its config"
            )
        if kind == "add_goal":
            try:
                goal = goal_from_dict(command.goal)
            except ConfigError as exc:
                raise CommandError("add_goal: " + "; ".join(f"goal.{i.path}: {i.message}" if i.path else i.message for i in exc.issues)) from None
            if goal.name in goals:
                raise CommandError(f"add_goal: a goal named {goal.name!r} exists; give the new goal another name")
            self._check_assignments(kind, goal.name, list(goal.assign), [])
            return {"target": goal.name, "goal": goal.model_dump(mode="json", exclude_none=True)}
        current = goals.get(command.target)
        if current is None:
            raise CommandError(f"{kind}: no goal named {command.target!r}; goals: {', '.join(goals) or 'none'}")
        if current["status"] != "active":
            raise CommandError(f"{kind} {command.target}: the goal is {current['status']}; only an active goal can change")
        if kind == "cancel_goal":
            return {}
        raw = (command.goal or {}).get("assign") if isinstance(command.goal, dict) else None
        if not isinstance(raw, list) or not raw:
            raise CommandError(f"assign_goal {command.target}: give goal.assign, a list of assignments as in a config ([{{farm: NAME}}] or [{{agent: NAME, weight: 0.5}}])")
        try:
            assigned = [Assignment.model_validate(a) for a in raw]
        except ValidationError as exc:
            error = exc.errors()[0]
            raise CommandError(f"assign_goal {command.target}: goal.assign: {error['msg']}") from None
        self._check_assignments(kind, command.target, assigned, current.get("assign", []))
        return {"goal": {"assign": [a.model_dump(mode="json", exclude_none=True) for a in assigned]}}

    def _check_assignments(self, kind: str, goal: str, assigned: list[Any], existing: list[dict[str, Any]]) -> None:
        farms = {f.name for f in self.spec.farms}
        agents = {a.name for f in self.spec.farms for a in f.agents}
        seen = {(e.get("farm"), e.get("agent")) for e in existing}
        for a in assigned:
            if a.farm is not None and a.farm not in farms:
                raise CommandError(f"{kind} {goal}: no farm named {a.farm!r}; farms: {', '.join(sorted(farms))}")
            if a.agent is not None and a.agent not in agents:
                raise CommandError(f"{kind} {goal}: no agent named {a.agent!r}")
            if (a.farm, a.agent) in seen:
                who = f"farm {a.farm}" if a.farm else f"agent {a.agent}"
                raise CommandError(f"{kind} {goal}: {who} is assigned to the goal already (once per farm or agent)")
            seen.add((a.farm, a.agent))

    def _redo_commands(self) -> None:
        """After a resume: apply again the commands journaled but not applied (the driver
        died between journaling one and recording its result)."""
        assert self.store is not None and self.run_id is not None
        for row in self.store.rows("operator_commands", self.run_id, order="n"):
            if row["status"] == "pending":
                try:
                    self._carry_out(int(row["n"]), Command.from_row(row))
                except CommandError:
                    pass  # recorded as refused

    # -- looking ----------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The session report so far (the same JSON as ``cival paper --report``)."""
        self._check_open()
        assert self.cluster is not None
        with self._lock:
            report, _ = session_report(self.cluster, self.config, self.spec, self.source, self.seen, self.first, self.last, self.interrupted)
        return report

    def wallet_snapshot(self) -> dict[str, Any]:
        """The master's and the farms' parts of :meth:`report` (their agents, positions and
        trades included), and the cluster's total equity, without the ledgers' audit that
        the report runs (a replay of every transaction): what a wallet tree or a trade
        list needs, cheaply enough to be read while bars flow."""
        self._check_open()
        assert self.cluster is not None
        with self._lock:
            master = self.cluster.master_snapshot()
            farms = self.cluster.farm_snapshots()
            bars = self.seen
        total = Decimal(master["cash"]) + sum((Decimal(f["total_equity"]) for f in farms), Decimal(0))
        return {"bars": bars, "master": master, "farms": farms, "ledger": {"total_equity": dec(total)}}

    def audit(self) -> ClusterAudit:
        self._check_open()
        assert self.cluster is not None
        with self._lock:
            return combine(self.cluster.summaries(), self.spec.currency)

    def goal_states(self) -> list[dict[str, Any]]:
        self._check_open()
        assert self.cluster is not None
        with self._lock:
            return self.cluster.goal_states()

    # -- running to the end -----------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> PaperResult:
        """Open the session if it is not, feed every bar left (until the feed ends, ``stop``
        is set, Ctrl-C, or SIGTERM in the main thread), report, and close.

        When a SIGTERM sent to every process of the session stopped Ray's own too, the
        report is rebuilt from the store (``rebuilt``)."""
        sigterm = SigtermStop()
        sigterm.install()
        status = "failed"
        try:
            try:
                if not self._opened:
                    self.open()
                sigterm.install()  # ray.init puts its own SIGTERM handler (an abrupt exit) in place of ours
                self._pump(None, stop, drain=False)
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated)
                if self.cluster is None:
                    raise
                self.interrupted = True
            # The session is ending: a SIGTERM from now on is noted, not raised, and waits on
            # the actors watch whether Ray's processes are still there to answer.
            sigterm.armed = False
            if isinstance(self.cluster, RayCluster):
                self.cluster.stopping = True
            result = self._close(sigterm)
            status = "closed"
            result.terminated = sigterm.received
            return result
        except Exception as exc:
            if isinstance(exc, RunBusy):
                status = "lost"  # another driver has the run: its status is that driver's to set
                raise
            failure = actor_error(exc)
            if isinstance(failure, StoreError) and self.store is not None and self.run_id is not None:
                # The store refused a write (full, read-only, unreachable too long): what was
                # committed before is consistent, so the run is interrupted there, not failed.
                status = "interrupted"
                raise stopped_by_store(self.store, self.run_id, failure, self.seen, self.first, self.last) from None
            if failure is not exc:
                raise failure from None  # an actor's own error, not Ray's account of it
            raise
        finally:
            sigterm.restore()
            if status != "closed":
                self._abort(failed=status == "failed")

    def close(self) -> PaperResult:
        """Report, record the run as finished (or interrupted, with bars left), publish its
        last events, give up the lease and stop the cluster. Closing twice returns the
        first result."""
        if self._result is not None:
            return self._result
        self._check_open()
        try:
            return self._close(None)
        except BaseException:
            self._abort(failed=True)
            raise

    def _close(self, sigterm: SigtermStop | None) -> PaperResult:
        assert self.cluster is not None
        rebuilt = False
        if self.total is not None and not self.done:
            self.interrupted = True
        try:
            self._drain()
            seconds = time.perf_counter() - self._t0
            report, audit = session_report(
                self.cluster, self.config, self.spec, self.source, self.seen, self.first, self.last, self.interrupted
            )
        except ClusterLost:
            # A signal sent to every process of the session (a service manager stopping it)
            # stopped Ray's too. The actors cannot report, but each node journaled before
            # it replied: the report is the store's.
            seconds = time.perf_counter() - self._t0
            if not (self.interrupted or (sigterm is not None and sigterm.received)):
                raise
            if self.store is None or self.run_id is None:
                raise RuntimeFailure(
                    "Ray's processes stopped with the session, which kept no store: there is no report"
                ) from None
            self.interrupted = rebuilt = True
            self.cluster.close()  # now: Ray ends a process whose GCS stays away for a minute
            report, audit = interrupted_report(self.store, self.run_id, self.seen, self.first, self.last)
        status = "interrupted" if self.interrupted else "finished"
        relayed = None
        if self.store is not None and self.run_id is not None:
            finish_run(self.store, self.run_id, report, status)
        if self.relay is not None:
            relayed, self.relay = self.relay.close(), None
            assert self.store is not None and self.run_id is not None
            self.store.update_run(
                self.run_id, meta={"events_delivered": relayed.bus.delivered, "events_dropped": relayed.bus.dropped}
            )
        self._result = PaperResult(
            report, audit, self.seen, seconds, self.start_seconds, self.interrupted, self.latencies, self.run_id, self.where,
            relayed, rebuilt=rebuilt, resumed_from=self.resumed_from, pace=self.pace,
        )
        self._abort(failed=False)
        return self._result

    def _abort(self, failed: bool = True) -> None:
        """Release everything the session holds (the cluster, the relay, the lease, the
        store); with ``failed``, a run still marked running is marked failed. Commands
        still waiting for a batch boundary are refused."""
        if self._closed:
            return
        self._closed = True
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                break
            future.set_exception(SessionError(f"{command.kind} {command.target}: the session ended before it could be applied"))
        try:
            if self.cluster is not None:
                self.cluster.close()
        finally:
            if self.relay is not None:
                self.relay.close(timeout=2.0)
                self.relay = None
            if self.store is not None:
                if failed and self.run_id is not None:
                    try:
                        if self.store.run(self.run_id).status == "running":
                            self.store.update_run(self.run_id, status="failed", finished=True)
                    except Exception:  # noqa: BLE001, S110 - the original error matters more
                        pass
                if self.lease is not None:
                    self.lease.close(self.store)
                if self._own_store:
                    self.store.close()
            elif self.lease is not None:
                self.lease.close(None)

    def __enter__(self) -> Self:
        if not self._opened:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close()

    def __repr__(self) -> str:
        total = f"/{self.total:,}" if self.total is not None else ""
        return f"<Session {self.config.name!r} run {self.run_id}: {self.seen:,}{total} bars, {self.options.mode}>"


def _amount(value: Decimal | str | int) -> Decimal:
    if isinstance(value, float):
        raise CommandError(f"amount {value!r}: give an exact amount (a Decimal, an int or a string), not a float")
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise CommandError(f"amount {str(value)[:40]!r} is not a number") from None


def entity_ref(entity: str, spec: ClusterSpec) -> str:
    """``farm:NAME`` or ``agent:NAME`` for a reference or a bare name; CommandError if none."""
    farms = {f.name for f in spec.farms}
    agents = {a.name for a in spec.agents}
    kind, sep, name = entity.partition(":")
    if sep and ((kind == "farm" and name in farms) or (kind == "agent" and name in agents)):
        return entity
    if not sep and entity in farms:
        return f"farm:{entity}"
    if not sep and entity in agents:
        return f"agent:{entity}"
    raise CommandError(f"no farm or agent named {entity!r}; farms: {', '.join(sorted(farms))}; agents: {', '.join(sorted(agents))}")


def as_config(config: ConfigSource) -> ClusterConfig:
    """A cluster config from a :class:`ClusterConfig`, a YAML file's path, or a mapping as
    in a YAML file."""
    if isinstance(config, ClusterConfig):
        return config
    if isinstance(config, str | os.PathLike):
        return load_config(config)
    if isinstance(config, Mapping):
        return config_from_dict(dict(config))
    raise CivalError(f"a config is a ClusterConfig, the path of a YAML file or a mapping, not {type(config).__name__}")


# -- run_paper --------------------------------------------------------------------------


def run_paper(
    config: ConfigSource,
    options: SessionConfig | None = None,
    *,
    bars: pd.DataFrame | None = None,
    batches: Iterable[BarBatch] | None = None,
    store: Store | StoreLocation | str | None = None,
    events: Any = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[str, StoreLocation], None] | None = None,
    on_cluster: Callable[[LocalCluster | RayCluster], None] | None = None,
    stop: threading.Event | None = None,
    **fields: Any,
) -> PaperResult:
    """Run a paper-trading session of ``config`` to its end and return its report: a
    :class:`Session`, opened, run and closed. ``fields`` are :class:`SessionConfig`
    fields (``local=True``, ``speed=10``...), over ``options``."""
    session = Session(
        config, session_options(options, fields), bars=bars, batches=batches, store=store, events=events,
        on_progress=on_progress, on_start=on_start, on_cluster=on_cluster,
    )
    return session.run(stop)


def resume_run(run_id: str, options: SessionConfig | None = None, *, store: Store | StoreLocation | str | None = None, **kw: Any) -> PaperResult:
    """Resume a run whose driver died and run it to its end (see :meth:`Session.resume`)."""
    return Session.resume(run_id, options, store=store, **kw).run()


# -- the run in the store ---------------------------------------------------------------


def store_location(config: ClusterConfig | None, store: Store | StoreLocation | str | None = None) -> StoreLocation:
    """Where a session of ``config`` persists: ``store`` if given (a Store, a location, or a
    PostgreSQL URL), else ``storage.url``, else ``DATABASE_URL``, else the embedded file
    (``storage.path``, else in the user's data directory)."""
    if isinstance(store, StoreLocation):
        return store
    if isinstance(store, Store):
        return store.location
    if isinstance(store, str):
        return locate(url=store)
    if config is None:
        return locate()
    return locate(config.storage.url, config.storage_path())


def config_record(config: ClusterConfig) -> dict[str, Any]:
    """The config as stored with a run and sent in its ``run_started`` event: the data path
    made absolute, and the service URLs redacted (:func:`cival.core.urls.redact`). A
    validated config holds no secret in them; one built around validation must not leak
    it either."""
    raw = config.model_dump(mode="json")
    if isinstance(config.data, FileData):
        raw["data"]["path"] = str(config.data_path())
    if raw.get("storage", {}).get("path") and config.storage_path() is not None:
        raw["storage"]["path"] = str(config.storage_path())
    for section in ("storage", "streams"):
        url = raw.get(section, {}).get("url")
        if url:
            raw[section]["url"] = redact(url)
    return raw


def start_run(
    store: Store,
    config: ClusterConfig,
    spec: Any,
    *,
    mode: str,
    source: str | None,
    streams: str,
    inline: bool | None,
    run_id: str | None = None,
    meta: dict[str, Any] | None = None,
    driver: str | None = None,
) -> str:
    """Record a new run with its registry and its opening events; returns its id. ``meta``
    is recorded with it and ``driver`` takes its lease, before anything else is written.

    The registry is the seed's ``master_wallets``, ``farms``, ``agent_configs``,
    ``goals``, ``agent_farm_assignments`` and ``farm_goal_assignments``; the events
    announce the run, its farms, agents and goals."""
    import json

    run_id = run_id or new_run_id()
    raw = config_record(config)
    store.create_run(config.name, mode, raw, run_id=run_id)
    recorded = {"symbol": spec.symbol, "data": source, "inline": inline, "mode": mode, "store": store.kind, "streams": streams}
    store.update_run(run_id, meta={**recorded, **(meta or {})})
    if driver is not None and not store.claim_run(run_id, driver, None):
        raise RunBusy(f"run {run_id} was claimed by another process as it started")
    now = datetime.now(UTC)
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "master_wallets", "farms", "agent_configs", "goals", "agent_farm_assignments", "farm_goal_assignments")}
    events: list[EventDraft] = []
    wallets = [{"ref": MASTER, "kind": "master", "parent": None}]
    master = config.master
    rows["master_wallets"].append(
        {"run_id": run_id, "name": master.name, "currency": master.base_currency, "initial_deposit": master.initial_deposit, "cash": Decimal(0)}
    )
    goals_of: dict[str, list[str]] = {}
    for goal in config.goals:
        for a in goal.assign:
            members = [x.name for f in config.farms if f.name == a.farm for x in f.agents] if a.farm else [a.agent]
            for name in members:
                goals_of.setdefault(name, []).append(goal.name)
    for farm_spec in spec.farms:
        farm = farm_spec.config
        mode_of = "inline" if farm_spec.inline else "actors"
        allocation = farm.allocation.model_dump(mode="json")
        rows["farms"].append(
            {"run_id": run_id, "name": farm.name, "farm_type": farm.type, "agents_mode": mode_of, "allocation": allocation, "status": "active"}
        )
        wallets.append({"ref": farm_ref(farm.name), "kind": "farm", "parent": MASTER})
        data = FarmCreatedPayload(farm=farm.name, farm_type=farm.type, agents_mode=mode_of, allocation=allocation, agents=[a.name for a in farm_spec.agents])
        events.append(EventDraft(f"farm:{farm.name}:created", farm_ref(farm.name), now, data))
        for agent in farm_spec.agents:
            params = json.loads(json.dumps(agent.params, default=str))
            rows["agent_configs"].append({
                "run_id": run_id, "name": agent.name, "farm": farm.name, "strategy": agent.strategy, "params": params,
                "symbol": agent.symbol, "wallet": agent_ref(agent.name), "allocated_funds": Decimal(0),
                "assigned_goals": goals_of.get(agent.name, []), "status": "active",
            })
            rows["agent_farm_assignments"].append({"run_id": run_id, "agent": agent.name, "farm": farm.name})
            wallets.append({"ref": agent_ref(agent.name), "kind": "agent", "parent": farm_ref(farm.name)})
            data = AgentFarmAssignmentPayload(agent=agent.name, farm=farm.name, strategy=agent.strategy, params=params, symbol=agent.symbol)
            events.append(EventDraft(f"agent:{agent.name}:assigned", agent_ref(agent.name), now, data))
    for goal in config.goals:
        raw_goal = goal.model_dump(mode="json")
        rows["goals"].append({
            "run_id": run_id, "name": goal.name, "goal_type": goal.type, "target": raw_goal["target"], "on_complete": goal.on_complete,
            "deadline": raw_goal.get("deadline"), "status": "active", "progress": Decimal(0), "collected": Decimal(0),
        })
        entity = f"goal:{goal.name}"
        data = GoalCreatedPayload(goal=goal.name, goal_type=goal.type, target=raw_goal["target"], on_complete=goal.on_complete,
                                  deadline=raw_goal.get("deadline"))
        events.append(EventDraft(f"goal:{goal.name}:created", entity, now, data))
        for i, a in enumerate(goal.assign):
            weight = Decimal(str(a.weight))
            rows["farm_goal_assignments"].append({"run_id": run_id, "goal": goal.name, "farm": a.farm, "agent": a.agent, "weight": weight})
            data = GoalAssignmentPayload(goal=goal.name, farm=a.farm, agent=a.agent, weight=weight)
            events.append(EventDraft(f"goal:{goal.name}:assigned:{i}", entity, now, data))
    started = RunStartedPayload(
        cluster=config.name, mode=mode, symbol=spec.symbol, data=source, store=store.kind, streams=streams,
        currency=master.base_currency, wallets=wallets, config=raw,
    )
    events.insert(0, EventDraft("run:started", "run", now, started))
    store.commit(run_id, JournalBatch(source="run", version=1, rows=rows, events=events))
    return run_id


def finish_run(store: Store, run_id: str, report: dict[str, Any], status: str) -> None:
    """Record how a run ended: its report's own figures in ``meta`` and a ``run_finished``
    event (one per time it ended: a run stopped early and resumed ends twice)."""
    closes = int(store.run(run_id).meta.get("closes", 0))
    meta = {k: report[k] for k in ("bars", "start", "end", "interrupted", "generated_at", "mode", "symbol", "data")}
    meta["closes"] = closes + 1
    data = RunFinishedPayload(
        status=status,
        bars=report["bars"],
        start=report["start"],
        end=report["end"],
        total_equity=report["ledger"]["total_equity"],
        audit_ok=report["ledger"]["audit_ok"],
    )
    at = datetime.now(UTC)
    key = "run:finished" if closes == 0 else f"run:finished:{closes}"
    store.commit(run_id, JournalBatch(source="run", version=2 + closes, events=[EventDraft(key, "run", at, data)]))
    store.update_run(run_id, status=status, meta=meta, finished=True)


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


def rebuild_report(store: Store, run_id: str) -> tuple[dict[str, Any], Any]:
    """The session report of a run and its cluster audit, from the store alone: every node
    restored, in this process, with the same code an actor restarted after a crash uses;
    key for key and value for value what the live run wrote. Books altered in the store (a
    broken hash chain, rows removed, fills that disagree with the books) do not stop it:
    its audit fails and lists them."""
    record = store.run(run_id)
    meta = record.meta
    # Where the run was stored and streamed plays no part in its report; a URL it recorded
    # may be redacted (or, from before URLs were checked, hold a secret): leave them out.
    stored = {k: v for k, v in record.config.items() if k not in ("storage", "streams")}
    config = config_from_dict(stored, source=f"run {record.id}")
    spec = cluster_spec(config, symbol=meta.get("symbol"), inline=meta.get("inline"))
    cluster = LocalCluster(spec, store=store, run_id=record.id)
    missing = []
    tampered: list[str] = []
    for journal in cluster.journals.values():
        if store.node_state(record.id, journal.source) is None:
            missing.append(journal.source)
            continue
        journal.restore(strict=False)
        tampered += journal.problems
    if missing and len(missing) == len(cluster.journals):
        raise StoreError(f"run {record.id} has no journaled state (it stopped before its cluster was funded)")
    cluster.mode = meta.get("mode", record.mode)
    first = pd.Timestamp(meta["start"]) if meta.get("start") else None
    last = pd.Timestamp(meta["end"]) if meta.get("end") else None
    status = run_status(record)
    report, audit = session_report(
        cluster, config, spec, meta.get("data"), int(meta.get("bars", 0)), first, last,
        bool(meta.get("interrupted", status == "interrupted")),
    )
    if meta.get("generated_at"):
        report["generated_at"] = meta["generated_at"]
    if tampered:
        audit = replace(audit, ok=False, problems=(*audit.problems, *tampered))
        report["ledger"]["audit_ok"] = False
        report["ledger"]["problems"] = list(audit.problems)
    return report, audit


def interrupted_report(
    store: Store, run_id: str, bars: int, first: pd.Timestamp | None, last: pd.Timestamp | None
) -> tuple[dict[str, Any], Any]:
    """The report of an interrupted run whose nodes can no longer answer (its Ray stopped
    with it): how far the session got (``bars``, ``first`` and ``last`` bar) recorded, then
    the report rebuilt from the store, as :func:`rebuild_report` does later."""
    store.update_run(run_id, meta={
        "bars": bars,
        "start": iso(first) if first is not None else None,
        "end": iso(last) if last is not None else None,
        "interrupted": True,
        "generated_at": iso(datetime.now(UTC)),
    })
    return rebuild_report(store, run_id)


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


__all__ = [
    "Booked",
    "Checkpoints",
    "Command",
    "ConfigSource",
    "CommandError",
    "Lease",
    "Pace",
    "PaceWarning",
    "PaperResult",
    "Progress",
    "RunBusy",
    "Session",
    "SessionConfig",
    "SessionError",
    "SigtermStop",
    "as_config",
    "config_record",
    "driver_alive",
    "hosted_by",
    "entity_ref",
    "finish_run",
    "interrupted_report",
    "needs_checkpoints",
    "rebuild_report",
    "replay_batches",
    "resume_run",
    "run_paper",
    "run_status",
    "session_bars",
    "session_options",
    "session_report",
    "start_run",
    "stopped_by_store",
    "store_location",
]
