"""Loading and validating OHLCV bars: one standard frame shape, every row checked.

The standard shape, produced by :func:`load_bars` and expected everywhere else:

* a ``DatetimeIndex`` named ``timestamp``, tz UTC, unit microseconds (``datetime64[us, UTC]``,
  the pandas 3 default), strictly increasing; a bar is labelled by its open time;
* float64 columns exactly ``open, high, low, close, volume`` in that order.

Row numbers in messages: "row N" is the N-th line after the header, so in a CSV file it is
always on "line N+1" (the header is line 1). Blank lines are skipped but still counted, so
the line number is the one an editor shows. In a Parquet file or an in-memory frame,
"row N" is the N-th row (1-based) and there is no line number.

Prices must be below the books' capacity (:data:`cival.core.money.CAPACITY`), and a row
whose prices move more than ``max_move`` times up or down from the close of the last good
row before it is implausible (a 1e308 spike, a price in the wrong unit): see
:data:`DEFAULT_MAX_MOVE`.
"""

from __future__ import annotations

import csv
import gzip
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cival.core.errors import CivalError
from cival.core.fmt import iso_utc
from cival.core.money import CAPACITY

COLUMNS = ("open", "high", "low", "close", "volume")
PRICES = COLUMNS[:4]
TIME_UNIT = "us"
"""Unit of the standard index (pandas 3's default, so frames built with pandas compare equal)."""

TIMESTAMP_NAMES = ("timestamp", "date", "datetime", "time")
"""Timestamp column names, in order of preference (any capitalisation)."""

EPOCH_MS_ABOVE = 1e11
"""Epoch numbers whose median magnitude exceeds this are milliseconds, not seconds.

1e11 seconds is the year 5138 and 1e11 milliseconds is March 1973, so no real bar is
ambiguous. Likewise above 1e14 they are microseconds and above 1e17 nanoseconds.
"""

FLOAT_NOISE = 1e-12
"""Relative distance by which a file's high may fall below max(open, close) (or its low rise
above min(open, close)) and still count as float noise, not a defect. Adjusted prices carry
such noise (pandasta_SPY_adjusted.csv misses by about 1e-16); a real tick is 1e-8 or more.
load_bars sets such a high or low to the open/close it missed, so every bar it returns is
exactly consistent; validate_bars allows no tolerance.
"""

DEFAULT_MAX_MOVE = 10.0
"""The largest bar-to-bar move a file's prices may make by default: a row whose open, high,
low or close is more than 10 times, or less than a tenth of, the close of the last good row
before it is refused (or, with drop_bad_rows, dropped). Real bars stay far inside it (the
largest move in the shared test data is about 1.6x, a daily NVDA bar in 2000); an
unadjusted split beyond 10:1 would trip it: raise the limit or turn it off (None)."""

PRICE_LIMIT = float(CAPACITY)
"""Prices at or beyond this (the books' capacity, 10**15) are refused: no amount of them could be booked."""

CSV_SUFFIXES = (".csv", ".txt", ".csv.gz", ".txt.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")

FIX_FILE = "Fix the file, or pass --drop-bad-rows (drop_bad_rows=True) to drop these rows."
FIX_FRAME = "Fix the bars before using them (load_bars(..., drop_bad_rows=True) drops bad rows when loading a file)."
FIX_MOVE = (
    "If such moves are real (an unadjusted split), raise the limit: --max-move N (data: {max_move: N} in a "
    "config, max_move=N in load_bars), or turn the check off with --max-move off (max_move: null, max_move=None)."
)


class DataError(CivalError):
    """A bad data file or bad data arguments; the message names the file and what to do."""


# -- the checks ----------------------------------------------------------------------------


@dataclass
class _Rows:
    """Parsed rows before validation: timestamps (int64 us, NaT as INT64_MIN) and float prices."""

    stamps: np.ndarray
    values: dict[str, np.ndarray]
    missing: dict[str, np.ndarray]
    non_numeric: dict[str, np.ndarray]
    stamp_missing: np.ndarray
    stamp_unparseable: np.ndarray
    raw_stamps: np.ndarray | None = None


@dataclass
class _Defect:
    label: str
    mask: np.ndarray
    detail: str = ""
    """Said of the first bad row only (its raw value, the row it repeats)."""


_NAT = np.iinfo(np.int64).min


