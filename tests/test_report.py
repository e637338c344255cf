"""The HTML report of a backtest: which bars its charts keep, its size on long series, what
it must show (every trade marker, the extremes, the file's name, ``name=value``
parameters, why each trade exited), and that its embedded plotly.js is plotly's own."""

from __future__ import annotations

import base64
import gzip
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cival.backtest import BacktestError, backtest
from cival.backtest.api import BacktestResult
from cival.backtest.report import DEFAULT_BUCKETS, kept_bars
from cival.backtest.simulate import simulate_reference
from cival.data import load_bars, synthetic_bars
from cival.execution import FillModel
from cival.strategies import get_strategy

SIZE_BOUND = 5_000_000
"""Bytes a report of 120,000 bars must stay under."""


def figure_of(page: str) -> tuple[dict, dict[str, dict]]:
    """The figure embedded in a report page, and its traces by name, each with ``x`` as
    UTC timestamps and ``y`` as numbers (decoded from plotly's base64 arrays)."""
    found = re.search(r'<script type="application/json" id="figure">(.*?)</script>', page, re.S)
    assert found, "the report embeds no figure"
    figure = json.loads(found.group(1))
    traces = {}
    for trace in figure["data"]:
        x = figure["kept_x"] if trace["x"] == "kept_x" else trace["x"]
        traces[trace["name"]] = {
            **trace,
            "x": pd.DatetimeIndex(pd.to_datetime(_numbers(x), unit="ms", utc=True)),
            "y": _numbers(trace["y"]),
        }
    return figure, traces


def _numbers(value) -> np.ndarray:
    if isinstance(value, dict):
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
    return np.asarray(value, dtype=float)


def write(result: BacktestResult, tmp_path: Path, **kw) -> tuple[int, str]:
    path = tmp_path / "report.html"
    result.write_report(path, **kw)
    return path.stat().st_size, path.read_text(encoding="utf-8")


def check_long_report(result: BacktestResult, size: int, page: str, directory: str) -> None:
    """What a report of a long series must be and show."""
    bars, trades = result.bars, result.trades
    assert size < SIZE_BOUND, f"{size:,} bytes for {len(bars):,} bars"
    figure, traces = figure_of(page)
    close = traces["close"]
    assert len(close["x"]) < len(bars) / 5  # decimated
    # Nothing invented: each drawn point is a bar's own close, equity and drawdown.
    np.testing.assert_array_equal(close["y"], bars["close"].loc[close["x"]].to_numpy())
    np.testing.assert_array_equal(traces["equity"]["y"], result.equity.loc[traces["equity"]["x"]].to_numpy())
    # Every trade marker, at its trade's times and prices, and on the drawn close line.
    opened = [] if result.simulation.open_position is None else [result.simulation.open_position["entry_time"]]
    assert list(traces["buy"]["x"]) == [*trades["entry_time"], *opened]
    assert list(traces["sell"]["x"]) == list(trades["exit_time"])
    np.testing.assert_array_equal(traces["sell"]["y"], trades["exit_price"].to_numpy())
    assert traces["sell"]["text"] == list(trades["exit_reason"])
    assert set(trades["entry_time"]) | set(trades["exit_time"]) <= set(close["x"])
    # The extremes: first and last bar, highest and lowest close, the max drawdown's trough.
    assert close["x"][0] == bars.index[0] and close["x"][-1] == bars.index[-1]
    for at in (bars["close"].idxmax(), bars["close"].idxmin(), bars["high"].idxmax(), bars["low"].idxmin()):
        assert at in close["x"], at
    assert close["y"].max() == bars["close"].max() and close["y"].min() == bars["close"].min()
    drawdown = traces["drawdown"]
    assert -drawdown["y"].min() == pytest.approx(result.metrics["max_drawdown"], rel=1e-12)
    assert traces["equity"]["y"].max() == result.equity.max() and traces["equity"]["y"].min() == result.equity.min()
    # The title: the file's name, not its directory, and the parameters as name=value.
    name = Path(result.source).name
    title = figure["layout"]["title"]["text"]
    assert title.endswith(f" on {name}") and f"<h1>{result.strategy} on {name}</h1>" in page
    assert directory not in page
    for key, value in result.params.model_dump().items():
        assert f"{key}={value}" in title and f"{key}={value}" in page
    # The trades table says why each trade exited.
    assert "<th>exit_reason</th>" in page
    for reason, count in trades["exit_reason"].value_counts().items():
        assert page.count(f"<td>{reason}</td>") == count


