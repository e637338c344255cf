"""Exact amounts and quantities.

Money is a ``Decimal`` with a currency; a ``float`` is refused everywhere except
at the one named boundary, :func:`money_from_float` (and its twin
:func:`quantity_from_float`), which rounds explicitly. Arithmetic between two
currencies raises :class:`CurrencyMismatchError`.

The ledger keeps amounts to a fixed number of decimal places (its ``scale``,
8 by default): enough that a float research engine and the exact books agree to
float precision on cash of any realistic size.

**Capacity.** An amount or quantity the books hold has at most
:data:`INTEGER_DIGITS` digits before the point (below 10**15, a thousand trillion)
and the ledger's scale after it. Configs are checked against it when they are
validated, and the ledger refuses a posting that would take any balance beyond it.
Arithmetic on amounts runs in :data:`MONEY_CONTEXT`, wide enough that sums and
products of values within the capacity are never rounded before the explicit
rounding to the ledger's scale (Python's default context keeps 28 digits: a deposit
of 6e19 plus one of 1e-8 would silently lose the 1e-8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import (
    ROUND_DOWN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Union

from cival.core.errors import CivalError
from cival.core.fmt import format_amount, plain_number

DEFAULT_SCALE = 8
"""Decimal places the ledger keeps for amounts (1e-8 of a currency unit)."""

DEFAULT_QTY_STEP = Decimal("1e-8")
"""Smallest tradable increment of a quantity unless an instrument says otherwise."""

INTEGER_DIGITS = 15
"""Digits an amount or quantity may have before the point (see the module docstring)."""

CAPACITY = Decimal(10) ** INTEGER_DIGITS
"""Every amount and quantity the books hold is below this in absolute value."""

MONEY_CONTEXT = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
"""Decimal arithmetic on amounts: 80 significant digits hold the exact sum or product
of any two values within the capacity at any scale up to 18 places."""

Amountlike = Union[Decimal, int, str]


class CurrencyMismatchError(CivalError):
    """Two amounts in different currencies were combined."""


class AmountError(CivalError):
    """An amount or quantity is not an exact, finite number of the expected precision."""


class NotMoneyError(AmountError, TypeError):
    """Money was combined with something that is not Money (a TypeError too, as Python's
    own arithmetic raises)."""


def to_decimal(value: Amountlike, *, what: str = "amount") -> Decimal:
    """Convert an exact value (Decimal, int or numeric string) to a finite Decimal.

    Floats are refused: they cannot represent most decimal amounts exactly.
    Use :func:`money_from_float` / :func:`quantity_from_float` to round one on purpose.
    """
    if isinstance(value, bool):
        raise AmountError(f"{what}: a boolean is not an amount")
    if isinstance(value, float):
        raise AmountError(
            f"{what}: got the float {value!r}; floats are not exact. "
            "Pass a Decimal, an int or a string, or convert with money_from_float()/quantity_from_float()."
        )
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        try:
            d = Decimal(value.strip())
        except InvalidOperation:
            raise AmountError(f"{what}: {value!r} is not a number") from None
    else:
        raise AmountError(f"{what}: expected a Decimal, int or numeric string, got {type(value).__name__}")
    if not d.is_finite():
        raise AmountError(f"{what}: {value!r} is not a finite number")
    return d


def money_context():  # type: ignore[no-untyped-def]
    """``with money_context():`` computes in :data:`MONEY_CONTEXT`."""
    return localcontext(MONEY_CONTEXT)


def exact_methods(cls):  # type: ignore[no-untyped-def]
    """Class decorator: every public method of ``cls`` computes in :data:`MONEY_CONTEXT`
    (unary minus and sums of long amounts round to the context's precision too)."""
    import functools

    def wrap(fn):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def exact(*args, **kwargs):  # type: ignore[no-untyped-def]
            with localcontext(MONEY_CONTEXT):
                return fn(*args, **kwargs)

        return exact

    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and callable(value) and not isinstance(value, (staticmethod, classmethod, type)):
            setattr(cls, name, wrap(value))
    return cls


def within_capacity(value: Decimal, scale: int = DEFAULT_SCALE) -> bool:
    """Whether ``value`` has fewer than :data:`INTEGER_DIGITS` + 1 digits before the point."""
    return abs(value) < CAPACITY


def _beyond(value: Decimal, scale: int) -> str:
    return (
        f"{plain_number(value)} is beyond what the books hold (less than 10**{INTEGER_DIGITS} in absolute value, "
        f"{scale} decimal places); use a smaller amount"
    )


def amount_problem(value: Decimal, scale: int = DEFAULT_SCALE) -> str | None:
    """Why the books cannot hold ``value`` exactly (beyond the capacity, or finer than
    ``scale`` decimal places), or None when they can. Trailing zeros do not count:
    ``1.500000000`` is 1.5."""
    if not value.is_finite():
        return f"{value} is not a finite number"
    if not within_capacity(value, scale):
        return _beyond(value, scale)
    with money_context():
        if value != value.quantize(quantum(scale)):
            return f"{plain_number(value)} has more than {scale} decimal places, the books' precision; round it"
    return None


def check_amount(value: Decimal, *, what: str = "amount", scale: int = DEFAULT_SCALE) -> Decimal:
    """``value`` if the books can hold it exactly (see :func:`amount_problem`); AmountError
    naming ``what`` (a field, a command-line flag) otherwise."""
    problem = amount_problem(value, scale)
    if problem is not None:
        raise AmountError(f"{what}: {problem}")
    return value


def quantum(scale: int) -> Decimal:
    """The smallest step at ``scale`` decimal places: ``quantum(2) == Decimal('0.01')``."""
    return Decimal(1).scaleb(-scale)


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of one currency.

    ``Money("12.50", "USD")`` or ``Money(Decimal("12.5"), "USD")``; a float raises.
    Adding or comparing amounts in different currencies raises CurrencyMismatchError.
    """

    amount: Decimal
    currency: str

    def __init__(self, amount: Amountlike, currency: str) -> None:
        if not isinstance(currency, str) or not currency.strip():
            raise AmountError("currency: must be a non-empty code such as 'USD'")
        object.__setattr__(self, "amount", to_decimal(amount))
        object.__setattr__(self, "currency", currency.strip().upper())

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    def _check(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise NotMoneyError(
                f"cannot combine Money with {type(other).__name__}; make it Money(amount, currency) first"
            )
        if other.currency != self.currency:
            raise CurrencyMismatchError(
                f"cannot combine {self.currency} with {other.currency}; convert one of them first"
            )
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.amount + self._check(other).amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.amount - self._check(other).amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount), self.currency)

    def __mul__(self, factor: Amountlike) -> Money:
        return Money(self.amount * to_decimal(factor, what="factor"), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        return self.amount < self._check(other).amount

    def __le__(self, other: Money) -> bool:
        return self.amount <= self._check(other).amount

    def __gt__(self, other: Money) -> bool:
        return self.amount > self._check(other).amount

    def __ge__(self, other: Money) -> bool:
        return self.amount >= self._check(other).amount

    def is_zero(self) -> bool:
        return self.amount == 0

    def quantize(self, scale: int = DEFAULT_SCALE, rounding: str = ROUND_HALF_EVEN) -> Money:
        return Money(self.amount.quantize(quantum(scale), rounding=rounding), self.currency)

    def __str__(self) -> str:
        return f"{format_amount(self.amount)} {self.currency}"

    def __repr__(self) -> str:
        return f"Money('{self.amount}', '{self.currency}')"


def money_from_float(
    value: float, currency: str, *, scale: int = DEFAULT_SCALE, rounding: str = ROUND_HALF_EVEN
) -> Money:
    """The float boundary for amounts: round ``value`` to ``scale`` places with ``rounding``.

    The float is read through its shortest round-trip representation (``repr``), so
    ``0.1`` becomes exactly ``0.1`` before rounding rather than 0.1000000000000000055....
    NaN and infinities raise AmountError.
    """
    if not isinstance(value, (float, int)) or isinstance(value, bool) or not math.isfinite(value):
        raise AmountError(f"money_from_float: {value!r} is not a finite number")
    return Money(Decimal(repr(float(value))).quantize(quantum(scale), rounding=rounding), currency)


def quantity_from_float(value: float, step: Decimal = DEFAULT_QTY_STEP) -> Decimal:
    """The float boundary for quantities: round ``value`` *down* to a multiple of ``step``.

    Rounding down means an order sized from available cash never exceeds it.
    NaN, infinities and negative values raise AmountError.
    """
    if not isinstance(value, (float, int)) or isinstance(value, bool) or not math.isfinite(value):
        raise AmountError(f"quantity_from_float: {value!r} is not a finite number")
    if value < 0:
        raise AmountError(f"quantity_from_float: {value!r} is negative")
    return quantize_quantity(Decimal(repr(float(value))), step)


def quantize_quantity(value: Decimal, step: Decimal = DEFAULT_QTY_STEP) -> Decimal:
    """Round an exact quantity down to a whole multiple of ``step`` (step > 0)."""
    if step <= 0:
        raise AmountError(f"quantity step must be > 0, got {step}")
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


__all__ = [
    "CAPACITY",
    "INTEGER_DIGITS",
    "MONEY_CONTEXT",
    "amount_problem",
    "check_amount",
    "exact_methods",
    "money_context",
    "within_capacity",
    "DEFAULT_QTY_STEP",
    "DEFAULT_SCALE",
    "AmountError",
    "CurrencyMismatchError",
    "Money",
    "NotMoneyError",
    "money_from_float",
    "quantity_from_float",
    "quantize_quantity",
    "quantum",
    "to_decimal",
]
