"""What a strategy is, and the two ways to run one.

A strategy's rule lives in exactly one place: a numba *step kernel* that takes the
strategy's state and one bar, updates the state and writes that bar's output row:

    step(state: float64[:], buf: float64[:, :], o, h, l, c, p: float64[:], out: float64[:])

``state`` holds scalars, ``buf`` ring buffers (bounded windows of past values), ``p``
the numeric parameters and ``out`` the row (booleans as 0.0/1.0). Both forms call it:

* :meth:`Strategy.signals` (vectorised): a compiled loop runs the kernel over every bar;
* :meth:`Strategy.live` (incremental): a :class:`LiveSignals` keeps the state between
  bars and runs the same kernel on each new bar.

Each strategy module writes its own five-line ``run`` loop around its ``step`` rather than
sharing a generic one: numba caches a compiled function on disk only when it is a plain
module-level function, and a generic loop taking the step as an argument (or built in a
closure) would be compiled again in every process.

So the live row for a bar is the vectorised row for that bar, computed by the same
floating-point operations in the same order. Both are causal: the row for bar t is
written when bar t is seen, from bars <= t only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ValidationError

from cival.core.codec import StateError, StateModel, built
from cival.core.errors import CivalError

OHLC = ("open", "high", "low", "close")


class StrategyError(CivalError):
    """Unknown strategy, bad parameters or unusable bars."""


@dataclass(frozen=True)
class Strategy:
    """A registered strategy: its parameters, output columns and compiled kernels."""

    name: str
    family: str
    """The farm type it belongs to: trend_following, breakout or price_action."""
    params_model: type[BaseModel]
    columns: tuple[str, ...]
    """Output columns in kernel order; ``entry`` and ``exit`` are among them."""
    bool_columns: tuple[str, ...]
    make_state: Callable[[Any], tuple[np.ndarray, np.ndarray, np.ndarray]]
    """params -> (state, buf, p): fresh state, ring buffers and the packed parameters."""
    run: Callable[..., np.ndarray]
    """Compiled loop: run(o, h, l, c, state, buf, p, ncols) -> float64[n, ncols]."""
    step: Callable[..., None]
    """The compiled step kernel (see module docstring)."""
    description: str = ""

    def parse_params(self, params: BaseModel | Mapping[str, Any] | None = None) -> BaseModel:
        """Validate parameters (a model, a mapping or None for the defaults)."""
        if isinstance(params, self.params_model):
            return params
        if isinstance(params, BaseModel):
            params = params.model_dump()
        try:
            return self.params_model.model_validate(dict(params or {}))
        except ValidationError as exc:
            raise StrategyError(f"{self.name}: {describe_param_errors(exc, self.params_model)}") from None

    def signals(self, bars: pd.DataFrame, params: BaseModel | Mapping[str, Any] | None = None) -> pd.DataFrame:
        """Vectorised signals: a frame indexed like ``bars`` with :attr:`columns`.

        ``bars`` needs float ``open, high, low, close`` columns. ``entry``/``exit`` are
        booleans; indicator columns are floats, NaN while not yet defined. Causal.
        """
        out = self.compute(ohlc_arrays(bars, self.name), params)
        frame = pd.DataFrame(out, index=bars.index, columns=list(self.columns))
        for column in self.bool_columns:
            frame[column] = frame[column].to_numpy() != 0.0
        return frame

    def compute(
        self, ohlc: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], params: BaseModel | Mapping[str, Any] | None = None
    ) -> np.ndarray:
        """The kernel's raw output, float64[bars, columns] (booleans as 0/1), for callers that
        want arrays rather than a frame (sweeps). ``ohlc`` are contiguous float64 arrays."""
        state, buf, p = self.make_state(self.parse_params(params))
        return self.run(*ohlc, state, buf, p, len(self.columns))

    def live(self, params: BaseModel | Mapping[str, Any] | None = None) -> LiveSignals:
        """Incremental signals, one bar at a time (identical rows to :meth:`signals`)."""
        return LiveSignals(self, self.parse_params(params))


class SignalsState(StateModel):
    """A :class:`LiveSignals`' kernel state: its scalars, its ring buffers (rows of
    ``buf_shape``), the bars seen and the last bar's time (ns since the epoch, UTC)."""

    state: list[float]
    buf: list[list[float]]
    buf_shape: list[int]
    bars_seen: int
    last_ns: int | None


