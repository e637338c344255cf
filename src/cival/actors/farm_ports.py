"""How a farm reaches its agents: the two kinds of :class:`~cival.actors.nodes.FarmPorts`.

A :class:`~cival.actors.nodes.FarmNode` has one code path: it books its side of a
movement through its ports, commits, and then delivers the messages through them. What
stands behind the ports is one of two things:

- :class:`AgentMessages`: agents with books of their own (Ray actors, or objects in the
  driver's process). The farm books the sending of an allocation (its cash to its link
  with the agent) before the message leaves, and the receipt of each Transfer an agent
  sends back. Subclasses say how a message reaches an agent.
- :class:`InlineAgents`: agents living in the farm, in the farm's own books (one wallet
  tree, one journal). A movement is one transaction between the farm's cash and the
  agent's, booked under the message's key, and the agent is told at once.

Both book a movement under keys derived from the message id (``msg.id`` for an
allocation, ``msg.id + ":transfer"`` for a collection), so a message delivered again
books nothing and tells the agent nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cival.actors.agent import Agent, AgentUpdate
from cival.core.bar import BarBatch
from cival.core.ledger import TxType
from cival.core.messages import Allocate, Collect, Halt, Transfer

if TYPE_CHECKING:
    from cival.actors.nodes import FarmNode


class AgentMessages:
    """Ports to agents with books of their own; subclasses deliver (``commit``,
    ``agent_allocate``, ``collect_from``, ``agent_halt``, ``agent_cash``, ``agent_batch``,
    ``agent_snapshots``)."""

    @property
    def farm(self) -> FarmNode:
        raise NotImplementedError

    def book_allocation(self, msg: Allocate) -> bool:
        """Book the allocation as sent: the farm's cash to its link with the agent."""
        books = self.farm.books
        books.send(self.farm.ref, msg.target, msg.amount, key=msg.id, at=msg.at, type=TxType.ALLOCATION)
        return books.ledger.posted(msg.id)

    def collect_from(self, msg: Collect) -> Transfer:
        """Deliver a Collect to its agent; returns the Transfer it answers with."""
        raise NotImplementedError

    def agent_collect(self, msg: Collect) -> Transfer:
        transfer = self.collect_from(msg)
        self.farm.on_transfer(transfer)
        return transfer


class InlineAgents:
    """Ports to a farm's inline agents (``farm.agents``, sharing ``farm.books``).

    ``commit`` journals the farm (the inline agents are journaled with it); without one
    (a farm that is not journaled) it does nothing.
    """

    def __init__(self, farm: FarmNode, commit: Callable[[], None] | None = None) -> None:
        self.farm = farm
        self._commit = commit

    def _agent(self, entity: str) -> Agent:
        return self.farm.agents[entity.removeprefix("agent:")]

    def commit(self) -> None:
        if self._commit is not None:
            self._commit()

    def book_allocation(self, msg: Allocate) -> bool:
        """Move the allocation from the farm's cash to the agent's; tell the agent."""
        books = self.farm.books
        books.allocate(msg.target, msg.amount, key=msg.id, at=msg.at)
        fresh = books.ledger.posted(msg.id)
        if fresh:
            self._agent(msg.target).funded(msg.amount)
        return fresh

    def agent_allocate(self, msg: Allocate) -> None:
        """Nothing left to deliver: :meth:`book_allocation` moved the money and told the agent."""

    def agent_collect(self, msg: Collect) -> Transfer:
        """Move what the Collect asks for (an amount, all the agent's cash, or its profit)
        from the agent's cash to the farm's, as an agent actor would send it."""
        agent = self._agent(msg.source)
        books = self.farm.books
        key = f"{msg.id}:transfer"
        prior = books.ledger.find(key)
        if prior is not None:  # delivered before: the same answer, nothing moves
            moved = -prior.amount_of(f"{agent.ref}/cash")
        else:
            basis = msg.effective_basis
            amount = agent.collectable_profit() if basis == "profit" else msg.amount
            moved = Decimal(0)
            if amount is None or amount > 0:  # all (booked even when empty), or a positive amount
                tx = books.collect(agent.ref, amount, key=key, at=msg.at)
                moved = -tx.amount_of(f"{agent.ref}/cash")
            agent.collected(moved, basis)
        agent.sync_cash()
        return Transfer(id=key, at=msg.at, source=agent.ref, target=self.farm.ref, amount=moved, cause=msg.id)

    def agent_halt(self, msg: Halt) -> None:
        self._agent(msg.entity).on_halt(msg)
        self.commit()

    def agent_cash(self) -> dict[str, Decimal]:
        books = self.farm.books
        return {name: books.cash(a.ref).amount for name, a in self.farm.agents.items() if a.halted is None}

    def agent_batch(self, batch: BarBatch) -> list[AgentUpdate]:
        return [agent.on_batch(batch) for agent in self.farm.agents.values()]

    def agent_snapshots(self) -> list[dict[str, Any]]:
        return [agent.snapshot() for agent in self.farm.agents.values()]


__all__ = ["AgentMessages", "InlineAgents"]
