"""Numeric field types for configs and parameter models.

YAML reads ``true`` as a boolean, and Python treats booleans as integers; a config that
says ``jaw_period: true`` is a mistake to report, not the number 1. These types refuse
booleans, refuse NaN and infinities, and read float amounts as the decimal that was
written. Exact decimals stay within a range that arithmetic on them handles at once (see
:data:`DIGITS` and :data:`MAGNITUDE`); amounts that reach the books are :data:`BookAmount`.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from cival.core.fmt import plain_number
from cival.core.money import (
    DEFAULT_SCALE,
    amount_problem,
    money_context,
    quantum,
    within_capacity,
)

DIGITS = 40
"""Significant digits an exact decimal may have."""

MAGNITUDE = 30
"""An exact decimal other than zero lies between 10**-MAGNITUDE and 10**MAGNITUDE in
absolute value: far beyond any real setting, and an exponent of a million would make
exact arithmetic on it (a Fraction of it, a quantize) build numbers of a million digits."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"must be a number, not {str(value).lower()}")
    return value


def _exact_number(value: Any) -> Any:
    """Let YAML floats through as the decimal they were written as; refuse booleans."""
    value = _not_bool(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number (got {value})")
        return Decimal(repr(value))
    return value


def _in_range(value: Decimal) -> Decimal:
    if value != 0 and not -MAGNITUDE <= value.adjusted() < MAGNITUDE:
        raise ValueError(f"{plain_number(value)} is out of range; use a number between 1e-{MAGNITUDE} and 1e{MAGNITUDE}")
    if len(value.as_tuple().digits) > DIGITS:
        raise ValueError(f"{plain_number(value)} has more than {DIGITS} digits; round it")
    return value


def _bookable(value: Decimal) -> Decimal:
    problem = amount_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _quantity_step(value: Decimal) -> Decimal:
    ledger = quantum(DEFAULT_SCALE)
    if within_capacity(value):
        with money_context():
            fits = value >= ledger and value % ledger == 0
        if not fits:
            relation = "smaller than" if value < ledger else "not a whole multiple of"
            raise ValueError(
                f"{plain_number(value)} is {relation} the ledger's quantum ({ledger:f}); a quantity step must be "
                f"at least 1e-{DEFAULT_SCALE} and a whole multiple of it"
            )
    return _bookable(value)


WholeNumber = Annotated[int, BeforeValidator(_not_bool)]
"""An int; ``true``/``false`` are refused."""

FiniteFloat = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
"""A finite float; booleans, NaN and infinities are refused."""

ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_number), Field(allow_inf_nan=False), AfterValidator(_in_range)]
"""An exact, finite Decimal; a float is read through its shortest repr (0.1 -> Decimal('0.1')).
Zero or between 1e-30 and 1e30 in absolute value, at most 40 significant digits."""

BookAmount = Annotated[ExactDecimal, AfterValidator(_bookable)]
"""An amount the books can hold exactly: below their capacity (10**15) and with at most
the ledger's 8 decimal places (see :func:`cival.core.money.amount_problem`)."""

QuantityStep = Annotated[ExactDecimal, Field(gt=0), AfterValidator(_quantity_step)]
"""A quantity increment: a whole multiple of the ledger's quantum (1e-8), within capacity."""

__all__ = ["DIGITS", "MAGNITUDE", "BookAmount", "ExactDecimal", "FiniteFloat", "QuantityStep", "WholeNumber"]
