"""Williams Alligator: three smoothed moving averages of the median price, shifted forward.

With ``m = (high + low) / 2`` and SMMA as in :mod:`cival.strategies.indicators`::

    jaw[t]   = SMMA(m, jaw_period)[t - jaw_shift]
    teeth[t] = SMMA(m, teeth_period)[t - teeth_shift]
    lips[t]  = SMMA(m, lips_period)[t - lips_shift]
    entry[t] = lips > teeth > jaw and close > lips
    exit[t]  = lips < teeth

The forward shift only moves where a line is drawn: the value on bar t was computed at
bar t - shift, so every column is causal. Comparisons with NaN are false.
"""

from __future__ import annotations

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from cival.core.fields import WholeNumber
from cival.strategies.base import Strategy
from cival.strategies.indicators import SMMA_STATE, shifted, smma_step

FAMILY = "trend_following"
COLUMNS = ("jaw", "teeth", "lips", "entry", "exit")


class AlligatorParams(BaseModel):
    """Periods and forward shifts of the jaw, teeth and lips lines (in bars)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jaw_period: WholeNumber = Field(13, gt=0)
    jaw_shift: WholeNumber = Field(8, ge=0)
    teeth_period: WholeNumber = Field(8, gt=0)
    teeth_shift: WholeNumber = Field(5, ge=0)
    lips_period: WholeNumber = Field(5, gt=0)
    lips_shift: WholeNumber = Field(3, ge=0)


# state: three SMMA blocks, then the bar count. buf rows: ring buffers for the shifts.
_BAR = 3 * SMMA_STATE


@njit(cache=True)
def step(state, buf, o, h, l, c, p, out):  # pragma: no cover - compiled
    m = (h + l) / 2.0
    t = int(state[_BAR])
    jaw = shifted(buf[0], t, smma_step(state, 0, m, p[0]), int(p[1]))
    teeth = shifted(buf[1], t, smma_step(state, SMMA_STATE, m, p[2]), int(p[3]))
    lips = shifted(buf[2], t, smma_step(state, 2 * SMMA_STATE, m, p[4]), int(p[5]))
    state[_BAR] = t + 1.0
    out[0] = jaw
    out[1] = teeth
    out[2] = lips
    out[3] = 1.0 if (lips > teeth and teeth > jaw and c > lips) else 0.0
    out[4] = 1.0 if lips < teeth else 0.0


@njit(cache=True)
def run(o, h, l, c, state, buf, p, ncols):  # pragma: no cover - compiled
    out = np.empty((o.shape[0], ncols))
    for t in range(o.shape[0]):
        step(state, buf, o[t], h[t], l[t], c[t], p, out[t])
    return out


def make_state(params: AlligatorParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.array(
        [
            params.jaw_period,
            params.jaw_shift,
            params.teeth_period,
            params.teeth_shift,
            params.lips_period,
            params.lips_shift,
        ],
        dtype=np.float64,
    )
    ring = max(params.jaw_shift, params.teeth_shift, params.lips_shift) + 1
    return np.zeros(_BAR + 1), np.full((3, ring), np.nan), p


STRATEGY = Strategy(
    name="alligator",
    family=FAMILY,
    params_model=AlligatorParams,
    columns=COLUMNS,
    bool_columns=("entry", "exit"),
    make_state=make_state,
    run=run,
    step=step,
    description="Williams Alligator: long while lips > teeth > jaw and the close is above the lips.",
)
