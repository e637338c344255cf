"""The fill model and the backtester: hand-computed scenario tables on both engines,
metrics, engine parity and causality on real data, and `cival backtest`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cival.backtest import BacktestError, backtest, fill_model
from cival.backtest.metrics import compute_metrics, format_metric, format_open_position, format_trades
from cival.backtest.simulate import (
    TRADE_COLUMNS,
    Simulation,
    simulate_reference,
    simulate_vectorbt,
)
from cival.core.fmt import money, percent
from cival.data import load_bars
from cival.execution import FillModel
from tests.helpers import cival_in_process

ENGINES = {"reference": simulate_reference, "vectorbt": simulate_vectorbt}


def bars_of(rows) -> pd.DataFrame:
    o, h, l, c = (np.array(x, dtype=float) for x in zip(*rows, strict=True))
    index = pd.date_range("2024-01-01", periods=len(rows), freq="D", tz="UTC", name="timestamp")
    return pd.DataFrame({"open": o, "high": h, "low": l, "close": c, "volume": 1.0}, index=index)


def signals(n, entries=(), exits=()):
    entry = np.zeros(n, dtype=bool)
    exit_ = np.zeros(n, dtype=bool)
    entry[list(entries)] = True
    exit_[list(exits)] = True
    return entry, exit_


# -- scenario tables -------------------------------------------------------------------------

ROUND_TRIP = [(100, 101, 99, 100), (102, 103, 101, 102), (105, 107, 104, 106), (104, 105, 103, 104)]


@pytest.mark.parametrize("engine", ENGINES)
def test_round_trip_fills_at_next_open_with_slippage_fees_and_sizing(engine):
    model = FillModel(cash=10_000, fee_bps=10, slippage_bps=5, qty_step=1)
    sim = ENGINES[engine](bars_of(ROUND_TRIP), *signals(4, entries=[0], exits=[2]), model)
    # Entry signal at bar 0 -> buy at bar 1's open 102 x 1.0005 = 102.051.
    # qty = floor(10,000 / 1.001 / 102.051) = floor(97.89...) = 97; cost 9,898.947, fee 9.898947.
    # Exit signal at bar 2 -> sell at bar 3's open 104 x 0.9995 = 103.948: 10,082.956, fee 10.082956.
    (trade,) = sim.trades.itertuples(index=False)
    assert trade.entry_time == pd.Timestamp("2024-01-02", tz="UTC")
    assert trade.exit_time == pd.Timestamp("2024-01-04", tz="UTC")
    assert trade.exit_reason == "signal"
    assert trade.entry_price == pytest.approx(102.051, rel=1e-12)
    assert trade.exit_price == pytest.approx(103.948, rel=1e-12)
    assert trade.qty == 97
    assert trade.fees == pytest.approx(9.898947 + 10.082956, rel=1e-12)
    assert trade.pnl == pytest.approx(10_082.956 - 9_898.947 - 9.898947 - 10.082956, rel=1e-12)
    assert trade.pnl == pytest.approx(164.027097, rel=1e-12)
    assert trade._7 == pytest.approx(164.027097 / (9_898.947 + 9.898947), rel=1e-12)  # return
    cash_after_buy = 10_000 - 9_898.947 - 9.898947
    assert sim.equity.to_numpy() == pytest.approx(
        [10_000, cash_after_buy + 97 * 102, cash_after_buy + 97 * 106, 10_164.027097], rel=1e-12
    )
    assert sim.cash == pytest.approx(10_164.027097, rel=1e-12)
    assert sim.in_position.tolist() == [False, True, True, False]
    assert sim.open_position is None


RULES = [(100, 101, 99, 100)] * 6


@pytest.mark.parametrize("engine", ENGINES)
def test_signal_rules(engine):
    model = FillModel(cash=1_000, fee_bps=0, slippage_bps=0, qty_step=1)
    # bar 0: entry and exit together while flat -> nothing. bar 1: exit while flat -> ignored.
    # bar 1 also entry -> buy at bar 2. bar 2: entry while in position -> ignored.
    # bar 3: exit -> sell at bar 4. bar 5 (the last): entry -> never filled.
    entry, exit_ = signals(6, entries=[0, 1, 2, 5], exits=[0, 1, 3])
    entry[1], exit_[1] = True, False  # bar 1 is an entry only
    sim = ENGINES[engine](bars_of(RULES), entry, exit_, model)
    assert sim.fills["time"].dt.day.tolist() == [3, 5]  # bars 2 and 4
    assert sim.fills["side"].tolist() == [1, -1]
    assert sim.trades["qty"].tolist() == [10]
    assert sim.open_position is None


@pytest.mark.parametrize("engine", ENGINES)
def test_entry_and_exit_on_the_same_bar_while_in_position_exits(engine):
    model = FillModel(cash=1_000, fee_bps=0, slippage_bps=0, qty_step=1)
    entry, exit_ = signals(6, entries=[0, 2], exits=[2])
    sim = ENGINES[engine](bars_of(RULES), entry, exit_, model)
    assert sim.fills["side"].tolist() == [1, -1]
    assert sim.fills["time"].dt.day.tolist() == [2, 4]


@pytest.mark.parametrize("engine", ENGINES)
def test_position_open_at_the_end_is_marked_not_traded(engine):
    rows = [(100, 101, 99, 100), (100, 101, 99, 100), (110, 121, 109, 120)]
    model = FillModel(cash=1_000, fee_bps=20, slippage_bps=0, qty_step=1)
    sim = ENGINES[engine](bars_of(rows), *signals(3, entries=[0]), model)
    assert sim.trades.empty and list(sim.trades.columns) == TRADE_COLUMNS
    op = sim.open_position
    # floor(1,000 / 1.002 / 100) = 9 units at 100; fee 1.8; marked at 120.
    assert op["qty"] == 9 and op["entry_price"] == 100 and op["mark_price"] == 120
    assert op["entry_fee"] == pytest.approx(1.8)
    assert op["unrealized_pnl"] == pytest.approx(9 * 120 - 900 - 1.8)
    assert sim.equity.iloc[-1] == pytest.approx(1_000 - 900 - 1.8 + 9 * 120)


@pytest.mark.parametrize("engine", ENGINES)
def test_fraction_and_quantity_step_round_down(engine):
    model = FillModel(cash=1_000, fee_bps=0, slippage_bps=0, fraction=0.5, qty_step=0.1)
    rows = [(30, 31, 29, 30), (30, 31, 29, 30), (30, 31, 29, 30)]
    sim = ENGINES[engine](bars_of(rows), *signals(3, entries=[0]), model)
    # 500 / 30 = 16.666... -> 16.6 in steps of 0.1
    assert sim.open_position["qty"] == 16.6
    assert sim.fills["notional"].iloc[0] == pytest.approx(498.0)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_fill_when_not_one_unit_is_affordable(engine):
    model = FillModel(cash=50, fee_bps=0, slippage_bps=0, qty_step=1)
    bars = bars_of(RULES)
    sim = ENGINES[engine](bars, *signals(6, entries=[0]), model)
    assert sim.fills.empty and sim.open_position is None
    assert (sim.equity == 50).all()
    # No trades still means typed columns, so frames compare and concatenate cleanly.
    assert sim.trades.empty
    assert sim.trades["entry_time"].dtype == bars.index.dtype and sim.trades["pnl"].dtype == np.float64


def test_bad_costs_name_the_field_and_its_bounds():
    with pytest.raises(BacktestError, match=r"fee_bps.*must be >= 0"):
        fill_model(fee_bps=-1)
    with pytest.raises(BacktestError, match=r"fraction.*must be > 0 and <= 1"):
        fill_model(fraction=1.5)
    with pytest.raises(BacktestError, match=r"unknown parameter 'fees'"):
        fill_model({"fees": 1})


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_on_a_hand_made_curve():
    index = pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC")
    equity = pd.Series([100.0, 110.0, 99.0, 121.0], index=index)
    trades = pd.DataFrame({c: [0.0, 0.0, 0.0] for c in TRADE_COLUMNS})
    trades["pnl"] = [10.0, -5.0, 20.0]
    fills = pd.DataFrame({"fee": [0.5, 0.25]})
    sim = Simulation(fills=fills, trades=trades, equity=equity, in_position=np.array([False, True, True, False]), cash=121.0)
    m = compute_metrics(sim, 100.0)
    years = 3 / 365.25
    r = np.array([0.0, 0.1, -0.1, 0.22222222222222232])
    assert m["total_return"] == pytest.approx(0.21)
    assert m["cagr"] == pytest.approx(1.21 ** (1 / years) - 1)
    assert m["max_drawdown"] == pytest.approx(0.1)
    assert m["calmar"] == pytest.approx(m["cagr"] / 0.1)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std(ddof=1) * np.sqrt(3 / years))
    assert m["sortino"] == pytest.approx(r.mean() / np.sqrt(np.mean(np.minimum(r, 0) ** 2)) * np.sqrt(3 / years))
    assert m["win_rate"] == pytest.approx(2 / 3)
    assert m["profit_factor"] == pytest.approx(30 / 5)
    assert m["exposure"] == 0.5
    assert m["fees_paid"] == 0.75
    assert (m["trades"], m["bars"], m["start"], m["end"]) == (3, 4, "2024-01-01T00:00:00Z", "2024-01-04T00:00:00Z")


def test_undefined_ratios_are_none_not_nan():
    index = pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC")
    flat = Simulation(
        fills=pd.DataFrame({"fee": []}),
        trades=pd.DataFrame(columns=TRADE_COLUMNS),
        equity=pd.Series([100.0] * 3, index=index),
        in_position=np.zeros(3, bool),
        cash=100.0,
    )
    m = compute_metrics(flat, 100.0)
    assert m["sharpe"] is None and m["sortino"] is None and m["calmar"] is None
    assert m["win_rate"] is None and m["profit_factor"] is None
    assert m["total_return"] == 0 and m["max_drawdown"] == 0
    json.dumps(m, allow_nan=False)


# -- real data: the two engines, causality ----------------------------------------------------

PARITY_CASES = [
    ("intraday_crypto/binance_BTCUSDT_1h.csv", "alligator", {}),
    ("intraday_crypto/binance_BTCUSDT_1h.csv", "darvas", {}),
    ("intraday_crypto/binance_BTCUSDT_1h.csv", "elliott", {"zigzag_pct": 2.0}),
    ("daily_us_equities/backtrader_ORCL.csv", "alligator", {}),
    ("daily_us_equities/backtrader_ORCL.csv", "darvas", {}),
    ("intraday_fx/backtestingpy_EURUSD_1h.csv", "elliott", {"zigzag_pct": 0.3}),
    ("intraday_crypto/freqtrade_testdata_ETH_BTC-5m.csv", "darvas", {"lookback": 30}),
]


@pytest.mark.parametrize("path, name, params", PARITY_CASES, ids=[f"{p.split('/')[-1]}-{n}" for p, n, _ in PARITY_CASES])
def test_vectorbt_and_reference_agree_on_every_trade(shared_data, path, name, params):
    bars = load_bars(shared_data / path)
    model = FillModel(cash=10_000, fee_bps=10, slippage_bps=5, qty_step=1e-8 if "ETH_BTC" not in path else 1e-3)
    vb = backtest(name, bars, params, model, engine="vectorbt")
    ref = backtest(name, bars, params, model, engine="reference")
    assert len(vb.trades) >= 10
    assert len(vb.trades) == len(ref.trades)
    for column in ("entry_time", "exit_time"):
        assert vb.trades[column].equals(ref.trades[column])
    for column in ("entry_price", "exit_price", "qty", "fees", "pnl", "return"):
        np.testing.assert_allclose(vb.trades[column], ref.trades[column], rtol=1e-9, atol=0)
    np.testing.assert_allclose(vb.equity, ref.equity, rtol=1e-9, atol=0)
    numbers = [k for k, v in ref.metrics.items() if isinstance(v, float)]
    assert {k: vb.metrics[k] for k in numbers} == pytest.approx({k: ref.metrics[k] for k in numbers}, rel=1e-9)
    assert (vb.simulation.open_position is None) == (ref.simulation.open_position is None)


@pytest.mark.parametrize("name, params", [("alligator", {}), ("darvas", {}), ("elliott", {"zigzag_pct": 2.0})])
def test_a_backtest_on_a_prefix_matches_the_full_one_up_to_there(shared_data, name, params):
    bars = load_bars(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv")
    full = backtest(name, bars, params, engine="reference")
    for k in (500, 4_001, 9_999):
        part = backtest(name, bars.iloc[:k], params, engine="reference")
        done = full.trades[full.trades["exit_time"] <= bars.index[k - 1]].reset_index(drop=True)
        pd.testing.assert_frame_equal(part.trades, done)
        np.testing.assert_array_equal(part.equity.to_numpy(), full.equity.to_numpy()[:k])


# -- the CLI ---------------------------------------------------------------------------------

SRC = Path(__file__).resolve().parents[1] / "src"


def cival(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``cival ARGS`` through ``cival.cli.main`` in this process."""
    return cival_in_process(*args, cwd=cwd)


