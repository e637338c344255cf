"""Execution: the fill model and the paper broker, the rules the backtester's engines and
the agents share (:mod:`cival.execution.fills`, :mod:`cival.execution.broker`)."""

from cival.execution.fills import FillModel

__all__ = ["FillModel"]
