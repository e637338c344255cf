"""Parameter sweeps: every combination of a grid, in vectorised chunks, locally or on Ray.

A grid maps each parameter to its values. On the command line a parameter is written
``name=start:stop:step`` (stop included when the steps land on it; decimal steps are
exact, so ``0.1:0.5:0.1`` gives 0.1, 0.2, 0.3, 0.4, 0.5) or ``name=v1,v2,...``.
Parameters not in the grid keep their defaults.

Each value is checked against the parameter's bounds before anything runs. Combinations
that break a rule across parameters (Elliott's ``min_retrace <= max_retrace``) are
skipped and counted. Combinations are evaluated ``chunk_size`` at a time: the signals of
each are stacked into one (bars x chunk) array and simulated by one vectorbt call, so
memory is bounded by the chunk, not the grid. Chunks run as Ray tasks (on
``RAY_ADDRESS``/``address``, or a local Ray started for the sweep) or in this process.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, TypeAdapter, ValidationError

from cival.backtest.api import fill_model, resolve_bars
from cival.backtest.errors import SweepError
from cival.backtest.metrics import compute_metrics
from cival.backtest.simulate import simulate_vectorbt_columns
from cival.data.bars import DEFAULT_MAX_MOVE
from cival.execution.fills import FillModel
from cival.rayconnect import RayUnavailable, connect, ray_address
from cival.strategies import Strategy, get_strategy
from cival.strategies.base import bounds_text, ohlc_arrays

LOWER_IS_BETTER = {"max_drawdown", "fees_paid"}
"""Metrics where a smaller value ranks first."""

PER_RUN = ("bars", "start", "end", "open_position")
"""Metrics that are the same for every combination, or not numbers: left out of the table."""


# -- grids -------------------------------------------------------------------------------


def parse_grid(specs: Sequence[str]) -> dict[str, list[Any]]:
    """``["jaw_period=10:20:5", "lips_shift=2,3"]`` -> ``{"jaw_period": [10, 15, 20], ...}``."""
    import yaml

    grid: dict[str, list[Any]] = {}
    for spec in specs:
        name, sep, body = spec.partition("=")
        name = name.strip()
        if not sep or not name or not body.strip():
            raise SweepError(f"--grid {spec!r}: write NAME=START:STOP:STEP or NAME=V1,V2,...")
        if name in grid:
            raise SweepError(f"--grid {spec!r}: {name} is given twice; put all its values in one --grid")
        if ":" in body:
            grid[name] = _range(name, body)
        else:
            values = []
            for raw in body.split(","):
                try:
                    values.append(yaml.safe_load(raw.strip()))
                except yaml.YAMLError:
                    values.append(raw.strip())
            grid[name] = values
    return grid


def _range(name: str, body: str) -> list[Any]:
    parts = body.split(":")
    if len(parts) != 3:
        raise SweepError(f"--grid {name}={body}: a range is START:STOP:STEP, e.g. {name}=10:30:2")
    try:
        start, stop, step = (Decimal(p.strip()) for p in parts)
    except InvalidOperation:
        raise SweepError(f"--grid {name}={body}: START, STOP and STEP must be numbers") from None
    if step <= 0:
        raise SweepError(f"--grid {name}={body}: STEP must be > 0")
    if stop < start:
        raise SweepError(f"--grid {name}={body}: STOP is below START")
    count = int((stop - start) / step) + 1
    if count > 100_000:
        raise SweepError(f"--grid {name}={body}: {count:,} values; use a coarser STEP")
    integral = all(p == p.to_integral_value() for p in (start, step))
    values = [start + i * step for i in range(count)]
    return [int(v) if integral else float(v) for v in values]


def checked_values(strategy: Strategy, grid: Mapping[str, Iterable[Any]]) -> dict[str, list[Any]]:
    """The grid with every value checked against its parameter's bounds (repeats dropped).

    Raises SweepError for an unknown parameter, an empty list or a value out of bounds,
    naming the parameter and its bounds.
    """
    fields = strategy.params_model.model_fields
    checked: dict[str, list[Any]] = {}
    for name, raw in grid.items():
        if name not in fields:
            raise SweepError(f"{strategy.name} has no parameter {name!r}; parameters are: {', '.join(fields)}")
        try:
            vals = list(dict.fromkeys(raw))  # keep order, drop repeats
        except TypeError:
            shown = next((v for v in raw if not isinstance(v, str | int | float | bool | Decimal)), raw)
            raise SweepError(f"grid for {name}: {shown!r} is not a value; give numbers, true/false or text, e.g. {name}=10,20") from None
        if not vals:
            raise SweepError(f"grid for {name} is empty")
        info = fields[name]
        adapter: TypeAdapter[Any] = TypeAdapter(Annotated[info.annotation, *info.metadata])  # type: ignore[name-defined]
        for v in vals:
            try:
                adapter.validate_python(v)
            except ValidationError:
                rule = bounds_text(info) or f"must be a valid {info.annotation}"
                raise SweepError(f"{name}={v!r} is out of bounds: {name} {rule}") from None
        checked[name] = vals
    return checked


class Combinations:
    """Valid parameter sets of a grid, produced lazily (memory does not grow with the grid);
    ``skipped`` counts those that broke a cross-parameter rule so far."""

    def __init__(self, strategy: Strategy, grid: Mapping[str, list[Any]] | Sequence[Mapping[str, Any]]):
        self.strategy = strategy
        self.grid = grid
        self.skipped = 0
        if isinstance(grid, Mapping):
            self.total = math.prod(len(v) for v in grid.values())
        else:
            self.total = len(grid)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        model = self.strategy.params_model
        if isinstance(self.grid, Mapping):
            names = list(self.grid)
            for combo in itertools.product(*self.grid.values()):
                try:
                    yield model.model_validate(dict(zip(names, combo, strict=True))).model_dump()
                except ValidationError:
                    self.skipped += 1
        else:
            for given in self.grid:
                yield self.strategy.parse_params(given).model_dump()

    def chunks(self, size: int) -> Iterator[list[dict[str, Any]]]:
        chunk: list[dict[str, Any]] = []
        for params in self:
            chunk.append(params)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def combinations(strategy: Strategy, grid: Mapping[str, Iterable[Any]]) -> tuple[list[BaseModel], int]:
    """Every valid combination as a parameter model, and how many were skipped (for small
    grids and tests; :func:`sweep` produces them lazily)."""
    combos = Combinations(strategy, checked_values(strategy, grid))
    models = [strategy.params_model.model_validate(p) for p in combos]
    if not models:
        raise SweepError(f"no valid combination in the grid ({combos.skipped} broke a rule across parameters)")
    return models, combos.skipped


# -- evaluation --------------------------------------------------------------------------


def evaluate_chunk(
    bars: pd.DataFrame, strategy_name: str, params: Sequence[Mapping[str, Any]], model: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Signals for each parameter set, one vectorbt call for all, metrics per column."""
    strategy = get_strategy(strategy_name)
    fm = FillModel.model_validate(model)
    n = len(bars)
    ohlc = ohlc_arrays(bars, strategy_name)
    entry_col, exit_col = strategy.columns.index("entry"), strategy.columns.index("exit")
    entries = np.empty((n, len(params)), dtype=bool)
    exits = np.empty((n, len(params)), dtype=bool)
    for j, p in enumerate(params):
        out = strategy.compute(ohlc, p)
        entries[:, j] = out[:, entry_col] != 0.0
        exits[:, j] = out[:, exit_col] != 0.0
    rows = []
    for p, sim in zip(params, simulate_vectorbt_columns(bars, entries, exits, fm), strict=True):
        metrics = compute_metrics(sim, fm.cash)
        rows.append({**p, **{k: v for k, v in metrics.items() if k not in PER_RUN}})
    return rows


