"""The one formatter per concept in cival.core.fmt: the exact text stored and reported, and
the numbers people read (money, prices, quantities, percentages)."""

import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP
from decimal import Decimal as D

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cival.core.fmt import (
    iso_utc,
    money,
    parse_time,
    percent,
    plain_decimal,
    price,
    quantity,
    ratio,
    short_time,
    stored_time,
)


@pytest.mark.parametrize(("value", "text"), [
    (D("100.00"), "100"), (D("1E-8"), "0.00000001"), (D("1.23E+5"), "123000"), (D("-12.3400"), "-12.34"),
    (D("-0"), "0"), (D("-0.000"), "0"), (D("0E+5"), "0"), (0.1, "0.1"), (-0.0, "0"), (5, "5"), ("1.50", "1.5"),
    (D("NaN"), "NaN"),
])
def test_plain_decimal(value, text):
    assert plain_decimal(value) == text


def test_plain_decimal_keeps_every_digit_of_long_values():
    long = D("123456789012345678901234567890.123456789012345678900")
    assert plain_decimal(long) == "123456789012345678901234567890.1234567890123456789"
    assert D(plain_decimal(long)) == long


def test_iso_utc_datetime_and_timestamp_alike():
    at = datetime(2024, 1, 31, 9, 30, tzinfo=UTC)
    assert iso_utc(at) == iso_utc(pd.Timestamp(at)) == "2024-01-31T09:30:00Z"
    assert iso_utc(datetime(2024, 1, 31, 11, 30, tzinfo=timezone(timedelta(hours=2)))) == "2024-01-31T09:30:00Z"
    assert iso_utc(pd.Timestamp("2024-01-31 09:30:00.000001", tz="UTC")) == "2024-01-31T09:30:00.000001Z"
    assert iso_utc(pd.Timestamp("2024-01-31 10:30", tz="Europe/Paris")) == "2024-01-31T09:30:00Z"


@pytest.mark.parametrize("naive", [datetime(2024, 1, 31), pd.Timestamp("2024-01-31")])
def test_iso_utc_refuses_a_time_without_zone(naive):
    with pytest.raises(TypeError, match="time zone"):
        iso_utc(naive)


def test_stored_time_round_trips_and_keeps_the_offset_form():
    at = datetime(2024, 1, 31, 9, 30, 15, 250, tzinfo=UTC)
    assert stored_time(at) == "2024-01-31T09:30:15.000250+00:00"
    assert parse_time(stored_time(at)) == at == parse_time(iso_utc(at))


def test_short_time_shows_seconds_only_when_there_are_some():
    assert short_time(datetime(2024, 1, 31, 9, 30, tzinfo=UTC)) == "2024-01-31 09:30Z"
    assert short_time(datetime(2024, 1, 31, 9, 30, 15, tzinfo=UTC)) == "2024-01-31 09:30:15Z"


# -- numbers people read ------------------------------------------------------------------

FAST = settings(max_examples=300, deadline=None)

# Amounts within the books' capacity (below 10**15, 8 decimal places), exact.
amounts = st.decimals(min_value=D("-1e15") + 1, max_value=D("1e15") - 1, places=8, allow_nan=False, allow_infinity=False)
finite_floats = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


def _number(text: str) -> D:
    """What a person reads back from a formatted number: separators and signs as they are."""
    return D(text.replace(",", "").replace(" %", ""))


@pytest.mark.parametrize(("value", "text"), [
    (D("1234567.891"), "1,234,567.89"), (D("-1910.6"), "-1,910.60"), (826.666, "826.67"), (0, "0.00"),
    (D("-0.004"), "0.00"), (2.675, "2.68"), (D("-2.675"), "-2.68"), (10.612928550617275, "10.61"),
    ("15.5", "15.50"), (np.float64(0.1) + np.float64(0.2), "0.30"), (None, "-"), (float("nan"), "-"),
    (float("inf"), "inf"),
])
def test_money(value, text):
    assert money(value) == text


def test_money_signed_marks_gains_only():
    assert [money(v, signed=True) for v in (D("826.67"), D("-5"), 0, D("-0.001"))] == ["+826.67", "-5.00", "0.00", "0.00"]


