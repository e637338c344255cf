from decimal import ROUND_DOWN, Decimal

import pytest

from cival.core.fmt import format_amount
from cival.core.money import (
    AmountError,
    CurrencyMismatchError,
    Money,
    NotMoneyError,
    money_from_float,
    quantity_from_float,
    quantize_quantity,
    to_decimal,
)


def test_money_is_exact_decimal():
    m = Money("0.1", "usd") + Money(Decimal("0.2"), "USD")
    assert m == Money("0.3", "USD")
    assert m.currency == "USD"
    assert isinstance(m.amount, Decimal)


@pytest.mark.parametrize("bad", [0.1, 1.0, float("nan"), True])
def test_money_refuses_floats_and_booleans(bad):
    with pytest.raises(AmountError):
        Money(bad, "USD")


@pytest.mark.parametrize("bad", ["abc", "NaN", "Infinity", "", None, [1]])
def test_money_refuses_non_numbers(bad):
    with pytest.raises(AmountError):
        Money(bad, "USD")


def test_float_refusal_names_the_boundary():
    with pytest.raises(AmountError, match="money_from_float"):
        to_decimal(2.5)


def test_mixing_currencies_raises():
    usd, eur = Money("1", "USD"), Money("1", "EUR")
    for op in (lambda: usd + eur, lambda: usd - eur, lambda: usd < eur, lambda: usd >= eur):
        with pytest.raises(CurrencyMismatchError, match="USD.*EUR"):
            op()


def test_money_multiplication_is_exact():
    assert Money("19.99", "USD") * 3 == Money("59.97", "USD")
    assert 3 * Money("19.99", "USD") == Money("59.97", "USD")
    with pytest.raises(AmountError):
        Money("1", "USD") * 0.5


def test_money_from_float_uses_the_written_decimal_then_rounds():
    # 0.1 + 0.2 is 0.30000000000000004 in binary; at 8 places that is exactly 0.3.
    assert money_from_float(0.1 + 0.2, "USD") == Money("0.3", "USD")
    assert money_from_float(2.675, "USD", scale=2).amount == Decimal("2.68")  # repr is '2.675': half-even -> 2.68
    assert money_from_float(2.665, "USD", scale=2).amount == Decimal("2.66")
    assert money_from_float(1.005, "USD", scale=2, rounding=ROUND_DOWN).amount == Decimal("1.00")
    for bad in (float("inf"), float("nan"), "1.0"):
        with pytest.raises(AmountError):
            money_from_float(bad, "USD")  # type: ignore[arg-type]


def test_quantities_round_down_to_their_step():
    assert quantity_from_float(0.123456789) == Decimal("0.12345678")
    assert quantity_from_float(1.999999999) == Decimal("1.99999999")
    assert quantity_from_float(7.0, Decimal("0.5")) == Decimal("7.0")
    assert quantity_from_float(7.49, Decimal("0.5")) == Decimal("7.0")
    assert quantize_quantity(Decimal("12345.123456789"), Decimal("1e-8")) == Decimal("12345.12345678")
    with pytest.raises(AmountError):
        quantity_from_float(-1.0)
    with pytest.raises(AmountError):
        quantize_quantity(Decimal(1), Decimal(0))


def test_format_amount_keeps_every_digit():
    assert format_amount(Decimal("1234567.5")) == "1,234,567.50"
    assert format_amount(Decimal("0.00012345")) == "0.00012345"
    assert format_amount(Decimal("0E-8")) == "0.00"


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("999999999999999.99999999", None),
        ("-999999999999999.99999999", None),
        ("0.00000001", None),
        ("12.500000000000", None),  # trailing zeros are not decimal places
        ("1000000000000000", "1000000000000000 is beyond what the books hold"),
        ("1e20", "100000000000000000000 is beyond what the books hold"),
        ("1e308", "1.000000e+308 is beyond what the books hold"),
        ("0.000000001", "0.000000001 has more than 8 decimal places"),
        ("1.123456789", "1.123456789 has more than 8 decimal places"),
    ],
)
def test_amount_problem_says_why_the_books_cannot_hold_a_value(value, problem):
    from cival.core.money import amount_problem, check_amount

    found = amount_problem(Decimal(value))
    if problem is None:
        assert found is None
        assert check_amount(Decimal(value), what="x") == Decimal(value)
    else:
        assert found is not None and found.startswith(problem), found
        with pytest.raises(AmountError, match=r"^--cash: " + problem.split(" ")[0].replace(".", r"\.").replace("+", r"\+")):
            check_amount(Decimal(value), what="--cash")


def test_money_combined_with_a_plain_number_is_refused_as_cival_and_type_error():
    with pytest.raises(NotMoneyError, match="Money with int; make it Money") as info:
        Money("1", "USD") + 1  # type: ignore[operator]
    assert isinstance(info.value, AmountError) and isinstance(info.value, TypeError)
