"""The typed state of the nodes: what the master, a farm and an agent journal besides their
books, and the steps of a checkpoint and of a farm's rebalance under way.

Each model's fields are the node's attributes of the same name (see
:mod:`cival.core.codec`, which writes and reads them as JSON for the journal). The JSON
field names are those the journal has always stored, so runs written before these
models existed restore as they are.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from pydantic import ConfigDict, Field
from typing_extensions import TypedDict

from cival.actors.performance import PerformanceState
from cival.config import AllocationPolicy
from cival.core.codec import StateModel
from cival.core.messages import Allocate, Collect, Halt, PerformanceReport
from cival.goals import GoalState
from cival.strategies.base import SignalsState


class HaltRecord(TypedDict):
    """A halt or resume of a node, as its report lists it."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    reason: str
    at: str
    """ISO 8601 UTC."""
    resumed: bool


class RebalanceRecord(TypedDict):
    """A rebalance done, as the report lists it: the money moved to (+) or from (-) each."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    bars: int
    at: str
    """ISO 8601 UTC."""
    moves: dict[str, str]
    """Farm or agent name -> amount (decimal string)."""


GoalMessage = Annotated[Collect | Halt, Field(discriminator="kind")]


class CheckpointStep(StateModel):
    """A checkpoint under way at the master: its bar count and the messages of each step
    done so far (None: the step has not run yet), kept so that a repeat of the checkpoint
    delivers the same messages and finishes the rest."""

    bars: int
    halts: list[Halt] | None = None
    """Risk halts for the farms."""
    collects: list[Collect] | None = None
    """The master's rebalance: what the farms give back..."""
    allocs: list[Allocate] | None = None
    """...and what they receive."""
    goals: list[GoalMessage] | None = None
    """What completed goals ask for: Collects, or Halts first for ``collect_all``."""


class RebalanceStep(StateModel):
    """A farm's rebalance under way (see :meth:`~cival.actors.nodes.FarmNode.run_rebalance`)."""

    bars: int
    halts: list[Halt]
    """Pauses (selling to rebalance) or resumes for agent actors."""
    plan: bool
    """Whether the money moves at this checkpoint (else at the next, once the agents sold)."""
    collects: list[Collect] | None = None
    """Planned: what agent actors give back (None: not planned yet)..."""
    allocs: list[Allocate] | None = None
    """...and what they receive."""


class AgentState(StateModel):
    """What an agent knows besides its books and fills."""

    signals: SignalsState
    broker: list[float]
    """The paper broker's state vector (floats exact)."""
    performance: PerformanceState
    principal: Decimal
    halted: str | None
    halts: list[HaltRecord]
    halt_ids: list[str]
    last_close: float
    last_ns: int
    fills: int
    """How many fills the agent had (its fills are journaled as rows, and checked against this)."""
    pending_intent: str | None = None
    rejected: str | None = None


class FarmState(StateModel):
    """What a farm knows besides its books (and its inline agents' states)."""

    allocation: AllocationPolicy
    """The farm's allocation policy now (it may have been changed during the run)."""
    reports: dict[str, PerformanceReport]
    positions: dict[str, str]
    performance: PerformanceState
    fill_count: int
    halted: str | None
    halts: list[HaltRecord]
    halt_ids: list[str]
    rebalances: list[RebalanceRecord]
    paused: list[str]
    returns: dict[str, list[float]]
    last_equity: dict[str, float]
    taken: dict[str, Decimal]
    releases: dict[str, list[Collect]]
    rebalance: RebalanceStep | None
    rebalanced_upto: int
    agents: dict[str, AgentState]
    """The inline agents' states (empty when the agents are actors)."""


class MasterState(StateModel):
    """What the master knows besides its books."""

    goals: list[GoalState]
    liquidating: list[tuple[str, str]]
    rebalances: list[RebalanceRecord]
    halts: list[HaltRecord]
    halted_farms: list[str]
    day: tuple[date, float] | None
    last_equity: float | None
    goal_shown: dict[str, list[str]]
    checkpoint: CheckpointStep | None
    checkpoint_done: int
    goal_configs: list[dict[str, Any]] | None = None
    """Every goal's config, once an operator added, reassigned or cancelled one."""
    goal_changes: list[str] | None = None
    """The goal changes applied (their message ids; None: none yet)."""


__all__ = [
    "AgentState",
    "CheckpointStep",
    "FarmState",
    "HaltRecord",
    "MasterState",
    "RebalanceRecord",
    "RebalanceStep",
]