@pytest.mark.parametrize(("value", "text"), [
    (2409.5946000000004, "2,409.59"), (D("71234.5"), "71,234.50"), (D("7E+4"), "70,000.00"), (145.1, "145.10"),
    (D("145.123456"), "145.123"), (0.1234567, "0.123457"), (0.00001234, "0.00001234"), (D("1E-9"), "0.00"),
    (D("1234567.891"), "1,234,567.89"), (60159.895005000004, "60,159.90"), (1, "1.00"), (None, "-"),
])
def test_price(value, text):
    assert price(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (D("0.50000000"), "0.5"), (0.30000000000000004, "0.3"), (D("0.30632564"), "0.30632564"), (1500, "1,500"),
    (0, "0"), (D("-0.000000001"), "0"), (D("1E-8"), "0.00000001"), (D("0.123456789"), "0.12345679"),
    (np.int64(5), "5"), (None, "-"),
])
def test_quantity(value, text):
    assert quantity(value) == text


@pytest.mark.parametrize(("value", "signed", "text"), [
    (-0.202855, False, "-20.29 %"), (0.05, True, "+5.00 %"), (1, False, "100.00 %"), (D("45.5") / 100, False, "45.50 %"),
    (-0.00001, True, "0.00 %"), (0.0213, False, "2.13 %"), (None, False, "-"), (float("nan"), True, "-"),
])
def test_percent(value, signed, text):
    assert percent(value, signed=signed) == text


def test_ratio():
    assert [ratio(v) for v in (1.5234, -0.005, 1234.5, None)] == ["1.52", "-0.01", "1,234.50", "-"]


def test_a_number_that_is_not_one_is_refused_by_name():
    with pytest.raises(ValueError, match="'abc' is not a number"):
        money("abc")


@FAST
@given(amounts)
def test_money_is_the_amount_rounded_to_the_cent(amount):
    text = money(amount)
    assert "e" not in text.lower() and not text.startswith("-0.00")
    whole, _, cents = text.partition(".")
    assert len(cents) == 2
    assert re.fullmatch(r"-?\d{1,3}(,\d{3})*", whole), text  # thousands separators in the right places
    assert _number(text) == amount.quantize(D("0.01"), rounding=ROUND_HALF_UP)
    assert abs(_number(text) - amount) <= D("0.005")


@FAST
@given(amounts)
def test_signed_money_reads_back_the_same(amount):
    signed, plain = money(amount, signed=True), money(amount)
    assert signed.lstrip("+") == plain and (signed.startswith("+") == (_number(plain) > 0))


@FAST
@given(amounts)
def test_quantity_keeps_every_digit_of_a_books_amount(amount):
    text = quantity(amount)
    assert _number(text) == amount  # 8 decimals: nothing of an amount in the books is lost
    decimals = text.partition(".")[2]
    assert not decimals.endswith("0") and len(decimals) <= 8


@FAST
@given(st.one_of(amounts.filter(lambda d: d != 0), finite_floats.filter(lambda f: f != 0)))
def test_price_has_six_significant_digits_two_to_eight_decimals(value):
    text = price(value)
    exact = value if isinstance(value, D) else D(repr(value))
    decimals = text.partition(".")[2]
    assert 2 <= len(decimals) <= 8, text
    shown = _number(text)
    if abs(exact) >= D("0.0001"):  # six significant digits at least
        assert abs(shown - exact) <= abs(exact) * D("5e-6") + D("5e-9"), (value, text)
    assert abs(shown - exact) <= D("0.005") + D("5e-9")  # never worse than the cent


@FAST
@given(finite_floats)
def test_a_float_shows_no_binary_noise(value):
    for text in (money(value), price(value), quantity(value), percent(value / 1e6), ratio(value)):
        assert "e" not in text.lower() and not re.search(r"\.\d{9,}", text), text


@FAST
@given(st.decimals(min_value=-100, max_value=100, places=6, allow_nan=False, allow_infinity=False))
def test_percent_is_the_fraction_times_100_rounded(fraction):
    text = percent(fraction)
    assert text.endswith(" %") and len(text.split(" ")[0].partition(".")[2]) == 2
    assert abs(_number(text) - fraction * 100) <= D("0.005")
