"""Market data: loading and validating bars, resampling, synthetic series."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cival.core.errors import CivalError
from cival.data import (
    COLUMNS,
    DataError,
    infer_timeframe,
    load_bars,
    parse_timeframe,
    resample,
    synthetic_bars,
    synthetic_regimes,
    validate_bars,
)
from cival.data.synthetic import DOWN, RANGE, UP

FIX = "Fix the file, or pass --drop-bad-rows (drop_bad_rows=True) to drop these rows."
EXACT = {"check_exact": True, "check_freq": False}


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def utc(*stamps: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(list(stamps), utc=True, format="ISO8601"), name="timestamp").as_unit("us")


def frame(index: pd.DatetimeIndex, rows: list[tuple[float, ...]]) -> pd.DataFrame:
    """Standard bars from (open, high, low, close, volume) tuples."""
    return pd.DataFrame(np.array(rows, dtype=np.float64), index=index, columns=list(COLUMNS))


# Four clean daily bars; the defect scenarios replace the third (row 3, line 4).
CLEAN_ROWS = [
    "2024-01-01,10,11,9,10.5,100",
    "2024-01-02,10.5,12,10,11,200",
    "2024-01-03,11,11.5,10.5,11.2,300",
    "2024-01-04,11.2,11.8,11,11.6,400",
]
HEADER = "Date,Open,High,Low,Close,Volume"
CLEAN_FRAME = frame(
    utc("2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"),
    [(10, 11, 9, 10.5, 100), (10.5, 12, 10, 11, 200), (11, 11.5, 10.5, 11.2, 300), (11.2, 11.8, 11, 11.6, 400)],
)


def with_row3(row: str) -> str:
    rows = list(CLEAN_ROWS)
    rows[2] = row
    return "\n".join([HEADER, *rows]) + "\n"


# -- loading variants ------------------------------------------------------------------


def test_clean_file_has_the_standard_shape(tmp_path):
    path = write(tmp_path, with_row3(CLEAN_ROWS[2]))
    bars = load_bars(path)
    pd.testing.assert_frame_equal(bars, CLEAN_FRAME, **EXACT)
    assert tuple(bars.columns) == COLUMNS
    assert str(bars.index.dtype) == "datetime64[us, UTC]"
    assert bars.index.name == "timestamp"
    assert bars.attrs == {"source": str(path), "dropped_rows": 0, "dropped": {}, "snapped": 0}
    validate_bars(bars)


def test_data_error_is_a_cival_error():
    assert issubclass(DataError, CivalError)


@pytest.mark.parametrize("name", ["Date", "Datetime", "timestamp", "time", "TIME", "", "when"])
def test_timestamp_column_names(tmp_path, name):
    # "" leaves the first column unnamed (pandas calls it "Unnamed: 0"); "when" is no known
    # name: both fall back to the first column.
    text = with_row3(CLEAN_ROWS[2]).replace("Date,", f"{name},", 1)
    pd.testing.assert_frame_equal(load_bars(write(tmp_path, text)), CLEAN_FRAME, **EXACT)


def test_known_timestamp_name_wins_over_the_first_column(tmp_path):
    text = "id,Open,High,Low,Close,Volume,Datetime\n" + "".join(
        f"{i},{row.split(',', 1)[1]},{row.split(',')[0]}\n" for i, row in enumerate(CLEAN_ROWS, start=100)
    )
    pd.testing.assert_frame_equal(load_bars(write(tmp_path, text)), CLEAN_FRAME, **EXACT)


@pytest.mark.parametrize(
    "header",
    ["date,open,high,low,close,volume", "DATE,OPEN,HIGH,LOW,CLOSE,VOLUME", "Date, oPeN ,High,low,ClOsE,VoLuMe"],
)
def test_column_capitalisation_is_ignored(tmp_path, header):
    text = with_row3(CLEAN_ROWS[2]).replace(HEADER, header)
    pd.testing.assert_frame_equal(load_bars(write(tmp_path, text)), CLEAN_FRAME, **EXACT)


@pytest.mark.parametrize(
    "stamps",
    [
        ["2024-03-01T00:00:00Z", "2024-03-01T01:00:00Z", "2024-03-01T02:30:00Z"],
        ["2024-03-01T02:00:00+02:00", "2024-03-01T03:00:00+02:00", "2024-03-01T04:30:00+02:00"],
        ["2024-02-29T19:00:00-05:00", "2024-03-01T01:00:00+00:00", "2024-03-01T02:30:00Z"],  # mixed zones
        ["2024-03-01 00:00:00", "2024-03-01 01:00:00", "2024-03-01 02:30:00"],  # naive: UTC
        ["2024-03-01T00:00:00", "2024-03-01T01:00:00", "2024-03-01T02:30:00"],
        ["1709251200", "1709254800", "1709260200"],  # epoch seconds
        ["1709251200000", "1709254800000", "1709260200000"],  # epoch milliseconds
        ["1709251200.0", "1709254800.0", "1709260200.0"],
    ],
    ids=["Z", "plus-02", "mixed-zones", "naive-space", "naive-T", "epoch-s", "epoch-ms", "epoch-float"],
)
def test_timestamp_formats_give_the_same_utc_index(tmp_path, stamps):
    text = "timestamp,open,high,low,close\n" + "".join(f"{s},1,2,0.5,1.5\n" for s in stamps)
    bars = load_bars(write(tmp_path, text))
    pd.testing.assert_index_equal(bars.index, utc("2024-03-01 00:00", "2024-03-01 01:00", "2024-03-01 02:30"))


def test_date_only_strings_are_midnight_utc(tmp_path):
    bars = load_bars(write(tmp_path, with_row3(CLEAN_ROWS[2])))
    assert bars.index[0] == pd.Timestamp("2024-01-01T00:00:00Z")


def test_day_first_dates_are_not_guessed(tmp_path):
    text = "Date,Open,High,Low,Close\n02/01/2024,1,2,0.5,1.5\n03/01/2024,1,2,0.5,1.5\n"
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_bars(path)
    assert str(err.value).startswith(
        f"{path}: no timestamp in column 'Date' could be read (first: row 1 (line 2): '02/01/2024'); use ISO 8601"
    )


def test_separate_date_and_time_columns_are_refused(tmp_path):
    path = write(tmp_path, "Date,Time,Open,High,Low,Close\n2024-01-01,09:30,1,2,0.5,1.5\n")
    with pytest.raises(DataError, match="separate date and time columns"):
        load_bars(path)


def test_missing_volume_is_zero(tmp_path):
    text = "Date,Open,High,Low,Close\n" + "".join(r.rsplit(",", 1)[0] + "\n" for r in CLEAN_ROWS)
    bars = load_bars(write(tmp_path, text))
    assert bars["volume"].dtype == np.float64
    assert (bars["volume"] == 0.0).all()
    pd.testing.assert_frame_equal(bars.drop(columns="volume"), CLEAN_FRAME.drop(columns="volume"), **EXACT)


def test_extra_columns_are_ignored(tmp_path):
    text = "Symbol,Date,Open,High,Low,Close,Adj Close,Volume,Note\n" + "".join(
        f"XYZ,{row},{i}.5,text {i}\n" for i, row in enumerate(CLEAN_ROWS)
    )
    # Put Adj Close between Close and Volume as Yahoo does.
    text = text.replace(",100,0.5,", ",0.5,100,").replace(",200,1.5,", ",1.5,200,")
    text = text.replace(",300,2.5,", ",2.5,300,").replace(",400,3.5,", ",3.5,400,")
    pd.testing.assert_frame_equal(load_bars(write(tmp_path, text)), CLEAN_FRAME, **EXACT)


def test_parquet_round_trip_equals_csv(tmp_path):
    from_csv = load_bars(write(tmp_path, with_row3(CLEAN_ROWS[2])))
    saved = tmp_path / "bars.parquet"
    from_csv.to_parquet(saved)  # the index travels inside the file
    pd.testing.assert_frame_equal(load_bars(saved), from_csv, **EXACT)
    assert load_bars(saved).attrs["source"] == str(saved)


def test_parquet_written_by_hand_with_string_dates(tmp_path):
    table = pd.DataFrame(
        {
            "Date": ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"],
            "Open": CLEAN_FRAME["open"].to_numpy(),
            "High": CLEAN_FRAME["high"].to_numpy(),
            "Low": CLEAN_FRAME["low"].to_numpy(),
            "Close": CLEAN_FRAME["close"].to_numpy(),
            "Volume": [100, 200, 300, 400],
        }
    )
    path = tmp_path / "bars.pq"
    table.to_parquet(path, index=False)
    pd.testing.assert_frame_equal(load_bars(path), CLEAN_FRAME, **EXACT)


def test_parquet_with_a_naive_datetime_column(tmp_path):
    table = pd.DataFrame(
        {"time": pd.to_datetime(["2024-01-01", "2024-01-02"]), "open": [1.0, 2], "high": [2.0, 3], "low": [0.5, 1],
         "close": [1.5, 2.5]}
    )
    path = tmp_path / "naive.parquet"
    table.to_parquet(path, index=False)
    pd.testing.assert_index_equal(load_bars(path).index, utc("2024-01-01", "2024-01-02"))


def test_gzip_csv(tmp_path):
    path = tmp_path / "bars.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write(with_row3(CLEAN_ROWS[2]))
    pd.testing.assert_frame_equal(load_bars(path), CLEAN_FRAME, **EXACT)


def test_blank_lines_are_skipped_but_counted(tmp_path):
    text = HEADER + "\n" + CLEAN_ROWS[0] + "\n\n" + CLEAN_ROWS[1] + "\n2024-01-03,11,11.5,10.5,abc,300\n\n"
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_bars(path)
    # The blank line is line 3, so the bad row is row 4 on line 5.
    assert "  row 4 (line 5, 2024-01-03T00:00:00Z): non-numeric price (close) 'abc' - 1 row" in str(err.value)
    assert len(load_bars(path, drop_bad_rows=True)) == 2


# -- defects -----------------------------------------------------------------------------

T3 = "2024-01-03T00:00:00Z"
DEFECTS = [
    # id, row 3 replaced by, expected message lines, {defect: rows} after dropping
    ("duplicate", "2024-01-02,11,11.5,10.5,11.2,300",
     ["row 3 (line 4, 2024-01-02T00:00:00Z): duplicate timestamp (same as row 2) - 1 row"],
     {"duplicate timestamp": 1}),
    ("out-of-order", "2023-12-31,11,11.5,10.5,11.2,300",
     ["row 3 (line 4, 2023-12-31T00:00:00Z): timestamp earlier than a previous row (row 2 is later) - 1 row"],
     {"timestamp earlier than a previous row": 1}),
    ("missing-open", "2024-01-03,,11.5,10.5,11.2,300",
     [f"row 3 (line 4, {T3}): missing price (open) - 1 row"], {"missing price (open)": 1}),
    ("non-numeric-close", "2024-01-03,11,11.5,10.5,abc,300",
     [f"row 3 (line 4, {T3}): non-numeric price (close) 'abc' - 1 row"], {"non-numeric price (close)": 1}),
    ("infinite-high", "2024-01-03,11,inf,10.5,11.2,300",
     [f"row 3 (line 4, {T3}): non-numeric price (high) 'inf' - 1 row"], {"non-numeric price (high)": 1}),
    ("zero-price", "2024-01-03,0,11.5,0,11.2,300",
     [f"row 3 (line 4, {T3}): price <= 0 (open) - 1 row", f"row 3 (line 4, {T3}): price <= 0 (low) - 1 row"],
     {"price <= 0 (open)": 1, "price <= 0 (low)": 1}),
    ("price-1e308", "2024-01-03,11,1e308,10.5,1e308,300",
     [f"row 3 (line 4, {T3}): price at or beyond the books' capacity of 1e15 (high) '1e+308' - 1 row",
      f"row 3 (line 4, {T3}): price at or beyond the books' capacity of 1e15 (close) '1e+308' - 1 row"],
     {"price at or beyond the books' capacity of 1e15 (high)": 1, "price at or beyond the books' capacity of 1e15 (close)": 1}),
    ("price-at-capacity", "2024-01-03,11,1000000000000000,10.5,11.2,300",
     [f"row 3 (line 4, {T3}): price at or beyond the books' capacity of 1e15 (high) '1000000000000000.0' - 1 row"],
     {"price at or beyond the books' capacity of 1e15 (high)": 1}),
    ("negative-price", "2024-01-03,11,11.5,-1,11.2,300",
     [f"row 3 (line 4, {T3}): price <= 0 (low) - 1 row"], {"price <= 0 (low)": 1}),
    ("high-below-close", "2024-01-03,11,11.1,10.5,11.2,300",
     [f"row 3 (line 4, {T3}): high below max(open, close) - 1 row"], {"high below max(open, close)": 1}),
    ("low-above-open", "2024-01-03,11,11.5,11.1,11.2,300",
     [f"row 3 (line 4, {T3}): low above min(open, close) - 1 row"], {"low above min(open, close)": 1}),
    ("high-below-low", "2024-01-03,11,10,12,11,300",
     [f"row 3 (line 4, {T3}): high below max(open, close) - 1 row",
      f"row 3 (line 4, {T3}): low above min(open, close) - 1 row"],
     {"high below max(open, close)": 1, "low above min(open, close)": 1}),
    ("negative-volume", "2024-01-03,11,11.5,10.5,11.2,-5",
     [f"row 3 (line 4, {T3}): negative volume - 1 row"], {"negative volume": 1}),
    ("missing-volume", "2024-01-03,11,11.5,10.5,11.2,",
     [f"row 3 (line 4, {T3}): missing volume - 1 row"], {"missing volume": 1}),
    ("non-numeric-volume", "2024-01-03,11,11.5,10.5,11.2,lots",
     [f"row 3 (line 4, {T3}): non-numeric volume 'lots' - 1 row"], {"non-numeric volume": 1}),
    ("unparseable-timestamp", "yesterday,11,11.5,10.5,11.2,300",
     ["row 3 (line 4, 'yesterday'): unparseable timestamp - 1 row"], {"unparseable timestamp": 1}),
    ("impossible-date", "2024-02-30,11,11.5,10.5,11.2,300",
     ["row 3 (line 4, '2024-02-30'): unparseable timestamp - 1 row"], {"unparseable timestamp": 1}),
    ("missing-timestamp", ",11,11.5,10.5,11.2,300",
     ["row 3 (line 4, no timestamp): missing timestamp - 1 row"], {"missing timestamp": 1}),
]


@pytest.mark.parametrize("row, lines, dropped", [d[1:] for d in DEFECTS], ids=[d[0] for d in DEFECTS])
def test_defect_is_refused_with_row_line_timestamp_and_count(tmp_path, row, lines, dropped):
    path = write(tmp_path, with_row3(row))
    with pytest.raises(DataError) as err:
        load_bars(path)
    kinds = f"{len(lines)} kind{'s' if len(lines) > 1 else ''}"
    expected = "\n".join([f"{path}: {kinds} of bad rows:", *(f"  {line}" for line in lines), FIX])
    assert str(err.value) == expected


@pytest.mark.parametrize("row, lines, dropped", [d[1:] for d in DEFECTS], ids=[d[0] for d in DEFECTS])
def test_defect_is_dropped_on_request(tmp_path, row, lines, dropped):
    bars = load_bars(write(tmp_path, with_row3(row)), drop_bad_rows=True)
    assert bars.attrs["dropped"] == dropped
    assert bars.attrs["dropped_rows"] == 1
    # Row 3 is gone and the others are exactly as written.
    pd.testing.assert_frame_equal(bars, CLEAN_FRAME.drop(index=CLEAN_FRAME.index[2]), **EXACT)
    validate_bars(bars)


def test_several_defect_kinds_are_all_listed_in_file_order(tmp_path):
    rows = [
        "2024-01-01,10,11,9,10.5,100",  # row 1
        "2024-01-02,10.5,12,10,11,200",
        "2024-01-02,10.5,12,10,11,200",  # row 3: duplicate
        "2024-01-03,,11.5,10.5,11.2,300",  # row 4: missing open
        "2024-01-04,11,10,10.5,11.2,300",  # row 5: high below close
        "2024-01-05,11,11.5,10.5,11.2,300",
        "2024-01-06,,11.5,10.5,11.2,300",  # row 7: missing open again
        "2024-01-01,11,11.5,10.5,11.2,300",  # row 8: duplicate of row 1
        "2024-01-08,11,11.5,10.5,11.2,-1",  # row 9: negative volume
        "2024-01-07,11,11.5,10.5,11.2,300",  # row 10: fine, as row 9 (01-08) is dropped
    ]
    path = write(tmp_path, "\n".join([HEADER, *rows]) + "\n")
    with pytest.raises(DataError) as err:
        load_bars(path)
    assert str(err.value) == "\n".join(
        [
            f"{path}: 4 kinds of bad rows:",
            "  row 3 (line 4, 2024-01-02T00:00:00Z): duplicate timestamp (same as row 2) - 2 rows",
            "  row 4 (line 5, 2024-01-03T00:00:00Z): missing price (open) - 2 rows",
            "  row 5 (line 6, 2024-01-04T00:00:00Z): high below max(open, close) - 1 row",
            "  row 9 (line 10, 2024-01-08T00:00:00Z): negative volume - 1 row",
            FIX,
        ]
    )
    bars = load_bars(path, drop_bad_rows=True)
    # Row 10 (01-07) is kept: order is judged against kept rows only, and row 9 is dropped.
    pd.testing.assert_index_equal(bars.index, utc("2024-01-01", "2024-01-02", "2024-01-05", "2024-01-07"))
    assert bars.attrs["dropped_rows"] == 6
    assert bars.attrs["dropped"] == {
        "missing price (open)": 2,
        "high below max(open, close)": 1,
        "negative volume": 1,
        "duplicate timestamp": 2,
    }


def test_out_of_order_rows_are_those_not_later_than_the_last_kept(tmp_path):
    days = [1, 2, 5, 3, 4, 5, 6]
    text = "Date,Open,High,Low,Close\n" + "".join(f"2024-01-0{d},{i + 1},{i + 2},{i + 0.5},{i + 1.5}\n"
                                                   for i, d in enumerate(days))
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_bars(path)
    message = str(err.value)
    assert (
        "row 4 (line 5, 2024-01-03T00:00:00Z): timestamp earlier than a previous row (row 3 is later) - 2 rows"
        in message
    )
    assert "row 6 (line 7, 2024-01-05T00:00:00Z): duplicate timestamp (same as row 3) - 1 row" in message
    bars = load_bars(path, drop_bad_rows=True)
    pd.testing.assert_index_equal(bars.index, utc("2024-01-01", "2024-01-02", "2024-01-05", "2024-01-06"))
    # The first of the duplicates (row 3, open 3) is kept, not row 6 (open 6).
    assert bars["open"].tolist() == [1.0, 2.0, 3.0, 7.0]
    assert bars.attrs["dropped"] == {"duplicate timestamp": 1, "timestamp earlier than a previous row": 2}


def test_float_noise_in_high_and_low_is_snapped_onto_the_body(tmp_path):
    below = float(np.nextafter(11.2, 0))  # one float step under the close
    above = float(np.nextafter(10.0, 20))  # one float step over the open
    text = with_row3(f"2024-01-03,11,{below!r},10.5,11.2,300")
    text = text.replace("2024-01-01,10,11,9,", f"2024-01-01,10,11,{above!r},")
    bars = load_bars(write(tmp_path, text))
    assert bars["high"].iloc[2] == 11.2 and bars["low"].iloc[0] == 10.0
    assert bars.attrs["snapped"] == 2
    validate_bars(bars)
    with pytest.raises(DataError, match="high below max"):  # a real miss is still a defect
        load_bars(write(tmp_path, with_row3("2024-01-03,11,11.19999,10.5,11.2,300")))
    with pytest.raises(DataError, match="high below max"):  # and validate_bars allows no noise
        validate_bars(frame(utc("2024-01-01"), [(10.0, below, 9.0, 11.2, 1.0)]))


def test_nothing_left_after_dropping(tmp_path):
    path = write(tmp_path, "Date,Open,High,Low,Close\n2024-01-01,,2,1,1.5\n2024-01-02,1,0.5,1,1.5\n")
    with pytest.raises(DataError, match="every row has a defect"):
        load_bars(path, drop_bad_rows=True)


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bars.csv", "Date,Open,High,Close,Volume\n2024-01-01,1,2,1.5,3\n",
         "{path}: missing column(s) low (found: Date, Open, High, Close, Volume); bars need a timestamp column and "
         "open, high, low, close (volume optional), in any capitalisation"),
        ("bars.csv", "Open,High,Low,Close\n1,2,0.5,1.5\n",
         "{path}: no timestamp column (found: Open, High, Low, Close); add one named timestamp, date, datetime or "
         "time, or put the timestamps first"),
        ("bars.csv", "Date,Open,High,Low,Close,close\n2024-01-01,1,2,0.5,1.5,1.5\n",
         "{path}: columns 'Close' and 'close' both read as 'close'; keep one of them"),
        ("bars.csv", "", "{path}: the file is empty; it needs a header row and at least one bar"),
        ("bars.csv", "Date,Open,High,Low,Close\n",
         "{path}: no bars (the file has a header but no data rows); use a file with at least one bar"),
        ("bars.xlsx", "whatever",
         "{path}: unsupported file type; bars are read from .csv, .txt, .csv.gz, .txt.gz, .parquet, .pq files"),
        ("bars.parquet", "not parquet at all", "{path}: cannot read the file ("),
        ("bars.csv", "Date,Open,High,Low,Close\n2024-01-01,1,2,0.5,1.5\n2024-01-02,1,2,0.5,1.5,9\n",
         "{path}: cannot read the file (Error tokenizing data. C error: Expected 5 fields in line 3, saw 6); "
         "check that it is a valid csv file"),
        ("bars.csv", "Date,Open,High,Low,Close\n2024-01-01,1,2,0.5,1.5,9\n2024-01-02,1,2,0.5,1.5,9\n",
         "{path}: line 2 has more fields than the header; fix the delimiters or quote the values"),
    ],
    ids=["missing-column", "no-timestamp-column", "ambiguous-columns", "empty", "header-only", "extension",
         "corrupt-parquet", "long-row", "all-rows-long"],
)
def test_bad_files(tmp_path, name, text, message):
    path = write(tmp_path, text, name)
    with pytest.raises(DataError) as err:
        load_bars(path)
    assert str(err.value).startswith(message.format(path=path))


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "bars.csv"
    with pytest.raises(DataError) as err:
        load_bars(path)
    assert str(err.value) == f"{path}: no such file; check the path"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, 30),  # day
            st.sampled_from(["ok", "ok", "ok", "no-open", "zero-close", "high-low", "text", "neg-volume"]),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_dropping_keeps_exactly_the_sound_increasing_rows(rows):
    """Against a plain-Python model: a row is kept if sound and later than every kept row."""
    make = {
        "ok": "{d},10,11,9,10.5,{i}",
        "no-open": "{d},,11,9,10.5,{i}",
        "zero-close": "{d},10,11,0,0,{i}",
        "high-low": "{d},10,9,11,10.5,{i}",
        "text": "{d},10,11,9,x,{i}",
        "neg-volume": "{d},10,11,9,10.5,-{i}.5",
    }
    lines = [make[kind].format(d=f"2024-01-{day + 1:02d}", i=i) for i, (day, kind) in enumerate(rows)]
    expected, last = [], -1
    for i, (day, kind) in enumerate(rows):
        if kind == "ok" and day > last:
            expected.append(i)
            last = day
    with tempfile.TemporaryDirectory() as folder:
        path = write(Path(folder), "\n".join([HEADER, *lines]) + "\n")
        if not expected:
            with pytest.raises(DataError):
                load_bars(path, drop_bad_rows=True)
            return
        bars = load_bars(path, drop_bad_rows=True)
    validate_bars(bars)
    assert bars["volume"].tolist() == [float(i) for i in expected]
    assert bars.attrs["dropped_rows"] == len(rows) - len(expected)


# -- implausible moves --------------------------------------------------------------------

MOVE = "price moved beyond 10x the previous close"
FIX_MOVE_START = "If such moves are real (an unadjusted split), raise the limit: --max-move N"


def test_a_price_spike_is_refused_naming_the_row_and_the_value(tmp_path):
    path = write(tmp_path, with_row3("2024-01-03,11,1150,10.5,11.2,300"))  # a high 100x the previous close
    with pytest.raises(DataError) as err:
        load_bars(path)
    lines = str(err.value).splitlines()
    assert lines[:3] == [
        f"{path}: 1 kind of bad rows:",
        f"  row 3 (line 4, {T3}): {MOVE} (high 1150 after a close of 11 at row 2) - 1 row",
        FIX,
    ]
    assert len(lines) == 4 and lines[3].startswith(FIX_MOVE_START)


def test_a_price_spike_is_dropped_on_request_and_the_next_row_judged_against_the_last_good_close(tmp_path):
    spike = "2024-01-03,11000,11500,10500,11200,300"  # every price 1000x; row 4 (11.2) is back to normal
    bars = load_bars(write(tmp_path, with_row3(spike)), drop_bad_rows=True)
    assert bars.attrs["dropped"] == {MOVE: 1}
    assert bars.attrs["dropped_rows"] == 1
    pd.testing.assert_frame_equal(bars, CLEAN_FRAME.drop(index=CLEAN_FRAME.index[2]), **EXACT)


def test_a_drop_below_a_tenth_is_implausible_too(tmp_path):
    path = write(tmp_path, with_row3("2024-01-03,11,11.5,1.05,11.2,300"))  # a low under a tenth of 11
    with pytest.raises(DataError, match=r"row 3 \(line 4, .*\): price moved beyond 10x the previous close \(low 1.05 "):
        load_bars(path)


def test_a_run_of_bad_rows_counts_each_one(tmp_path):
    rows = [*CLEAN_ROWS[:2], *(f"2024-01-0{d},1e6,1.1e6,0.9e6,1e6,1" for d in (3, 4, 5)), "2024-01-06,11,12,10,11.5,1"]
    bars = load_bars(write(tmp_path, "\n".join([HEADER, *rows]) + "\n"), drop_bad_rows=True)
    assert bars.attrs["dropped"] == {MOVE: 3}
    assert bars["close"].tolist() == [10.5, 11.0, 11.5]


def test_the_limit_can_be_raised_or_turned_off(tmp_path):
    path = write(tmp_path, with_row3("2024-01-03,11000,11500,10500,11200,300"))
    assert len(load_bars(path, max_move=None)) == 4
    assert len(load_bars(path, max_move=2000)) == 4
    with pytest.raises(DataError, match="moved beyond 500x"):
        load_bars(path, max_move=500)
    capacity = write(tmp_path, with_row3("2024-01-03,11,1e308,10.5,11.2,300"), "capacity.csv")
    with pytest.raises(DataError, match="capacity"):
        load_bars(capacity, max_move=None)  # the books' capacity is not a plausibility setting


@pytest.mark.parametrize("limit", [1, 0.5, 0, -10, float("nan"), float("inf"), True, "10"])
def test_a_limit_that_is_not_a_factor_above_one_is_refused(tmp_path, limit):
    with pytest.raises(DataError, match="max_move must be a finite number above 1"):
        load_bars(write(tmp_path, with_row3(CLEAN_ROWS[2])), max_move=limit)


def test_validate_bars_checks_moves_when_asked():
    spiky = CLEAN_FRAME.copy()
    spiky.iloc[2] = [11, 1150, 10.5, 11.2, 300]
    validate_bars(spiky)  # off by default for bars already in memory
    with pytest.raises(DataError, match=r"row 3 \(2024-01-03T00:00:00Z\): price moved beyond 10x"):
        validate_bars(spiky, max_move=10)
    huge = CLEAN_FRAME.copy()
    huge.iloc[2] = [11, 1e308, 10.5, 11.2, 300]
    with pytest.raises(DataError, match="capacity"):
        validate_bars(huge)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([1.0, 2.0, 5.0, 9.0, 11.0, 50.0, 200.0, 0.05]), min_size=1, max_size=30))
def test_moves_are_judged_against_the_last_kept_close(closes):
    """Against a plain-Python model: a row is dropped when its price is beyond 10x (or
    under a tenth of) the close of the last row kept; the first row is kept."""
    lines = [f"2024-01-{i + 1:02d},{c},{c},{c},{c},1" for i, c in enumerate(closes)]
    kept = [closes[0]]
    for c in closes[1:]:
        if kept[-1] / 10 <= c <= kept[-1] * 10:
            kept.append(c)
    with tempfile.TemporaryDirectory() as folder:
        bars = load_bars(write(Path(folder), "\n".join([HEADER, *lines]) + "\n"), drop_bad_rows=True)
    assert bars["close"].tolist() == kept
    assert bars.attrs["dropped_rows"] == len(closes) - len(kept)


# -- validate_bars -----------------------------------------------------------------------


def test_validate_bars_reports_in_memory_rows():
    bars = synthetic_bars(10)
    bars.iloc[5, 1] = bars.iloc[5, 3] - 1  # high below close
    bars.iloc[7, 3] = np.nan
    with pytest.raises(DataError) as err:
        validate_bars(bars, "SYN")
    assert str(err.value) == "\n".join(
        [
            "SYN: 2 kinds of bad rows:",
            "  row 6 (2024-01-01T05:00:00Z): high below max(open, close) - 1 row",
            "  row 8 (2024-01-01T07:00:00Z): missing price (close) - 1 row",
            "Fix the bars before using them (load_bars(..., drop_bad_rows=True) drops bad rows when loading a file).",
        ]
    )


def test_validate_bars_reports_duplicate_index():
    bars = synthetic_bars(4)
    bars.index = utc("2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 01:00", "2024-01-01 03:00")
    with pytest.raises(DataError, match=r"row 3 \(2024-01-01T01:00:00Z\): duplicate timestamp \(same as row 2\)"):
        validate_bars(bars)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b[["open", "high", "low", "close"]], "must have the columns open, high, low, close, volume"),
        (lambda b: b[["close", "open", "high", "low", "volume"]], "in that order"),
        (lambda b: b.tz_localize(None), "need a UTC DatetimeIndex"),
        (lambda b: b.tz_convert("Europe/Paris"), "need a UTC DatetimeIndex"),
        (lambda b: b.reset_index(drop=True), "need a UTC DatetimeIndex"),
        (lambda b: b.iloc[:0], "no bars"),
        (lambda b: b.assign(volume="many"), "not numeric"),
    ],
)
def test_validate_bars_checks_the_shape(change, message):
    with pytest.raises(DataError, match=message):
        validate_bars(change(synthetic_bars(5)))


# -- infer_timeframe ---------------------------------------------------------------------


def test_infer_timeframe_is_the_most_common_spacing():
    gap = utc("2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-03")
    assert infer_timeframe(gap) == pd.Timedelta("1h")
    weekdays = pd.bdate_range("2024-01-01", periods=30, tz="UTC")
    assert infer_timeframe(weekdays) == pd.Timedelta("1D")
    # On a tie the smaller spacing wins.
    assert infer_timeframe(utc("2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:20")) == pd.Timedelta("5min")
    assert infer_timeframe(synthetic_bars(50, timeframe="15m")) == pd.Timedelta("15min")


def test_infer_timeframe_needs_two_bars():
    with pytest.raises(DataError, match="at least 2"):
        infer_timeframe(utc("2024-01-01"))


# -- real data ---------------------------------------------------------------------------

DIRTY = [
    # file, the first line of its message
    ("djia_BA.csv", "row 55 (line 56, 2006-03-22T00:00:00Z): low above min(open, close) - 2 rows"),
    ("djia_DIS.csv", "row 55 (line 56, 2006-03-22T00:00:00Z): low above min(open, close) - 2 rows"),
    ("djia_MSFT.csv", "row 290 (line 291, 2007-02-28T00:00:00Z): high below max(open, close) - 2 rows"),
]


@pytest.mark.parametrize("name, first", DIRTY)
def test_dirty_real_files_are_refused(shared_data, name, first):
    path = shared_data / "daily_us_equities" / name
    with pytest.raises(DataError) as err:
        load_bars(path)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{path}: ")
    assert lines[1] == f"  {first}"
    assert lines[-1] == FIX


@pytest.mark.parametrize("name", [d[0] for d in DIRTY])
def test_dirty_real_files_load_when_dropping(shared_data, name):
    path = shared_data / "daily_us_equities" / name
    raw = pd.read_csv(path)
    prices = raw[["Open", "High", "Low", "Close"]]
    bad = (
        prices.isna().any(axis=1)
        | (raw["High"] < raw[["Open", "Close"]].max(axis=1))
        | (raw["Low"] > raw[["Open", "Close"]].min(axis=1))
    )
    assert bad.sum() > 0
    bars = load_bars(path, drop_bad_rows=True)
    assert bars.attrs["dropped_rows"] == bad.sum()
    assert len(bars) == len(raw) - bad.sum()
    validate_bars(bars)
    kept = raw.loc[~bad]
    np.testing.assert_array_equal(bars["close"].to_numpy(), kept["Close"].to_numpy())
    np.testing.assert_array_equal(bars.index, pd.to_datetime(kept["Date"], utc=True).to_numpy())


CLEAN = [
    # file, rows, first, last, timeframe (from the data README)
    ("intraday_crypto/binance_BTCUSDT_1h.csv", 12556, "2024-09-14 00:00", "2026-02-19 03:00", "1h"),
    ("intraday_crypto/binance_BTCUSDT_5m.csv", 119784, "2024-12-31 00:00", "2026-02-19 21:55", "5min"),
    ("intraday_crypto/binance_BTCUSDT_15m.csv", 38999, "2025-01-01 00:00", "2026-02-11 05:30", "15min"),
    ("intraday_crypto/binance_BTCUSDT_1d.csv", 488, "2024-10-01", "2026-01-31", "1D"),
    ("intraday_crypto/binance_ETHUSDT_1h.csv", 12554, "2024-09-14 00:00", "2026-02-19 01:00", "1h"),
    ("intraday_crypto/nautilus_ftx_BTC-PERP_1m.csv", 45031, "2021-12-31 23:01", "2022-02-01 05:31", "1min"),
    ("intraday_crypto/backtestingpy_SOLUSDT_1h.csv", 1000, "2024-09-20 15:00", "2024-11-01 06:00", "1h"),
    ("intraday_crypto/freqtrade_testdata_ETH_BTC-5m.csv", 5760, "2018-01-10 04:55", "2018-01-30 04:50", "5min"),
    ("intraday_fx/backtestingpy_EURUSD_1h.csv", 5000, "2017-04-19 09:00", "2018-02-07 15:00", "1h"),
    ("daily_us_equities/backtrader_NVDA.csv", 4012, "1999-01-22", "2014-12-31", "1D"),
    ("daily_us_equities/backtrader_ORCL.csv", 5036, "1995-01-03", "2014-12-31", "1D"),
    ("daily_us_equities/backtrader_YHOO.csv", 4965, "1996-04-12", "2015-12-31", "1D"),
    ("daily_us_equities/pandasta_SPY_adjusted.csv", 7192, "1993-01-29", "2021-08-19", "1D"),
    ("daily_other/backtrader_2006-day-001.csv", 255, "2006-01-02", "2006-12-29", "1D"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, rows, first, last, timeframe", CLEAN, ids=[c[0].split("/")[1] for c in CLEAN])
def test_clean_real_files_load(shared_data, name, rows, first, last, timeframe):
    bars = load_bars(shared_data / name)
    assert len(bars) == rows
    assert bars.index[0] == pd.Timestamp(first, tz="UTC")
    assert bars.index[-1] == pd.Timestamp(last, tz="UTC")
    assert infer_timeframe(bars) == pd.Timedelta(timeframe)
    assert bars.attrs["dropped_rows"] == 0
    validate_bars(bars)


def test_adjusted_real_file_has_float_noise_that_is_snapped(shared_data):
    """SPY's adjusted prices miss their open/close by about 1e-16 on 15 rows."""
    path = shared_data / "daily_us_equities/pandasta_SPY_adjusted.csv"
    raw = pd.read_csv(path)
    top, bottom = raw[["Open", "Close"]].max(axis=1), raw[["Open", "Close"]].min(axis=1)
    missed = (raw["High"] < top) | (raw["Low"] > bottom)
    miss = np.maximum((top - raw["High"]) / top, (raw["Low"] - bottom) / bottom)[missed]
    assert missed.sum() == 15 and (miss < 1e-15).all()
    bars = load_bars(path)
    assert bars.attrs["snapped"] == missed.sum()
    high_missed = (raw["High"] < top).to_numpy()
    low_missed = (raw["Low"] > bottom).to_numpy()
    expected_high = np.where(high_missed, top, raw["High"])
    expected_low = np.where(low_missed, bottom, raw["Low"])
    np.testing.assert_array_equal(bars["high"].to_numpy(), expected_high)
    np.testing.assert_array_equal(bars["low"].to_numpy(), expected_low)
    np.testing.assert_array_equal(bars["close"].to_numpy(), raw["Close"].to_numpy())


