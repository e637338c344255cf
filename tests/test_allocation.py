from decimal import Decimal as D
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cival.allocation import AllocationError, plan_for, split, split_equal, split_fixed
from cival.config import EqualPolicy, FixedPolicy

CENT = D("0.01")
Q8 = D("1e-8")


@pytest.mark.parametrize(
    "available, targets, reserve_pct, expected_reserve, expected",
    [
        ("100", ["a", "b", "c"], "0", "0", ["33.34", "33.33", "33.33"]),
        ("100", ["a", "b", "c"], "10", "10", ["30", "30", "30"]),
        ("1000.01", ["a", "b", "c"], "0", "0", ["333.34", "333.34", "333.33"]),
        ("0.02", ["a", "b", "c"], "0", "0", ["0.01", "0.01", "0"]),
        ("100", ["a"], "12.5", "12.5", ["87.5"]),
        ("10.01", ["a", "b"], "33.3", "3.34", ["3.34", "3.33"]),  # 3.33333 reserve rounds up to 3.34
        ("0", ["a", "b"], "5", "0", ["0", "0"]),
    ],
)
def test_equal_split_table(available, targets, reserve_pct, expected_reserve, expected):
    plan = split_equal(D(available), targets, CENT, D(reserve_pct))
    assert plan.reserve == D(expected_reserve)
    assert [plan.shares[t] for t in targets] == [D(e) for e in expected]
    assert plan.reserve + plan.distributed == D(available)


@pytest.mark.parametrize(
    "available, weights, reserve_pct, expected",
    [
        ("90000", {"t": "0.4", "b": "0.3", "p": "0.3"}, "0", {"t": "36000", "b": "27000", "p": "27000"}),
        ("100", {"x": "2", "y": "1"}, "0", {"x": "66.67", "y": "33.33"}),
        ("100", {"x": "1", "y": "1", "z": "1"}, "1", {"x": "33", "y": "33", "z": "33"}),
        ("0.05", {"x": "1", "y": "1", "z": "3"}, "0", {"x": "0.01", "y": "0.01", "z": "0.03"}),
        ("0.04", {"x": "1", "y": "1", "z": "2"}, "0", {"x": "0.01", "y": "0.01", "z": "0.02"}),
        ("0.01", {"x": "1", "y": "2"}, "0", {"x": "0", "y": "0.01"}),  # largest remainder wins the cent
    ],
)
def test_fixed_split_table(available, weights, reserve_pct, expected):
    plan = split_fixed(D(available), list(weights), {k: D(v) for k, v in weights.items()}, CENT, D(reserve_pct))
    assert plan.shares == {k: D(v) for k, v in expected.items()}


def test_fixed_weights_must_name_exactly_the_targets():
    with pytest.raises(AllocationError, match=r"no weight for \['b'\]"):
        split_fixed(D(10), ["a", "b"], {"a": D(1)}, CENT)
    with pytest.raises(AllocationError, match=r"unknown targets \['c'\]"):
        split_fixed(D(10), ["a"], {"a": D(1), "c": D(1)}, CENT)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(available=D("1.001"), weights={"a": D(1)}), "multiple of 0.01"),
        (dict(available=D(-1), weights={"a": D(1)}), "non-negative"),
        (dict(available=D(1), weights={}), "empty"),
        (dict(available=D(1), weights={"a": D(0)}), "sum to zero"),
        (dict(available=D(1), weights={"a": D(-1), "b": D(2)}), "negative"),
        (dict(available=D(1), weights={"a": D(1)}, reserve_pct=D(100)), r"\[0, 100\)"),
    ],
)
def test_bad_inputs_raise(kwargs, message):
    with pytest.raises(AllocationError, match=message):
        split(quantum=CENT, **kwargs)


def test_plan_for_applies_configured_policies():
    equal = EqualPolicy(policy="equal", reserve_pct=D(10))
    fixed = FixedPolicy(policy="fixed", weights={"a": D(3), "b": D(1)})
    assert plan_for(equal, D(100), ["a", "b"], CENT).shares == {"a": D(45), "b": D(45)}
    assert plan_for(fixed, D(100), ["a", "b"], CENT).shares == {"a": D(75), "b": D(25)}


amounts = st.integers(min_value=0, max_value=10**16).map(lambda n: D(n) * Q8)
weight_values = st.decimals(min_value=D(0), max_value=D(1000), places=4, allow_nan=False, allow_infinity=False)
reserves = st.decimals(min_value=D(0), max_value=D("99.99"), places=2, allow_nan=False, allow_infinity=False)


@given(
    available=amounts,
    weights=st.lists(weight_values, min_size=1, max_size=12).filter(lambda ws: sum(ws) > 0),
    reserve_pct=reserves,
)
def test_any_split_allocates_exactly_what_is_available_never_negative(available, weights, reserve_pct):
    named = {f"t{i}": w for i, w in enumerate(weights)}
    plan = split(available, named, Q8, reserve_pct)
    # Exactly what is available, to the quantum: nothing created, nothing lost.
    assert plan.reserve + sum(plan.shares.values()) == available
    assert all(s >= 0 and s % Q8 == 0 for s in plan.shares.values())
    # The reserve is never smaller than asked and at most one quantum more.
    asked = available * reserve_pct / 100
    assert asked <= plan.reserve < asked + Q8 or plan.reserve == available
    # Every share is within one quantum of its exact proportion; zero weight gets nothing.
    distributable = Fraction(available - plan.reserve)
    total = Fraction(sum(weights))
    for name, w in named.items():
        exact = distributable * Fraction(w) / total
        assert abs(Fraction(plan.shares[name]) - exact) < Fraction(Q8)
        if w == 0:
            assert plan.shares[name] == 0


@given(available=amounts, n=st.integers(min_value=1, max_value=20), reserve_pct=reserves)
def test_equal_split_shares_differ_by_at_most_one_quantum(available, n, reserve_pct):
    plan = split_equal(available, [f"t{i}" for i in range(n)], Q8, reserve_pct)
    shares = list(plan.shares.values())
    assert max(shares) - min(shares) <= Q8
    assert shares == sorted(shares, reverse=True)  # leftover quanta go to the earlier targets
    assert plan.reserve + sum(shares) == available
