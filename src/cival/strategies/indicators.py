"""Indicator kernels shared by the strategies (numba, no Python objects).

Each kernel is a *step*: it updates a slice of a state vector with one new value and
returns the indicator's value for that bar. Loops over arrays call the same steps, so
there is one definition of each indicator.
"""

from __future__ import annotations

import numpy as np
from numba import njit

SMMA_STATE = 3
"""Slots an SMMA needs in a state vector: values seen, running sum, current value."""


@njit(cache=True)
def smma_step(state, at, x, n):  # pragma: no cover - compiled
    """Wilder's SMMA (TradingView ``ta.rma``, MetaTrader SMMA), one value at a time.

    NaN for the first n-1 values; at the n-th the mean of the first n; then
    ``s = (s_prev * (n - 1) + x) / n``. Uses ``state[at:at + 3]``.
    """
    count = state[at] + 1.0
    state[at] = count
    if count < n:
        state[at + 1] += x
        return np.nan
    if count == n:
        state[at + 1] += x
        state[at + 2] = state[at + 1] / n
        return state[at + 2]
    state[at + 2] = (state[at + 2] * (n - 1.0) + x) / n
    return state[at + 2]


@njit(cache=True)
def smma(x, n):  # pragma: no cover - compiled
    """SMMA of a whole float64 array (see :func:`smma_step`)."""
    state = np.zeros(SMMA_STATE)
    out = np.empty(x.shape[0])
    for t in range(x.shape[0]):
        out[t] = smma_step(state, 0, x[t], n)
    return out


@njit(cache=True)
def shifted(ring, t, value, k):  # pragma: no cover - compiled
    """Store ``value`` as bar t's and return the value stored k bars ago (NaN before that).

    ``ring`` must hold at least k + 1 slots.
    """
    size = k + 1
    ring[t % size] = value
    if t < k:
        return np.nan
    return ring[(t - k) % size]


__all__ = ["SMMA_STATE", "shifted", "smma", "smma_step"]