def test_real_file_values_are_as_written(shared_data):
    path = shared_data / "daily_us_equities/backtrader_NVDA.csv"
    raw = pd.read_csv(path)
    bars = load_bars(path)
    for col in COLUMNS:
        np.testing.assert_array_equal(bars[col].to_numpy(), raw[col.capitalize()].to_numpy(dtype=float))
    assert (load_bars(shared_data / "daily_other/backtrader_2006-day-001.csv")["volume"] == 0.0).all()


@pytest.mark.slow
def test_every_shared_file_passes_the_move_check(shared_data):
    """Real data never trips the default limit: every file loads (the dirty ones once their
    known defects are dropped) with nothing dropped as implausible."""
    from tests.conftest import shared_data_dir

    files = sorted(shared_data.rglob("*.csv"))
    assert len(files) >= (20 if shared_data_dir() is not None else 8)  # the full set, or the files shipped
    for path in files:
        bars = load_bars(path, drop_bad_rows=path.name.startswith("djia_"))
        assert not any(kind.startswith("price moved") for kind in bars.attrs["dropped"]), path
        validate_bars(bars, str(path), max_move=10)


def test_the_bundled_demo_data_passes_the_move_check():
    path = Path(__file__).resolve().parents[1] / "configs" / "data" / "BTCUSDT-1h.csv.gz"
    assert load_bars(path).attrs["dropped_rows"] == 0


