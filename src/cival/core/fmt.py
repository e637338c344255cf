"""Text forms of times and exact numbers: each written in exactly one place.

Two kinds of output need two time forms. Reports, events and API bodies show a time as
ISO 8601 in UTC with a ``Z`` (:func:`iso_utc`); the stores keep the ``+00:00`` form they
always have (:func:`stored_time`), because stored text is compared and sorted as text
and old files must stay readable. :func:`parse_time` reads either back.

Amounts are shown without exponent or trailing zeros (:func:`plain_decimal`); error
messages quote a number in bounded length (:func:`plain_number`); an audit shows every
digit of an amount with thousands separators (:func:`format_amount`).

What a person reads goes through one formatter per kind of number, whatever the command:

* :func:`money`: two decimals, thousands separators (``-1,910.60``, ``+826.67`` signed);
* :func:`price`: six significant digits, at least two decimals and at most eight
  (``71,234.50``, ``2,409.59``, ``0.123457``, ``0.00001234``);
* :func:`quantity`: up to eight decimals, trailing zeros stripped (``0.5``, ``0.30632564``);
* :func:`percent`: a fraction as a percentage with two decimals (``0.2029`` -> ``20.29 %``);
* :func:`ratio`: a ratio such as Sharpe with two decimals (``1.52``).

Each takes a Decimal, an int, a float (read through its shortest repr, so float noise such
as ``2409.5946000000004`` never shows) or numeric text, rounds half away from zero, never
shows ``-0.00``, and gives ``-`` for a missing value (None or NaN). JSON output does not
use them: it keeps the exact values. Pure: no pandas, no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation
from typing import Any

ISO_SECONDS = "%Y-%m-%dT%H:%M:%SZ"
"""``strftime`` pattern of a UTC time to the second with a ``Z``, for whole columns of
times (CSV exports); a single time goes through :func:`iso_utc`."""


def iso_utc(when: datetime) -> str:
    """``when`` (an aware datetime or pandas Timestamp) as ISO 8601 in UTC with a ``Z``:
    ``2024-01-31T09:30:00Z``, with fractional seconds only when there are some.

    A naive time is refused (TypeError): its zone is unknown, and guessing local time
    would put a wrong time into a report."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise TypeError(f"a time without a time zone cannot be shown as UTC: {when!r}; pass an aware time")
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def stored_time(when: datetime) -> str:
    """``when`` as the stores keep a time in text: ISO 8601 in UTC with ``+00:00``."""
    return when.astimezone(UTC).isoformat()


def parse_time(text: str) -> datetime:
    """A datetime from ISO 8601 text (``Z`` or an offset, as :func:`iso_utc` and
    :func:`stored_time` write it); ValueError when ``text`` is not such a time."""
    return datetime.fromisoformat(text)


def short_time(when: datetime) -> str:
    """A time for people, in UTC: ``2024-01-31 09:30Z``, with seconds only when there
    are some (``2024-01-31 09:30:15Z``)."""
    when = when.astimezone(UTC)
    if when.second or when.microsecond:
        return when.strftime("%Y-%m-%d %H:%M:%SZ")
    return when.strftime("%Y-%m-%d %H:%MZ")


def plain_decimal(value: Decimal | float | str) -> str:
    """An exact number as plain decimal text: no exponent, no trailing zeros, ``0`` for
    any zero (``Decimal('100.00')`` -> ``100``, ``Decimal('1E-8')`` -> ``0.00000001``,
    ``Decimal('-0.0')`` -> ``0``). A float goes through its shortest repr (``0.1`` ->
    ``0.1``). Every digit is kept, however many there are; equal values give equal text."""
    d = value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else str(value))
    if d == 0:
        return "0"
    if d.is_finite():
        # normalize() rounds to its context's precision: give it room for every digit
        d = d.normalize(Context(prec=max(28, len(d.as_tuple().digits))))
    return f"{d:f}"


def plain_number(value: Decimal) -> str:
    """A Decimal as plain text for a message, bounded in length (1e308 stays short)."""
    text = f"{value:f}"
    return text if len(text) <= 40 else f"{value:.6e}"


def format_amount(amount: Decimal, places: int = 2) -> str:
    """Human display: thousands separators, at least ``places`` decimals, no precision lost."""
    shown = amount.normalize() if amount != 0 else Decimal(0)
    exponent = shown.as_tuple().exponent
    decimals = max(places, -exponent if isinstance(exponent, int) and exponent < 0 else 0)
    return f"{amount:,.{decimals}f}"


# -- numbers people read -----------------------------------------------------------------

MISSING = "-"
"""What every formatter below shows for a missing value (None, NaN)."""

PRICE_DIGITS = 6
"""Significant digits :func:`price` shows (more when two decimals need more)."""