def _defects(
    rows: _Rows, row_numbers: np.ndarray, raw_text: dict[str, np.ndarray], max_move: float | None = None
) -> list[_Defect]:
    """Every defect kind present, with the rows that have it (vectorised; details for first rows only).
    ``max_move``: the plausibility limit (None: no such check)."""
    v = rows.values

    def raw_value(col: str, mask: np.ndarray) -> str:
        return f" {_short(raw_text[col][np.argmax(mask)])}" if mask.any() else ""

    found = [
        _Defect("missing timestamp", rows.stamp_missing),
        _Defect("unparseable timestamp", rows.stamp_unparseable),
    ]
    for col in PRICES:
        found.append(_Defect(f"missing price ({col})", rows.missing[col]))
        bad = rows.non_numeric[col]
        found.append(_Defect(f"non-numeric price ({col})", bad, raw_value(col, bad)))
    with np.errstate(invalid="ignore"):
        for col in PRICES:
            found.append(_Defect(f"price <= 0 ({col})", v[col] <= 0))
        for col in PRICES:
            beyond = np.isfinite(v[col]) & (v[col] >= PRICE_LIMIT)  # infinities are non-numeric already
            found.append(_Defect(f"price at or beyond the books' capacity of 1e15 ({col})", beyond, raw_value(col, beyond)))
        # A high below the low always lands in one of these two, so it needs no kind of its own.
        found.append(_Defect("high below max(open, close)", v["high"] < np.maximum(v["open"], v["close"])))
        found.append(_Defect("low above min(open, close)", v["low"] > np.minimum(v["open"], v["close"])))
        found.append(_Defect("missing volume", rows.missing["volume"]))
        bad = rows.non_numeric["volume"]
        found.append(_Defect("non-numeric volume", bad, raw_value("volume", bad)))
        found.append(_Defect("negative volume", v["volume"] < 0))

    # Order is judged only among rows with no other defect, so that dropping the reported
    # rows leaves exactly a strictly increasing series: a row is kept when it is later than
    # every row kept before it (of equal timestamps the first is kept).
    sound = ~np.logical_or.reduce([d.mask for d in found])
    stamps = np.where(sound, rows.stamps, _NAT)
    previous = np.concatenate(([_NAT], np.maximum.accumulate(stamps)[:-1]))
    late = sound & (stamps <= previous)
    repeated = np.zeros_like(late)
    repeated[sound] = pd.Series(stamps[sound]).duplicated().to_numpy()
    duplicate = late & repeated
    earlier = late & ~duplicate

    detail = ""
    if duplicate.any():
        i = int(np.argmax(duplicate))
        detail = f" (same as row {row_numbers[np.argmax(sound & (stamps == stamps[i]))]})"
    found.append(_Defect("duplicate timestamp", duplicate, detail))
    detail = ""
    if earlier.any():
        i = int(np.argmax(earlier))
        detail = f" (row {row_numbers[np.argmax(stamps[:i])]} is later)"
    found.append(_Defect("timestamp earlier than a previous row", earlier, detail))
    if max_move is not None:
        found.append(_implausible(v, sound & ~late, row_numbers, max_move))
    return [d for d in found if d.mask.any()]


def _implausible(values: dict[str, np.ndarray], sound: np.ndarray, row_numbers: np.ndarray, max_move: float) -> _Defect:
    """Sound rows whose prices move beyond ``max_move`` times the close of the last good row
    before them, up or down. A flagged row is not good: the row after a spike is judged
    against the close before the spike. The first sound row is the reference for the next
    one and is never flagged itself (if it is the bad one, the message names the row after
    it and the close it was judged against)."""
    label = f"price moved beyond {max_move:g}x the previous close"
    where = np.flatnonzero(sound)
    mask = np.zeros(len(sound), dtype=bool)
    if len(where) < 2:
        return _Defect(label, mask)
    # Sound rows have low <= open, close <= high, so high and low are the row's extremes.
    high, low, close = (values[c][where] for c in ("high", "low", "close"))
    jumps = (high[1:] > close[:-1] * max_move) | (low[1:] < close[:-1] / max_move)
    if not jumps.any():
        return _Defect(label, mask)
    # Judged in order from the first jump on: what counts as the previous close depends on
    # which rows before were good.
    start = int(np.argmax(jumps)) + 1
    reference = float(close[start - 1])
    reference_row = start - 1
    bad = np.zeros(len(where), dtype=bool)
    detail = ""
    for k in range(start, len(where)):
        h, lo = float(high[k]), float(low[k])
        if h > reference * max_move or lo < reference / max_move:
            bad[k] = True
            if not detail:
                col, price = ("high", h) if h > reference * max_move else ("low", lo)
                detail = f" ({col} {price:.10g} after a close of {reference:.10g} at row {row_numbers[where[reference_row]]})"
        else:
            reference, reference_row = float(close[k]), k
    mask[where[bad]] = True
    return _Defect(label, mask, detail)


