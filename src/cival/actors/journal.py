"""A node's journal: what it did, written to the store before anyone acts on it.

Each node of a session (the master, each farm, each agent with books of its own) has a
:class:`Journal`. ``commit()`` writes, in one database transaction: the ledger
transactions posted since the last commit, the agents' new order intents and fills,
equity snapshots, the events (those the node recorded and those its books imply:
``wallet_transaction``, ``wallet_balance_update``, ``fund_allocation``,
``fund_collection``, ``order_submitted``, ``order_filled``), registry updates (a goal's
progress, an agent's allocated funds, a farm's status), the node's state and,
optionally, its reply to the call being handled.

Nodes commit at the end of every call and before every message that moves money leaves
them (write-ahead): a transaction any other node acted on is always in the store.
:meth:`Journal.restore` rebuilds a node from the store, books, fills and state, so that
an actor restarted after a crash carries on exactly where its last commit left it; the
callers' retried messages are idempotent, so what it did after that commit is redone
once, identically.
"""

from __future__ import annotations

import json
import pickle
from decimal import Decimal
from typing import Any

from cival.actors.agent import Agent, dec, iso
from cival.actors.nodes import FarmNode, MasterNode
from cival.backtest.fills import Execution
from cival.core.bar import timestamp_of
from cival.core.events import EventDraft
from cival.core.ledger import AccountKind, Transaction, TxType
from cival.core.messages import Fill, PerformanceReport
from cival.core.wallets import MASTER, WalletTree
from cival.store.base import JournalBatch, Store

Node = MasterNode | FarmNode | Agent

_MONEY_TYPES = {TxType.ALLOCATION, TxType.REBALANCE, TxType.COLLECTION}