@dataclass(frozen=True)
class SweepResult:
    """Every combination's parameters and metrics (``table``), ranked by ``metric``."""

    strategy: str
    params: list[str]
    metric: str
    table: pd.DataFrame
    skipped: int = 0
    seconds: float = 0.0
    backend: str = "local"
    backend_reason: str = ""
    """Why the sweep ran where it did (``backend="auto"`` decides)."""
    bars: int = 0
    source: str | None = None
    costs: dict[str, Any] = field(default_factory=dict)

    def ranked(self) -> pd.DataFrame:
        """The table sorted best first by ``metric`` (undefined values last)."""
        ascending = self.metric in LOWER_IS_BETTER
        return self.table.sort_values(self.metric, ascending=ascending, na_position="last", kind="stable")

    def top(self, n: int = 10) -> pd.DataFrame:
        return self.ranked().head(n).reset_index(drop=True)

    def best(self) -> dict[str, Any]:
        """Parameters of the best combination."""
        row = self.ranked()[self.params].head(1).to_dict("records")[0]  # keeps each column's type
        return {p: _plain(v) for p, v in row.items()}

    def plot(self) -> Any:
        """A heatmap over the first two swept parameters with more than one value, or the
        metric against the only one."""
        varied = [p for p in self.params if self.table[p].nunique() > 1]
        if len(varied) >= 2:
            return self.heatmap(varied[0], varied[1])
        import plotly.graph_objects as go

        x = varied[0] if varied else self.params[0]
        ordered = self.table.sort_values(x)
        fig = go.Figure(go.Scatter(x=ordered[x], y=ordered[self.metric], mode="lines+markers"))
        fig.update_layout(title=f"{self.strategy}: {self.metric} by {x}", xaxis_title=x, yaxis_title=self.metric)
        return fig

    def heatmap(self, x: str, y: str, metric: str | None = None) -> Any:
        """A plotly heatmap of ``metric`` over two swept parameters (the others at their best)."""
        from cival.backtest.report import sweep_heatmap

        return sweep_heatmap(self, x, y, metric)

    def _repr_html_(self) -> str:
        head = f"<b>{self.strategy}: {len(self.table)} combinations by {self.metric}</b>"
        from cival.backtest.metrics import format_table

        return head + format_table(self.top(10)).to_html(index=False)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def auto_backend(address: str | None, count: int, chunk_size: int) -> str:
    """The backend ``backend="auto"`` picks: Ray when a cluster is given (``address``, from
    :func:`cival.rayconnect.ray_address`) or when ``count`` combinations make more than one
    chunk and there is more than one core; otherwise this process (``"local"``)."""
    return backend_choice(address, count, chunk_size)[0]


