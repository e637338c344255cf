"""Allocation policies: how a parent's free cash is split among its children.

Pure functions over exact Decimals. Every policy first keeps a reserve back, then
splits the rest by weights, and its shares always sum to exactly what it was given to
split: no quantum is created or lost.

Rounding rule (documented, tested):

1. ``reserve = available * reserve_pct / 100``, rounded *up* to the quantum, so the
   reserve is never smaller than asked.
2. ``distributable = available - reserve``.
3. Each share is ``distributable * weight / sum(weights)`` rounded *down* to the
   quantum; the quanta left over go one each to the targets with the largest
   remainders (ties: earlier targets first). This is the largest-remainder method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from fractions import Fraction
from typing import Any

from cival.core.errors import CivalError


class AllocationError(CivalError):
    """A policy was given inputs it cannot split (no targets, bad weights, bad reserve)."""


@dataclass(frozen=True, slots=True)
class AllocationPlan:
    """What a policy decided: the reserve kept back and each target's share."""

    available: Decimal
    reserve: Decimal
    shares: dict[str, Decimal]

    @property
    def distributed(self) -> Decimal:
        return sum(self.shares.values(), Decimal(0))


def split(
    available: Decimal,
    weights: Mapping[str, Decimal],
    quantum: Decimal,
    reserve_pct: Decimal = Decimal(0),
) -> AllocationPlan:
    """Split ``available`` by relative ``weights`` after a ``reserve_pct`` reserve (see module doc).

    ``available`` must be a non-negative multiple of ``quantum``; weights must be
    non-negative with a positive sum; ``0 <= reserve_pct < 100``.
    """
    if quantum <= 0:
        raise AllocationError(f"quantum must be positive, got {quantum}")
    if available < 0 or available % quantum != 0:
        raise AllocationError(f"available amount {available} must be a non-negative multiple of {quantum}")
    if not 0 <= reserve_pct < 100:
        raise AllocationError(f"reserve_pct must be in [0, 100), got {reserve_pct}")
    if not weights:
        raise AllocationError("nothing to allocate to: the list of targets is empty")
    if any(w < 0 for w in weights.values()):
        bad = next(name for name, w in weights.items() if w < 0)
        raise AllocationError(f"weight of {bad!r} is negative ({weights[bad]})")
    total_weight = sum(weights.values(), Decimal(0))
    if total_weight <= 0:
        raise AllocationError("weights sum to zero; give at least one target a positive weight")

    reserve = (available * reserve_pct / 100).quantize(quantum, rounding=ROUND_UP)
    reserve = min(reserve, available)
    distributable = available - reserve
    units = int(distributable / quantum)  # exact: distributable is a multiple of quantum

    # Exact rational arithmetic: Decimal division would round at 28 digits.
    floors: dict[str, int] = {}
    remainders: list[tuple[Fraction, int, str]] = []
    total = Fraction(total_weight)
    for order, (name, weight) in enumerate(weights.items()):
        exact = units * Fraction(weight) / total
        whole = exact.numerator // exact.denominator
        floors[name] = whole
        remainders.append((exact - whole, -order, name))
    leftover = units - sum(floors.values())
    assert 0 <= leftover < len(weights), leftover
    for _, _, name in sorted(remainders, reverse=True)[:leftover]:
        floors[name] += 1
    shares = {name: Decimal(n) * quantum for name, n in floors.items()}
    return AllocationPlan(available=available, reserve=reserve, shares=shares)


def split_equal(
    available: Decimal, targets: Sequence[str], quantum: Decimal, reserve_pct: Decimal = Decimal(0)
) -> AllocationPlan:
    """``equal`` policy: the same share for every target (leftover quanta to the first ones)."""
    if len(set(targets)) != len(targets):
        raise AllocationError(f"targets must be unique: {list(targets)}")
    return split(available, {t: Decimal(1) for t in targets}, quantum, reserve_pct)


def split_fixed(
    available: Decimal,
    targets: Sequence[str],
    weights: Mapping[str, Decimal],
    quantum: Decimal,
    reserve_pct: Decimal = Decimal(0),
) -> AllocationPlan:
    """``fixed`` policy: shares in proportion to configured weights, one per target."""
    missing = [t for t in targets if t not in weights]
    extra = [w for w in weights if w not in targets]
    if missing or extra:
        raise AllocationError(
            "fixed weights must name exactly the targets"
            + (f"; no weight for {missing}" if missing else "")
            + (f"; unknown targets {extra}" if extra else "")
        )
    return split(available, {t: Decimal(weights[t]) for t in targets}, quantum, reserve_pct)


def plan_for(policy: Any, available: Decimal, targets: Sequence[str], quantum: Decimal) -> AllocationPlan:
    """Apply a configured policy (:class:`cival.config.EqualPolicy` or ``FixedPolicy``)."""
    name = getattr(policy, "policy", None)
    if name == "equal":
        return split_equal(available, targets, quantum, policy.reserve_pct)
    if name == "fixed":
        return split_fixed(available, targets, policy.weights, quantum, policy.reserve_pct)
    raise AllocationError(f"unknown allocation policy {name!r}; use 'equal' or 'fixed'")


__all__ = ["AllocationError", "AllocationPlan", "plan_for", "split", "split_equal", "split_fixed"]