# -- resample ----------------------------------------------------------------------------

MINUTES = frame(
    utc(*(f"2024-01-01 00:{m:02d}" for m in (0, 1, 2, 3, 4, 5, 6, 15, 16))),
    [
        (10.0, 11.0, 9.0, 10.5, 1),
        (10.5, 12.0, 10.0, 11.0, 2),
        (11.0, 11.5, 8.0, 9.0, 3),
        (9.0, 10.0, 8.5, 9.5, 4),
        (9.5, 10.0, 9.0, 9.8, 5),
        (9.8, 10.2, 9.7, 10.0, 6),
        (10.0, 10.1, 9.9, 10.05, 7),
        # 00:07 to 00:14 missing: the 00:10 bin must not appear
        (10.0, 10.5, 9.5, 10.2, 8),
        (10.2, 10.4, 10.1, 10.3, 9),
    ],
)


def test_resample_minutes_to_five_minutes():
    expected = frame(
        utc("2024-01-01 00:00", "2024-01-01 00:05", "2024-01-01 00:15"),
        [(10.0, 12.0, 8.0, 9.8, 15), (9.8, 10.2, 9.7, 10.05, 13), (10.0, 10.5, 9.5, 10.3, 17)],
    )
    out = resample(MINUTES, "5m")
    pd.testing.assert_frame_equal(out, expected, **EXACT)
    validate_bars(out)