def backend_choice(address: str | None, count: int, chunk_size: int) -> tuple[str, str]:
    """:func:`auto_backend`'s choice and, in words, why."""
    cores = os.cpu_count() or 1
    if address:
        return "ray", "a Ray cluster was given"
    if count <= chunk_size:
        return "local", (
            f"{count} combinations fit in one chunk of {chunk_size}, one vectorised call in this process: "
            "starting Ray would cost more than it spreads (a smaller --chunk spreads them over Ray)"
        )
    if cores < 2:
        return "local", "this machine has one core: Ray would not run chunks side by side"
    return "ray", f"{count} combinations make {-(-count // chunk_size)} chunks of {chunk_size}, spread over {cores} cores"


def sweep(
    strategy: str | Strategy,
    bars: pd.DataFrame | str | os.PathLike[str],
    grid: Mapping[str, Iterable[Any]] | Sequence[str] | Sequence[Mapping[str, Any]],
    model: FillModel | Mapping[str, Any] | None = None,
    *,
    metric: str = "sharpe",
    chunk_size: int = 10,
    backend: str = "auto",
    address: str | None = None,
    progress: bool = False,
    drop_bad_rows: bool = False,
    max_move: float | None = DEFAULT_MAX_MOVE,
    on_progress: Callable[[int, int], None] | None = None,
    **costs: Any,
) -> SweepResult:
    """Backtest every combination of ``grid`` (see the module docstring).

    ``grid`` is a mapping of parameter -> values, a list of ``NAME=...`` strings, or an
    explicit list of parameter mappings (each one combination).

    ``backend``: ``"ray"``, ``"local"`` or ``"auto"`` (Ray when there is more than one chunk
    and more than one core, or an address). ``address`` (or ``RAY_ADDRESS``) joins an
    existing Ray cluster. Results are the same whichever backend runs.

    ``on_progress(done, total)`` is called in this thread after each chunk: ``done``
    combinations handled so far (evaluated, or skipped for breaking a rule across
    parameters; it reaches ``total`` at the end) of the grid's ``total``. An exception
    it raises stops the sweep there and propagates (a job runner cancels a sweep so).
    """
    strat = strategy if isinstance(strategy, Strategy) else get_strategy(strategy)
    fm = fill_model(model, **costs)
    if isinstance(grid, Mapping):
        combos = Combinations(strat, checked_values(strat, grid))
    elif grid and all(isinstance(g, Mapping) for g in grid):
        combos = Combinations(strat, list(grid))  # type: ignore[arg-type]
    else:
        combos = Combinations(strat, checked_values(strat, parse_grid([str(g) for g in grid])))
    if metric not in _metric_names():
        raise SweepError(f"unknown metric {metric!r}; use one of {', '.join(_metric_names())}")
    if chunk_size < 1:
        raise SweepError("chunk_size must be at least 1")

    bars, source = resolve_bars(bars, drop_bad_rows, max_move)
    bars = bars[["open", "high", "low", "close", "volume"]]

    address = ray_address(address)
    auto = backend == "auto"
    reason = f"asked for (backend={backend!r}{', --local' if backend == 'local' else ''})"
    if auto:
        backend, reason = backend_choice(address, combos.total, chunk_size)
    if backend not in ("ray", "local"):
        raise SweepError(f"unknown backend {backend!r}; use 'ray', 'local' or 'auto'")

    started = time.perf_counter()
    bar = progress_bar(combos.total, progress)
    if on_progress is not None:
        bar = _reporting(bar, combos, on_progress)
    rows: list[dict[str, Any]] | None = None
    if backend == "ray":
        try:
            rows = _run_on_ray(bars, strat.name, combos.chunks(chunk_size), fm.model_dump(), address, bar)
        except RayUnavailable as exc:
            if not auto:
                raise SweepError(f"{exc}; run it in this process instead (--local, backend='local')") from None
            print(f"note: {exc}; running in this process instead", file=sys.stderr)
            backend, reason = "local", f"Ray could not be reached ({exc})"
    if rows is None:
        rows = []
        for chunk in combos.chunks(chunk_size):
            rows += evaluate_chunk(bars, strat.name, chunk, fm.model_dump())
            bar(len(chunk))
    if not rows:
        raise SweepError(f"no valid combination in the grid ({combos.skipped} broke a rule across parameters)")
    bar(0, done=True)
    table = pd.DataFrame(rows)
    return SweepResult(
        strategy=strat.name,
        params=list(strat.params_model.model_fields),
        metric=metric,
        table=table,
        skipped=combos.skipped,
        seconds=time.perf_counter() - started,
        backend=backend,
        backend_reason=reason,
        bars=len(bars),
        source=source,
        costs=fm.model_dump(),
    )