class LiveSignals:
    """Feeds bars one at a time through a strategy's step kernel, keeping its state."""

    def __init__(self, strategy: Strategy, params: BaseModel) -> None:
        self.strategy = strategy
        self.params = params
        self._state, self._buf, self._p = strategy.make_state(params)
        self._out = np.empty(len(strategy.columns))
        self.bars_seen = 0
        self.last_timestamp: pd.Timestamp | None = None

    def state(self) -> SignalsState:
        """The kernel's state (floats exact, NaN included), for a journal. Written out by
        hand rather than by :func:`~cival.core.codec.capture`: the kernel's arrays are
        not JSON values."""
        values = {
            "state": self._state.tolist(),
            "buf": self._buf.tolist(),
            "buf_shape": list(self._buf.shape),
            "bars_seen": self.bars_seen,
            "last_ns": None if self.last_timestamp is None else int(self.last_timestamp.value),
        }
        return built(SignalsState, values)

    def restore(self, state: SignalsState) -> None:
        """Take up a :meth:`state` again (same strategy and parameters)."""
        shapes = ((len(state.state),), tuple(state.buf_shape)), (self._state.shape, self._buf.shape)
        if shapes[0] != shapes[1]:
            raise StateError(
                f"{self.strategy.name}: the stored kernel state has the shapes {shapes[0]}, these parameters "
                f"give {shapes[1]}; it is the state of other parameters"
            )
        try:
            buf = np.array(state.buf, dtype=np.float64).reshape(state.buf_shape)
        except ValueError:
            raise StateError(f"{self.strategy.name}: the stored ring buffers do not have the shape {shapes[0][1]}") from None
        self._state = np.array(state.state, dtype=np.float64)
        self._buf = buf
        self.bars_seen = state.bars_seen
        last = state.last_ns
        self.last_timestamp = None if last is None else pd.Timestamp(last, tz="UTC")

    def update(
        self, open: float, high: float, low: float, close: float, timestamp: pd.Timestamp | None = None
    ) -> dict[str, float | bool]:
        """Process the next bar and return its row.

        Bars must arrive in time order: with ``timestamp`` given, a bar not later than the
        previous one is refused (StrategyError) and the state is left as it was. Missing
        prices are refused the same way.
        """
        prices = (float(open), float(high), float(low), float(close))
        if any(p != p for p in prices):  # NaN
            raise StrategyError(f"{self.strategy.name}: bar {self.bars_seen + 1} has a missing price {prices}")
        if timestamp is not None:
            timestamp = pd.Timestamp(timestamp)
            if self.last_timestamp is not None and timestamp <= self.last_timestamp:
                raise StrategyError(
                    f"{self.strategy.name}: bar at {timestamp} does not follow the previous bar at "
                    f"{self.last_timestamp}; feed bars once each, in time order"
                )
            self.last_timestamp = timestamp
        self.strategy.step(
            self._state, self._buf, *prices, self._p, self._out
        )
        self.bars_seen += 1
        bools = self.strategy.bool_columns
        return {
            name: (bool(value != 0.0) if name in bools else float(value))
            for name, value in zip(self.strategy.columns, self._out, strict=True)
        }

    def update_many(
        self, o: np.ndarray, h: np.ndarray, l: np.ndarray, c: np.ndarray, ts: np.ndarray | None = None
    ) -> np.ndarray:
        """Process consecutive bars in one compiled call; returns the raw rows (bars x
        columns, booleans as 0/1), exactly the rows :meth:`update` would give one by one.

        ``ts`` (nanoseconds since the epoch, UTC), when given, must rise strictly and follow
        the last bar seen; bars out of order or with a missing price are refused before any
        is processed, and the state is left as it was.
        """
        o, h, l, c = (np.ascontiguousarray(a, dtype=np.float64) for a in (o, h, l, c))
        n = o.shape[0]
        if not (h.shape[0] == l.shape[0] == c.shape[0] == n):
            raise StrategyError(f"{self.strategy.name}: open, high, low and close must have the same length")
        bad = np.isnan(o) | np.isnan(h) | np.isnan(l) | np.isnan(c)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise StrategyError(f"{self.strategy.name}: bar {self.bars_seen + i + 1} has a missing price")
        if ts is not None and n:
            ts = np.asarray(ts, dtype=np.int64)
            last = None if self.last_timestamp is None else self.last_timestamp.value
            steps = np.diff(ts) if last is None else np.diff(np.concatenate(([last], ts)))
            if (steps <= 0).any():
                i = int(np.flatnonzero(steps <= 0)[0]) + (0 if last is not None else 1)
                raise StrategyError(
                    f"{self.strategy.name}: bar at {pd.Timestamp(int(ts[i]), tz='UTC')} does not follow the previous "
                    "bar; feed bars once each, in time order"
                )
            self.last_timestamp = pd.Timestamp(int(ts[-1]), tz="UTC")
        out = self.strategy.run(o, h, l, c, self._state, self._buf, self._p, len(self.strategy.columns))
        self.bars_seen += n
        return out

    def update_bar(self, bar: Mapping[str, float] | pd.Series, timestamp: pd.Timestamp | None = None) -> dict[str, float | bool]:
        """:meth:`update` from a mapping or a row of a bars frame (its name is the timestamp)."""
        if timestamp is None and isinstance(bar, pd.Series) and isinstance(bar.name, pd.Timestamp):
            timestamp = bar.name
        return self.update(bar["open"], bar["high"], bar["low"], bar["close"], timestamp)


