"""Strategies, one module each, found by name.

Every module in this package that defines ``STRATEGY`` (a
:class:`~cival.strategies.base.Strategy`) is registered under ``STRATEGY.name``: adding a
strategy is adding one module.
"""

from __future__ import annotations

import importlib
import pkgutil

from pydantic import BaseModel

from cival.strategies.base import LiveSignals, Strategy, StrategyError


def _discover() -> dict[str, Strategy]:
    found: dict[str, Strategy] = {}
    where: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        strategy = getattr(module, "STRATEGY", None)
        if isinstance(strategy, Strategy):
            if strategy.name in found:
                raise StrategyError(
                    f"two strategies are named {strategy.name!r} (cival.strategies.{where[strategy.name]} and "
                    f"cival.strategies.{info.name}); rename one of them"
                )
            found[strategy.name] = strategy
            where[strategy.name] = info.name
    return found


STRATEGIES: dict[str, Strategy] = _discover()
"""Strategy name -> strategy."""

PARAMS_BY_STRATEGY: dict[str, type[BaseModel]] = {n: s.params_model for n, s in STRATEGIES.items()}
"""Strategy name -> its frozen, bounded parameter model."""

FAMILY_BY_STRATEGY: dict[str, str] = {n: s.family for n, s in STRATEGIES.items()}
"""Strategy name -> the farm type it belongs to."""


def get_strategy(name: str) -> Strategy:
    """The strategy registered as ``name``; StrategyError lists the known ones otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise StrategyError(f"unknown strategy {name!r}; known strategies: {known}") from None


__all__ = [
    "FAMILY_BY_STRATEGY",
    "PARAMS_BY_STRATEGY",
    "STRATEGIES",
    "LiveSignals",
    "Strategy",
    "StrategyError",
    "get_strategy",
]
