"""Seeded synthetic bars: geometric Brownian motion whose drift switches between regimes.

Three regimes (RANGE, UP, DOWN) follow a Markov chain: each bar switches with probability
SWITCH_PROBABILITY (regimes last 500 bars on average) to one of the other two, chosen at
random. In UP and DOWN the log-return has a drift of +/- TREND_DRIFT per-bar standard
deviations; in RANGE it has none and is negatively autocorrelated (an MA(1) with
RANGE_REVERSION), so the price wanders around a level instead of away from it.

The regime of each bar comes from :func:`synthetic_regimes` with the same ``n`` and
``seed``, not from ``attrs``: pandas deep-copies ``attrs`` on every operation and cannot
compare frames whose ``attrs`` hold arrays.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cival.data.bars import COLUMNS, TIME_UNIT, DataError
from cival.data.resample import parse_timeframe

RANGE, UP, DOWN = 0, 1, 2
REGIME_NAMES = ("range", "up", "down")
SWITCH_PROBABILITY = 0.002
ANNUAL_VOLATILITY = 0.6
"""Of the log price, over a 365-day year (markets that never close): sets the per-bar sigma."""
TREND_DRIFT = 0.05
"""Per-bar drift of a trend, in per-bar standard deviations."""
RANGE_REVERSION = 0.9
"""MA(1) coefficient of RANGE returns: 0 is a plain random walk, 1 pins the price to a level."""
WICK = 0.5
"""Mean wick length beyond the body, in per-bar standard deviations."""
BASE_VOLUME = 1000.0
MAX_SYNTHETIC_BARS = 10_000_000
"""Most bars one call makes: about 400 MB of columns, held again by every consumer."""


def synthetic_regimes(n: int, *, seed: int = 7) -> np.ndarray:
    """The regime (RANGE=0, UP=1, DOWN=2) of each of the n bars synthetic_bars(n, seed=seed) makes."""
    _check_count(n, seed)
    return _regimes(np.random.default_rng(seed), n)


def synthetic_bars(
    n: int,
    *,
    seed: int = 7,
    timeframe: str = "1h",
    start_price: float = 100.0,
    start: str | pd.Timestamp = "2024-01-01T00:00:00Z",
) -> pd.DataFrame:
    """n seeded bars in the standard shape (see cival.data.bars), every one passing validate_bars.

    The first bar opens at ``start`` (a naive time is UTC) and ``start_price``; each bar opens
    at the previous close. Same arguments, bitwise-identical frame. The regimes are
    ``synthetic_regimes(n, seed=seed)``. DataError for n < 1, a negative seed, a price that
    is not a positive number, a bad timeframe or start.
    """
    _check_count(n, seed)
    if isinstance(start_price, bool) or not isinstance(start_price, (int, float)) or not 0 < start_price < math.inf:
        raise DataError(f"start_price must be a positive number, not {start_price!r}")
    step = parse_timeframe(timeframe)
    first = _start(start)

    rng = np.random.default_rng(seed)
    regime = _regimes(rng, n)  # drawn first, so that synthetic_regimes reproduces it
    shocks = rng.standard_normal(n)
    wicks = rng.exponential(size=(2, n))
    volume_noise = rng.standard_normal(n)

    sigma = ANNUAL_VOLATILITY * math.sqrt(step / pd.Timedelta(days=365))
    trend = np.where(regime == UP, TREND_DRIFT, np.where(regime == DOWN, -TREND_DRIFT, 0.0))
    # GBM: drift minus sigma^2/2 in log terms, so the trend sets the price's expected growth.
    trending = sigma * (trend + shocks) - 0.5 * sigma * sigma * (regime != RANGE)
    previous = np.concatenate(([0.0], shocks[:-1]))
    ranging = sigma * (shocks - RANGE_REVERSION * previous) / math.sqrt(1 + RANGE_REVERSION**2)
    log_return = np.where(regime == RANGE, ranging, trending)

    close = start_price * np.exp(np.cumsum(log_return))
    open_ = np.concatenate(([float(start_price)], close[:-1]))
    # Multiplying by exp(x >= 0) can only round up, so high >= max(open, close) holds exactly.
    high = np.maximum(open_, close) * np.exp(WICK * sigma * wicks[0])
    low = np.minimum(open_, close) * np.exp(-WICK * sigma * wicks[1])
    volume = BASE_VOLUME * np.exp(0.4 * volume_noise) * (1.0 + np.abs(log_return) / sigma)

    stamps = first + np.arange(n, dtype=np.int64) * (step // pd.Timedelta(1, unit=TIME_UNIT))
    index = pd.DatetimeIndex(stamps.view(f"datetime64[{TIME_UNIT}]"), name="timestamp").tz_localize("UTC")
    bars = pd.DataFrame(dict(zip(COLUMNS, (open_, high, low, close, volume), strict=True)), index=index)
    source = f"synthetic(seed={seed}, timeframe={timeframe})"
    bars.attrs = {"source": source, "dropped_rows": 0, "dropped": {}, "snapped": 0}
    return bars


def _regimes(rng: np.random.Generator, n: int) -> np.ndarray:
    switch = rng.random(n) < SWITCH_PROBABILITY
    hop = rng.integers(1, 3, size=n)  # +1 or +2 (mod 3): one of the other two regimes
    initial = int(rng.integers(0, 3))
    switch[0] = False
    return ((initial + np.cumsum(np.where(switch, hop, 0))) % 3).astype(np.int8)


def _check_count(n: int, seed: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"the number of synthetic bars must be a whole number >= 1, not {n!r}")
    if n > MAX_SYNTHETIC_BARS:
        raise DataError(f"{n:,} synthetic bars is more than {MAX_SYNTHETIC_BARS:,}; every bar is held in memory: use fewer")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"the seed must be a whole number >= 0, not {seed!r}")


def _start(start: str | pd.Timestamp) -> int:
    """The start as an integer count of TIME_UNIT since the epoch (UTC)."""
    try:
        stamp = pd.Timestamp(start)
    except (TypeError, ValueError):
        stamp = pd.NaT
    if stamp is pd.NaT:
        raise DataError(f"bad start {start!r}: use an ISO 8601 time such as 2024-01-01T00:00:00Z")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return (stamp - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(1, unit=TIME_UNIT)


__all__ = ["DOWN", "MAX_SYNTHETIC_BARS", "RANGE", "REGIME_NAMES", "UP", "synthetic_bars", "synthetic_regimes"]
