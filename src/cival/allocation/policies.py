"""Allocation policies: how a parent's free cash is split among its children.

Pure functions over exact Decimals. Every policy first keeps a reserve back, then
splits the rest by weights, and its shares always sum to exactly what it was given to
split: no quantum is created or lost.

Rounding rule (documented, tested):

1. ``reserve = available * reserve_pct / 100``, rounded *up* to the quantum, so the
   reserve is never smaller than asked.
2. ``distributable = available - reserve``.
3. Each target's exact share of the distributable amount is its weight over the sum of
   the weights, then limited by its *floor* and *cap* (fractions of the distributable
   amount, 0 and 1 unless given), by this procedure, repeated until nothing changes:
   shares below their floor are raised to it; then, if none was, shares above their cap
   are cut to it; the targets not yet fixed share what is left by their weights. (Floors
   come first, so a floor is always met; the floors must sum to at most 1.) What no
   target may take, because every share is at its cap or the weights left are zero,
   stays with the parent, as reserve.
4. Each exact share is rounded *down* to the quantum; the quanta left over go one each
   to the targets with the largest remainders (ties: earlier targets first): the
   largest-remainder method. Floors and caps therefore hold to within one quantum.

Policies (:func:`plan_for` applies a configured one):

* ``equal``: the same weight for every target.
* ``fixed``: configured weights, one per target.
* ``inverse_volatility``: weight ``1 / std`` of the target's last ``lookback`` bar returns
  (sample std); a target with fewer than 2 returns or zero volatility gets the mean
  weight of the others (equal weights when none has any).
* ``performance``: weight ``max(score - floor, 0)`` where the score is the target's
  trailing Sharpe ratio (``mean / std`` of its last ``lookback`` returns, not
  annualised, which would not change the proportions) or its trailing return
  (compounded); a target with fewer than 2 returns scores nothing but keeps its
  ``min_share``, so a new agent can prove itself; when every weight is zero the split
  is equal.
"""

from __future__ import annotations

import math
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
    floors: Mapping[str, Decimal] | None = None,
    caps: Mapping[str, Decimal] | None = None,
) -> AllocationPlan:
    """Split ``available`` by relative ``weights`` after a ``reserve_pct`` reserve, each
    share within its floor and cap (fractions of what is distributed; see module doc).

    ``available`` must be a non-negative multiple of ``quantum``; weights must be
    non-negative with a positive sum; ``0 <= reserve_pct < 100``; floors and caps in
    [0, 1], a floor at most its cap, the floors summing to at most 1.
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
    fractions = _limited_fractions(weights, floors or {}, caps or {})
    floors_q: dict[str, int] = {}
    remainders: list[tuple[Fraction, int, str]] = []
    for order, (name, fraction) in enumerate(fractions.items()):
        exact = units * fraction
        whole = exact.numerator // exact.denominator
        floors_q[name] = whole
        remainders.append((exact - whole, -order, name))
    total_exact = units * sum(fractions.values(), Fraction(0))
    leftover = (total_exact.numerator // total_exact.denominator) - sum(floors_q.values())
    assert 0 <= leftover <= len(weights), leftover
    for _, _, name in sorted(remainders, reverse=True)[:leftover]:
        floors_q[name] += 1
    shares = {name: Decimal(n) * quantum for name, n in floors_q.items()}
    kept = distributable - sum(shares.values(), Decimal(0))  # what no target may take
    return AllocationPlan(available=available, reserve=reserve + kept, shares=shares)


def _limited_fractions(
    weights: Mapping[str, Decimal], floors: Mapping[str, Decimal], caps: Mapping[str, Decimal]
) -> dict[str, Fraction]:
    """Each target's exact fraction of the distributable amount (rule 3 of the module doc)."""
    unknown = [n for n in [*floors, *caps] if n not in weights]
    if unknown:
        raise AllocationError(f"floor or cap for unknown target(s) {unknown}; targets: {list(weights)}")
    lo = {n: Fraction(Decimal(floors.get(n, 0))) for n in weights}
    hi = {n: Fraction(Decimal(caps.get(n, 1))) for n in weights}
    for n in weights:
        if not 0 <= lo[n] <= hi[n] <= 1:
            raise AllocationError(
                f"target {n!r}: floor {floors.get(n, 0)} and cap {caps.get(n, 1)} must satisfy 0 <= floor <= cap <= 1"
            )
    if sum(lo.values()) > 1:
        raise AllocationError(f"the floors sum to {float(sum(lo.values())):.4g} of the amount; they must sum to at most 1")
    w = {n: Fraction(Decimal(v)) for n, v in weights.items()}
    fixed: dict[str, Fraction] = {}
    while True:
        free = [n for n in weights if n not in fixed]
        if not free:
            break
        remaining = 1 - sum(fixed.values(), Fraction(0))
        total = sum((w[n] for n in free), Fraction(0))
        proposal = {n: (remaining * w[n] / total if total > 0 else Fraction(0)) for n in free}
        low = [n for n in free if proposal[n] < lo[n]]
        if low:
            fixed.update({n: lo[n] for n in low})
            continue
        high = [n for n in free if proposal[n] > hi[n]]
        if high:
            fixed.update({n: hi[n] for n in high})
            continue
        fixed.update(proposal)
        break
    return {n: fixed[n] for n in weights}


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