def cival_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m cival ARGS``, a real process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "cival", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.mark.slow
def test_cli_json_and_trades_match_the_api(shared_data, tmp_path):
    data = shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv"
    result = cival_subprocess(
        "backtest", "darvas", "--data", str(data), "--param", "lookback=10", "--fee-bps", "7.5",
        "--json", "--trades-out", "trades.csv", cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    for key in ("strategy", "params", "bars", "start", "end", "trades", "total_return", "cagr", "sharpe", "sortino",
                "calmar", "max_drawdown", "win_rate", "profit_factor", "exposure", "fees_paid", "final_equity",
                "open_position"):
        assert key in out, key
    api = backtest("darvas", data, {"lookback": 10}, fee_bps=7.5)
    assert out["params"] == {"lookback": 10, "confirm": 3}
    assert out["costs"]["fee_bps"] == 7.5
    assert out["trades"] == len(api.trades) > 0
    assert out["final_equity"] == pytest.approx(api.metrics["final_equity"], rel=1e-12)
    trades = pd.read_csv(tmp_path / "trades.csv")
    assert list(trades.columns) == TRADE_COLUMNS
    assert trades["entry_time"].iloc[0] == api.trades["entry_time"].iloc[0].strftime("%Y-%m-%dT%H:%M:%SZ")
    np.testing.assert_allclose(trades["pnl"], api.trades["pnl"], rtol=1e-12)


def test_cli_several_files_and_the_table(shared_data, tmp_path):
    a = shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv"
    b = shared_data / "daily_other" / "backtrader_2006-day-001.csv"
    js = cival("backtest", "alligator", "--data", str(a), "--data", str(b), "--json", cwd=tmp_path)
    assert js.returncode == 0, js.stderr
    out = json.loads(js.stdout)
    assert [r["bars"] for r in out["results"]] == [1000, 255]
    assert out["combined"]["trades"] == sum(r["trades"] for r in out["results"])
    table = cival("backtest", "alligator", "--data", str(a), "--data", str(b), cwd=tmp_path)
    assert table.returncode == 0
    assert "backtestingpy_SOLUSDT_1h.csv" in table.stdout and "max drawdown" in table.stdout
    assert "combined over 2 files" in table.stdout


def test_cli_table_shows_percentages_money_and_ratios(shared_data, tmp_path):
    data = shared_data / "intraday_crypto" / "binance_ETHUSDT_1d.csv"
    args = ("backtest", "darvas", "--data", str(data), "--param", "lookback=10")
    exact = json.loads(cival(*args, "--json", cwd=tmp_path).stdout)
    table = cival(*args, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    rows = {line[:16].strip(): line[16:].strip() for line in table.stdout.splitlines() if line[:16].strip()}
    for key, label in (("total_return", "total return"), ("cagr", "CAGR"), ("max_drawdown", "max drawdown"),
                       ("win_rate", "win rate"), ("exposure", "exposure")):
        text = rows[label]  # a fraction is shown as a percentage with two decimals, e.g. -20.29 %
        assert re.fullmatch(r"[-+]?\d+\.\d{2} %", text), (label, text)
        assert float(text.removesuffix(" %")) == pytest.approx(exact[key] * 100, abs=0.005)
    for key, label in (("final_equity", "final equity"), ("fees_paid", "fees paid")):
        text = rows[label]
        assert re.fullmatch(r"-?\d{1,3}(,\d{3})*\.\d{2}", text), (label, text)
        assert float(text.replace(",", "")) == pytest.approx(exact[key], abs=0.005)
    for key, label in (("sharpe", "Sharpe"), ("sortino", "Sortino"), ("profit_factor", "profit factor")):
        assert float(rows[label]) == pytest.approx(exact[key], abs=0.005)
    assert rows["closed trades"] == f"{exact['trades']:,}"


def test_an_open_position_and_trades_read_as_people_read_them():
    rows = [(100, 101, 99, 100), (100, 101, 99, 100), (110, 121, 109, 120)]
    model = FillModel(cash=1_000, fee_bps=20, slippage_bps=0, qty_step=1)
    sim = simulate_reference(bars_of(rows), *signals(3, entries=[0]), model)
    metrics = compute_metrics(sim, model.cash)
    # 9 units at 100, fee 1.8, marked at 120: 1080 - 900 - 1.8
    assert format_open_position(metrics["open_position"]) == (
        "9 bought 2024-01-02T00:00:00Z at 100.00, marked at 120.00 (unrealised +178.20)")
    assert format_metric("open_position", metrics["open_position"]) == format_open_position(metrics["open_position"])
    assert format_metric("calmar", None) == "-" and format_metric("sharpe", float("nan")) == "-"

    model = FillModel(cash=10_000, fee_bps=10, slippage_bps=5, qty_step=1)
    trades = simulate_reference(bars_of(ROUND_TRIP), *signals(4, entries=[0], exits=[2]), model).trades
    (shown,) = format_trades(trades).to_dict("records")
    # the round trip above: 97 at 102.051, out at 103.948, fees 19.981903, pnl 164.027097 on 9,908.845947
    assert shown == {"entry_time": "2024-01-02 00:00", "entry_price": "102.051", "exit_time": "2024-01-04 00:00",
                     "exit_price": "103.948", "qty": "97", "fees": "19.98", "pnl": "+164.03", "return": "+1.66 %",
                     "exit_reason": "signal"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fee-bps", "-1"], "fee_bps"),
        (["--fraction", "2"], "fraction"),
        (["--param", "lookback=0"], "lookback"),
    ],
)
def test_cli_bad_input_exits_1_without_a_traceback(shared_data, tmp_path, args, message):
    data = shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv"
    result = cival("backtest", "darvas", "--data", str(data), *args, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_html_report_is_self_contained_and_complete(shared_data, tmp_path):
    result = backtest("darvas", shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv", {"lookback": 10})
    path = tmp_path / "report.html"
    result.write_report(path)
    page = path.read_text(encoding="utf-8")
    assert "<script src=" not in page  # plotly.js is inline: the file opens with no network
    assert "plotly" in page.lower() and page.count("<table") == 2  # metrics and trades
    for name in ('"box_top"', '"box_bottom"', '"buy"', '"sell"', '"equity"', '"drawdown"'):
        assert name in page, name
    assert f"closed trades ({len(result.trades)})" in page
    assert f"<td>{money(result.metrics['final_equity'])}</td>" in page
    assert f"<td>{percent(result.metrics['total_return'], signed=True)}</td>" in page
    assert f"<td>{percent(result.trades['return'].iloc[0], signed=True)}</td>" in page
    figure = result.plot()
    assert [t.name for t in figure.data][:3] == ["close", "box_top", "box_bottom"]
    with pytest.raises(Exception, match="cannot write the report"):
        result.write_report(tmp_path / "missing" / "report.html")


# -- stops -----------------------------------------------------------------------------------
# Entry signal at bar 0 -> buy at bar 1's open 100 (no slippage): P = 100, qty 10.
# Stop-loss 5 % -> S = 95; take-profit 10 % -> T = 110.
STOP_CASES = {
    "stop-loss inside the bar": ([(100, 100, 100, 100), (100, 101, 99, 100), (99, 100, 94, 96)], dict(stop_loss_pct=5), 2, 95.0),
    "stop-loss gapped through": ([(100, 100, 100, 100), (100, 101, 99, 100), (93, 94, 90, 92)], dict(stop_loss_pct=5), 2, 93.0),
    "take-profit inside the bar": ([(100, 100, 100, 100), (100, 101, 99, 100), (104, 112, 103, 108)], dict(take_profit_pct=10), 2, 110.0),
    "take-profit gapped through": ([(100, 100, 100, 100), (100, 101, 99, 100), (115, 118, 114, 116)], dict(take_profit_pct=10), 2, 115.0),
    "both in one bar: stop-loss": ([(100, 100, 100, 100), (100, 101, 99, 100), (100, 112, 94, 100)], dict(stop_loss_pct=5, take_profit_pct=10), 2, 95.0),
    "entry bar not checked": ([(100, 100, 100, 100), (100, 101, 90, 100), (100, 101, 99, 100), (99, 100, 94, 96)], dict(stop_loss_pct=5), 3, 95.0),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", STOP_CASES)
def test_stop_scenarios(engine, case):
    rows, stops, exit_bar, exit_price = STOP_CASES[case]
    model = FillModel(cash=1_000, fee_bps=0, slippage_bps=0, qty_step=1, **stops)
    sim = ENGINES[engine](bars_of(rows), *signals(len(rows), entries=[0]), model)
    (trade,) = sim.trades.itertuples(index=False)
    assert trade.entry_price == 100 and trade.qty == 10
    assert trade.exit_time == pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=exit_bar)
    assert trade.exit_price == pytest.approx(exit_price, rel=1e-12)
    assert trade.exit_reason == ("take-profit" if case.startswith("take-profit") else "stop-loss")


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_exit_pays_slippage_and_replaces_the_signal_due(engine):
    # An exit signal at bar 1 is due at bar 2's open (99), but bar 2 also reaches the stop
    # at P x 0.95: the stop replaces the signal. P = 100 x 1.001 = 100.1 (10 bps slippage).
    rows = [(100, 100, 100, 100), (100, 101, 99, 100), (99, 100, 94, 96), (96, 97, 95, 96)]
    model = FillModel(cash=1_000, fee_bps=0, slippage_bps=10, qty_step=1, stop_loss_pct=5)
    sim = ENGINES[engine](bars_of(rows), *signals(4, entries=[0], exits=[1]), model)
    (trade,) = sim.trades.itertuples(index=False)
    assert trade.entry_price == pytest.approx(100.1)
    assert trade.exit_price == pytest.approx(100.1 * 0.95 * 0.999, rel=1e-12)
    assert trade.exit_time == pd.Timestamp("2024-01-03", tz="UTC")
    assert trade.exit_reason == "stop-loss"  # not the exit signal it replaced


@pytest.mark.parametrize("name, params", [("alligator", {}), ("darvas", {}), ("elliott", {"zigzag_pct": 2.0})])
def test_engines_agree_with_stops_on_real_data(shared_data, name, params):
    bars = load_bars(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv")
    stops = dict(stop_loss_pct=1.5, take_profit_pct=4.0)
    vb = backtest(name, bars, params, engine="vectorbt", **stops)
    ref = backtest(name, bars, params, engine="reference", **stops)
    plain = backtest(name, bars, params, engine="reference")
    assert len(ref.trades) > len(plain.trades)  # the stops do fire
    assert vb.trades["exit_time"].equals(ref.trades["exit_time"])
    assert vb.trades["exit_reason"].equals(ref.trades["exit_reason"])
    assert set(plain.trades["exit_reason"]) == {"signal"}
    # Each reason, checked from the bars: a signal exit sells at the open after an exit
    # signal; a stop-loss at or below the entry price less 1.5 %, a take-profit at or above
    # it plus 4 % (prices before the 5 bps slippage; the stop wins over a signal due).
    slip = 1 - 5 / 1e4
    trades = ref.trades
    exit_due = pd.Series(ref.signals["exit"].to_numpy(), index=bars.index).shift(1, fill_value=False)
    by_reason = {r: trades[trades["exit_reason"] == r] for r in ("signal", "stop-loss", "take-profit")}
    assert all(len(t) for t in by_reason.values()), {r: len(t) for r, t in by_reason.items()}
    signal = by_reason["signal"]
    assert exit_due.loc[signal["exit_time"]].all()
    np.testing.assert_allclose(signal["exit_price"], bars["open"].loc[signal["exit_time"]].to_numpy() * slip, rtol=1e-12)
    for reason, bound in (("stop-loss", -1), ("take-profit", 1)):
        t = by_reason[reason]
        before_slippage = t["exit_price"].to_numpy() / slip
        level = t["entry_price"].to_numpy() * (1 + bound * (0.015 if bound < 0 else 0.04))
        assert (bound * (before_slippage - level) >= -1e-9 * level).all(), reason
    np.testing.assert_allclose(vb.trades["pnl"], ref.trades["pnl"], rtol=1e-9, atol=0)
    np.testing.assert_allclose(vb.equity, ref.equity, rtol=1e-9, atol=0)


def test_cli_stop_flags(shared_data, tmp_path):
    data = shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv"
    ok = cival("backtest", "darvas", "--data", str(data), "--stop-loss-pct", "2", "--take-profit-pct", "5", "--json", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    out = json.loads(ok.stdout)
    assert (out["costs"]["stop_loss_pct"], out["costs"]["take_profit_pct"]) == (2.0, 5.0)
    assert out["trades"] == backtest("darvas", data, stop_loss_pct=2, take_profit_pct=5).metrics["trades"]
    bad = cival("backtest", "darvas", "--data", str(data), "--stop-loss-pct", "120", cwd=tmp_path)
    assert bad.returncode == 1 and "stop_loss_pct" in bad.stderr and "< 100" in bad.stderr


def test_signals_of_the_wrong_length_are_a_backtest_error():
    bars = bars_of([(10, 11, 9, 10)] * 5)
    with pytest.raises(BacktestError, match="one row per bar"):
        simulate_vectorbt(bars, np.zeros(4, dtype=bool), np.zeros(4, dtype=bool), FillModel())
