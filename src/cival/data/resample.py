"""Resampling bars to a coarser timeframe, and the timeframe strings (``5m``, ``1h``, ``1d``)."""

from __future__ import annotations

import re

import pandas as pd

from cival.data.bars import COLUMNS, DataError, infer_timeframe, validate_bars

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RULE = re.compile(r"^([1-9][0-9]*)([smhdw])$")
RULE_FORMS = (
    "a whole number > 0 and a unit: s (seconds), m (minutes), h (hours), d (days) or w (weeks), "
    "e.g. 5m, 15m, 1h, 4h, 1d, 1w"
)

WEEK_ORIGIN = pd.Timestamp("1970-01-05", tz="UTC")
"""Weeks start on Monday 00:00 UTC (the epoch itself was a Thursday)."""


def parse_timeframe(rule: str) -> pd.Timedelta:
    """The length of a timeframe string such as ``5m``, ``1h``, ``4h``, ``1d``, ``1w``.

    Lower-case units only (``m`` is minutes; months are not a timeframe). DataError otherwise.
    """
    match = _RULE.match(rule.strip()) if isinstance(rule, str) else None
    if match is None:
        raise DataError(f"bad timeframe {rule!r}: use {RULE_FORMS}")
    count, unit = match.groups()
    return pd.Timedelta(**{_UNITS[unit]: int(count)})


def resample(bars: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Aggregate standard bars into coarser ones: open first, high max, low min, close last, volume sum.

    A bin is ``[edge, edge + rule)``, labelled by its left edge; edges are counted from the
    epoch, so days start at midnight UTC and 4h bins at 00:00, 04:00, ...; weeks start on
    Monday 00:00 UTC. Bins with no bars are left out (gaps stay gaps, nothing is filled).
    The rule must be a whole multiple of the bars' timeframe (see infer_timeframe):
    DataError for a finer or misfitting rule, a bad rule string, or bars that fail
    validate_bars. Returns the standard shape; attrs keep ``source`` and add ``timeframe``.
    """
    step = parse_timeframe(rule)
    source = str(bars.attrs.get("source", "<bars>")) if isinstance(bars, pd.DataFrame) else "<bars>"
    validate_bars(bars, source)
    if len(bars) >= 2:
        timeframe = infer_timeframe(bars.index)
        if step < timeframe:
            raise DataError(
                f"{source}: cannot resample {_show(timeframe)} bars to {rule}: the rule is finer than the bars; "
                f"use {_show(timeframe)} or coarser"
            )
        if step % timeframe != pd.Timedelta(0):
            raise DataError(
                f"{source}: cannot resample {_show(timeframe)} bars to {rule}: {rule} is not a whole number of "
                f"{_show(timeframe)} bars, so bars would straddle bin edges; use a multiple of {_show(timeframe)}"
            )
    origin = WEEK_ORIGIN if rule.strip().endswith("w") else "epoch"
    binned = bars.resample(step, closed="left", label="left", origin=origin)
    out = binned.agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    # Every bar has an open, so a bin without one had no bars: a gap, not a bar.
    out = out.loc[out["open"].notna(), list(COLUMNS)].astype("float64")
    out.index.name = "timestamp"
    out.attrs = {"source": source, "timeframe": rule.strip()}
    return out


def _show(delta: pd.Timedelta) -> str:
    """A Timedelta in the shortest timeframe form that states it exactly (1d, 15m, 90s)."""
    exact = delta / pd.Timedelta(seconds=1)
    if exact <= 0 or exact != int(exact):
        return str(delta)
    seconds = int(exact)
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(delta)


__all__ = ["parse_timeframe", "resample"]
