"""Darvas Box: a new high starts a box top; ``confirm`` quiet bars fix it, then the bottom.

A state machine evaluated bar by bar (t counts bars from 0):

* SEEK: at bar t >= lookback, if ``high[t] > max(high[t-lookback .. t-1])``, set
  H = high[t], top_bar = t and go to TOP.
* TOP (from the next bar on): if ``high[t] > H``, set H = high[t], top_bar = t; else if
  ``t - top_bar >= confirm``, set L = min(low[top_bar .. t]) and low_bar = the latest bar
  holding that minimum, and go to BOTTOM.
* BOTTOM (from the next bar on): if ``high[t] > H``, set H = high[t], top_bar = t and go
  back to TOP; else, if ``low[t] < L``, set L = low[t], low_bar = t; then, if
  ``t - low_bar >= confirm``, the box (L, H) is complete from bar t on: go to SEEK.

``box_top[t]``/``box_bottom[t]`` are those of the latest complete box (NaN before the
first); ``entry[t] = close > box_top``, ``exit[t] = close < box_bottom``. Each bar is
handled by exactly one state, so a state entered at bar t acts from bar t + 1.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from cival.core.fields import WholeNumber
from cival.strategies.base import Strategy

FAMILY = "breakout"
COLUMNS = ("box_top", "box_bottom", "entry", "exit")


class DarvasParams(BaseModel):
    """``lookback``: bars a new high must exceed; ``confirm``: bars that fix a top or bottom."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lookback: WholeNumber = Field(20, gt=0)
    confirm: WholeNumber = Field(3, gt=0)


SEEK, TOP, BOTTOM = 0.0, 1.0, 2.0
# state slots
_T, _MODE, _H, _TOP_BAR, _L, _LOW_BAR, _BOX_TOP, _BOX_BOTTOM = range(8)


@njit(cache=True)
def step(state, buf, o, h, l, c, p, out):  # pragma: no cover - compiled
    lookback = int(p[0])
    confirm = int(p[1])
    size = buf.shape[1]
    t = int(state[_T])
    highs = buf[0]
    lows = buf[1]
    highs[t % size] = h
    lows[t % size] = l
    mode = state[_MODE]
    if mode == SEEK:
        if t >= lookback:
            prior_max = -np.inf
            for k in range(1, lookback + 1):
                v = highs[(t - k) % size]
                if v > prior_max:
                    prior_max = v
            if h > prior_max:
                state[_H] = h
                state[_TOP_BAR] = t
                state[_MODE] = TOP
    elif mode == TOP:
        top_bar = int(state[_TOP_BAR])
        if h > state[_H]:
            state[_H] = h
            state[_TOP_BAR] = t
        elif t - top_bar >= confirm:
            low = np.inf
            low_bar = top_bar
            for b in range(top_bar, t + 1):
                v = lows[b % size]
                if v <= low:  # <= : the latest bar holding the minimum
                    low = v
                    low_bar = b
            state[_L] = low
            state[_LOW_BAR] = low_bar
            state[_MODE] = BOTTOM
    else:  # BOTTOM
        if h > state[_H]:
            state[_H] = h
            state[_TOP_BAR] = t
            state[_MODE] = TOP
        else:
            if l < state[_L]:
                state[_L] = l
                state[_LOW_BAR] = t
            if t - int(state[_LOW_BAR]) >= confirm:
                state[_BOX_TOP] = state[_H]
                state[_BOX_BOTTOM] = state[_L]
                state[_MODE] = SEEK
    state[_T] = t + 1.0
    top = state[_BOX_TOP]
    bottom = state[_BOX_BOTTOM]
    out[0] = top
    out[1] = bottom
    out[2] = 1.0 if c > top else 0.0
    out[3] = 1.0 if c < bottom else 0.0


@njit(cache=True)
def run(o, h, l, c, state, buf, p, ncols):  # pragma: no cover - compiled
    out = np.empty((o.shape[0], ncols))
    for t in range(o.shape[0]):
        step(state, buf, o[t], h[t], l[t], c[t], p, out[t])
    return out


def make_state(params: DarvasParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    state = np.zeros(8)
    state[_BOX_TOP] = np.nan
    state[_BOX_BOTTOM] = np.nan
    # Ring buffers of highs and lows: the SEEK test reads `lookback` bars back, the TOP
    # test `confirm` bars back (the transition happens when t - top_bar == confirm).
    size = max(params.lookback, params.confirm) + 1
    buf = np.full((2, size), np.nan)
    return state, buf, np.array([params.lookback, params.confirm], dtype=np.float64)


STRATEGY = Strategy(
    name="darvas",
    family=FAMILY,
    params_model=DarvasParams,
    columns=COLUMNS,
    bool_columns=("entry", "exit"),
    make_state=make_state,
    run=run,
    step=step,
    description="Darvas Box: long on a close above the latest confirmed box, out below its bottom.",
)
