"""Floors and caps, the inverse-volatility and performance policies: exact tables and
properties (any policy, any inputs: exactly what is available, never negative)."""

from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cival.allocation import (
    AllocationError,
    inverse_volatility_weights,
    performance_scores,
    plan_for,
    split,
    split_inverse_volatility,
    split_performance,
)
from cival.config import (
    ConfigError,
    InverseVolatilityPolicy,
    PerformancePolicy,
    config_from_dict,
)

CENT = D("0.01")
Q8 = D("1e-8")


@pytest.mark.parametrize(
    "weights, floors, caps, expected, reserve",
    [
        # c would take 80 %; capped at half, the rest is shared by weight.
        ({"a": 1, "b": 1, "c": 8}, {}, {"c": "0.5"}, {"a": "25", "b": "25", "c": "50"}, "0"),
        # b would take 10 %; its floor raises it to 20 %, a keeps the rest.
        ({"a": 9, "b": 1}, {"b": "0.2"}, {}, {"a": "80", "b": "20"}, "0"),
        # Every share at its cap: what nobody may take stays with the parent.
        ({"a": 1, "b": 1}, {}, {"a": "0.3", "b": "0.3"}, {"a": "30", "b": "30"}, "40"),
        # A zero weight with a floor gets exactly its floor.
        ({"a": 1, "b": 0}, {"b": "0.1"}, {}, {"a": "90", "b": "10"}, "0"),
        # Floors first, then caps on what the others share.
        ({"a": 10, "b": 1, "c": 1, "d": 1}, {"b": "0.3", "c": "0.3"}, {"a": "0.35"}, {"a": "35", "b": "30", "c": "30", "d": "5"}, "0"),
        # Rounding: exact thirds of 100.00, leftover cent to the largest remainder.
        ({"a": 1, "b": 1, "c": 1}, {"c": "0.3"}, {}, {"a": "33.34", "b": "33.33", "c": "33.33"}, "0"),
    ],
)
def test_floors_and_caps_table(weights, floors, caps, expected, reserve):
    plan = split(D(100), {k: D(v) for k, v in weights.items()}, CENT, D(0), {k: D(v) for k, v in floors.items()}, {k: D(v) for k, v in caps.items()})
    assert plan.shares == {k: D(v) for k, v in expected.items()}
    assert plan.reserve == D(reserve)
    assert plan.reserve + plan.distributed == D(100)


@pytest.mark.parametrize(
    "floors, caps, message",
    [
        ({"a": "0.6", "b": "0.6"}, {}, "floors sum to 1.2"),
        ({"a": "0.5"}, {"a": "0.4"}, "0 <= floor <= cap <= 1"),
        ({"zz": "0.1"}, {}, "unknown target"),
        ({}, {"a": "1.5"}, "0 <= floor <= cap <= 1"),
    ],
)
def test_impossible_limits_are_refused_with_the_reason(floors, caps, message):
    with pytest.raises(AllocationError, match=message):
        split(D(100), {"a": D(1), "b": D(1)}, CENT, D(0), {k: D(v) for k, v in floors.items()}, {k: D(v) for k, v in caps.items()})


def test_inverse_volatility_gives_the_calmer_target_the_larger_share():
    calm = [0.01, -0.01] * 10
    wild = [0.02, -0.02] * 10  # exactly twice the volatility
    plan = split_inverse_volatility(D(100), {"calm": calm, "wild": wild}, CENT, lookback=20)
    assert plan.shares == {"calm": D("66.67"), "wild": D("33.33")}
    # Only the last `lookback` returns count: here the wild target was calm before.
    plan = split_inverse_volatility(D(100), {"calm": calm, "wild": [0.01, -0.01] * 50 + wild}, CENT, lookback=20)
    assert plan.shares == {"calm": D("66.67"), "wild": D("33.33")}
    # No history (or no volatility): the mean weight of the others.
    weights = inverse_volatility_weights({"calm": calm, "wild": wild, "new": None, "flat": [0.0] * 5}, 20)
    assert weights["new"] == weights["flat"]
    assert float(weights["new"]) == pytest.approx(float(weights["calm"] + weights["wild"]) / 2, rel=1e-15)
    assert inverse_volatility_weights({"x": None, "y": [0.1]}, 5) == {"x": D(1), "y": D(1)}


def test_performance_follows_the_score_with_a_minimum_share_for_newcomers():
    returns = {"winner": [0.1, 0.1], "flat": [0.0, 0.0], "new": None}
    plan = split_performance(D(100), returns, CENT, lookback=10, metric="return", min_share=D("0.1"))
    assert plan.shares == {"winner": D("80"), "flat": D("10"), "new": D("10")}
    scores = performance_scores(returns, 10, "return")
    assert scores["new"] is None and scores["flat"] == 0.0 and abs(scores["winner"] - 0.21) < 1e-12
    # Sharpe: mean / std of the window; a score below the floor weighs nothing.
    returns = {"steady": [0.01, 0.03] * 5, "noisy": [0.1, -0.08] * 5, "losing": [-0.01, -0.03] * 5}
    sharpe = performance_scores(returns, 10, "sharpe")
    assert sharpe["steady"] > sharpe["noisy"] > 0 > sharpe["losing"]
    plan = split_performance(D(1000), returns, CENT, lookback=10, metric="sharpe", min_share=D(0))
    assert plan.shares["losing"] == 0 and plan.shares["steady"] > plan.shares["noisy"] > 0
    ratio = Fraction(plan.shares["steady"]) / Fraction(plan.shares["noisy"])
    assert abs(ratio - Fraction(sharpe["steady"]) / Fraction(sharpe["noisy"])) < Fraction(1, 1000)
    # Everyone at or below the floor: an equal split rather than nothing.
    plan = split_performance(D(90), {"a": [-0.1, -0.2], "b": None, "c": [0.01, 0.0]}, CENT, metric="return", floor=0.5, min_share=D(0))
    assert plan.shares == {"a": D(30), "b": D(30), "c": D(30)}