def _short(value: object) -> str:
    text = repr(str(value))
    return text if len(text) <= 40 else text[:36] + "...'"


def _format_stamp(stamp: int) -> str:
    return iso_utc(pd.Timestamp(stamp, unit=TIME_UNIT, tz="UTC"))


def _describe(source: str, found: list[_Defect], rows: _Rows, row_numbers: np.ndarray, lines: bool, advice: str) -> str:
    """The error message: one line per defect kind, at its first row, in file order."""

    def where(i: int) -> str:
        number = int(row_numbers[i])
        place = f"row {number} (line {number + 1}, " if lines else f"row {number} ("
        if rows.stamp_missing[i]:
            return place + "no timestamp)"
        if rows.stamp_unparseable[i]:
            return place + f"{_short(rows.raw_stamps[i])})"
        return place + f"{_format_stamp(int(rows.stamps[i]))})"

    entries = []
    for defect in found:
        first = int(np.argmax(defect.mask))
        count = int(defect.mask.sum())
        plural = "s" if count != 1 else ""
        entries.append((first, f"  {where(first)}: {defect.label}{defect.detail} - {count} row{plural}"))
    entries.sort(key=lambda e: e[0])  # stable: kinds on the same row keep their check order
    kinds = len(entries)
    head = f"{source}: {kinds} kind{'s' if kinds != 1 else ''} of bad rows:"
    moved = any(d.label.startswith("price moved beyond") for d in found)
    return "\n".join([head, *(text for _, text in entries), advice, *([FIX_MOVE] if moved else [])])


# -- in-memory frames --------------------------------------------------------------------