def _window(returns: Sequence[float] | None, lookback: int) -> list[float]:
    values = [float(r) for r in (returns or [])][-lookback:]
    return [r for r in values if math.isfinite(r)]


def _std(values: Sequence[float]) -> float:
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def inverse_volatility_weights(returns: Mapping[str, Sequence[float] | None], lookback: int) -> dict[str, Decimal]:
    """``1 / std`` of each target's last ``lookback`` returns (see the module doc for gaps)."""
    if lookback < 2:
        raise AllocationError(f"lookback must be at least 2 bars, got {lookback}")
    raw: dict[str, float | None] = {}
    for name, series in returns.items():
        window = _window(series, lookback)
        std = _std(window) if len(window) >= 2 else 0.0
        raw[name] = 1.0 / std if std > 0 else None
    known = [v for v in raw.values() if v is not None]
    fallback = math.fsum(known) / len(known) if known else 1.0
    return {name: Decimal(v if v is not None else fallback) for name, v in raw.items()}


def performance_scores(returns: Mapping[str, Sequence[float] | None], lookback: int, metric: str) -> dict[str, float | None]:
    """Each target's trailing Sharpe (``mean / std``) or compounded return over ``lookback``
    bars; None with fewer than 2 returns."""
    if lookback < 2:
        raise AllocationError(f"lookback must be at least 2 bars, got {lookback}")
    if metric not in ("sharpe", "return"):
        raise AllocationError(f"unknown performance metric {metric!r}; use 'sharpe' or 'return'")
    scores: dict[str, float | None] = {}
    for name, series in returns.items():
        window = _window(series, lookback)
        if len(window) < 2:
            scores[name] = None
        elif metric == "return":
            scores[name] = math.prod(1.0 + r for r in window) - 1.0
        else:
            std = _std(window)
            scores[name] = (math.fsum(window) / len(window)) / std if std > 0 else 0.0
    return scores


def split_inverse_volatility(
    available: Decimal,
    returns: Mapping[str, Sequence[float] | None],
    quantum: Decimal,
    lookback: int = 100,
    reserve_pct: Decimal = Decimal(0),
    min_share: Decimal = Decimal(0),
    max_share: Decimal = Decimal(1),
) -> AllocationPlan:
    """``inverse_volatility`` policy: shares in proportion to ``1 / std`` of recent returns."""
    weights = inverse_volatility_weights(returns, lookback)
    return split(available, weights, quantum, reserve_pct, _same(weights, min_share), _same(weights, max_share))


def split_performance(
    available: Decimal,
    returns: Mapping[str, Sequence[float] | None],
    quantum: Decimal,
    lookback: int = 100,
    metric: str = "sharpe",
    floor: float = 0.0,
    reserve_pct: Decimal = Decimal(0),
    min_share: Decimal = Decimal(0),
    max_share: Decimal = Decimal(1),
) -> AllocationPlan:
    """``performance`` policy: shares in proportion to ``max(score - floor, 0)``, each at
    least ``min_share`` and at most ``max_share`` of what is distributed."""
    scores = performance_scores(returns, lookback, metric)
    weights = {n: Decimal(max(s - floor, 0.0)) if s is not None else Decimal(0) for n, s in scores.items()}
    if not any(weights.values()):
        weights = {n: Decimal(1) for n in weights}
    return split(available, weights, quantum, reserve_pct, _same(weights, min_share), _same(weights, max_share))


def _same(targets: Mapping[str, Any], value: Decimal) -> dict[str, Decimal]:
    return {n: Decimal(value) for n in targets}


def plan_for(
    policy: Any,
    available: Decimal,
    targets: Sequence[str],
    quantum: Decimal,
    returns: Mapping[str, Sequence[float] | None] | None = None,
) -> AllocationPlan:
    """Apply a configured policy (one of the :mod:`cival.config` allocation models).

    ``returns`` (each target's recent bar returns) feeds ``inverse_volatility`` and
    ``performance``; a target missing from it has no history yet.
    """
    name = getattr(policy, "policy", None)
    if name == "equal":
        return split_equal(available, targets, quantum, policy.reserve_pct)
    if name == "fixed":
        return split_fixed(available, targets, policy.weights, quantum, policy.reserve_pct)
    history = {t: (returns or {}).get(t) for t in targets}
    if name == "inverse_volatility":
        return split_inverse_volatility(
            available, history, quantum, policy.lookback_bars, policy.reserve_pct, policy.min_share, policy.max_share
        )
    if name == "performance":
        return split_performance(
            available,
            history,
            quantum,
            policy.lookback_bars,
            policy.metric,
            float(policy.floor),
            policy.reserve_pct,
            policy.min_share,
            policy.max_share,
        )
    raise AllocationError(f"unknown allocation policy {name!r}; use equal, fixed, inverse_volatility or performance")


__all__ = [
    "AllocationError",
    "AllocationPlan",
    "inverse_volatility_weights",
    "performance_scores",
    "plan_for",
    "split",
    "split_equal",
    "split_fixed",
    "split_inverse_volatility",
    "split_performance",
]
