"""The running figures of a live equity curve (:class:`PerformanceTracker`) against the
backtest's metrics on the same curve, fed in any batches; flows that are not returns; a
tracker restored from a state journaled before some of its sums existed; and the live
wallet rows' figures (:func:`wallet_rows`)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cival.actors.performance import NS_PER_DAY, PerformanceState, PerformanceTracker
from cival.backtest.metrics import compute_metrics
from cival.backtest.simulate import TRADE_COLUMNS, Simulation
from cival.core.codec import decode, encode
from cival.server.host import wallet_rows

NEW = ("total_return", "cagr", "sortino", "calmar")
FIGURES = ("total_return", "cagr", "sharpe", "sortino", "calmar", "max_drawdown")


def _metrics(equity: np.ndarray, ts: np.ndarray, start: float) -> dict:
    index = pd.to_datetime(ts, utc=True)
    sim = Simulation(fills=pd.DataFrame({"fee": []}), trades=pd.DataFrame(columns=TRADE_COLUMNS),
                     equity=pd.Series(equity, index=index), in_position=np.zeros(len(equity), bool), cash=float(equity[-1]))
    return compute_metrics(sim, start)


def _fed(ts: np.ndarray, equity: np.ndarray, start: float, cuts: list[int]) -> PerformanceTracker:
    tracker = PerformanceTracker()
    tracker.start(start)
    bounds = [0, *sorted(set(c for c in cuts if 0 < c < len(equity))), len(equity)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        tracker.update(ts[lo:hi], equity[lo:hi])
    return tracker


def _same(got: float | None, want: float | None) -> None:
    assert (got is None) == (want is None), (got, want)
    if want is not None:
        assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


# Returns of at least 0.01 % when not zero: a return of 1e-300 is read back from the
# equity curve with a relative error of its own size, whoever reads it.
RETURN = st.one_of(st.just(0.0), st.floats(1e-4, 0.25), st.floats(-0.2, -1e-4))


@settings(max_examples=150, deadline=None)
@given(
    returns=st.lists(RETURN, min_size=1, max_size=60),
    step_hours=st.sampled_from([24, 24 * 7]),  # hourly: the backtest's CAGR of a short span can overflow
    cuts=st.lists(st.integers(0, 60), max_size=8),
)
def test_the_running_figures_are_the_backtests_in_any_batches(returns, step_hours, cuts):
    start = 10_000.0
    equity = start * np.cumprod(1.0 + np.array(returns))
    ts = np.datetime64("2024-01-01", "ns").astype(np.int64) + np.arange(len(equity), dtype=np.int64) * step_hours * 3_600 * 10**9
    want = _metrics(equity, ts, start)
    whole, batched, one_by_one = _fed(ts, equity, start, []), _fed(ts, equity, start, cuts), _fed(ts, equity, start, list(range(len(equity))))
    figures = whole.figures()
    assert set(figures) == set(FIGURES)
    # Returns all (nearly) equal: a Sharpe ratio of rounding noise (the backtest's may be
    # 1e16, the tracker's None); not compared.
    degenerate = np.std(returns) < 1e-4
    for name in FIGURES:
        if not (name == "sharpe" and degenerate):
            _same(figures[name], want[name])
    # Bar by bar, in batches or whole: the same sums in the same order, to the bit.
    assert batched.figures() == one_by_one.figures() == figures
    json.dumps(figures, allow_nan=False)


def test_the_figures_on_a_hand_made_curve():
    # The backtest's own hand-made curve (test_backtest): 100 -> 100, 110, 99, 121 daily.
    ts = np.arange(4, dtype=np.int64) * NS_PER_DAY
    tracker = _fed(ts, np.array([100.0, 110.0, 99.0, 121.0]), 100.0, [2])
    years = 3 / 365.25
    r = np.array([0.0, 0.1, -0.1, 0.22222222222222232])
    assert tracker.total_return == pytest.approx(0.21)
    assert tracker.cagr == pytest.approx(1.21 ** (1 / years) - 1)
    assert tracker.max_drawdown == pytest.approx(0.1)
    assert tracker.calmar == pytest.approx(tracker.cagr / 0.1)
    assert tracker.sortino == pytest.approx(r.mean() / np.sqrt(np.mean(np.minimum(r, 0) ** 2)) * np.sqrt(3 / years))


def test_undefined_figures_are_none():
    fresh = PerformanceTracker()
    assert all(v is None for v in fresh.figures().values())
    one = _fed(np.array([0], dtype=np.int64), np.array([105.0]), 100.0, [])
    assert one.total_return == pytest.approx(0.05) and one.max_drawdown == 0.0
    assert one.cagr is one.sharpe is one.sortino is one.calmar is None  # a zero span
    rising = _fed(np.arange(3, dtype=np.int64) * NS_PER_DAY, np.array([101.0, 102.0, 103.0]), 100.0, [])
    assert rising.sortino is None and rising.calmar is None and rising.cagr > 0  # no downside, no drawdown
    ruined = _fed(np.arange(3, dtype=np.int64) * NS_PER_DAY, np.array([50.0, -10.0, -5.0]), 100.0, [])
    assert ruined.cagr is None and ruined.calmar is None  # equity ends below zero: no growth rate


def test_flows_between_bars_are_not_returns():
    ts = np.arange(6, dtype=np.int64) * NS_PER_DAY
    trading = np.array([100.0, 102.0, 99.0, 103.0, 101.0, 104.0])  # without the flows
    flowed = PerformanceTracker()
    flowed.start(100.0)
    flowed.update(ts[:3], trading[:3])
    flowed.flow(50.0)  # an allocation: 99 -> 149 between bars 3 and 4
    flowed.update(ts[3:5], trading[3:5] * 149.0 / 99.0)
    flowed.flow(-20.0)  # a collection
    after = trading[4] * 149.0 / 99.0 - 20.0
    flowed.update(ts[5:], np.array([after * trading[5] / trading[4]]))
    plain = _fed(ts, trading, 100.0, [])
    for name in FIGURES:
        _same(flowed.figures()[name], plain.figures()[name])
    assert flowed.total_return == pytest.approx(0.04)  # the trading's, not (E[-1] - E0) / E0


def test_a_state_journaled_before_the_new_sums_restores_and_reports_none_for_them():
    tracker = _fed(np.arange(5, dtype=np.int64) * NS_PER_DAY, np.array([101.0, 99.0, 103.0, 98.0, 104.0]), 100.0, [])
    raw = json.loads(encode(tracker.state()))
    assert raw["_growth"] == pytest.approx(1.04) and raw["_downside"] > 0
    old = {k: v for k, v in raw.items() if k not in ("_growth", "_downside")}  # as journaled before
    restored = PerformanceTracker()
    restored.restore(decode(PerformanceState, old, "an old performance state"))
    assert restored.sharpe == tracker.sharpe and restored.max_drawdown == tracker.max_drawdown
    assert all(getattr(restored, name) is None for name in NEW)
    # More bars do not make them numbers again: they would be of the bars since the restore.
    restored.update(np.array([5 * NS_PER_DAY], dtype=np.int64), np.array([110.0]))
    assert restored.sharpe is not None and all(getattr(restored, name) is None for name in NEW)
    json.dumps(restored.figures(), allow_nan=False)
    # Today's state comes back whole.
    again = PerformanceTracker()
    again.restore(decode(PerformanceState, raw, "a performance state"))
    assert again.figures() == tracker.figures()


# -- the live wallet rows ------------------------------------------------------------------


def _trade(pnl: str) -> dict:
    return {"pnl": pnl, "exit_time": "2024-01-01T00:00:00Z"}


def _report(a_trades: list[str], b_trades: list[str]) -> dict:
    figures = {"total_return": 0.05, "cagr": 0.4, "sharpe": 1.5, "sortino": 2.5, "calmar": 4.0, "max_drawdown": 0.1}

    def agent(name: str, pnl: list[str]) -> dict:
        return {"name": name, "strategy": "darvas", "cash": "100", "equity": "100", "realized_pnl": "0", "unrealized_pnl": "0",
                "fees": "0", "positions": [], "trades": [_trade(p) for p in pnl], "trade_count": len(pnl), **figures}

    farm = {"name": "trend", "cash": "0", "equity": "0", "total_equity": "200", "realized_pnl": "0", "unrealized_pnl": "0",
            "fees": "0", "trades": [], "trade_count": len(a_trades) + len(b_trades), **figures,
            "agents": [agent("a", a_trades), agent("b", b_trades)]}
    master = {"name": "master", "cash": "0", "equity": "0", "realized_pnl": "0", "unrealized_pnl": "0", "fees": "0", "trades": []}
    return {"master": master, "farms": [farm], "ledger": {"total_equity": "200"}}


def test_wallet_rows_carry_the_metrics_tables_figures():
    rows = {r["name"]: r for r in wallet_rows(_report(["0.1", "-0.3", "0.2"], ["0.30000000000000001", "0"]))}
    # Summed exactly from the pnl strings (in floats: (0.1 + 0.2) / 0.3 = 1.0000000000000002,
    # and the farm's (0.1 + 0.2 + 0.30000000000000001) / 0.3 = 2.0000000000000004).
    assert rows["a"]["profit_factor"] == 1.0
    assert rows["trend"]["profit_factor"] == 2.0  # 0.60000000000000001 / 0.3
    assert rows["trend"]["win_rate"] == pytest.approx(3 / 5)
    assert rows["b"]["profit_factor"] is None and rows["b"]["win_rate"] == 0.5  # no losing trade (a flat one is no loss)
    for name in ("a", "b", "trend"):
        for key, value in {"total_return": 0.05, "cagr": 0.4, "sharpe": 1.5, "sortino": 2.5, "calmar": 4.0, "max_drawdown": 0.1}.items():
            assert rows[name][key] == value
    master = rows["master"]
    assert all(master[k] is None for k in ("win_rate", "profit_factor", *FIGURES))
    assert all(isinstance(r["profit_factor"], float) for r in rows.values() if r["profit_factor"] is not None)
    json.dumps(list(rows.values()), allow_nan=False)


def test_profit_factor_is_none_without_a_losing_trade():
    rows = {r["name"]: r for r in wallet_rows(_report(["1.5", "2"], []))}
    assert rows["a"]["profit_factor"] is None and rows["a"]["win_rate"] == 1.0
    assert rows["b"]["profit_factor"] is None and rows["b"]["win_rate"] is None
    assert rows["trend"]["profit_factor"] is None
    only_losses = {r["name"]: r for r in wallet_rows(_report(["-1", "-2"], []))}
    assert only_losses["a"]["profit_factor"] == 0.0 and only_losses["a"]["win_rate"] == 0.0
    assert math.isfinite(only_losses["trend"]["profit_factor"])
