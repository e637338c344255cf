"""Strategies, one module each. Their parameter models are looked up by name here."""

from __future__ import annotations

from pydantic import BaseModel

from cival.strategies import alligator, darvas, elliott

PARAMS_BY_STRATEGY: dict[str, type[BaseModel]] = {
    "alligator": alligator.AlligatorParams,
    "darvas": darvas.DarvasParams,
    "elliott": elliott.ElliottParams,
}
"""Strategy name -> its frozen, bounded parameter model."""

FAMILY_BY_STRATEGY: dict[str, str] = {
    "alligator": alligator.FAMILY,
    "darvas": darvas.FAMILY,
    "elliott": elliott.FAMILY,
}
"""Strategy name -> the farm type it belongs to."""

__all__ = ["FAMILY_BY_STRATEGY", "PARAMS_BY_STRATEGY"]