class Journal:
    """Writes one node's progress to the store (see the module docstring)."""

    def __init__(self, store: Store, run_id: str, node: Node) -> None:
        self.store = store
        self.run_id = run_id
        self.node = node
        books = node.books
        assert books is not None
        self.books: WalletTree = books
        self.source = books.root.ref
        self.version = 0
        self._txs = 0
        self._fills: dict[str, int] = {}
        self._equity: dict[str, int] = {}
        self._shown: dict[tuple[str, str], Any] = {}
        """Registry values last written (table, name) -> values."""
        self._written: dict[Any, Any] = {}
        """What the commit being made will have written, for the two caches above."""
        node.events.keep = True
        for agent in self.agents:
            agent.orders = []
            agent.events.keep = True

    @property
    def agents(self) -> list[Agent]:
        node = self.node
        if isinstance(node, Agent):
            return [node]
        if isinstance(node, FarmNode):
            return list(node.agents.values())
        return []

    # -- restore ----------------------------------------------------------------------

    def restore(self) -> Any:
        """Rebuild the node from its last commit, if it made one; returns the reply it
        journaled with that commit (None if none, or if it never committed)."""
        record = self.store.node_state(self.run_id, self.source)
        if record is None:
            return None
        txs = self.store.transactions(self.run_id, self.source)
        self.books.restore(txs)
        for agent in self.agents:
            rows = self.store.rows("fills", self.run_id, where={"agent": agent.name}, order="n")
            agent.restore_fills(fill_from_row(r) for r in rows)
            self._fills[agent.name] = len(rows)
        self.node.restore(json.loads(record.state))
        self.version = record.version
        self._txs = len(txs)
        for agent in self.agents:
            self._equity[agent.ref] = agent.performance.bars
        if isinstance(self.node, FarmNode):
            self._equity[self.node.ref] = self.node.performance.bars
        audit = self.books.ledger.audit()
        if not audit.ok:
            raise RuntimeError(f"{self.source}: the books restored from the store do not audit: {'; '.join(audit.problems)}")
        return pickle.loads(record.reply) if record.reply else None

    # -- commit -----------------------------------------------------------------------

    def commit(self, reply: Any = None) -> None:
        """Write what the node did since the last commit (see the module docstring)."""
        self._written.clear()  # left over from a commit that failed
        node = self.node
        ledger = self.books.ledger
        txs = ledger.since(self._txs)
        events: list[EventDraft] = []
        rows: dict[str, list[dict[str, Any]]] = {"orders": [], "fills": [], "equity_snapshots": [], "halts": [], "fund_allocations": []}
        updates: dict[str, list[dict[str, Any]]] = {}
        run = self.run_id

        events += self._ledger_events(txs, rows["fund_allocations"])
        taken: list[tuple[Any, int]] = [(node, len(node.events))]
        fills_seen: dict[str, int] = {}
        for agent in self.agents:
            if agent is not node:
                taken.append((agent, len(agent.events)))
            for order in agent.orders or ():
                rows["orders"].append(
                    {"run_id": run, "id": order.id, "agent": agent.name, "symbol": order.symbol, "side": order.side, "signal_at": order.at}
                )
                data = {"order_id": order.id, "agent": agent.name, "symbol": order.symbol, "side": order.side, "signal_at": iso(order.at)}
                events.append(EventDraft(f"order:{order.id}", "order_submitted", agent.ref, order.at, data))
            start = self._fills.get(agent.name, 0)
            for n, (fill, (ts_ns, ex)) in enumerate(zip(agent.fills[start:], agent.executions[start:], strict=True), start=start + 1):
                rows["fills"].append(fill_row(run, agent.name, n, fill, ts_ns, ex))
                events.append(EventDraft(f"fill:{fill.id}", "order_filled", agent.ref, fill.at, fill_data(fill)))
            fills_seen[agent.name] = len(agent.fills)
            self._agent_figures(agent, rows["equity_snapshots"], updates)
        for owner, count in taken:
            events += owner.events[:count]
        for e in events:
            if e.type == "halt":
                rows["halts"].append(
                    {"run_id": run, "id": e.id, "entity": e.entity, "at": e.at, "reason": e.data["reason"], "resumed": e.data["resume"]}
                )
        if isinstance(node, FarmNode):
            self._farm_figures(node, rows["equity_snapshots"], updates)
        elif isinstance(node, MasterNode):
            self._master_figures(node, updates)

        batch = JournalBatch(
            source=self.source,
            version=self.version + 1,
            state=json.dumps(node.state()),
            reply=None if reply is None else pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL),
            ledger=self.source,
            currency=ledger.currency,
            transactions=txs,
            rows={t: r for t, r in rows.items() if r},
            updates=updates,
            events=events,
        )
        self.store.commit(run, batch)
        # Written: only now forget what was handed over (a failed write keeps it all).
        for key, value in self._written.items():
            (self._shown if isinstance(key, tuple) else self._equity)[key] = value
        self._written.clear()
        self.version += 1
        self._txs += len(txs)
        self._fills.update(fills_seen)
        for owner, count in taken:
            del owner.events[:count]
        for agent in self.agents:
            if agent.orders:
                agent.orders.clear()

    # -- what the books say -----------------------------------------------------------

    def _ledger_events(self, txs: list[Transaction], moves: list[dict[str, Any]]) -> list[EventDraft]:
        ledger = self.books.ledger
        out: list[EventDraft] = []
        touched: dict[str, Transaction] = {}
        for tx in txs:
            owners = [ledger.account(p.account).owner for p in tx.postings]
            entity = next((o for o in owners if o), MASTER)
            data = {
                "ledger": self.source,
                "tx_seq": tx.seq,
                "tx_type": tx.type.value,
                "key": tx.idempotency_key,
                "postings": [{"account": p.account, "amount": _plain(p.amount), "quantity": _plain(p.quantity)} for p in tx.postings],
                "memo": tx.memo,
            }
            out.append(EventDraft(f"tx:{self.source}:{tx.seq}", "wallet_transaction", entity, tx.at, data))
            for p in tx.postings:
                account = ledger.account(p.account)
                if account.kind is AccountKind.CASH:
                    touched[account.owner] = tx
            if tx.type in _MONEY_TYPES and len(tx.postings) == 2:
                out += self._money_event(tx, moves)
        for wallet, tx in touched.items():
            positions = [{"symbol": p.symbol, "qty": _plain(p.quantity), "cost": _plain(p.cost)} for p in self.books.positions(wallet)]
            data = {"wallet": wallet, "cash": _plain(self.books.cash(wallet).amount), "currency": ledger.currency, "positions": positions}
            out.append(EventDraft(f"balance:{wallet}:{self.source}:{tx.seq}", "wallet_balance_update", wallet, tx.at, data))
        return out

    def _money_event(self, tx: Transaction, moves: list[dict[str, Any]]) -> list[EventDraft]:
        """A movement between wallets, told once: by the sender (a receipt from another
        ledger was told by that ledger)."""
        ledger = self.books.ledger
        out_leg, in_leg = tx.postings
        source_acct, target_acct = ledger.account(out_leg.account), ledger.account(in_leg.account)
        if source_acct.kind is AccountKind.LINK:
            return []  # a receipt
        source = source_acct.owner
        target = in_leg.account.split("/link/", 1)[1] if target_acct.kind is AccountKind.LINK else target_acct.owner
        amount = in_leg.amount
        key = tx.idempotency_key
        if tx.type is TxType.COLLECTION:
            kind = "collection"
            event = EventDraft(f"collection:{key}", "fund_collection", source, tx.at, {"source": source, "target": target, "amount": _plain(amount), "key": key})
        else:
            kind = "rebalance" if key.startswith("rebalance:") or tx.type is TxType.REBALANCE else "allocation"
            data = {"source": source, "target": target, "amount": _plain(amount), "key": key, "kind": kind}
            event = EventDraft(f"allocation:{key}", "fund_allocation", target, tx.at, data)
        moves.append({"run_id": self.run_id, "key": key, "source": source, "target": target, "amount": amount, "kind": kind, "at": tx.at})
        return [event]

    # -- figures and registry ---------------------------------------------------------

    def _agent_figures(self, agent: Agent, equity: list[dict[str, Any]], updates: dict[str, list[dict[str, Any]]]) -> None:
        if agent.performance.bars > self._equity.get(agent.ref, 0):
            equity.append(self._equity_row(agent.ref, agent.report(), agent.last_ns))
            self._written[agent.ref] = agent.performance.bars
        status = "halted" if agent.halted else "active"
        self._update(updates, "agent_configs", agent.name, {"allocated_funds": agent.principal, "status": status})

    def _farm_figures(self, farm: FarmNode, equity: list[dict[str, Any]], updates: dict[str, list[dict[str, Any]]]) -> None:
        if farm.performance.bars > self._equity.get(farm.ref, 0):
            equity.append(self._equity_row(farm.ref, farm.report(), farm.performance.last_ns))
            self._written[farm.ref] = farm.performance.bars
        self._update(updates, "farms", farm.name, {"status": "halted" if farm.halted else "active", "halted_reason": farm.halted})

    def _master_figures(self, master: MasterNode, updates: dict[str, list[dict[str, Any]]]) -> None:
        self._update(updates, "master_wallets", master.spec.config.master.name, {"cash": master.books.cash(MASTER).amount})
        for goal in master.goals:
            values = {
                "status": goal.status.value,
                "progress": goal.progress,
                "collected": goal.collected,
                "completed_at": goal.completed_at,
                "completing_trade": goal.completing_trade,
            }
            self._update(updates, "goals", goal.name, values)

    def _update(self, updates: dict[str, list[dict[str, Any]]], table: str, name: str, values: dict[str, Any]) -> None:
        """A registry update, only when the values changed since the last one."""
        if self._shown.get((table, name)) == values:
            return
        self._written[(table, name)] = values
        updates.setdefault(table, []).append({"run_id": self.run_id, "name": name, **values})

    def _equity_row(self, entity: str, report: PerformanceReport, last_ns: int) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "entity": entity,
            "bars": report.bars,
            "at": timestamp_of(last_ns),
            "equity": report.equity,
            "cash": report.cash if report.cash is not None else Decimal(0),
            "realized_pnl": report.realized_pnl,
            "unrealized_pnl": report.unrealized_pnl,
            "fees": report.fees,
            "trades": report.trades,
            "max_drawdown": report.max_drawdown,
            "sharpe": report.sharpe,
        }


