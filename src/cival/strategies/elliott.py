"""Elliott Wave: a causal ZigZag finds waves 1 and 2; the entry is the wave-3 breakout.

**ZigZag** (relative threshold ``zigzag_pct``, p = zigzag_pct / 100). After a swing low
the candidate swing high is the highest high since; it is *confirmed* at the first later
bar whose low is <= high x (1 - p). After a swing high, the candidate low is the lowest
low since, confirmed at the first later bar whose high >= low x (1 + p). Until the first
confirmation both candidates are tracked; if both confirm on one bar, the older one wins.
A pivot exists only from its confirmation bar on; ``pivot[t]`` is the price of a pivot
confirmed at bar t (NaN otherwise) and ``pivot_kind[t]`` is +1 (high), -1 (low) or 0.
At most one pivot is confirmed per bar; the next candidate starts at the confirming bar.

**Setup.** When a swing low is confirmed and the last three pivots are P0 (low), P1
(high), P2 (low) with P2 > P0 and retracement (P1 - P2) / (P1 - P0) within
[min_retrace, max_retrace], the count (P0, P1, P2, target = P2 + target_ext x (P1 - P0))
becomes the active one, replacing any earlier count.

**Signals.** ``entry[t]``: close > P1 while the setup is the latest (no pivot confirmed
since P2), at most once per setup. ``exit[t]``: close < P2 (the count is invalidated) or
close >= target (wave 3 reached its target); either ends the count. ``p0, p1, p2,
target`` show the active count (NaN when there is none).

:func:`label_impulses` labels completed five-wave impulses in a pivot sequence by the
hard rules (wave 2 above the start, wave 3 not the shortest, wave 4 not overlapping wave
1); it describes counts and takes no part in the signals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cival.core.fields import FiniteFloat
from cival.strategies.base import Strategy

FAMILY = "price_action"
COLUMNS = ("pivot", "pivot_kind", "p0", "p1", "p2", "target", "entry", "exit")


class ElliottParams(BaseModel):
    """ZigZag threshold in percent, the accepted wave-2 retracement range, and the wave-3 target extension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    zigzag_pct: FiniteFloat = Field(5.0, gt=0, lt=100)
    min_retrace: FiniteFloat = Field(0.382, gt=0, lt=1)
    max_retrace: FiniteFloat = Field(0.786, gt=0, lt=1)
    target_ext: FiniteFloat = Field(1.618, gt=0)

    @model_validator(mode="after")
    def _retrace_range(self) -> ElliottParams:
        if self.min_retrace > self.max_retrace:
            raise ValueError(
                f"min_retrace ({self.min_retrace}) must not exceed max_retrace ({self.max_retrace})"
            )
        return self


# state slots
(_T, _DIR, _H, _HB, _L, _LB, _N, _V0, _V1, _V2, _K0, _K1, _K2, _P0, _P1, _P2, _TARGET, _ACTIVE, _ENTRY_OK) = range(19)
_SLOTS = 19


@njit(cache=True)
def step(state, buf, o, h, l, c, p, out):  # pragma: no cover - compiled
    threshold = p[0] / 100.0
    t = int(state[_T])
    direction = state[_DIR]
    kind = 0.0
    price = np.nan
    if t == 0:
        state[_H] = h
        state[_HB] = 0.0
        state[_L] = l
        state[_LB] = 0.0
    elif direction == 0.0:
        if h > state[_H]:
            state[_H] = h
            state[_HB] = t
        if l < state[_L]:
            state[_L] = l
            state[_LB] = t
        high_confirms = state[_HB] < t and l <= state[_H] * (1.0 - threshold)
        low_confirms = state[_LB] < t and h >= state[_L] * (1.0 + threshold)
        if high_confirms and low_confirms:
            if state[_HB] < state[_LB]:
                low_confirms = False
            else:
                high_confirms = False
        if high_confirms:
            kind = 1.0
            price = state[_H]
        elif low_confirms:
            kind = -1.0
            price = state[_L]
    elif direction == 1.0:  # after a swing low: tracking the candidate high
        if h > state[_H]:
            state[_H] = h
            state[_HB] = t
        elif l <= state[_H] * (1.0 - threshold):
            kind = 1.0
            price = state[_H]
    else:  # after a swing high: tracking the candidate low
        if l < state[_L]:
            state[_L] = l
            state[_LB] = t
        elif h >= state[_L] * (1.0 + threshold):
            kind = -1.0
            price = state[_L]

    if kind != 0.0:
        # Every bar since the pivot stayed inside the threshold, so this bar holds the
        # extreme that starts the next candidate.
        if kind == 1.0:
            state[_DIR] = -1.0
            state[_L] = l
            state[_LB] = t
        else:
            state[_DIR] = 1.0
            state[_H] = h
            state[_HB] = t
        state[_V0] = state[_V1]
        state[_V1] = state[_V2]
        state[_V2] = price
        state[_K0] = state[_K1]
        state[_K1] = state[_K2]
        state[_K2] = kind
        state[_N] += 1.0
        state[_ENTRY_OK] = 0.0  # a new pivot: any earlier setup is no longer the latest
        if kind == -1.0 and state[_N] >= 3.0 and state[_K0] == -1.0 and state[_K1] == 1.0:
            p0 = state[_V0]
            p1 = state[_V1]
            p2 = state[_V2]
            if p2 > p0 and p1 > p0:
                retrace = (p1 - p2) / (p1 - p0)
                if retrace >= p[1] and retrace <= p[2]:
                    state[_P0] = p0
                    state[_P1] = p1
                    state[_P2] = p2
                    state[_TARGET] = p2 + p[3] * (p1 - p0)
                    state[_ACTIVE] = 1.0
                    state[_ENTRY_OK] = 1.0

    out[0] = price
    out[1] = kind
    if state[_ACTIVE] == 1.0:
        out[2] = state[_P0]
        out[3] = state[_P1]
        out[4] = state[_P2]
        out[5] = state[_TARGET]
        enter = state[_ENTRY_OK] == 1.0 and c > state[_P1]
        leave = c < state[_P2] or c >= state[_TARGET]
        out[6] = 1.0 if enter else 0.0
        out[7] = 1.0 if leave else 0.0
        if enter:
            state[_ENTRY_OK] = 0.0
        if leave:
            state[_ACTIVE] = 0.0
            state[_ENTRY_OK] = 0.0
    else:
        out[2] = np.nan
        out[3] = np.nan
        out[4] = np.nan
        out[5] = np.nan
        out[6] = 0.0
        out[7] = 0.0
    state[_T] = t + 1.0


