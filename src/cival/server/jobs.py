"""Backtests and sweeps as jobs of the operator API: submitted, run off the request path,
followed (status, progress), their results saved to the server's store.

A job is a backtest (:func:`cival.backtest.backtest`) or a sweep
(:func:`cival.backtest.sweep`) of one data file, with the parameters, costs, grid and
metric ``cival backtest`` and ``cival sweep`` take. :class:`JobRunner` checks a spec when
it is submitted (an unknown strategy, parameter or metric, a bad grid or cost, a data file
the server cannot find: :class:`JobRefused`, naming the field, and nothing is queued), then
runs the jobs one at a time, in submission order, in a worker thread of the server's
process (``workers`` sets more; one suits a two-core machine that also drives sessions);
the others wait in the queue (at most ``queue_limit``). A finished job's result is saved to
the store as ``--save`` saves it (``bt-...``, ``sw-...``): ``cival runs`` lists it,
``cival report`` shows it, ``GET /api/v1/results/{id}`` reads it.

A job's data is a bars file on the server, as for ``cival backtest``: a bundled name
(``cival:data/BTCUSDT-1h.csv.gz``) or a path, which may name any CSV or Parquet file the
server's user can read (operators are trusted that far, as admins are with a run's config).

Threads, not processes: a job's engine call runs on numpy, numba and vectorbt in the
server's process, with no copy of the bars or the result between processes and no
second interpreter to start (vectorbt's import alone takes seconds). The price is what a
thread cannot do: a running engine call cannot be interrupted.

Sweeps run in the server's process (``backend="local"``), chunk after chunk, never on
Ray: the server's sessions share one Ray in this process, and a sweep that started it
would shut it down when it ends, taking the actors of sessions started meanwhile with it.

Cancelling: a queued job is cancelled at once; a running sweep stops after the chunk under
way (its progress callback refuses to go on); a running backtest is one engine call that
cannot be interrupted: it is marked, and when the call returns its result is dropped
(not saved) and the job is ``cancelled``. A job that has ended cannot be cancelled.

Job records live in this process's memory (the newest ``keep`` that have ended, and all
that are queued or running): a server that stops or restarts loses the jobs queued or
running (they are marked ``cancelled`` at a clean stop) and its job records; the results
already saved to the store are kept. (Recording jobs in the store would need a table of
their own, a schema version; the store keeps what matters, the results.)
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from cival.core.costs import DEFAULT_CASH, DEFAULT_FEE_BPS, DEFAULT_FRACTION, DEFAULT_SLIPPAGE_BPS
from cival.core.errors import CivalError
from cival.core.fmt import iso_utc
from cival.store.base import StoreLocation

API = "/api/v1"

MAX_COMBINATIONS = 100_000
"""The largest grid a sweep job takes (a sweep's every combination is saved)."""

log = logging.getLogger("cival.server.jobs")

Kind = Literal["backtest", "sweep"]
Status = Literal["queued", "running", "finished", "failed", "cancelled"]
ENDED = ("finished", "failed", "cancelled")

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
GridValue = StrictBool | StrictInt | FiniteFloat | Annotated[str, Field(max_length=200)]


class JobRefused(CivalError):
    """A job spec that cannot run; ``field`` names the part of the spec at fault."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field


class JobNotFound(CivalError):
    """No job by that id (this server's jobs, since it started)."""


class JobEnded(CivalError):
    """A job that has ended cannot be cancelled."""


class QueueFull(CivalError):
    """Too many jobs wait already."""


class JobCancelled(Exception):  # noqa: N818 - a signal to stop, not an error to report
    """Raised in the worker to stop a job that was asked to stop."""


# -- specs ---------------------------------------------------------------------------------


class JobSpec(BaseModel):
    """What a backtest and a sweep both take: the strategy, its data, the costs of fills."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    strategy: str = Field(min_length=1, max_length=100)
    """A registered strategy: ``alligator``, ``darvas``, ``elliott`` (and any plug-in)."""
    data: str = Field(min_length=1, max_length=4096)
    """A bars file on the server (CSV or Parquet): a bundled name (``cival:data/BTCUSDT-1h.csv.gz``),
    an absolute path, or a path relative to the folder ``cival serve`` runs in."""
    cash: Decimal | None = None
    """Starting cash, exact, as a string (``"10000"``; default 10,000)."""
    fee_bps: float | None = None
    """Fee per side, basis points (default 10)."""
    slippage_bps: float | None = None
    """Adverse slippage, basis points (default 5)."""
    fraction: float | None = None
    """Share of cash per entry, above 0 and at most 1 (default 1)."""
    stop_loss_pct: float | None = None
    """Stop-loss below the entry price, percent (off by default)."""
    take_profit_pct: float | None = None
    """Take-profit above the entry price, percent (off by default)."""
    drop_bad_rows: bool = False
    """Drop invalid rows of the file instead of refusing it."""
    max_move: float | Literal["off"] | None = None
    """Refuse a bar whose prices move more than N times the previous close (a factor above 1;
    default 10); ``"off"`` turns the check off."""


class BacktestSpec(JobSpec):
    """A backtest to run: ``cival backtest STRATEGY --data FILE [--param ...] [costs] [--engine]``."""

    params: dict[str, Any] = Field(default_factory=dict)
    """The strategy's parameters by name (the others keep their defaults)."""
    engine: Literal["auto", "vectorbt", "reference"] = "auto"
    """``auto`` (the bar-by-bar engine), ``vectorbt`` or ``reference``: all give the same fills."""


class SweepSpec(JobSpec):
    """A sweep to run: ``cival sweep STRATEGY --data FILE --grid ... [--metric] [costs] --local``."""

    grid: dict[str, Annotated[list[GridValue], Field(min_length=1, max_length=MAX_COMBINATIONS)] | Annotated[str, Field(min_length=1, max_length=1000)]] = Field(
        min_length=1, max_length=50,
    )
    """Each swept parameter's values: a list (``[8, 13, 21]``), or text as ``--grid`` takes it
    after ``NAME=``: ``"START:STOP:STEP"`` (stop included) or ``"V1,V2,..."``. At most
    100,000 combinations."""
    metric: str = Field("sharpe", min_length=1, max_length=100)
    """The metric that ranks the combinations (``sharpe``, ``total_return``, ``max_drawdown``...)."""
    chunk_size: int = Field(10, ge=1, le=1000)
    """Combinations per vectorised call; progress moves chunk by chunk."""
    top: int = Field(10, ge=1, le=100)
    """How many of the best combinations the job's result lists (the store keeps them all)."""


# -- answers -------------------------------------------------------------------------------


class Answer(BaseModel):
    """Base of the job answers: each field's docstring is its description in the OpenAPI document."""

    model_config = ConfigDict(use_attribute_docstrings=True)


class Progress(Answer):
    """How far a job has come."""

    done: int
    """Combinations handled (a backtest: 0, then 1 when it has run)."""
    total: int


class BacktestOutcome(Answer):
    """A finished backtest: what ``cival report bt-... --json`` prints, with the saved id."""

    kind: Literal["backtest"]
    saved_id: str
    """The result's id in the store (``bt-...``): ``GET /api/v1/results/{saved_id}``, ``cival report``."""
    created_at: str
    strategy: str
    params: dict[str, Any]
    data: str
    costs: dict[str, Any]
    """The fill model's costs (floats, as the backtester uses them)."""
    metrics: dict[str, Any]
    """``bars, start, end, trades, total_return, cagr, sharpe, ..., final_equity, open_position``;
    a metric that is not defined (no trades) is null."""
    trades: int
    engine: str
    seconds: float


class SweepOutcome(Answer):
    """A finished sweep: its best combinations, with the saved id of all of them."""

    kind: Literal["sweep"]
    saved_id: str
    """The result's id in the store (``sw-...``), which keeps every combination."""
    created_at: str
    strategy: str
    data: str
    grid: dict[str, list[Any]]
    metric: str
    combinations: int
    skipped: int
    """Combinations skipped for breaking a rule across parameters."""
    best: dict[str, Any]
    """The parameters of the best combination by ``metric``."""
    top: list[dict[str, Any]]
    """The best combinations, best first: parameters and metrics (null where undefined)."""
    costs: dict[str, Any]
    backend: str
    seconds: float


class JobView(Answer):
    """A job: what it runs, where it stands, and its result once finished."""

    id: str
    """``job-<hex>``."""
    kind: Kind
    status: Status
    submitted_at: str
    """ISO 8601, UTC."""
    started_at: str | None
    finished_at: str | None
    submitted_by: str
    """Who submitted it (``user@address``)."""
    cancel_requested: bool
    progress: Progress
    error: str | None
    """Why it failed, or was cancelled."""
    spec: dict[str, Any]
    """The spec as submitted (cash as an exact string)."""
    result: Annotated[BacktestOutcome | SweepOutcome, Field(discriminator="kind")] | None
    """Once ``finished``: the saved result."""


# -- jobs ----------------------------------------------------------------------------------


@dataclass
class Job:
    """One job's state (changed under the runner's lock)."""

    id: str
    kind: str
    spec: dict[str, Any]
    by: str
    submitted_at: str
    run: Callable[[Job, JobRunner], dict[str, Any]] = field(repr=False)
    """Runs the job in a worker (given the job and its runner), returns its result."""
    total: int = 1
    done: int = 0
    status: str = "queued"
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "submitted_at": self.submitted_at,
            "started_at": self.started_at, "finished_at": self.finished_at, "submitted_by": self.by,
            "cancel_requested": self.cancel.is_set(), "progress": {"done": self.done, "total": self.total},
            "error": self.error, "spec": self.spec, "result": self.result,
        }


def _now() -> str:
    return iso_utc(datetime.now(UTC))


class JobRunner:
    """The backtest and sweep jobs of one server (see the module docstring): checks specs at
    submission, runs them ``workers`` at a time in worker threads (started with the first
    job), saves their results to the store at ``where``."""

    def __init__(
        self, where: StoreLocation, *, workers: int = 1, queue_limit: int = 100, keep: int = 500,
        now: Callable[[], str] = _now,
    ) -> None:
        self.where = where
        self.workers = workers
        self.queue_limit = queue_limit
        self.keep = keep
        self.now = now
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- submitting ---------------------------------------------------------------------

    def submit_backtest(self, spec: BacktestSpec, by: str) -> dict[str, Any]:
        """Check ``spec`` (JobRefused naming the field) and queue it; the job as it stands."""
        return self._submit("backtest", spec, by, *_prepare_backtest(spec))

    def submit_sweep(self, spec: SweepSpec, by: str) -> dict[str, Any]:
        """Check ``spec`` (JobRefused naming the field) and queue it; the job as it stands."""
        return self._submit("sweep", spec, by, *_prepare_sweep(spec))

    def _submit(
        self, kind: str, spec: BaseModel, by: str, run: Callable[[Job, JobRunner], dict[str, Any]], total: int
    ) -> dict[str, Any]:
        job = Job(
            id="job-" + uuid.uuid4().hex[:16], kind=kind, spec=spec.model_dump(mode="json"), by=by,
            submitted_at=self.now(), run=run, total=total,
        )
        with self._cond:
            if self._closed:
                raise QueueFull("the server is stopping; submit the job again once it is back")
            if len(self._queue) >= self.queue_limit:
                raise QueueFull(f"{len(self._queue)} jobs wait already; try again when some have run (GET /api/v1/jobs)")
            self._jobs[job.id] = job
            self._queue.append(job)
            self._forget_old()
            while len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name=f"cival-jobs-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            self._cond.notify()
            return job.view()

    def _forget_old(self) -> None:
        ended = [j for j in self._jobs.values() if j.status in ENDED]
        for job in ended[: max(0, len(ended) - self.keep)]:
            del self._jobs[job.id]

    # -- looking ------------------------------------------------------------------------

    def job(self, job_id: str) -> dict[str, Any]:
        with self._cond:
            return self._find(job_id).view()

    def jobs(self, kind: str | None = None, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The jobs, newest first (of one kind, or in one status)."""
        with self._cond:
            found = [j.view() for j in reversed(self._jobs.values())
                     if (kind is None or j.kind == kind) and (status is None or j.status == status)]
        return found[:limit]

    def _find(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id!r} on this server (jobs are kept in memory since it started; GET /api/v1/jobs lists them)")
        return job

    # -- cancelling ---------------------------------------------------------------------

    def cancel(self, job_id: str, by: str) -> dict[str, Any]:
        """Cancel a queued job, or ask a running one to stop (see the module docstring)."""
        with self._cond:
            job = self._find(job_id)
            if job.status in ENDED:
                raise JobEnded(f"job {job_id} has already {'been ' if job.status == 'cancelled' else ''}{job.status}; nothing to cancel")
            job.cancel.set()
            if job.status == "queued":
                self._queue.remove(job)
                job.status, job.finished_at, job.error = "cancelled", self.now(), f"cancelled by {by} before it ran"
            return job.view()

    # -- running ------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                job.status, job.started_at = "running", self.now()
            status, result, error = "finished", None, None
            try:
                result = job.run(job, self)
            except JobCancelled:
                status, error = "cancelled", "cancelled while it ran; nothing was saved"
            except CivalError as exc:
                status, error = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - the job fails, the server goes on
                log.error("job %s (%s) failed", job.id, job.kind, exc_info=exc)
                status, error = "failed", f"{type(exc).__name__}: {exc}"
            with self._cond:
                if status == "finished":
                    job.done = job.total
                job.status, job.result, job.error, job.finished_at = status, result, error, self.now()

    def progressed(self, job: Job, done: int, total: int) -> None:
        """Where a running job stands; JobCancelled if it was asked to stop."""
        with self._cond:
            job.done, job.total = done, total
        if job.cancel.is_set():
            raise JobCancelled

    def close(self, wait: float = 60.0) -> None:
        """Cancel the queued jobs, ask the running ones to stop, and wait (at most ``wait``
        seconds) for the worker threads."""
        with self._cond:
            self._closed = True
            while self._queue:
                job = self._queue.popleft()
                job.cancel.set()
                job.status, job.finished_at, job.error = "cancelled", self.now(), "the server stopped before it ran"
            for job in self._jobs.values():
                if job.status == "running":
                    job.cancel.set()
            self._cond.notify_all()
        deadline = time.monotonic() + wait
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


# -- checking specs, and what runs -----------------------------------------------------------


def _strategy(name: str) -> Any:
    from cival.strategies import get_strategy

    try:
        return get_strategy(name)
    except CivalError as exc:
        raise JobRefused("strategy", f"strategy: {exc}") from None


def _data_path(given: str) -> Path:
    """The file ``given`` names, checked to be a bars file the server can read."""
    from cival.config import BUNDLED, bundled_data, resolve_data_path
    from cival.data.bars import CSV_SUFFIXES, PARQUET_SUFFIXES

    shipped = ", ".join(bundled_data()) or "none"
    try:
        path = resolve_data_path(given, None)
    except ValueError as exc:
        raise JobRefused("data", f"data: {exc}") from None
    if not given.startswith(BUNDLED) and not path.is_absolute():
        path = Path.cwd() / path
    suffixes = CSV_SUFFIXES + PARQUET_SUFFIXES
    if not path.name.lower().endswith(suffixes):
        raise JobRefused("data", f"data: {given!r} is not a bars file: give a CSV or Parquet file ({', '.join(suffixes)})")
    try:
        found, folder = path.is_file(), path.is_dir()
    except (OSError, ValueError):  # a name too long, a NUL byte, a lone surrogate...
        found, folder = False, False
    if folder:
        raise JobRefused("data", f"data: {given!r} is a folder on the server; give the path of a bars file in it")
    if not found:
        raise JobRefused(
            "data",
            f"data: no file {given!r} on the server (a relative path is read from {Path.cwd()}, where `cival serve` "
            f"runs); give the path of a bars file the server can read, or a bundled name: {shipped}",
        )
    if not os.access(path, os.R_OK):
        raise JobRefused("data", f"data: {given!r} cannot be read by the server (permissions); make it readable by its user")
    return path


def _max_move(spec: JobSpec) -> float | None:
    from cival.data.bars import DEFAULT_MAX_MOVE

    if spec.max_move == "off":
        return None
    if spec.max_move is None:
        return DEFAULT_MAX_MOVE
    if not 1 < spec.max_move < math.inf:
        raise JobRefused("max_move", f"max_move: give a factor above 1 (e.g. 10) or \"off\", got {spec.max_move!r}")
    return spec.max_move


def _fill_model(spec: JobSpec) -> Any:
    """The fill model of ``spec``'s costs, as ``cival backtest`` makes it from its flags."""
    from cival.core.fmt import plain_number
    from cival.core.money import check_amount
    from cival.execution.fills import FillModel
    from cival.strategies.base import describe_param_errors

    cash = DEFAULT_CASH if spec.cash is None else spec.cash
    if not cash.is_finite() or cash <= 0:
        raise JobRefused("cash", f"cash: must be a number more than 0, as a string (\"10000\"), got {plain_number(cash) if cash.is_finite() else cash}")
    try:
        check_amount(cash, what="cash")
    except CivalError as exc:
        raise JobRefused("cash", str(exc)) from None
    costs = {
        "cash": float(cash),  # the fill model is research code on floats: the exact amount becomes one here
        "fee_bps": DEFAULT_FEE_BPS if spec.fee_bps is None else spec.fee_bps,
        "slippage_bps": DEFAULT_SLIPPAGE_BPS if spec.slippage_bps is None else spec.slippage_bps,
        "fraction": DEFAULT_FRACTION if spec.fraction is None else spec.fraction,
        "stop_loss_pct": spec.stop_loss_pct, "take_profit_pct": spec.take_profit_pct,
    }
    try:
        return FillModel.model_validate(costs)
    except ValidationError as exc:
        where = str(exc.errors()[0]["loc"][0]) if exc.errors()[0]["loc"] else None
        raise JobRefused(where, describe_param_errors(exc, FillModel).replace("parameter ", "", 1)) from None


def _prepare_backtest(spec: BacktestSpec) -> tuple[Callable[[Job, JobRunner], dict[str, Any]], int]:
    from cival.strategies.base import describe_param_errors

    strategy = _strategy(spec.strategy)
    try:
        params = strategy.params_model.model_validate(spec.params)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        where = f"params.{loc[0]}" if loc else "params"
        raise JobRefused(where, f"params: {strategy.name}: {describe_param_errors(exc, strategy.params_model)}") from None
    model = _fill_model(spec)
    max_move = _max_move(spec)
    path = _data_path(spec.data)

    def run(job: Job, runner: JobRunner) -> dict[str, Any]:
        from cival.backtest import backtest
        from cival.runs import save_backtest, saved_result

        started = time.perf_counter()
        result = backtest(strategy, str(path), params, model, engine=spec.engine, drop_bad_rows=spec.drop_bad_rows, max_move=max_move)
        seconds = time.perf_counter() - started
        if job.cancel.is_set():  # the engine could not be stopped; its result is dropped
            raise JobCancelled
        with runner.where.open() as store:
            saved_id = save_backtest(store, result)
            _, record = saved_result(store, saved_id)
        record.pop("id")
        return {**record, "kind": "backtest", "saved_id": saved_id, "engine": result.engine, "seconds": round(seconds, 3)}

    return run, 1


def _grid(strategy: Any, spec: SweepSpec) -> dict[str, list[Any]]:
    """The spec's grid, each parameter's values checked as ``cival sweep`` checks them."""
    from cival.backtest.errors import SweepError
    from cival.backtest.sweep import checked_values, parse_grid

    grid: dict[str, list[Any]] = {}
    for name, given in spec.grid.items():
        where = f"grid.{name}"
        try:
            values = parse_grid([f"{name}={given}"])[name] if isinstance(given, str) else list(given)
        except SweepError as exc:
            text = str(exc).replace("--grid ", "", 1)
            raise JobRefused(where, f"{where}: {text}; write \"START:STOP:STEP\" or \"V1,V2,...\", or give a list") from None
        odd = next((v for v in values if not isinstance(v, bool | int | float | str)), None)
        if odd is not None:  # YAML inside "V1,V2" can make a list or a mapping
            raise JobRefused(where, f"{where}: {odd!r} is not a value; give numbers, text or true/false")
        try:
            grid.update(checked_values(strategy, {name: values}))
        except SweepError as exc:
            raise JobRefused(where, f"{where}: {exc}") from None
    total = math.prod(len(v) for v in grid.values())
    if total > MAX_COMBINATIONS:
        raise JobRefused("grid", f"grid: {total:,} combinations, more than the {MAX_COMBINATIONS:,} a job takes; use fewer values or coarser steps")
    return grid


def _prepare_sweep(spec: SweepSpec) -> tuple[Callable[[Job, JobRunner], dict[str, Any]], int]:
    from cival.backtest.metrics import METRIC_NAMES
    from cival.backtest.sweep import PER_RUN

    strategy = _strategy(spec.strategy)
    grid = _grid(strategy, spec)
    metrics = [m for m in METRIC_NAMES if m not in PER_RUN]
    if spec.metric not in metrics:
        raise JobRefused("metric", f"metric: unknown metric {spec.metric!r}; use one of {', '.join(metrics)}")
    model = _fill_model(spec)
    max_move = _max_move(spec)
    path = _data_path(spec.data)
    total = math.prod(len(v) for v in grid.values())

    def run(job: Job, runner: JobRunner) -> dict[str, Any]:
        from cival.backtest import sweep
        from cival.runs import save_sweep, saved_result

        result = sweep(
            strategy, str(path), grid, model, metric=spec.metric, chunk_size=spec.chunk_size, backend="local",
            drop_bad_rows=spec.drop_bad_rows, max_move=max_move, on_progress=lambda done, of: runner.progressed(job, done, of),
        )
        if job.cancel.is_set():
            raise JobCancelled
        with runner.where.open() as store:
            saved_id = save_sweep(store, result)
            _, record = saved_result(store, saved_id)
        ranked = record.pop("results")
        record.pop("id")
        return {
            **record, "kind": "sweep", "saved_id": saved_id, "skipped": result.skipped, "top": ranked[: spec.top],
            "costs": result.costs, "backend": result.backend, "seconds": round(result.seconds, 3),
        }

    return run, total




# -- routes --------------------------------------------------------------------------------


def job_routes(runner: JobRunner, viewer: Any, operator: Any, api_error: Callable[..., Exception]) -> APIRouter:
    """The job routes over ``runner``: ``viewer`` and ``operator`` are the app's role
    dependencies (each gives ``user@address``), ``api_error(status, code, message, field,
    **extra)`` its error in the API's one shape. Closing the app closes the runner."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await asyncio.to_thread(runner.close)

    router = APIRouter(lifespan=lifespan, tags=["jobs"])

    def answer(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except JobRefused as exc:
            raise api_error(422, "invalid_request", str(exc), exc.field) from None
        except JobNotFound as exc:
            raise api_error(404, "not_found", str(exc)) from None
        except JobEnded as exc:
            raise api_error(409, "conflict", str(exc)) from None
        except QueueFull as exc:
            raise api_error(429, "queue_full", str(exc), retry_after=10) from None

    @router.post(f"{API}/backtests", status_code=202)
    def submit_backtest(body: BacktestSpec, who: str = Depends(operator)) -> JobView:
        """Queue a backtest (as ``cival backtest ... --save``); 202 with the job, checked
        (a bad field: 422 naming it) but not yet run: follow it at ``/jobs/{id}``."""
        return answer(lambda: runner.submit_backtest(body, who))  # type: ignore[no-any-return]

    @router.post(f"{API}/sweeps", status_code=202)
    def submit_sweep(body: SweepSpec, who: str = Depends(operator)) -> JobView:
        """Queue a sweep (as ``cival sweep ... --local --save``); 202 with the job (its
        progress counts the grid's combinations)."""
        return answer(lambda: runner.submit_sweep(body, who))  # type: ignore[no-any-return]

    @router.get(f"{API}/jobs")
    def jobs(
        kind: Kind | None = None, status: Status | None = None,
        limit: int = Query(100, ge=1, le=1000, description="jobs to return (at most 1,000)"),
        who: str = Depends(viewer),
    ) -> list[JobView]:
        """This server's jobs since it started, newest first (``kind``, ``status``: only those)."""
        return runner.jobs(kind, status, limit)  # type: ignore[return-value]

    JobId = PathParam(max_length=100, description="a job's id, job-<hex>")

    @router.get(f"{API}/jobs/{{job_id}}")
    def job(job_id: str = JobId, who: str = Depends(viewer)) -> JobView:
        """A job: its status, progress and, once finished, its result."""
        return answer(lambda: runner.job(job_id))  # type: ignore[no-any-return]

    @router.post(f"{API}/jobs/{{job_id}}/cancel")
    def cancel(job_id: str = JobId, who: str = Depends(operator)) -> JobView:
        """Cancel a queued job; a running one stops when it can (a sweep after its chunk,
        a backtest when its engine call returns: nothing saved). 409 for a job that ended."""
        return answer(lambda: runner.cancel(job_id, who))  # type: ignore[no-any-return]

    @router.get(f"{API}/results/{{result_id}}")
    def saved(
        result_id: str = PathParam(max_length=100, pattern=r"^(bt|sw)(-[0-9A-Za-z-]*)?$",
                                   description="a saved backtest's or sweep's id (bt-..., sw-...), or a unique prefix"),
        who: str = Depends(viewer),
    ) -> dict[str, Any]:
        """A saved backtest or sweep (a job's ``saved_id``, or one kept by ``--save``), as
        ``cival report ID --json`` prints it: a sweep with every combination."""
        from cival.runs import saved_result
        from cival.store.base import StoreError

        try:
            with runner.where.open(read_only=True) as store:
                return saved_result(store, result_id)[1]
        except StoreError as exc:
            raise api_error(404, "not_found", str(exc)) from None

    return router


__all__ = [
    "MAX_COMBINATIONS", "BacktestSpec", "JobEnded", "JobNotFound", "JobRefused", "JobRunner", "JobSpec", "JobView",
    "QueueFull", "SweepSpec", "job_routes",
]
