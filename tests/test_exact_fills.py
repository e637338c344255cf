"""A fill costs exactly quantity x price plus its fee, and what is left stays cash.

On real hourly BTC data with a large account (where a fill model that snaps leftover cash
within a tolerance to zero, as vectorbt's signal sizing does, swallowed it at nearly every
entry), every fill of the backtest is checked against the written rules computed
independently here in exact decimals: the quantity is the written sizing rule applied to
the cash before it, the notional is quantity x price rounded half-even to 1e-8, the fee
is fee_bps of the notional rounded the same way, and the cash after is the cash before
less (or plus) the notional, less the fee. The vectorbt engine and a paper agent's books
give the very same amounts.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

import pytest

from cival.backtest import backtest
from cival.data import load_bars
from cival.execution.fills import FillModel

Q = Decimal("1e-8")


def _d(x: float) -> Decimal:
    return Decimal(repr(float(x)))


@pytest.fixture(scope="module")
def btc(shared_data):
    return load_bars(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv")


@pytest.mark.parametrize("cash, fraction", [(5_000_000, 1.0), (12_345.67, 1.0), (250_000, 0.6)])
def test_every_fill_follows_the_written_rules_exactly(btc, cash, fraction):
    model = FillModel(cash=cash, fee_bps=10, slippage_bps=5, fraction=fraction)
    result = backtest("alligator", btc, {}, model, engine="reference")
    fills = result.simulation.fills
    assert len(fills) > 100
    fee_rate = Decimal(10) / Decimal(10_000)
    step = Decimal("1e-8")
    money = Decimal(repr(cash))
    kept = 0
    for row in fills.itertuples(index=False):
        price = _d(row.price)
        qty = _d(row.qty)
        if row.side > 0:
            # The written sizing rule, on the exact cash before the fill.
            want = (money * Decimal(repr(fraction)) / (price * (1 + fee_rate)) / step).to_integral_value(ROUND_FLOOR) * step
            notional = (want * price).quantize(Q)
            if notional + (notional * fee_rate).quantize(Q) > money:
                want -= step  # the rounded cost would pass the cash: one step less
            assert qty == want, (row.time, qty, want)
        notional = (qty * price).quantize(Q)
        fee = (notional * fee_rate).quantize(Q)
        assert abs(_d(row.notional) - notional) <= Q and _d(row.fee) == fee, row
        money = money - _d(row.notional) - fee if row.side > 0 else money + _d(row.notional) - fee
        assert _d(row.cash_after) == money, (row.time, row.cash_after, money)  # nothing snapped, nothing lost
        kept += row.side > 0 and money > 0
    assert kept > 0.9 * (len(fills) // 2)  # the leftover of (almost) every entry stayed cash
    vb = backtest("alligator", btc, {}, model, engine="vectorbt").simulation.fills
    assert vb.drop(columns="time").equals(fills.drop(columns="time")) and (vb["time"] == fills["time"]).all()


def test_a_paper_agent_books_exactly_the_backtests_amounts(btc):
    from cival.runtime import single_agent_config
    from cival.session import run_paper

    bars = btc.iloc[:4000]
    path = btc.attrs["source"]
    config = single_agent_config("alligator", data=path, cash="5000000")
    result = run_paper(config, bars=bars, local=True, persist=False)
    ours = result.report["farms"][0]["agents"][0]
    back = backtest("alligator", bars, {}, FillModel(cash=5_000_000), engine="reference")
    assert Decimal(ours["cash"]) == _d(back.simulation.cash)
    assert ours["trade_count"] == len(back.trades) > 10
    assert result.audit.ok and Decimal(result.report["ledger"]["residual"]) == 0
