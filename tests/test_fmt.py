"""The one formatter per concept in cival.core.fmt: the exact text stored and reported."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import pandas as pd
import pytest

from cival.core.fmt import iso_utc, parse_time, plain_decimal, short_time, stored_time


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