def test_plan_for_applies_the_configured_policies():
    returns = {"a": [0.01, -0.01] * 5, "b": [0.02, -0.02] * 5}
    iv = InverseVolatilityPolicy(policy="inverse_volatility", lookback_bars=10, reserve_pct=D(10), max_share=D("0.6"))
    plan = plan_for(iv, D(1000), ["a", "b"], CENT, returns)
    # 900 to split; a would take two thirds (600.00) and is capped at 60 % (540); b, the
    # only target left, takes the rest.
    assert plan.shares == {"a": D("540.00"), "b": D("360.00")} and plan.reserve == D("100.00")
    perf = PerformancePolicy(policy="performance", metric="return", lookback_bars=10)
    plan = plan_for(perf, D(1000), ["a", "b", "c"], CENT, {"a": [0.1, 0.1]})
    assert plan.shares == {"a": D("900.00"), "b": D("50.00"), "c": D("50.00")}  # default min_share 5 %


def test_config_refuses_minimum_shares_that_cannot_all_be_met():
    raw = {
        "name": "x",
        "master": {"initial_deposit": "100"},
        "farms": [
            {
                "name": "f",
                "type": "breakout",
                "allocation": {"policy": "performance", "min_share": 0.4},
                "agents": [{"name": f"a{i}", "strategy": "darvas"} for i in range(3)],
            }
        ],
        "data": {"source": "synthetic"},
    }
    with pytest.raises(ConfigError, match=r"farms\[0\]\.allocation\.min_share: 0.4 for each of 3 agents"):
        config_from_dict(raw)
    raw["farms"][0]["allocation"] = {"policy": "inverse_volatility", "min_share": 0.5, "max_share": 0.2}
    with pytest.raises(ConfigError, match="min_share .* must not exceed max_share"):
        config_from_dict(raw)


# -- properties ---------------------------------------------------------------------------

amounts = st.integers(min_value=0, max_value=10**15).map(lambda n: D(n) * Q8)
returns_series = st.one_of(
    st.none(),
    st.lists(st.floats(min_value=-0.5, max_value=0.5, allow_nan=False, allow_infinity=False), max_size=30),
)


@st.composite
def limits(draw, names):
    n = len(names)
    floors = {}
    budget = Fraction(1)
    for name in names:
        if draw(st.booleans()):
            f = Fraction(draw(st.integers(0, 100)), 100) * budget / n
            floors[name] = D(f.numerator) / D(f.denominator)
    floors = {k: v.quantize(D("1e-6"), rounding="ROUND_DOWN") for k, v in floors.items()}
    caps = {}
    for name in names:
        if draw(st.booleans()):
            low = floors.get(name, D(0))
            caps[name] = max(low, D(draw(st.integers(0, 100))) / 100)
    return floors, caps


@settings(max_examples=300)
@given(data=st.data(), available=amounts, reserve_pct=st.integers(0, 99).map(D))
def test_any_policy_on_any_inputs_allocates_exactly_what_is_available(data, available, reserve_pct):
    names = [f"t{i}" for i in range(data.draw(st.integers(1, 8)))]
    kind = data.draw(st.sampled_from(["weights", "inverse_volatility", "performance"]))
    floors, caps = data.draw(limits(names))
    if kind == "weights":
        weights = {n: D(data.draw(st.integers(0, 1000))) for n in names}
        if not any(weights.values()):
            weights[names[0]] = D(1)
        plan = split(available, weights, Q8, reserve_pct, floors, caps)
    else:
        history = {n: data.draw(returns_series) for n in names}
        lookback = data.draw(st.integers(2, 40))
        if kind == "inverse_volatility":
            weights = inverse_volatility_weights(history, lookback)
            plan = split(available, weights, Q8, reserve_pct, floors, caps)
        else:
            metric = data.draw(st.sampled_from(["sharpe", "return"]))
            min_share = D(data.draw(st.integers(0, 100 // len(names)))) / 100
            plan = split_performance(available, history, Q8, lookback, metric, data.draw(st.floats(-1, 1)), reserve_pct, min_share)
            floors, caps = {n: min_share for n in names}, {}
    # Exactly what is available: shares plus what the parent keeps.
    assert plan.reserve + sum(plan.shares.values()) == available
    assert all(s >= 0 and s % Q8 == 0 for s in plan.shares.values())
    asked = (available * reserve_pct / 100).quantize(Q8, rounding="ROUND_UP")
    assert plan.reserve >= min(asked, available)
    distributable = available - min(asked, available)
    for name, share in plan.shares.items():
        assert share >= distributable * floors.get(name, D(0)) - Q8
        assert share <= distributable * caps.get(name, D(1)) + Q8
