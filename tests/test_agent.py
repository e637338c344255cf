"""A paper-trading agent fed bar by bar trades exactly as the backtester says it would."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest
from pydantic import ValidationError

from cival.actors.agent import Agent
from cival.backtest import backtest
from cival.core.messages import Fill, OrderIntent
from cival.data import load_bars
from cival.data.feeds import bars_from_frame
from cival.execution import FillModel

CASES = [
    ("intraday_crypto/binance_BTCUSDT_1h.csv", "alligator", {}, {}),
    ("intraday_crypto/binance_BTCUSDT_1h.csv", "darvas", {"lookback": 30}, {}),
    ("intraday_crypto/binance_BTCUSDT_1h.csv", "elliott", {"zigzag_pct": 2.0}, {}),
    ("daily_us_equities/backtrader_NVDA.csv", "darvas", {}, {"stop_loss_pct": 3.0, "take_profit_pct": 8.0}),
    ("intraday_fx/backtestingpy_EURUSD_1h.csv", "alligator", {}, {"fee_bps": 2.0, "slippage_bps": 1.0}),
]


@pytest.mark.slow
@pytest.mark.parametrize("path, name, params, costs", CASES, ids=[f"{c[0].split('/')[-1]}-{c[1]}" for c in CASES])
def test_agent_fills_equal_the_backtest_fills(shared_data, path, name, params, costs):
    bars = load_bars(shared_data / path)
    model = FillModel(**costs)
    agent = Agent("a1", name, params, model, symbol="X")
    messages = []
    for bar in bars_from_frame(bars):
        messages.extend(agent.on_bar(bar))
    fills = [m for m in messages if isinstance(m, Fill)]
    expected = backtest(name, bars, params, model, engine="vectorbt").simulation.fills
    assert len(fills) == len(expected) >= 20
    for got, want in zip(fills, expected.itertuples(index=False), strict=True):
        assert got.at == want.time.to_pydatetime()
        assert got.side == ("buy" if want.side == 1 else "sell")
        assert float(got.qty) == want.qty and float(got.price) == want.price and float(got.fee) == want.fee
    assert agent.equity(bars["close"].iloc[-1]) == backtest(name, bars, params, model).equity.iloc[-1]
    if "stop_loss_pct" in costs:
        assert any(f.reason == "stop" for f in fills) and any(f.reason == "signal" for f in fills)


def test_every_fill_was_announced_by_an_intent_at_the_previous_close(shared_data):
    bars = load_bars(shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv")
    agent = Agent("a1", "darvas", {"lookback": 10}, FillModel(), symbol="SOL")
    messages = agent.on_bars(bars_from_frame(bars))
    intents = {m.signal_at: m for m in messages if isinstance(m, OrderIntent)}
    fills = [m for m in messages if isinstance(m, Fill)]
    assert fills
    index = list(bars.index)
    for fill in fills:
        previous = index[index.index(pd.Timestamp(fill.at)) - 1].to_pydatetime()
        assert intents[previous].side == fill.side
    assert len({f.id for f in fills}) == len(fills)


@pytest.mark.slow
def test_batched_and_bar_by_bar_delivery_are_identical(shared_data):
    bars = bars_from_frame(load_bars(shared_data / "intraday_crypto" / "binance_BTCUSDT_1h.csv"))
    one = Agent("a", "elliott", {"zigzag_pct": 2.0}, FillModel(), "BTC")
    batched = Agent("a", "elliott", {"zigzag_pct": 2.0}, FillModel(), "BTC")
    singles = [m for bar in bars for m in one.on_bar(bar)]
    batches = [m for i in range(0, len(bars), 500) for m in batched.on_bars(bars[i : i + 500])]
    strip = lambda ms: [m.model_dump(exclude={"id"} if isinstance(m, OrderIntent) else set()) for m in ms]  # noqa: E731
    assert strip(singles) == strip(batches)


def test_messages_are_frozen_exact_and_strict():
    fill = Fill(agent="a", symbol="BTC", side="buy", qty="0.10000000", price=43000.5, fee="4.3")
    assert fill.qty == Decimal("0.1") and isinstance(fill.price, Decimal)
    assert Fill.model_validate_json(fill.model_dump_json()) == fill
    with pytest.raises(ValidationError):
        fill.qty = Decimal(1)  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        Fill(agent="a", symbol="BTC", side="buy", qty="1", price="1", fee="0", colour="red")
    with pytest.raises(ValidationError, match="time zone"):
        Fill(agent="a", symbol="BTC", side="buy", qty="1", price="1", fee="0", at="2025-01-01T00:00:00")
    with pytest.raises(ValidationError):
        Fill(agent="a", symbol="BTC", side="buy", qty="-1", price="1", fee="0")