def ohlc_arrays(bars: pd.DataFrame, name: str = "bars") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous float64 open, high, low, close arrays of a bars frame (StrategyError if unusable)."""
    missing = [c for c in OHLC if c not in bars.columns]
    if missing:
        raise StrategyError(f"{name}: bars lack the column(s) {', '.join(missing)}; load them with cival.data.load_bars")
    o, h, l, c = (np.ascontiguousarray(bars[col].to_numpy(dtype=np.float64)) for col in OHLC)
    arrays = (o, h, l, c)
    for column, values in zip(OHLC, arrays, strict=True):
        if np.isnan(values).any():
            row = int(np.flatnonzero(np.isnan(values))[0])
            raise StrategyError(f"{name}: column {column} has a missing value at row {row + 1}; validate the bars first")
    return arrays


def describe_param_errors(exc: ValidationError, model: type[BaseModel]) -> str:
    """One line per bad parameter, naming it, what is wrong and its bounds."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "parameters"
        info = model.model_fields.get(str(err["loc"][0])) if err["loc"] else None
        bounds = f"; {bounds_text(info)}" if info is not None and bounds_text(info) else ""
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(model.model_fields)
            lines.append(f"unknown parameter {field!r}; parameters are: {allowed}")
        else:
            message = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"parameter {field}: {message[:1].lower() + message[1:]} (got {err.get('input')!r}){bounds}")
    return "; ".join(lines)


def bounds_text(info: Any) -> str:
    """``"must be > 0 and < 100"`` from a pydantic field's constraints ('' when it has none)."""
    parts = []
    for meta in info.metadata:
        for attr, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
    return f"must be {' and '.join(parts)}" if parts else ""


__all__ = ["OHLC", "LiveSignals", "SignalsState", "Strategy", "StrategyError", "bounds_text", "describe_param_errors", "ohlc_arrays"]
