"""The fill model: how a signal becomes a fill. Written once; the backtester's engines and
paper trading all use it.

Rules:

* A signal at bar t (known at t's close) becomes a market order filled at the **open of
  bar t + 1**. An entry is taken only when flat and ``exit[t]`` is false; an exit only when
  in a position. A signal on the last bar is never filled.
* Slippage is adverse, in basis points of price: buys fill at
  ``open * (1 + slippage_bps / 1e4)``, sells at ``open * (1 - slippage_bps / 1e4)``.
* Money is kept on the ledger's grid (1e-8 of the currency, :data:`QUANTUM`): a fill's
  ``notional`` is quantity x price rounded half-even to the grid, its ``fee`` is
  ``fee_bps / 1e4`` of the notional rounded the same way, and the cash after it is
  exactly the cash before, less (a buy) or plus (a sale) the notional, less the fee.
  What is left stays cash: nothing is snapped to zero. The books (exact Decimals) book
  these very amounts, so the engines and the books hold the same cash to the last 1e-8.
* Sizing: an entry invests the fraction ``fraction`` of cash:
  ``qty = cash * fraction / (price * (1 + fee))`` rounded down to ``qty_step``; if the
  notional and fee so rounded would cost more than the cash (by at most two quanta, when
  an entry spends it all), one step less.
* A position still open at the end is marked to the last close and reported as open,
  not as a trade.
* Optional stops, in percent of the entry fill price P (slippage included), off by
  default. From the bar *after* the entry bar on, before that bar's signals:
  stop-loss level ``S = P * (1 - stop_loss_pct / 100)``: if the bar opens at or below S,
  the position is sold at the open; else if the bar's low reaches S, at S.
  Take-profit level ``T = P * (1 + take_profit_pct / 100)``: if the bar opens at or above
  T, sold at the open; else if its high reaches T, at T. If both are hit in one bar the
  stop-loss wins (the worse case is assumed). A stop exit pays slippage like any sale
  (``price * (1 - slippage_bps / 1e4)``) and replaces whatever signal was due that bar.
  The entry bar is not checked, because the bar's low and high are not known to come
  after its open fill. (These are vectorbt's stop rules with ``stop_entry_price="fillprice"``
  and ``stop_exit_price="stopmarket"``.)

Quantities are counted in whole *units* of ``qty_step`` (a float holding an integer, exact
up to 2**53), and prices per unit are ``price * qty_step``. Rounding a quantity down is
then ``floor`` of an exact integer count, and an exit sells exactly the units held. (With
a fractional step such as 1e-8 in binary floating point, ``x // 1e-8 * 1e-8`` can leave a
dust position that can never be sold; counting units avoids that.)

Every rule above is written once, as compiled (numba) functions: ``buy_nb``,
``sell_units_nb`` and ``stop_price_nb`` over a packed parameter array
(:func:`model_params`), with ``grid`` and ``settle``; the broker's compiled per-bar step
and batch loop call them (:mod:`cival.execution.broker`). The vectorbt engine
executes the orders this model decides (:mod:`cival.backtest.simulate`).

Amounts on the grid are floats holding the nearest double to a multiple of 1e-8; for
amounts below about 3e7 (where a double still resolves 1e-8) that double reads back as
exactly that multiple (:func:`grid_decimal`), so the floats here and the books' Decimals
agree exactly. Above it the books prevail (an agent re-syncs its broker to its books).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
from numba import njit
from pydantic import BaseModel, ConfigDict, Field

from cival.core.costs import (
    DEFAULT_CASH,
    DEFAULT_FEE_BPS,
    DEFAULT_FRACTION,
    DEFAULT_SLIPPAGE_BPS,
)
from cival.core.fields import FiniteFloat

QUANTUM_PLACES = 8
"""Decimal places of the money grid: the ledger's scale."""
QUANTUM = 10.0 ** -QUANTUM_PLACES
_PER_UNIT = 10.0**QUANTUM_PLACES  # exact in binary: multiplying by it, then dividing, rounds once each