def _metric_names() -> list[str]:
    from cival.backtest.metrics import METRIC_NAMES

    return [m for m in METRIC_NAMES if m not in PER_RUN]


def _run_on_ray(bars, strategy_name, chunks, model, address, bar) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a dependency
        raise RayUnavailable(f"Ray is not installed ({exc})") from None

    session = connect(address, log_to_driver=False)
    try:
        task = ray.remote(evaluate_chunk)
        bars_ref = ray.put(bars)
        # At most four chunks per CPU in flight: chunks are made as they are needed, so memory
        # does not grow with the grid.
        limit = 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
        results: dict[int, list[dict[str, Any]]] = {}
        pending: dict[Any, tuple[int, int]] = {}
        source = enumerate(chunks)
        exhausted = False
        while pending or not exhausted:
            while not exhausted and len(pending) < limit:
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                    break
                i, chunk = nxt
                pending[task.remote(bars_ref, strategy_name, chunk, model)] = (i, len(chunk))
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i, size = pending.pop(ref)
                results[i] = ray.get(ref)
                bar(size)
        return [row for i in sorted(results) for row in results[i]]
    finally:
        session.close()


def _reporting(bar, combos: Combinations, report: Callable[[int, int], None]):  # type: ignore[no-untyped-def]
    """``bar`` that also tells ``report`` how many of the grid's combinations are handled."""
    evaluated = [0]

    def advance(n: int, done: bool = False) -> None:
        bar(n, done=done)
        evaluated[0] += n
        # Combinations are drawn ahead of their evaluation (on Ray, up to four chunks per
        # CPU), so the skipped ones may be counted a little early: never beyond the total.
        report(min(evaluated[0] + combos.skipped, combos.total), combos.total)

    return advance


def progress_bar(total: int, enabled: bool):  # type: ignore[no-untyped-def]
    """A callable advancing a progress bar of ``total`` steps on stderr (a no-op when disabled)."""
    if not enabled:
        return lambda n, done=False: None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with vectorbt
        tqdm = None
    if tqdm is not None:
        bar = tqdm(total=total, unit="combo", file=sys.stderr, dynamic_ncols=True)

        def advance(n: int, done: bool = False) -> None:
            bar.update(n)
            if done:
                bar.close()

        return advance
    count = [0]

    def plain(n: int, done: bool = False) -> None:
        count[0] += n
        print(f"\r{count[0]}/{total} combinations", end="\n" if done else "", file=sys.stderr)

    return plain


__all__ = ["LOWER_IS_BETTER", "SweepResult", "auto_backend", "combinations", "evaluate_chunk", "parse_grid", "sweep"]