def test_resample_bins_are_anchored_at_the_epoch_not_the_first_bar():
    out = resample(MINUTES.iloc[3:], "5m")  # starts at 00:03
    assert out.index[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    assert out.iloc[0].tolist() == [9.0, 10.0, 8.5, 9.8, 9.0]
    hours = synthetic_bars(30, start="2024-01-01T02:00:00Z")
    four = resample(hours, "4h")
    assert [t.hour for t in four.index[:3]] == [0, 4, 8]
    assert four["open"].iloc[0] == hours["open"].iloc[0]
    assert four["close"].iloc[0] == hours["close"].iloc[1]  # 02:00 and 03:00 only


def test_resample_days_start_at_midnight_and_weeks_on_monday():
    hours = synthetic_bars(24 * 10, start="2024-01-03T05:00:00Z")
    days = resample(hours, "1d")
    assert (days.index.hour == 0).all() and days.index[0] == pd.Timestamp("2024-01-03", tz="UTC")
    np.testing.assert_allclose(days["volume"].sum(), hours["volume"].sum(), rtol=1e-12)
    weeks = resample(synthetic_bars(60, timeframe="1d", start="2024-01-03"), "1w")
    assert (weeks.index.day_of_week == 0).all()
    assert weeks.index[0] == pd.Timestamp("2024-01-01", tz="UTC")


def test_resample_to_its_own_timeframe_changes_nothing():
    bars = synthetic_bars(100, timeframe="15m")
    pd.testing.assert_frame_equal(resample(bars, "15m"), bars, **EXACT)


@pytest.mark.parametrize("rule, message", [("1m", "finer than the bars"), ("7m", "not a whole number of 5m bars")])
def test_resample_refuses_finer_or_misfitting_rules(rule, message):
    with pytest.raises(DataError, match=message):
        resample(synthetic_bars(50, timeframe="5m"), rule)


@pytest.mark.parametrize("rule", ["5", "m5", "1M", "0h", "1.5h", "", "5min", "1 h", "1y", None])
def test_bad_rule_strings(rule):
    with pytest.raises(DataError, match=r"bad timeframe .*: use a whole number > 0 and a unit: s \(seconds\)"):
        resample(MINUTES, rule)


def test_parse_timeframe():
    assert parse_timeframe("15m") == pd.Timedelta(minutes=15)
    assert parse_timeframe("4h") == pd.Timedelta(hours=4)
    assert parse_timeframe("1w") == pd.Timedelta(days=7)
    assert parse_timeframe("30s") == pd.Timedelta(seconds=30)


def test_resample_validates_its_input():
    bars = MINUTES.copy()
    bars.iloc[2, 1] = 1.0  # high below the open
    with pytest.raises(DataError, match="high below max"):
        resample(bars, "5m")


def _overlap(ours: pd.DataFrame, theirs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    common = ours.index.intersection(theirs.index)
    return ours.loc[common], theirs.loc[common]


@pytest.mark.parametrize(
    "fine, coarse, rule, overlap",
    [
        ("binance_BTCUSDT_5m.csv", "binance_BTCUSDT_15m.csv", "15m", 38999),
        ("binance_BTCUSDT_1h.csv", "binance_BTCUSDT_1d.csv", "1d", 488),
    ],
)
def test_resampled_real_data_equals_the_coarser_file(shared_data, fine, coarse, rule, overlap):
    folder = shared_data / "intraday_crypto"
    ours, theirs = _overlap(resample(load_bars(folder / fine), rule), load_bars(folder / coarse))
    assert len(ours) == overlap
    pd.testing.assert_frame_equal(ours[["open", "high", "low", "close"]], theirs[["open", "high", "low", "close"]],
                                  **EXACT)
    np.testing.assert_allclose(ours["volume"], theirs["volume"], rtol=1e-9)


# -- synthetic ---------------------------------------------------------------------------


def test_synthetic_is_deterministic():
    a, b = synthetic_bars(2000, seed=3), synthetic_bars(2000, seed=3)
    pd.testing.assert_frame_equal(a, b, **EXACT)
    assert a.to_numpy().tobytes() == b.to_numpy().tobytes()
    assert not np.array_equal(a["close"], synthetic_bars(2000, seed=4)["close"])
    np.testing.assert_array_equal(synthetic_regimes(2000, seed=3), synthetic_regimes(2000, seed=3))


@pytest.mark.parametrize("seed", [0, 1, 7, 42, 2024])
@pytest.mark.parametrize("timeframe", ["1m", "1h", "1d", "1w"])
def test_synthetic_bars_are_valid(seed, timeframe):
    bars = synthetic_bars(3000, seed=seed, timeframe=timeframe, start_price=50.0)
    validate_bars(bars)
    assert len(bars) == 3000
    assert tuple(bars.columns) == COLUMNS and (bars.dtypes == np.float64).all()
    assert str(bars.index.dtype) == "datetime64[us, UTC]" and bars.index.name == "timestamp"
    assert (np.diff(bars.index.asi8) == parse_timeframe(timeframe) // pd.Timedelta(1, "us")).all()
    assert bars.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert bars["open"].iloc[0] == 50.0
    np.testing.assert_array_equal(bars["open"].to_numpy()[1:], bars["close"].to_numpy()[:-1])
    assert (bars["volume"] > 0).all()


def test_synthetic_start_is_utc():
    assert synthetic_bars(3, start="2024-06-01 12:00").index[0] == pd.Timestamp("2024-06-01T12:00:00Z")
    assert synthetic_bars(3, start="2024-06-01T14:00:00+02:00").index[0] == pd.Timestamp("2024-06-01T12:00:00Z")


def test_synthetic_regimes_occur_and_trends_have_their_sign():
    n = 200_000
    bars = synthetic_bars(n, seed=11)
    regimes = synthetic_regimes(n, seed=11)
    assert set(np.unique(regimes)) == {RANGE, UP, DOWN}
    log_return = np.log(bars["close"] / bars["open"]).to_numpy()
    scale = log_return.std()
    for regime, sign in ((UP, 1), (DOWN, -1)):
        r = log_return[regimes == regime]
        assert len(r) > n / 10
        # The drift is 0.05 sd per bar; demand well beyond sampling noise (sd/sqrt(len)).
        assert sign * r.mean() > 10 * scale / np.sqrt(len(r))
    ranging = log_return[regimes == RANGE]
    # Range returns are negatively autocorrelated: the price turns back towards its level.
    assert np.corrcoef(ranging[:-1], ranging[1:])[0, 1] < -0.3


def test_synthetic_million_bars_are_valid_and_evenly_spaced():
    # Speed is measured in bench/signals.py, not asserted here (shared machines are noisy).
    bars = synthetic_bars(1_000_000, seed=3, timeframe="5m")
    validate_bars(bars, "synthetic")
    assert len(bars) == 1_000_000
    assert (np.diff(bars.index.asi8) == np.diff(bars.index.asi8)[0]).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "whole number >= 1"),
        ({"n": True}, "whole number >= 1"),
        ({"n": 5, "seed": -1}, "seed must be"),
        ({"n": 5, "start_price": 0.0}, "start_price must be a positive number"),
        ({"n": 5, "start_price": float("nan")}, "start_price must be a positive number"),
        ({"n": 5, "timeframe": "1M"}, "bad timeframe"),
        ({"n": 5, "start": "someday"}, "bad start"),
    ],
)
def test_synthetic_arguments_are_checked(kwargs, message):
    with pytest.raises(DataError, match=message):
        synthetic_bars(**kwargs)