@njit(cache=True)
def run(o, h, l, c, state, buf, p, ncols):  # pragma: no cover - compiled
    out = np.empty((o.shape[0], ncols))
    for t in range(o.shape[0]):
        step(state, buf, o[t], h[t], l[t], c[t], p, out[t])
    return out


def make_state(params: ElliottParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    state = np.zeros(_SLOTS)
    state[_V0] = state[_V1] = state[_V2] = np.nan
    p = np.array([params.zigzag_pct, params.min_retrace, params.max_retrace, params.target_ext], dtype=np.float64)
    return state, np.zeros((0, 0)), p


# -- five-wave impulse labelling ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Impulse:
    """A completed five-wave impulse: six alternating pivots P0..P5."""

    start: int
    """Index of P0 in the pivot sequence."""
    direction: int
    """+1 for an up-impulse (P0 a low), -1 for a down-impulse."""
    prices: tuple[float, float, float, float, float, float]


def label_impulses(kinds: Sequence[int], prices: Sequence[float]) -> list[Impulse]:
    """Label every window of six alternating pivots that obeys the impulse rules.

    For an up-impulse (P0 low, P1 high, ...): P2 > P0 (wave 2 stays above the start),
    P3 > P1, P5 > P3, P4 > P1 (wave 4 does not overlap wave 1) and wave 3 is not the
    shortest of waves 1, 3 and 5. A down-impulse is the mirror image.
    """
    if len(kinds) != len(prices):
        raise ValueError("kinds and prices must have the same length")
    found: list[Impulse] = []
    for i in range(len(kinds) - 5):
        k = [int(x) for x in kinds[i : i + 6]]
        direction = -k[0]  # starting at a low (-1) means an up-impulse
        if direction == 0 or k != [-direction if j % 2 == 0 else direction for j in range(6)]:
            continue
        v = [float(x) * direction for x in prices[i : i + 6]]  # mirror a down-impulse
        w1, w3, w5 = v[1] - v[0], v[3] - v[2], v[5] - v[4]
        if (
            v[2] > v[0]
            and v[3] > v[1]
            and v[5] > v[3]
            and v[4] > v[1]
            and not (w3 < w1 and w3 < w5)
        ):
            found.append(Impulse(i, direction, tuple(float(x) for x in prices[i : i + 6])))  # type: ignore[arg-type]
    return found


def impulses(signals: pd.DataFrame) -> list[Impulse]:
    """Label impulses among the pivots of an Elliott ``signals`` frame (see :func:`label_impulses`)."""
    confirmed = signals[signals["pivot_kind"] != 0]
    return label_impulses(confirmed["pivot_kind"].astype(int).tolist(), confirmed["pivot"].tolist())


STRATEGY = Strategy(
    name="elliott",
    family=FAMILY,
    params_model=ElliottParams,
    columns=COLUMNS,
    bool_columns=("entry", "exit"),
    make_state=make_state,
    run=run,
    step=step,
    description="Elliott Wave: long on the wave-3 breakout above wave 1, out below wave 2 or at the target.",
)