def validate_bars(df: pd.DataFrame, source: str = "<bars>", *, max_move: float | None = None) -> None:
    """Check bars already in the standard shape; raise DataError naming every defect kind.

    Checks the shape (UTC DatetimeIndex; numeric columns exactly ``open, high, low, close,
    volume``), then every row: timestamps present and strictly increasing, prices present,
    finite, > 0 and below the books' capacity (1e15), high >= max(open, close), low <=
    min(open, close), volume present, finite and >= 0; with ``max_move``, no move beyond
    that many times the previous good close (see DEFAULT_MAX_MOVE; off by default here:
    these bars were loaded or made already). "row N" in the message is the N-th row
    (1-based). ``source`` names the bars in the message (a file path, a symbol).
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: bars must be a pandas DataFrame, not {type(df).__name__}; load them with load_bars")
    if tuple(df.columns) != COLUMNS:
        raise DataError(
            f"{source}: bars must have the columns {', '.join(COLUMNS)} in that order, "
            f"not {', '.join(map(str, df.columns)) or 'none'}; load them with load_bars"
        )
    index = df.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) not in ("UTC", "Etc/UTC"):
        got = f"{type(index).__name__}" + (f" tz={index.tz}" if isinstance(index, pd.DatetimeIndex) else "")
        raise DataError(f"{source}: bars need a UTC DatetimeIndex, not {got}; load them with load_bars")
    if len(df) == 0:
        raise DataError(f"{source}: no bars")
    bad_dtypes = [c for c in COLUMNS if not pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])]
    if bad_dtypes:
        raise DataError(f"{source}: column(s) {', '.join(bad_dtypes)} are not numeric; load the bars with load_bars")

    stamp_missing = np.asarray(index.isna())
    stamps = index.as_unit(TIME_UNIT).asi8.copy()
    stamps[stamp_missing] = _NAT
    values = {c: df[c].to_numpy(dtype=np.float64, na_value=np.nan) for c in COLUMNS}
    rows = _Rows(
        stamps=stamps,
        values=values,
        missing={c: np.isnan(values[c]) for c in COLUMNS},
        non_numeric={c: np.isinf(values[c]) for c in COLUMNS},
        stamp_missing=stamp_missing,
        stamp_unparseable=np.zeros(len(df), dtype=bool),
    )
    numbers = np.arange(1, len(df) + 1)
    found = _defects(rows, numbers, values, _move_limit(max_move))
    if found:
        raise DataError(_describe(source, found, rows, numbers, False, FIX_FRAME))


def _move_limit(max_move: float | None) -> float | None:
    if max_move is None:
        return None
    if isinstance(max_move, bool) or not isinstance(max_move, (int, float)) or not 1 < max_move < np.inf:
        raise DataError(f"max_move must be a finite number above 1 (a factor, e.g. 10) or None to turn it off, not {max_move!r}")
    return float(max_move)


def infer_timeframe(index: pd.DatetimeIndex | pd.DataFrame) -> pd.Timedelta:
    """The bars' spacing: the most common difference between consecutive timestamps.

    Gaps (weekends, outages) do not disturb it as long as regular spacing dominates; on a tie
    the smaller spacing wins. Accepts a DatetimeIndex or a frame with one. DataError with
    fewer than 2 bars.
    """
    if isinstance(index, pd.DataFrame):
        index = index.index
    if not isinstance(index, pd.DatetimeIndex):
        raise DataError(
            f"infer_timeframe needs a DatetimeIndex, not {type(index).__name__}; load the bars with load_bars"
        )
    if len(index) < 2:
        raise DataError(f"cannot infer a timeframe from {len(index)} bar(s); at least 2 are needed")
    steps = np.diff(index.asi8)
    steps = steps[steps > 0]
    if len(steps) == 0:
        raise DataError("cannot infer a timeframe: the timestamps never increase; validate the bars first")
    values, counts = np.unique(steps, return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), unit=index.unit)


# -- files -------------------------------------------------------------------------------


def load_bars(path: str | Path, *, drop_bad_rows: bool = False, max_move: float | None = DEFAULT_MAX_MOVE) -> pd.DataFrame:
    """Read OHLCV bars from CSV (.csv, .txt, .csv.gz) or Parquet (.parquet, .pq); check every row.

    Timestamp column: the first of ``timestamp, date, datetime, time`` present (any
    capitalisation), else the first column. Values are ISO 8601 strings (``2024-01-31``,
    ``2024-01-31 09:30:00``, ``...Z``, ``...+02:00``; a naive time is taken as UTC, an offset is
    converted to UTC) or epoch numbers: seconds, or milliseconds when their median magnitude
    is above 1e11 (the unit is decided once per file; see EPOCH_MS_ABOVE). Compact
    ``20240131`` numbers are therefore epoch seconds, not dates. Day-first formats such as
    ``31/01/2024`` are never guessed: they are unparseable.

    Columns ``open, high, low, close`` and optional ``volume`` in any capitalisation; others
    (``Adj Close``) are ignored. Without a volume column, volume is 0.0.

    Returns the standard frame (see the module docstring) with ``attrs``: ``source`` (the
    path), ``dropped_rows`` (rows dropped), ``dropped`` ({defect: rows with it}; a row with
    two defects counts under both) and ``snapped`` (rows whose high or low missed the open or
    close by float noise and was set to it; see FLOAT_NOISE). Other values are as written.

    Prices must be below the books' capacity (1e15), and no row may move beyond ``max_move``
    times (up or down) the close of the last good row before it (see DEFAULT_MAX_MOVE; None
    turns that check off).

    A file with bad rows raises DataError naming, for every defect kind, its first row (row,
    line, timestamp) and how many rows have it. With ``drop_bad_rows=True`` those rows are
    dropped instead: for equal timestamps the first is kept, and a row not later than the
    last kept row is dropped. DataError too for a missing, unreadable, empty or unsupported
    file, missing columns, or nothing left after dropping.
    """
    path = Path(path)
    source = str(path)
    max_move = _move_limit(max_move)
    kind = _file_kind(path)
    if not path.exists():
        raise DataError(f"{source}: no such file; check the path")
    if path.is_dir():
        raise DataError(f"{source}: is a folder, not a data file; give the path of a CSV or Parquet file")

    frame = _read(path, kind, source)
    row_numbers = np.arange(1, len(frame) + 1)
    if kind == "csv":
        # Blank lines come back as all-empty rows; skip them but keep their numbering.
        blank = frame.isna().all(axis=1).to_numpy()
        if blank.any():
            frame = frame.loc[~blank]
            row_numbers = row_numbers[~blank]
    if len(frame) == 0:
        raise DataError(f"{source}: no bars (the file has a header but no data rows); use a file with at least one bar")

    stamp_col, cols = _find_columns(frame, source)
    stamps, stamp_missing, stamp_unparseable, raw_stamps = _parse_stamps(frame[stamp_col])
    if stamp_unparseable.any() and not ((~stamp_missing & ~stamp_unparseable).any()):
        first = int(np.argmax(stamp_unparseable))
        number = int(row_numbers[first])
        at = f"row {number} (line {number + 1})" if kind == "csv" else f"row {number}"
        raise DataError(
            f"{source}: no timestamp in column {stamp_col!r} could be read (first: {at}: {_short(raw_stamps[first])}); "
            "use ISO 8601 (2024-01-31, 2024-01-31 09:30:00, 2024-01-31T09:30:00Z, 2024-01-31T09:30:00+02:00) "
            "or epoch seconds/milliseconds"
        )

    values, missing, non_numeric, raw_text = {}, {}, {}, {}
    for col in COLUMNS:
        if col in cols:
            values[col], missing[col], non_numeric[col], raw_text[col] = _parse_numbers(frame[cols[col]])
        else:
            n = len(frame)
            values[col], missing[col], non_numeric[col] = np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
            raw_text[col] = values[col]
    snapped = _snap_float_noise(values)
    rows = _Rows(stamps, values, missing, non_numeric, stamp_missing, stamp_unparseable, raw_stamps)
    found = _defects(rows, row_numbers, raw_text, max_move)

    keep = np.ones(len(frame), dtype=bool)
    if found:
        if not drop_bad_rows:
            raise DataError(_describe(source, found, rows, row_numbers, kind == "csv", FIX_FILE))
        keep = ~np.logical_or.reduce([d.mask for d in found])
        if not keep.any():
            raise DataError(
                f"{source}: every row has a defect, nothing is left after dropping them; "
                "load it without drop_bad_rows to see the defects"
            )

    index = pd.DatetimeIndex(stamps[keep].view(f"datetime64[{TIME_UNIT}]"), name="timestamp").tz_localize("UTC")
    bars = pd.DataFrame({c: values[c][keep] for c in COLUMNS}, index=index)
    bars.attrs = {
        "source": source,
        "dropped_rows": int((~keep).sum()),
        "dropped": {d.label: int(d.mask.sum()) for d in found},
        "snapped": int(snapped[keep].sum()),
    }
    return bars


def _snap_float_noise(values: dict[str, np.ndarray]) -> np.ndarray:
    """Move a high or low that misses the body by float noise onto it; which rows were moved."""
    top = np.maximum(values["open"], values["close"])
    bottom = np.minimum(values["open"], values["close"])
    with np.errstate(invalid="ignore"):
        high = (bottom > 0) & (values["high"] < top) & (values["high"] >= top * (1 - FLOAT_NOISE))
        low = (bottom > 0) & (values["low"] > bottom) & (values["low"] <= bottom * (1 + FLOAT_NOISE))
    values["high"] = np.where(high, top, values["high"])
    values["low"] = np.where(low, bottom, values["low"])
    return high | low


def _file_kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    supported = ", ".join(CSV_SUFFIXES + PARQUET_SUFFIXES)
    raise DataError(f"{path}: unsupported file type; bars are read from {supported} files")


def _read(path: Path, kind: str, source: str) -> pd.DataFrame:
    try:
        if kind == "csv":
            with warnings.catch_warnings():
                # index_col=False keeps pandas from shifting every column when data rows are
                # longer than the header; it then cuts them short with a warning: refuse instead.
                warnings.simplefilter("error", pd.errors.ParserWarning)
                return pd.read_csv(path, skip_blank_lines=False, index_col=False, low_memory=False)
        frame = pd.read_parquet(path)
    except pd.errors.ParserWarning:
        raise DataError(
            f"{source}: {_first_long_line(path)} has more fields than the header; "
            "fix the delimiters or quote the values"
        ) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{source}: the file is empty; it needs a header row and at least one bar") from None
    except (OSError, ValueError) as exc:  # parser errors, bad gzip, bad Parquet, permissions
        reason = str(exc).strip()
        raise DataError(f"{source}: cannot read the file ({reason}); check that it is a valid {kind} file") from None
    if not isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index()  # a frame saved with its index (e.g. our own bars) keeps it there
    return frame


def _first_long_line(path: Path) -> str:
    """'line N' of the first CSV row longer than the header (only called on that error)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        reader = csv.reader(f)
        width = len(next(reader, []))
        for row in reader:
            if len(row) > width:
                return f"line {reader.line_num}"
    return "a line"


