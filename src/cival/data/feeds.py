"""Market feeds: where a paper-trading cluster's bars come from.

A feed yields *batches* of :class:`~cival.core.bar.Bar` in time order. Replaying a file at
``speed="max"`` sends large batches, so actors pay their per-call overhead once per
batch rather than once per bar; at a finite speed each bar is sent when its time comes
(``speed`` times faster than the bars' own clock). A live exchange adapter implements
the same ``batches()``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from cival.core.bar import Bar
from cival.data.bars import DataError, validate_bars

Speed = float | str


def bars_from_frame(frame: pd.DataFrame) -> list[Bar]:
    """The bars of a standard frame (see :func:`cival.data.load_bars`), in order."""
    return [
        Bar(ts.to_pydatetime(), o, h, l, c, v)
        for ts, o, h, l, c, v in zip(
            frame.index, frame["open"], frame["high"], frame["low"], frame["close"], frame["volume"], strict=True
        )
    ]


MIN_SPEED = 0.001
"""Slowest pace accepted (a thousandth of real time): slower, the wait for one bar could
exceed what the system clock can count."""


def parse_speed(speed: Speed) -> float | None:
    """``"max"`` -> None (as fast as possible); a finite number N >= MIN_SPEED -> N x real time."""
    if isinstance(speed, str):
        if speed.strip().lower() == "max":
            return None
        try:
            speed = float(speed)
        except ValueError:
            raise DataError(f"speed {speed!r}: use 'max' or a positive number (times real time)") from None
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not speed > 0:
        raise DataError(f"speed {speed!r}: use 'max' or a positive number (times real time)")
    if not MIN_SPEED <= speed < math.inf:
        raise DataError(f"speed {speed!r}: use 'max' or a positive number (times real time), finite and at least {MIN_SPEED}")
    return float(speed)


@dataclass
class ReplayFeed:
    """Replays a bars frame: in batches of ``batch_size`` at ``speed="max"``, else bar by
    bar at ``speed`` times the bars' own pace. ``clock``/``sleep`` are injectable for tests."""

    bars: pd.DataFrame
    speed: Speed = "max"
    batch_size: int = 1000
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        validate_bars(self.bars, self.bars.attrs.get("source") or "<bars>")
        self._speed = parse_speed(self.speed)
        if self.batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {self.batch_size}")

    def __len__(self) -> int:
        return len(self.bars)

    def batches(self) -> Iterator[list[Bar]]:
        bars = bars_from_frame(self.bars)
        if self._speed is None:
            return _deliver(bars, None, self.batch_size, self.clock, self.sleep)
        first = bars[0].timestamp if bars else None
        offsets = [(bar.timestamp - first).total_seconds() / self._speed for bar in bars]
        return _deliver(bars, offsets, self.batch_size, self.clock, self.sleep)


@dataclass
class SyntheticFeed:
    """Live-like seeded synthetic bars (see :func:`cival.data.synthetic_bars`), one every
    ``interval`` seconds of wall time (0: as fast as possible, in batches)."""

    n: int = 100_000
    seed: int = 7
    timeframe: str = "1h"
    interval: float = 1.0
    batch_size: int = 1000
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise DataError(f"n must be at least 1, got {self.n}")
        if self.interval < 0:
            raise DataError(f"interval must be >= 0 seconds, got {self.interval}")

    def frame(self) -> pd.DataFrame:
        from cival.data.synthetic import synthetic_bars

        return synthetic_bars(self.n, seed=self.seed, timeframe=self.timeframe)

    def batches(self) -> Iterator[list[Bar]]:
        bars = bars_from_frame(self.frame())
        offsets = None if self.interval == 0 else [i * self.interval for i in range(len(bars))]
        return _deliver(bars, offsets, self.batch_size, self.clock, self.sleep)


def _deliver(
    bars: list[Bar],
    offsets: list[float] | None,
    batch_size: int,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Iterator[list[Bar]]:
    """Batches of ``batch_size`` at once (``offsets`` None), or each bar alone once
    ``offsets[i]`` seconds have passed since the first was sent (no wait when behind)."""
    if offsets is None:
        for i in range(0, len(bars), batch_size):
            yield bars[i : i + batch_size]
        return
    start = clock()
    for bar, offset in zip(bars, offsets, strict=True):
        wait = start + offset - clock()
        if wait > 0:
            sleep(wait)
        yield [bar]


__all__ = ["ReplayFeed", "SyntheticFeed", "bars_from_frame", "parse_speed"]