QTY_PLACES = 8
"""The most decimals :func:`quantity` and :func:`price` show: the books' scale."""


def _number(value: Any) -> Decimal | None:
    """``value`` as a Decimal (None for None and NaN); a float through its shortest repr."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        d = value
    else:
        if isinstance(value, bool):
            raise TypeError(f"a number is needed, got {value!r}")
        try:
            # float (numpy's too) through repr: 0.1 stays 0.1, not 0.1000000000000000055...
            d = Decimal(repr(float(value))) if isinstance(value, float) else Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    return None if d.is_nan() else d


def _rounded(d: Decimal, places: int) -> Decimal:
    """``d`` rounded half away from zero to ``places`` decimals, with room for every
    integer digit; a zero result loses its sign (no ``-0.00``)."""
    context = Context(prec=max(28, d.adjusted() + places + 2), rounding=ROUND_HALF_UP)
    q = d.quantize(Decimal(1).scaleb(-places), context=context)
    return q.copy_abs() if q == 0 else q


def _sign(text: str, d: Decimal, signed: bool) -> str:
    return "+" + text if signed and d > 0 else text


def _infinite(d: Decimal, signed: bool) -> str:
    return "-inf" if d < 0 else ("+inf" if signed else "inf")


def money(value: Any, *, signed: bool = False, places: int = 2) -> str:
    """An amount of money for a person: ``places`` decimals (default 2), thousands
    separators, ``+`` before a positive amount when ``signed`` (a P&L):
    ``Decimal("-1910.6")`` -> ``-1,910.60``; ``826.666`` signed -> ``+826.67``."""
    d = _number(value)
    if d is None:
        return MISSING
    if d.is_infinite():
        return _infinite(d, signed)
    q = _rounded(d, places)
    return _sign(f"{q:,.{places}f}", q, signed)


def price(value: Any, *, digits: int = PRICE_DIGITS) -> str:
    """A price for a person: ``digits`` significant digits (default 6), but at least two
    decimals and at most eight, thousands separators, trailing zeros past the second
    decimal stripped: ``71234.5`` -> ``71,234.50``, ``2409.5946000000004`` -> ``2,409.59``,
    ``145.1`` -> ``145.10``, ``0.1234567`` -> ``0.123457``, ``0.00001234`` -> ``0.00001234``.
    The integer part is never rounded away (``1234567.891`` -> ``1,234,567.89``)."""
    d = _number(value)
    if d is None:
        return MISSING
    if d.is_infinite():
        return _infinite(d, False)
    places = 2 if d == 0 else min(QTY_PLACES, max(2, digits - 1 - d.adjusted()))
    q = _rounded(d, places)
    text = f"{q:,.{places}f}"
    whole, _, decimals = text.partition(".")
    decimals = decimals.rstrip("0")
    return f"{whole}.{decimals:0<2}"


def quantity(value: Any, *, signed: bool = False, places: int = QTY_PLACES) -> str:
    """A quantity for a person: at most ``places`` decimals (default 8, the books'
    scale), trailing zeros stripped, thousands separators: ``Decimal("0.50000000")`` ->
    ``0.5``, ``0.30000000000000004`` -> ``0.3``, ``1500`` -> ``1,500``, zero -> ``0``."""
    d = _number(value)
    if d is None:
        return MISSING
    if d.is_infinite():
        return _infinite(d, signed)
    q = _rounded(d, places)
    if q == 0:
        return "0"
    text = f"{q:,.{places}f}".rstrip("0").rstrip(".")
    return _sign(text, q, signed)


def percent(fraction: Any, *, signed: bool = False, places: int = 2) -> str:
    """A fraction as a percentage for a person, two decimals (``places``) and `` %``:
    ``-0.202855`` -> ``-20.29 %``; ``0.05`` signed -> ``+5.00 %``. A value already in
    percentage points is divided by 100 first (exactly, as a Decimal)."""
    d = _number(fraction)
    if d is None:
        return MISSING
    if d.is_infinite():
        return _infinite(d, signed) + " %"
    q = _rounded(d.scaleb(2), places)
    return _sign(f"{q:,.{places}f}", q, signed) + " %"


def ratio(value: Any, *, places: int = 2) -> str:
    """A ratio such as Sharpe or a profit factor for a person: two decimals (``places``),
    thousands separators: ``1.5234`` -> ``1.52``."""
    d = _number(value)
    if d is None:
        return MISSING
    if d.is_infinite():
        return _infinite(d, False)
    q = _rounded(d, places)
    return f"{q:,.{places}f}"


__all__ = [
    "ISO_SECONDS", "MISSING", "format_amount", "iso_utc", "money", "parse_time", "percent", "plain_decimal",
    "plain_number", "price", "quantity", "ratio", "short_time", "stored_time",
]