def _find_columns(frame: pd.DataFrame, source: str) -> tuple[str, dict[str, str]]:
    """The timestamp column and {standard name: actual name} for the price columns."""
    by_key: dict[str, str] = {}
    for name in frame.columns:
        key = str(name).strip().lstrip("\ufeff").lower()
        if key in by_key and (key in COLUMNS or key in TIMESTAMP_NAMES):
            raise DataError(
                f"{source}: columns {by_key[key]!r} and {name!r} both read as {key!r}; keep one of them"
            )
        by_key.setdefault(key, name)
    found = ", ".join(map(str, frame.columns))

    if "date" in by_key and "time" in by_key and "timestamp" not in by_key and "datetime" not in by_key:
        raise DataError(
            f"{source}: separate date and time columns are not supported; "
            "combine them into one timestamp column (e.g. 2024-01-31 09:30:00)"
        )
    stamp_col = next((by_key[k] for k in TIMESTAMP_NAMES if k in by_key), frame.columns[0])
    if str(stamp_col).strip().lower() in COLUMNS:
        raise DataError(
            f"{source}: no timestamp column (found: {found}); "
            "add one named timestamp, date, datetime or time, or put the timestamps first"
        )
    absent = [c for c in PRICES if c not in by_key]
    if absent:
        raise DataError(
            f"{source}: missing column(s) {', '.join(absent)} (found: {found}); "
            "bars need a timestamp column and open, high, low, close (volume optional), in any capitalisation"
        )
    return stamp_col, {c: by_key[c] for c in COLUMNS if c in by_key}