def test_a_report_of_120k_bars_is_small_and_keeps_every_trade_and_extreme(tmp_path):
    bars = synthetic_bars(120_000, timeframe="5m", seed=3)
    directory = str(tmp_path / "market" / "data")
    bars.attrs["source"] = f"{directory}/synthetic_5m.csv"
    result = backtest("alligator", bars, {"lips_period": 6}, stop_loss_pct=2, take_profit_pct=3)
    assert len(result.trades) > 2_000 and set(result.trades["exit_reason"]) == {"signal", "stop-loss", "take-profit"}
    check_long_report(result, *write(result, tmp_path), directory)


def test_a_report_of_real_5_minute_bars(shared_data, tmp_path):
    path = shared_data / "intraday_crypto" / "binance_BTCUSDT_5m.csv"
    result = backtest("alligator", path, stop_loss_pct=2, take_profit_pct=4)
    assert len(result.bars) == 119_784 and len(result.trades) > 2_000
    check_long_report(result, *write(result, tmp_path), str(path.parent))


def test_every_bar_on_request_and_for_short_series(shared_data, tmp_path):
    bars = load_bars(shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv")
    result = backtest("darvas", bars, {"lookback": 10})
    assert len(bars) <= 2 * DEFAULT_BUCKETS
    np.testing.assert_array_equal(kept_bars(result), np.arange(len(bars)))
    assert len(kept_bars(result, buckets=100)) < len(bars)
    np.testing.assert_array_equal(kept_bars(result, buckets=None), np.arange(len(bars)))
    _, traces = figure_of(write(result, tmp_path, buckets=None)[1])
    assert list(traces["close"]["x"]) == list(bars.index)
    for bad in (0, -3, 2.5, True, "100"):
        with pytest.raises(BacktestError, match=r"buckets must be a whole number >= 1"):
            kept_bars(result, bad)


def test_the_bucket_rule_on_a_hand_made_series():
    # 12 bars in 3 runs of 4; no trade, so the equity is flat (each run keeps its first bar).
    closes = [10, 12, 9, 11, 15, 13, 8, 14, 10, 10, 16, 11]
    highs = [c + 1 for c in closes]
    lows = [c - 1 for c in closes]
    highs[5], lows[9] = 30, 1  # the highest high and the lowest low are at no close extreme
    index = pd.date_range("2024-01-01", periods=12, freq="D", tz="UTC", name="timestamp")
    bars = pd.DataFrame({"open": closes, "high": highs, "low": lows, "close": closes, "volume": 1.0}, index=index, dtype=float)
    model = FillModel(cash=1_000)
    none = np.zeros(12, dtype=bool)
    strategy = get_strategy("darvas")
    result = BacktestResult(
        strategy="darvas", params=strategy.parse_params(None), model=model, bars=bars,
        signals=pd.DataFrame({"entry": none, "exit": none}, index=index),
        simulation=simulate_reference(bars, none, none, model),
    )
    # Runs: [10 12 9 11] keeps 0 (first), 1 (high), 2 (low); [15 13 8 14] keeps 4, 6 and 5
    # (highest high); [10 10 16 11] keeps 8 (first and lowest), 10 (highest), 9 (lowest
    # low); 11 is the last bar. Bars 3 and 7 are none of these.
    assert kept_bars(result, buckets=3).tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10, 11]


def test_the_embedded_plotly_js_is_plotlys_own(tmp_path):
    from plotly.offline import get_plotlyjs

    result = backtest("darvas", synthetic_bars(300, seed=5))
    _, page = write(result, tmp_path)
    packed = re.search(r'<script type="text/plain" id="plotlyjs-gzip">([A-Za-z0-9+/=]+)</script>', page)
    assert packed and gzip.decompress(base64.b64decode(packed.group(1))).decode("utf-8") == get_plotlyjs()
    assert "<script src=" not in page  # nothing to fetch: the file opens with no network
    assert "new DecompressionStream(\"gzip\")" in page and "Plotly.newPlot" in page


@pytest.mark.slow
def test_a_browser_draws_the_report(tmp_path, chromium):
    """Headless Chromium opens the report, with no network, and draws its three panels."""
    from tests.conftest import rendered_dom

    bars = synthetic_bars(30_000, timeframe="5m", seed=3)
    bars.attrs["source"] = str(tmp_path / "synthetic_5m.csv")
    result = backtest("alligator", bars)
    write(result, tmp_path)
    dom = rendered_dom(chromium, tmp_path / "report.html")
    chart = dom[dom.index('<div id="chart"'):dom.index('<script type="application/json"')]
    assert "could not be drawn" not in chart and "Drawing the chart" not in chart
    assert [chart.count(f'class="subplot {axes}"') for axes in ("xy", "x2y2", "x3y3")] == [1, 1, 1]
    assert "alligator (jaw_period=13" in chart and "on synthetic_5m.csv" in chart