def batch_key(batch: Any) -> tuple[int, int, int]:
    """What identifies a batch of bars: its first and last bar times and its length (a
    retried call carries the same batch)."""
    return (int(batch.ts[0]), int(batch.ts[-1]), len(batch)) if len(batch) else (0, 0, 0)


def _plain(value: Decimal) -> str:
    return dec(value)


def fill_row(run_id: str, agent: str, n: int, fill: Fill, ts_ns: int, ex: Execution) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "id": fill.id,
        "agent": agent,
        "n": n,
        "symbol": fill.symbol,
        "side": fill.side,
        "qty": fill.qty,
        "price": fill.price,
        "fee": fill.fee,
        "notional": fill.notional,
        "reason": fill.reason,
        "at": fill.at,
        "order_id": fill.order_id,
        "bar_ns": ts_ns,
        "units": ex.units,
        "unit_price": ex.unit_price,
        "exec_notional": ex.notional,
        "exec_fee": ex.fee,
        "cash_after": ex.cash_after,
    }


def fill_from_row(row: dict[str, Any]) -> tuple[Fill, int, Execution]:
    """(fill, bar time in ns, execution) from a ``fills`` row: floats read back exactly."""
    fill = Fill(
        id=row["id"],
        at=row["at"],
        agent=row["agent"],
        symbol=row["symbol"],
        side=row["side"],
        qty=row["qty"],
        price=row["price"],
        fee=row["fee"],
        reason=row["reason"],
        notional=row["notional"],
        order_id=row["order_id"],
    )
    side = 1 if row["side"] == "buy" else -1
    ex = Execution(side, float(row["units"]), float(row["unit_price"]), float(row["exec_notional"]), float(row["exec_fee"]), float(row["cash_after"]))
    return fill, int(row["bar_ns"]), ex


def fill_data(fill: Fill) -> dict[str, Any]:
    return {
        "fill_id": fill.id,
        "order_id": fill.order_id,
        "agent": fill.agent,
        "symbol": fill.symbol,
        "side": fill.side,
        "qty": _plain(fill.qty),
        "price": _plain(fill.price),
        "fee": _plain(fill.fee),
        "notional": None if fill.notional is None else _plain(fill.notional),
        "reason": fill.reason,
    }


__all__ = ["Journal", "batch_key", "fill_data", "fill_from_row", "fill_row"]
