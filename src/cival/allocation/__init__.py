"""Allocation policies: pure functions that split a parent's cash among its children."""

from cival.allocation.policies import AllocationError, AllocationPlan, plan_for, split, split_equal, split_fixed

__all__ = ["AllocationError", "AllocationPlan", "plan_for", "split", "split_equal", "split_fixed"]