class FillModel(BaseModel):
    """Costs and sizing of fills. Amounts are floats here (research code); the ledger
    converts them exactly at its own boundary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cash: FiniteFloat = Field(float(DEFAULT_CASH), gt=0)
    """Starting cash of the account being simulated."""
    fee_bps: FiniteFloat = Field(DEFAULT_FEE_BPS, ge=0, lt=10_000)
    slippage_bps: FiniteFloat = Field(DEFAULT_SLIPPAGE_BPS, ge=0, lt=10_000)
    fraction: FiniteFloat = Field(DEFAULT_FRACTION, gt=0, le=1)
    """Share of cash an entry invests."""
    qty_step: FiniteFloat = Field(1e-8, gt=0)
    """Smallest quantity increment; quantities are whole multiples of it."""
    stop_loss_pct: FiniteFloat | None = Field(None, gt=0, lt=100)
    """Stop-loss distance below the entry fill price, in percent (None: no stop-loss)."""
    take_profit_pct: FiniteFloat | None = Field(None, gt=0)
    """Take-profit distance above the entry fill price, in percent (None: no take-profit)."""

    @property
    def has_stops(self) -> bool:
        return self.stop_loss_pct is not None or self.take_profit_pct is not None

    @property
    def fee_rate(self) -> float:
        return self.fee_bps / 1e4

    @property
    def slippage(self) -> float:
        return self.slippage_bps / 1e4


@dataclass(frozen=True, slots=True)
class Execution:
    """One executed order. ``units`` of ``qty_step``; ``unit_price`` includes slippage;
    ``notional``, ``fee`` and ``cash_after`` are on the money grid."""

    side: int
    """+1 buy, -1 sell."""
    units: float
    unit_price: float
    notional: float
    fee: float
    cash_after: float


def step_decimals(step: float) -> int:
    """Decimal places of a quantity step as written: 1e-8 -> 8, 0.25 -> 2, 1.0 -> 0."""
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -int(exponent))


@njit(cache=True)
def grid(x: float) -> float:  # pragma: no cover - compiled
    """``x`` rounded half-even to the money grid (the nearest double to a multiple of 1e-8)."""
    return np.round(x * _PER_UNIT) / _PER_UNIT


@njit(cache=True)
def settle(cash: float, side: int, notional: float, fee: float) -> float:  # pragma: no cover - compiled
    """Cash after a fill: a buy pays notional + fee, a sale receives notional - fee (all on the grid)."""
    if side > 0:
        return grid(cash - notional - fee)
    return grid(cash + notional - fee)


def grid_decimal(x: float) -> Decimal:
    """A grid amount as the exact Decimal multiple of 1e-8 it stands for."""
    return Decimal(int(round(x * _PER_UNIT))).scaleb(-QUANTUM_PLACES)


# Packed model parameters for compiled code (see model_params).
P_FEE, P_SLIP, P_FRACTION, P_STEP, P_SL, P_TP = range(6)


def model_params(model: FillModel) -> np.ndarray:
    """The fill model as a float64 array for the compiled functions: fee rate, slippage,
    fraction, qty_step, stop-loss and take-profit percent (NaN when off)."""
    return np.array(
        [
            model.fee_rate,
            model.slippage,
            model.fraction,
            model.qty_step,
            math.nan if model.stop_loss_pct is None else model.stop_loss_pct,
            math.nan if model.take_profit_pct is None else model.take_profit_pct,
        ],
        dtype=np.float64,
    )


@njit(cache=True)
def buy_nb(p, cash, open_price):  # pragma: no cover - compiled
    """An entry at ``open_price``: (units, unit_price, notional, fee, cash_after); units 0
    when not even one unit is affordable."""
    unit_price = (open_price * p[P_STEP]) * (1 + p[P_SLIP])
    cash_limit = min(cash, p[P_FRACTION] * cash)
    if cash_limit <= 0 or unit_price <= 0:
        return 0.0, unit_price, 0.0, 0.0, cash
    units = np.floor(cash_limit / (1 + p[P_FEE]) / unit_price)
    # The rounded notional and fee may cost a quantum or two more than the cash when an
    # entry spends it all: then one unit less (compared in whole quanta, exactly).
    have = np.round(cash * _PER_UNIT)
    while units > 0:
        notional = grid(units * unit_price)
        fee = grid(notional * p[P_FEE])
        if np.round(notional * _PER_UNIT) + np.round(fee * _PER_UNIT) <= have:
            return units, unit_price, notional, fee, settle(cash, 1, notional, fee)
        units -= 1.0
    return 0.0, unit_price, 0.0, 0.0, cash


@njit(cache=True)
def sell_units_nb(p, cash, units, price_per_unit):  # pragma: no cover - compiled
    """An exit of all ``units`` at ``price_per_unit`` less slippage: (unit_price, notional,
    fee, cash_after)."""
    unit_price = price_per_unit * (1 - p[P_SLIP])
    notional = grid(units * unit_price)
    fee = grid(notional * p[P_FEE])
    return unit_price, notional, fee, settle(cash, -1, notional, fee)


@njit(cache=True)
def stop_price_nb(p, entry_unit_price, open_, high, low):  # pragma: no cover - compiled
    """Where a stop exits this bar, per unit and before slippage (NaN when none is hit)."""
    if not np.isnan(p[P_SL]):
        level = entry_unit_price * (1 - p[P_SL] / 100)
        if open_ <= level:
            return open_
        if low <= level <= high:
            return level
    if not np.isnan(p[P_TP]):
        level = entry_unit_price * (1 + p[P_TP] / 100)
        if level <= open_:
            return open_
        if low <= level <= high:
            return level
    return np.nan


__all__ = [
    "QUANTUM",
    "QUANTUM_PLACES",
    "Execution",
    "FillModel",
    "buy_nb",
    "grid",
    "grid_decimal",
    "model_params",
    "sell_units_nb",
    "settle",
    "step_decimals",
    "stop_price_nb",
]
