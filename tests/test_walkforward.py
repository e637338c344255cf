"""Walk-forward: each window's choice and out-of-sample run, recomputed independently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cival.backtest import SweepError, sweep, walkforward
from cival.backtest.metrics import format_metric
from cival.backtest.simulate import simulate_reference
from cival.data import load_bars
from cival.execution import FillModel
from cival.strategies import get_strategy

GRID = {"lookback": [10, 20, 40], "confirm": [2, 4]}


@pytest.fixture(scope="module")
def bars(shared_data):
    return load_bars(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv").iloc[:6000]


@pytest.fixture(scope="module")
def result(bars):
    return walkforward("darvas", bars, GRID, train=2000, test=1000, backend="local", fee_bps=8)


def test_windows_roll_by_the_test_length(result, bars):
    w = result.windows
    assert len(w) == 4  # (6000 - 2000) / 1000
    assert (w["test_start"] == [bars.index[2000 + 1000 * i] for i in range(4)]).all()
    assert (w["train_start"] == [bars.index[1000 * i] for i in range(4)]).all()
    assert len(result.equity) == 4000 and result.equity.index.equals(bars.index[2000:6000])


def test_each_choice_is_the_best_of_its_train_window_alone(result, bars):
    for row in result.windows.itertuples():
        train = bars.iloc[1000 * row.window : 1000 * row.window + 2000]
        alone = sweep("darvas", train, GRID, backend="local", fee_bps=8)
        assert {"lookback": row.lookback, "confirm": row.confirm} == alone.best()
        assert row.is_sharpe == pytest.approx(alone.top(1)["sharpe"][0], rel=1e-12)


def test_out_of_sample_windows_chain_their_equity(result, bars):
    cash = 10_000.0
    trades = []
    for row in result.windows.itertuples():
        end = 2000 + 1000 * (row.window + 1)
        signals = get_strategy("darvas").signals(bars.iloc[:end], {"lookback": row.lookback, "confirm": row.confirm})
        window = slice(end - 1000, end)
        sim = simulate_reference(
            bars.iloc[window], signals["entry"].to_numpy()[window], signals["exit"].to_numpy()[window],
            FillModel(cash=cash, fee_bps=8),
        )
        np.testing.assert_allclose(result.equity.iloc[window.start - 2000 : window.stop - 2000], sim.equity, rtol=1e-12)
        trades.append(sim.trades)
        cash = float(sim.equity.iloc[-1])
    expected = pd.concat(trades, ignore_index=True)
    assert len(result.trades) == len(expected) > 0
    np.testing.assert_allclose(result.trades["pnl"], expected["pnl"], rtol=1e-9)
    assert result.metrics["final_equity"] == pytest.approx(cash, rel=1e-12)
    assert result.metrics["trades"] == len(expected)


def test_result_renders(result):
    page = result._repr_html_()
    assert "4 windows" in page and "oos_sharpe" in page and "<table" in page
    first = result.windows["oos_total_return"].iloc[0]  # a fraction, shown as a percentage
    assert f"<td>{format_metric('oos_total_return', first)}</td>" in page
    text = format_metric("oos_total_return", first)
    assert text.endswith(" %") and float(text.removesuffix(" %")) == pytest.approx(first * 100, abs=0.005)
    figure = result.plot()
    assert figure.data[0].name == "out-of-sample equity" and len(figure.data[0].x) == 4000


def test_too_few_bars_is_a_clear_error(bars):
    with pytest.raises(SweepError, match="fewer than one window"):
        walkforward("darvas", bars.iloc[:100], GRID, train=80, test=40, backend="local")


def test_an_unreachable_ray_address_is_a_clear_error(bars):
    with pytest.raises(SweepError, match=r"could not start or reach the Ray cluster at 127.0.0.1:1"):
        walkforward("darvas", bars, GRID, train=2000, test=1000, backend="ray", address="127.0.0.1:1")


@pytest.mark.slow
def test_cli_walkforward_json(shared_data, tmp_path):
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    data = shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv"
    result = subprocess.run(
        [sys.executable, "-m", "cival", "walkforward", "darvas", "--data", str(data), "--grid", "lookback=10,20",
         "--train", "400", "--test", "200", "--local", "--json"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [w["window"] for w in out["windows"]] == [0, 1, 2]
    assert out["windows"][0]["test_start"] == "2024-10-07T07:00:00Z"
    assert "total_return" in out["out_of_sample"] and "oos_sharpe" in out["windows"][0]
