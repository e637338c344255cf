"""Text forms of times and exact numbers: each written in exactly one place.

Two kinds of output need two time forms. Reports, events and API bodies show a time as
ISO 8601 in UTC with a ``Z`` (:func:`iso_utc`); the stores keep the ``+00:00`` form they
always have (:func:`stored_time`), because stored text is compared and sorted as text
and old files must stay readable. :func:`parse_time` reads either back.

Amounts are shown without exponent or trailing zeros (:func:`plain_decimal`); error
messages quote a number in bounded length (:func:`plain_number`); people read amounts
with thousands separators (:func:`format_amount`). Pure: no pandas, no I/O.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Context, Decimal

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


__all__ = ["ISO_SECONDS", "format_amount", "iso_utc", "parse_time", "plain_decimal", "plain_number", "short_time", "stored_time"]