def _parse_stamps(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(int64 us stamps with NaT as INT64_MIN, missing, unparseable, raw values) in one vectorised pass."""
    dtype = raw.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        parsed, missing = raw.dt.tz_convert("UTC"), raw.isna()
    elif pd.api.types.is_datetime64_dtype(dtype):
        parsed, missing = raw.dt.tz_localize("UTC"), raw.isna()
    elif pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        parsed, missing = _from_epoch(raw), raw.isna()
    else:
        text = raw.astype("string").str.strip()
        missing = text.isna() | (text == "")
        text = text.where(~missing)
        numbers = pd.to_numeric(text, errors="coerce")
        if (~missing).any() and numbers[~missing].notna().mean() > 0.5:
            parsed = _from_epoch(numbers)
        else:
            # ISO 8601 only: pandas' own guessing could read 01/02 as day-first on some rows.
            parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    parsed = parsed.dt.as_unit(TIME_UNIT)
    missing = missing.to_numpy(dtype=bool, na_value=True)
    nat = parsed.isna().to_numpy()
    stamps = parsed.dt.tz_localize(None).to_numpy().view(np.int64).copy()
    stamps[nat] = _NAT
    return stamps, missing, nat & ~missing, raw.to_numpy(dtype=object)


def _from_epoch(numbers: pd.Series) -> pd.Series:
    finite = np.abs(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
    finite = finite[np.isfinite(finite)]
    magnitude = float(np.median(finite)) if len(finite) else 0.0
    unit = "s" if magnitude <= EPOCH_MS_ABOVE else "ms" if magnitude <= 1e14 else "us" if magnitude <= 1e17 else "ns"
    return pd.to_datetime(numbers, unit=unit, utc=True, errors="coerce")


def _parse_numbers(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(float64 values, missing, non-numeric or infinite, raw values) for one column."""
    dtype = raw.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        missing = np.isnan(values)
        return values, missing, np.isinf(values), values
    text = raw.astype("string").str.strip()
    missing = (text.isna() | (text == "")).to_numpy(dtype=bool)
    values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, missing, ~missing & ~np.isfinite(values), raw.to_numpy(dtype=object)


__all__ = ["COLUMNS", "DEFAULT_MAX_MOVE", "DataError", "infer_timeframe", "load_bars", "validate_bars"]
