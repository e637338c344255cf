"""Strategies: published references, hand-made scenario tables, causality and live == vectorised."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cival.data import load_bars
from cival.strategies import (
    FAMILY_BY_STRATEGY,
    PARAMS_BY_STRATEGY,
    STRATEGIES,
    StrategyError,
    get_strategy,
)
from cival.strategies.elliott import label_impulses
from cival.strategies.indicators import smma

NAN = math.nan


def frame(high, low, close, open_=None) -> pd.DataFrame:
    high, low, close = (np.asarray(x, dtype=float) for x in (high, low, close))
    open_ = (high + low) / 2 if open_ is None else np.asarray(open_, dtype=float)
    index = pd.date_range("2024-01-01", periods=len(high), freq="h", tz="UTC", name="timestamp")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": 1.0}, index=index)


def assert_column(actual: pd.Series, expected: list[float]) -> None:
    assert len(actual) == len(expected)
    for t, (a, e) in enumerate(zip(actual.to_numpy(), expected, strict=True)):
        if isinstance(e, float) and math.isnan(e):
            assert math.isnan(a), f"bar {t}: expected NaN, got {a}"
        else:
            assert a == pytest.approx(e, rel=1e-12, abs=1e-12), f"bar {t}: expected {e}, got {a}"


def flags(n: int, *true_at: int) -> list[bool]:
    return [t in true_at for t in range(n)]


# -- SMMA ------------------------------------------------------------------------------------


def test_smma_matches_the_published_sma_seeded_reference():
    # freqtrade/technical tests/test_indicators.py::test_rma (INDICATORS.md section 1).
    x = np.array([6, -1, 5, 4, 12, 5, 11, 10, 3, 13], dtype=float)
    assert_column(pd.Series(smma(x, 5)), [NAN] * 4 + [5.2, 5.16, 6.328, 7.0624, 6.24992, 7.599936])


def test_smma_matches_backtrader_on_real_data(shared_data):
    bars = load_bars(shared_data / "daily_other" / "backtrader_2006-day-001.csv")
    s = pd.Series(smma(bars["close"].to_numpy(), 30), index=bars.index)
    assert s.first_valid_index() == pd.Timestamp("2006-02-10", tz="UTC")
    assert s["2006-02-10"] == pytest.approx(3644.444667, abs=1e-6)
    assert s["2006-07-21"] == pytest.approx(3616.427648, abs=1e-6)
    assert s["2006-12-29"] == pytest.approx(4021.569725, abs=1e-6)


def test_alligator_lines_match_the_reference_illustration(shared_data):
    bars = load_bars(shared_data / "daily_other" / "backtrader_2006-day-001.csv")
    median = ((bars["high"] + bars["low"]) / 2).to_numpy()
    # INDICATORS.md section 2 (SMA-seeded column): "bar 40" counts from 1.
    assert smma(median, 13)[39] == pytest.approx(3720.1294, abs=1e-4)
    assert smma(median, 8)[39] == pytest.approx(3748.5457, abs=1e-4)
    assert smma(median, 5)[39] == pytest.approx(3773.9227, abs=1e-4)
    # On the last bar the unshifted SMMAs are the reference's jaw / teeth / lips; the
    # signals frame shows each line shifted forward by 8 / 5 / 3 bars.
    signals = get_strategy("alligator").signals(bars)
    assert smma(median, 13)[-1] == pytest.approx(4076.4559, abs=1e-4)
    assert signals["jaw"].iloc[-1] == pytest.approx(smma(median, 13)[-9], rel=1e-15)
    assert signals["teeth"].iloc[-1] == pytest.approx(smma(median, 8)[-6], rel=1e-15)
    assert signals["lips"].iloc[-1] == pytest.approx(smma(median, 5)[-4], rel=1e-15)
    assert smma(median, 8)[-1] == pytest.approx(4094.6859, abs=1e-4)
    assert smma(median, 5)[-1] == pytest.approx(4109.7499, abs=1e-4)


# -- Alligator scenario ----------------------------------------------------------------------


def test_alligator_scenario_table():
    # Median prices 10, 12, 14, 16, 18, 17, 15, 13 (high = m + 1, low = m - 1).
    m = np.array([10, 12, 14, 16, 18, 17, 15, 13], dtype=float)
    close = [10.5, 12.5, 14.5, 16.5, 18.5, 16.9, 14.5, 12.5]
    params = dict(jaw_period=3, jaw_shift=2, teeth_period=2, teeth_shift=1, lips_period=1, lips_shift=0)
    out = get_strategy("alligator").signals(frame(m + 1, m - 1, close), params)
    # SMMA(m, 3): -, -, 12, 40/3, 134/9, 421/27, ... shifted by 2.
    assert_column(out["jaw"], [NAN, NAN, NAN, NAN, 12.0, 40 / 3, 134 / 9, 421 / 27])
    # SMMA(m, 2): -, 11, 12.5, 14.25, 16.125, 16.5625, 15.78125, ... shifted by 1.
    assert_column(out["teeth"], [NAN, NAN, 11.0, 12.5, 14.25, 16.125, 16.5625, 15.78125])
    assert_column(out["lips"], list(m))
    # t4: 18 > 14.25 > 12 and close 18.5 > 18. t5: lines in order but close 16.9 < lips 17.
    assert out["entry"].tolist() == flags(8, 4)
    assert out["exit"].tolist() == flags(8, 6, 7)  # lips below teeth; NaN teeth compare false


# -- Darvas scenario -------------------------------------------------------------------------

DARVAS_BARS = [
    # high, low, close    state after the bar (lookback 3, confirm 2)
    (10.0, 9.0, 9.5),  # 0 SEEK
    (11.0, 10.0, 10.5),  # 1
    (10.5, 9.5, 10.0),  # 2
    (12.0, 11.0, 11.5),  # 3 new high above max(10, 11, 10.5): TOP, H=12
    (11.5, 10.5, 11.0),  # 4
    (11.8, 10.8, 11.0),  # 5 two bars without a higher high: L=min(11, 10.5, 10.8)=10.5 -> BOTTOM
    (11.7, 10.6, 11.0),  # 6 two bars without a lower low: box (10.5, 12) complete -> SEEK
    (11.9, 11.0, 11.5),  # 7 11.9 > max(11.5, 11.8, 11.7): TOP, H=11.9
    (12.5, 11.5, 12.4),  # 8 higher high: H=12.5; close 12.4 > box top 12 -> entry
    (12.2, 11.2, 12.1),  # 9 entry again (a level, not a cross)
    (12.3, 10.0, 10.2),  # 10 L=min(11.5, 11.2, 10.0)=10.0 -> BOTTOM; close 10.2 < box bottom 10.5 -> exit
    (12.4, 9.8, 10.0),  # 11 lower low: L=9.8; close 10.0 < 10.5 -> exit again
    (12.0, 10.2, 11.0),  # 12
    (12.6, 11.0, 12.5),  # 13 high above H=12.5: back to TOP, H=12.6; close 12.5 > 12 -> entry
    (12.1, 10.9, 11.5),  # 14
    (12.2, 11.1, 11.8),  # 15 L=min(11, 10.9, 11.1)=10.9 at bar 14 -> BOTTOM
    (12.3, 11.2, 12.0),  # 16 box (10.9, 12.6) complete
]


def test_darvas_scenario_table():
    high, low, close = zip(*DARVAS_BARS, strict=True)
    out = get_strategy("darvas").signals(frame(high, low, close), dict(lookback=3, confirm=2))
    assert_column(out["box_top"], [NAN] * 6 + [12.0] * 10 + [12.6])
    assert_column(out["box_bottom"], [NAN] * 6 + [10.5] * 10 + [10.9])
    assert out["entry"].tolist() == flags(17, 8, 9, 13)
    assert out["exit"].tolist() == flags(17, 10, 11)


def test_darvas_bottom_takes_the_latest_bar_holding_the_minimum():
    # After the top at bar 3, lows 10.5 at bars 4 and 5 tie: low_bar is 5, so the box
    # completes at bar 7 (5 + confirm), not at bar 6.
    bars = [(10, 9, 9.5), (11, 10, 10.5), (10.5, 9.5, 10), (12, 11, 11.5), (11.5, 10.5, 11), (11.8, 10.5, 11), (11.7, 10.6, 11), (11.6, 10.7, 11)]
    high, low, close = zip(*bars, strict=True)
    out = get_strategy("darvas").signals(frame(high, low, close), dict(lookback=3, confirm=2))
    assert_column(out["box_top"], [NAN] * 7 + [12.0])
    assert_column(out["box_bottom"], [NAN] * 7 + [10.5])


# -- Elliott scenario ------------------------------------------------------------------------

ELLIOTT_BARS = [
    # high, low, close     (zigzag 10 %)
    (100, 100, 100),  # 0 both candidates start here
    (95, 90, 92),  # 1 low 90 <= 100 x 0.9: swing high 100 confirmed
    (92, 85, 88),  # 2 candidate low 85
    (93, 88, 90),  # 3 93 < 85 x 1.1 = 93.5
    (95, 90, 94),  # 4 95 >= 93.5: swing low 85 confirmed
    (110, 100, 108),  # 5
    (120, 112, 118),  # 6 candidate high 120
    (118, 108, 110),  # 7 108 <= 120 x 0.9: swing high 120 confirmed
    (105, 100, 102),  # 8
    (104, 98, 100),  # 9 candidate low 98
    (108, 101, 106),  # 10 108 >= 98 x 1.1 = 107.8: swing low 98 confirmed -> setup (85, 120, 98)
    (118, 106, 117),  # 11
    (125, 115, 124),  # 12 close 124 > P1 120: entry
    (130, 122, 129),  # 13 no second entry for the same setup
    (158, 128, 156),  # 14 close 156 >= target 98 + 1.618 x 35 = 154.63: exit, count ends
    (157, 150, 151),  # 15
]
ELLIOTT_PARAMS = dict(zigzag_pct=10.0, min_retrace=0.382, max_retrace=0.786, target_ext=1.618)


def elliott(bars, **overrides):
    high, low, close = zip(*bars, strict=True)
    return get_strategy("elliott").signals(frame(high, low, close), {**ELLIOTT_PARAMS, **overrides})


def test_elliott_scenario_wave3_entry_and_target_exit():
    out = elliott(ELLIOTT_BARS)
    n = len(ELLIOTT_BARS)
    assert_column(out["pivot"], [NAN, 100.0, NAN, NAN, 85.0, NAN, NAN, 120.0, NAN, NAN, 98.0] + [NAN] * 5)
    assert out["pivot_kind"].tolist() == [0, 1, 0, 0, -1, 0, 0, 1, 0, 0, -1, 0, 0, 0, 0, 0]
    target = 98 + 1.618 * 35
    assert_column(out["p0"], [NAN] * 10 + [85.0] * 5 + [NAN])
    assert_column(out["p1"], [NAN] * 10 + [120.0] * 5 + [NAN])
    assert_column(out["p2"], [NAN] * 10 + [98.0] * 5 + [NAN])
    assert_column(out["target"], [NAN] * 10 + [target] * 5 + [NAN])
    assert out["entry"].tolist() == flags(n, 12)
    assert out["exit"].tolist() == flags(n, 14)


def test_elliott_close_below_wave2_invalidates_the_count():
    bars = ELLIOTT_BARS[:11] + [(104, 96, 97), (125, 115, 124)]
    out = elliott(bars)
    # Bar 11: low 96 <= 108 x 0.9 confirms a swing high at 108, and close 97 < P2 = 98.
    assert out["pivot"].iloc[11] == 108.0 and out["pivot_kind"].iloc[11] == 1
    assert out["exit"].tolist() == flags(13, 11)
    assert out["entry"].tolist() == flags(13)  # the count is gone: no entry at bar 12
    assert math.isnan(out["p1"].iloc[12])


def test_elliott_requires_the_retracement_in_range():
    # Wave 2 retraced 22/35 = 0.629 of wave 1: outside [0.7, 0.786] there is no setup.
    out = elliott(ELLIOTT_BARS, min_retrace=0.7)
    assert not out["entry"].any() and not out["exit"].any() and out["p0"].isna().all()
    assert out["pivot"].notna().sum() == 4  # the pivots themselves do not depend on it


def test_elliott_no_entry_once_a_newer_pivot_is_confirmed():
    # After the setup (85, 120, 98) at bar 10 a swing high at 112 (bar 12) and a swing low
    # at 100 (bar 13) are confirmed. Their count (98, 112, 100) retraces 12/14 = 0.857, out
    # of range, so it sets nothing up; the old setup is no longer the latest, so bar 13's
    # close above 120 is not an entry. The old count still stands for exits.
    bars = ELLIOTT_BARS[:11] + [(112, 104, 110), (108, 100, 101), (126, 110, 125)]
    out = elliott(bars)
    assert out["pivot_kind"].tolist()[11:] == [0, 1, -1]
    assert out["pivot"].iloc[12] == 112.0 and out["pivot"].iloc[13] == 100.0
    assert not out["entry"].any() and not out["exit"].any()
    assert (out["p0"].iloc[13], out["p1"].iloc[13], out["p2"].iloc[13]) == (85.0, 120.0, 98.0)


def test_elliott_a_newer_valid_setup_replaces_the_count():
    # As above, but the swing high is 119: (98, 119, 106) retraces 13/21 = 0.619, a valid
    # setup that replaces the old count; bar 13's close 125 > 119 is its wave-3 entry.
    bars = ELLIOTT_BARS[:11] + [(119, 107, 118), (118, 106, 107), (126, 110, 125)]
    out = elliott(bars)
    assert out["pivot_kind"].tolist()[11:] == [0, 1, -1]
    assert out["entry"].tolist() == flags(14, 13)
    assert (out["p0"].iloc[13], out["p1"].iloc[13], out["p2"].iloc[13]) == (98.0, 119.0, 106.0)
    assert out["target"].iloc[13] == pytest.approx(106 + 1.618 * 21)


@pytest.mark.parametrize(
    "kinds, prices, expected",
    [
        ([-1, 1, -1, 1, -1, 1], [100, 120, 110, 150, 130, 160], [(0, 1)]),  # a clean up-impulse
        ([-1, 1, -1, 1, -1, 1], [100, 120, 110, 150, 115, 160], []),  # wave 4 overlaps wave 1
        ([-1, 1, -1, 1, -1, 1], [100, 130, 120, 140, 135, 170], []),  # wave 3 the shortest
        ([-1, 1, -1, 1, -1, 1], [100, 120, 95, 150, 130, 160], []),  # wave 2 below the start
        ([-1, 1, -1, 1, -1, 1], [100, 120, 110, 150, 130, 145], []),  # wave 5 below wave 3's end
        ([1, -1, 1, -1, 1, -1], [200, 180, 190, 150, 170, 140], [(0, -1)]),  # a down-impulse
        ([1, -1, 1, -1, 1, -1], [200, 180, 190, 150, 185, 140], []),  # down: wave 4 overlaps
        ([-1, 1, 1, -1, -1, 1], [100, 120, 110, 150, 130, 160], []),  # not alternating
        ([1, -1, -1, 1, -1, 1, -1, 1], [0, 0, 100, 120, 110, 150, 130, 160], [(2, 1)]),  # found further in
        ([1, -1, 1, -1, 1, -1, 1, -1, 1], [90, 80, 100, 90, 130, 110, 160, 140, 150], [(1, 1)]),
    ],
)
def test_label_impulses(kinds, prices, expected):
    assert [(i.start, i.direction) for i in label_impulses(kinds, prices)] == expected


# -- parameters and registry -----------------------------------------------------------------


def test_registry_knows_the_three_strategies_and_their_families():
    assert sorted(STRATEGIES) == ["alligator", "darvas", "elliott"]
    assert FAMILY_BY_STRATEGY == {"alligator": "trend_following", "darvas": "breakout", "elliott": "price_action"}
    assert set(PARAMS_BY_STRATEGY) == set(STRATEGIES)
    with pytest.raises(StrategyError, match="unknown strategy 'elliot'; known strategies: alligator, darvas, elliott"):
        get_strategy("elliot")


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("alligator", {"jaw_period": 0}, r"parameter jaw_period: .*\(got 0\); must be > 0"),
        ("alligator", {"lips_shift": -1}, r"lips_shift.*must be >= 0"),
        ("alligator", {"jaw_period": True}, r"jaw_period: must be a number, not true"),
        ("darvas", {"lookbak": 5}, r"unknown parameter 'lookbak'; parameters are: lookback, confirm"),
        ("elliott", {"zigzag_pct": 150}, r"zigzag_pct.*must be > 0 and < 100"),
        ("elliott", {"min_retrace": 0.9}, r"min_retrace \(0.9\) must not exceed max_retrace \(0.786\)"),
    ],
)
def test_bad_parameters_name_the_parameter_and_its_bounds(name, params, message):
    with pytest.raises(StrategyError, match=message):
        get_strategy(name).parse_params(params)


def test_live_form_refuses_out_of_order_and_missing_bars():
    high, low, close = zip(*DARVAS_BARS, strict=True)
    bars = frame(high, low, close)
    params = dict(lookback=3, confirm=2)
    live = get_strategy("darvas").live(params)
    rows = []
    for t in range(len(bars)):
        rows.append(live.update_bar(bars.iloc[t]))
        if t == 8:
            with pytest.raises(StrategyError, match="does not follow the previous bar"):
                live.update_bar(bars.iloc[t])  # the same bar delivered twice
            with pytest.raises(StrategyError, match="missing price"):
                live.update(12.0, float("nan"), 11.0, 11.5)
    assert live.bars_seen == len(bars)
    # The refused bars left no trace: every row equals the vectorised one.
    expected = get_strategy("darvas").signals(bars, params)
    assert_frames_identical(pd.DataFrame(rows, index=bars.index), expected)


def test_signals_refuse_bars_without_prices():
    bars = frame([2.0, 2.0], [1.0, 1.0], [1.5, 1.5]).drop(columns=["close"])
    with pytest.raises(StrategyError, match="lack the column"):
        get_strategy("darvas").signals(bars)


# -- real data: causality and live == vectorised ----------------------------------------------

REAL_FILES = [
    "daily_us_equities/backtrader_NVDA.csv",  # 1 day, 4,012 bars
    "intraday_crypto/binance_BTCUSDT_1h.csv",  # 1 hour, 12,556 bars
    "intraday_fx/backtestingpy_EURUSD_1h.csv",  # 1 hour FX with gaps
    "intraday_crypto/freqtrade_testdata_ETH_BTC-5m.csv",  # 5 minutes
]
# Parameters that make each strategy trade often on these files.
PARAMS = {
    "alligator": {},
    "darvas": {"lookback": 20, "confirm": 3},
    "elliott": {"zigzag_pct": 2.0},
}
ELLIOTT_PCT_BY_FILE = {"intraday_fx/backtestingpy_EURUSD_1h.csv": 0.3, "intraday_crypto/freqtrade_testdata_ETH_BTC-5m.csv": 1.0}


def params_for(name: str, path: str) -> dict:
    if name == "elliott" and path in ELLIOTT_PCT_BY_FILE:
        return {"zigzag_pct": ELLIOTT_PCT_BY_FILE[path]}
    return PARAMS[name]


@pytest.fixture(scope="module")
def real_bars(shared_data):
    return {path: load_bars(shared_data / path) for path in REAL_FILES}


def assert_frames_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert a.index.equals(b.index)
    for column in a.columns:
        x, y = a[column].to_numpy(), b[column].to_numpy()
        if x.dtype == bool:
            assert (x == y).all(), column
        else:
            both_nan = np.isnan(x) & np.isnan(y)
            assert (both_nan | (x == y)).all(), f"{column}: first difference at row {int(np.flatnonzero(~(both_nan | (x == y)))[0])}"


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("path", REAL_FILES)
def test_signals_are_causal_on_real_data(real_bars, name, path):
    """Signals on the first k bars equal the first k rows of the signals on all bars."""
    bars = real_bars[path]
    strategy = get_strategy(name)
    params = params_for(name, path)
    full = strategy.signals(bars, params)
    assert full["entry"].sum() >= 3 and full["exit"].sum() >= 3, "too few signals for the test to mean much"
    for k in (1, 2, 37, len(bars) // 3, len(bars) // 2 + 1, len(bars) - 1):
        assert_frames_identical(strategy.signals(bars.iloc[:k], params), full.iloc[:k])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("path", REAL_FILES[:3])
def test_live_rows_equal_vectorised_rows_on_real_data(real_bars, name, path):
    bars = real_bars[path]
    strategy = get_strategy(name)
    params = params_for(name, path)
    vectorised = strategy.signals(bars, params)
    live = strategy.live(params)
    rows = [live.update(o, h, l, c) for o, h, l, c in bars[["open", "high", "low", "close"]].itertuples(index=False)]
    assert_frames_identical(pd.DataFrame(rows, index=bars.index, columns=list(strategy.columns)), vectorised)
    assert live.bars_seen == len(bars)
