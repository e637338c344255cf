"""Allocation policies: pure functions that split a parent's cash among its children."""

from cival.allocation.policies import (
    AllocationError,
    AllocationPlan,
    inverse_volatility_weights,
    performance_scores,
    plan_for,
    split,
    split_equal,
    split_fixed,
    split_inverse_volatility,
    split_performance,
)

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
