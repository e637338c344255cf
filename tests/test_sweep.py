"""Sweeps: grid parsing and bounds, results equal single backtests, local equals Ray."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cival.backtest import SweepError, backtest, sweep
from cival.backtest.metrics import format_table
from cival.backtest.sweep import combinations, parse_grid
from cival.core.fmt import percent
from cival.data import load_bars
from cival.strategies import get_strategy
from tests.helpers import cival_in_process


@pytest.mark.parametrize(
    "specs, expected",
    [
        (["jaw_period=10:20:5"], {"jaw_period": [10, 15, 20]}),
        (["jaw_period=10:21:5"], {"jaw_period": [10, 15, 20]}),
        (["zigzag_pct=0.1:0.5:0.1"], {"zigzag_pct": [0.1, 0.2, 0.3, 0.4, 0.5]}),
        (["lookback=5,10, 20"], {"lookback": [5, 10, 20]}),
        (["a=1", "b=2.5,3"], {"a": [1], "b": [2.5, 3]}),
    ],
)
def test_parse_grid(specs, expected):
    assert parse_grid(specs) == expected


@pytest.mark.parametrize(
    "specs, message",
    [
        (["jaw_period"], "write NAME=START:STOP:STEP"),
        (["jaw_period=1:2"], "a range is START:STOP:STEP"),
        (["jaw_period=1:5:0"], "STEP must be > 0"),
        (["jaw_period=5:1:1"], "STOP is below START"),
        (["jaw_period=a:b:c"], "must be numbers"),
        (["jaw_period=1", "jaw_period=2"], "given twice"),
    ],
)
def test_bad_grid_syntax(specs, message):
    with pytest.raises(SweepError, match=message):
        parse_grid(specs)


def test_grid_values_are_checked_against_the_parameter_bounds():
    alligator = get_strategy("alligator")
    with pytest.raises(SweepError, match=r"jaw_period=0 is out of bounds: jaw_period must be > 0"):
        combinations(alligator, {"jaw_period": [0, 5]})
    with pytest.raises(SweepError, match=r"has no parameter 'jaw'; parameters are: jaw_period"):
        combinations(alligator, {"jaw": [5]})
    with pytest.raises(SweepError, match=r"zigzag_pct=150 is out of bounds: zigzag_pct must be > 0 and < 100"):
        combinations(get_strategy("elliott"), {"zigzag_pct": [150]})


def test_combinations_are_made_lazily_chunk_by_chunk():
    from cival.backtest.sweep import Combinations, checked_values

    alligator = get_strategy("alligator")
    huge = {name: list(range(1, 33)) for name in ("jaw_period", "teeth_period", "lips_period", "jaw_shift", "teeth_shift", "lips_shift")}
    combos = Combinations(alligator, checked_values(alligator, huge))
    assert combos.total == 32**6  # about a billion: building them all would not fit in memory
    first = next(combos.chunks(10))
    assert len(first) == 10 and first[0]["jaw_period"] == 1 and first[-1]["lips_shift"] == 10


def test_cross_parameter_rules_skip_combinations():
    models, skipped = combinations(get_strategy("elliott"), {"min_retrace": [0.3, 0.6], "max_retrace": [0.5, 0.7]})
    # (0.6, 0.5) breaks min_retrace <= max_retrace
    assert skipped == 1
    assert [(m.min_retrace, m.max_retrace) for m in models] == [(0.3, 0.5), (0.3, 0.7), (0.6, 0.7)]


@pytest.fixture(scope="module")
def btc_1h(shared_data):
    return load_bars(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv")


def test_sweep_rows_equal_single_backtests(btc_1h):
    grid = {"lookback": [10, 25, 40], "confirm": [2, 4]}
    result = sweep("darvas", btc_1h, grid, backend="local", chunk_size=4, fee_bps=7)
    assert len(result.table) == 6 and result.skipped == 0
    for row in result.table.sample(3, random_state=1).to_dict("records"):
        single = backtest("darvas", btc_1h, {"lookback": row["lookback"], "confirm": row["confirm"]}, fee_bps=7)
        for key in ("trades", "total_return", "sharpe", "max_drawdown", "win_rate", "fees_paid", "final_equity"):
            assert row[key] == pytest.approx(single.metrics[key], rel=1e-12), key
    best = result.best()
    assert best == {"lookback": int(result.top(1)["lookback"][0]), "confirm": int(result.top(1)["confirm"][0])}
    assert all(isinstance(v, int) for v in best.values())
    ranked = result.ranked()["sharpe"].to_numpy()
    assert (np.diff(ranked) <= 0).all()


def test_sweep_table_shows_percentages_not_fractions(btc_1h, shared_data, tmp_path):
    result = sweep("darvas", btc_1h, {"lookback": [10, 20], "confirm": [2, 3]}, backend="local")
    shown = format_table(result.top(4))
    assert list(shown["lookback"]) == list(result.top(4)["lookback"])  # parameters as they are
    for column in ("total_return", "max_drawdown", "win_rate"):
        for text, value in zip(shown[column], result.top(4)[column], strict=True):
            assert re.fullmatch(r"[-+]?\d+\.\d{2} %", text), text
            assert float(text.removesuffix(" %")) == pytest.approx(value * 100, abs=0.005)
    assert all(re.fullmatch(r"-?\d+\.\d{2}", text) for text in shown["sharpe"])
    page = result._repr_html_()
    assert f"<td>{percent(result.top(1)['total_return'][0], signed=True)}</td>" in page

    out = cival_in_process("sweep", "darvas", "--data", str(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv"),
                           "--grid", "lookback=10,20", "--local", "--top", "2", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    header = lines.index("top 2 by sharpe:") + 1
    assert lines[header].split() == ["lookback", "confirm", "sharpe", "trades", "total_return", "max_drawdown"]
    assert all(re.search(r" %\s+[\d.]+ %$", line) for line in lines[header + 1: header + 3]), lines


def test_sweep_plots_and_renders(btc_1h):
    two = sweep("darvas", btc_1h, {"lookback": [10, 20], "confirm": [2, 3, 4]}, backend="local")
    heat = two.plot()
    assert heat.data[0].type == "heatmap" and len(heat.data[0].z) == 3 and len(heat.data[0].z[0]) == 2
    one = sweep("darvas", btc_1h, {"lookback": [10, 20, 30]}, backend="local")
    assert list(one.plot().data[0].x) == [10, 20, 30]
    assert "3 combinations by sharpe" in one._repr_html_()
    with pytest.raises(SweepError, match="heatmap axis 'nope' is not a swept parameter"):
        two.heatmap("lookback", "nope")


def test_ranking_by_drawdown_is_ascending(btc_1h):
    result = sweep("darvas", btc_1h, {"lookback": [10, 40]}, backend="local", metric="max_drawdown")
    dd = result.ranked()["max_drawdown"].to_numpy()
    assert dd[0] <= dd[1]
    with pytest.raises(SweepError, match="unknown metric 'sharp'"):
        sweep("darvas", btc_1h, {"lookback": [10]}, backend="local", metric="sharp")


def test_an_explicit_list_of_combinations(btc_1h):
    combos = [{"lookback": 10, "confirm": 2}, {"lookback": 33}]
    result = sweep("darvas", btc_1h, combos, backend="local")
    assert result.table[["lookback", "confirm"]].to_dict("records") == [
        {"lookback": 10, "confirm": 2}, {"lookback": 33, "confirm": 3}
    ]


def test_an_unreachable_ray_cluster_is_a_clear_error_or_a_local_run(btc_1h, capsys):
    import ray

    if ray.is_initialized():  # nothing in this module holds a cluster; a stray one would hide the path
        ray.shutdown()
    grid = {"lookback": [10, 20], "confirm": [2]}
    with pytest.raises(SweepError, match=r"could not start or reach the Ray cluster at 127.0.0.1:1 .*--local"):
        sweep("darvas", btc_1h, grid, backend="ray", address="127.0.0.1:1", chunk_size=1)
    result = sweep("darvas", btc_1h, grid, backend="auto", address="127.0.0.1:1", chunk_size=1)
    assert result.backend == "local" and len(result.table) == 2
    assert result.backend_reason.startswith("Ray could not be reached (")
    assert "running in this process instead" in capsys.readouterr().err


def test_auto_says_why_it_runs_where_it_runs(monkeypatch, btc_1h):
    from cival.backtest.sweep import backend_choice

    small = sweep("darvas", btc_1h.iloc[:3000], {"lookback": [10, 20, 30], "confirm": [2, 3, 4]}, backend="auto", chunk_size=10)
    assert small.backend == "local"
    assert small.backend_reason.startswith("9 combinations fit in one chunk of 10")
    asked = sweep("darvas", btc_1h.iloc[:3000], {"lookback": [10, 20]}, backend="local")
    assert asked.backend_reason == "asked for (backend='local', --local)"
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    assert backend_choice(None, 25, 10) == ("ray", "25 combinations make 3 chunks of 10, spread over 4 cores")
    assert backend_choice("10.0.0.5:6379", 1, 10) == ("ray", "a Ray cluster was given")
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert backend_choice(None, 25, 10)[0] == "local" and "one core" in backend_choice(None, 25, 10)[1]
