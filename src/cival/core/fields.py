"""Numeric field types for configs and parameter models.

YAML reads ``true`` as a boolean, and Python treats booleans as integers; a config that
says ``jaw_period: true`` is a mistake to report, not the number 1. These types refuse
booleans, refuse NaN and infinities, and read float amounts as the decimal that was
written.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field


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


WholeNumber = Annotated[int, BeforeValidator(_not_bool)]
"""An int; ``true``/``false`` are refused."""

FiniteFloat = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
"""A finite float; booleans, NaN and infinities are refused."""

ExactDecimal = Annotated[Decimal, BeforeValidator(_exact_number), Field(allow_inf_nan=False)]
"""An exact, finite Decimal; a float is read through its shortest repr (0.1 -> Decimal('0.1'))."""

__all__ = ["ExactDecimal", "FiniteFloat", "WholeNumber"]
