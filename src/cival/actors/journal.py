"""A node's journal: what it did, written to the store before anyone acts on it.

Each node of a session (the master, each farm, each agent with books of its own) has a
:class:`Journal`. ``commit()`` writes, in one database transaction: the ledger
transactions posted since the last commit, the agents' new order intents and fills,
equity snapshots, the events (those the node recorded and those its books imply:
``wallet_transaction``, ``wallet_balance_update``, ``fund_allocation``,
``fund_collection``, ``order_submitted``, ``order_filled``), registry updates (a goal's
progress, an agent's allocated funds, a farm's status), the node's state and,
optionally, its reply to the call being handled (as JSON: nothing read back from a store
is ever executed, see :func:`encode_reply`).

Nodes commit at the end of every call and before every message that moves money leaves
them (write-ahead): a transaction any other node acted on is always in the store.
:meth:`Journal.restore` rebuilds a node from the store, books, fills and state, so that
an actor restarted after a crash carries on exactly where its last commit left it; the
callers' retried messages are idempotent, so what it did after that commit is redone
once, identically.

The state also records the length and head hash of the node's ledger (``_ledger``), in
the same database transaction as its rows: restored, it becomes the ledger's ``anchor``,
so transactions removed from the end of a stored ledger show in the audit as surely as
altered ones (each row's chain hash). :meth:`Journal.restore` refuses books that do not
audit (:class:`BooksError`); ``strict=False`` keeps them, for a report that shows the
failed audit instead.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np

from cival.actors.agent import Agent, AgentUpdate
from cival.actors.nodes import FarmNode, FarmUpdate, MasterNode
from cival.actors.state import AgentState, FarmState, MasterState
from cival.core.bar import timestamp_of
from cival.core.codec import StateError, decode, encode
from cival.core.errors import CivalError
from cival.core.events import (
    EventDraft,
    FundAllocationPayload,
    FundCollectionPayload,
    OrderFilledRef,
    OrderSubmittedRef,
    PositionLine,
    WalletBalanceUpdatePayload,
    WalletTransactionRef,
)
from cival.core.fmt import parse_time, stored_time
from cival.core.ledger import AccountKind, LedgerError, Transaction, TxType
from cival.core.messages import Fill, PerformanceReport
from cival.core.wallets import MASTER, WalletTree, position_account
from cival.execution.fills import Execution
from cival.goals import ClosedTrade
from cival.store.base import JournalBatch, Store, StoreError, decode_reply

Node = MasterNode | FarmNode | Agent


def state_model(node: Node) -> type[MasterState | FarmState | AgentState]:
    """The model of ``node``'s state (what :meth:`Journal.restore` reads back)."""
    if isinstance(node, MasterNode):
        return MasterState
    if isinstance(node, FarmNode):
        return FarmState
    return AgentState

_MONEY_TYPES = {TxType.ALLOCATION, TxType.REBALANCE, TxType.COLLECTION}


class BooksError(CivalError):
    """Books read back from the store do not audit: altered, removed or inserted rows."""


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

    def restore(self, strict: bool = True) -> Any:
        """Rebuild the node from its last commit, if it made one; returns the reply it
        journaled with that commit (None if none, or if it never committed).

        Books that do not audit (an altered row breaks the hash chain, a removed one the
        anchor), or fills that disagree with the books, raise :class:`BooksError` naming
        the first problem; with ``strict=False`` they are kept in :attr:`problems` (the
        ledger's own problems show in its audit) and the node is restored as stored."""
        self.problems: list[str] = []
        record = self.store.node_state(self.run_id, self.source)
        if record is None:
            return None
        where = f"run {self.run_id}, node {self.source}"
        try:
            data = json.loads(record.state)
        except ValueError:
            raise StoreError(f"{where}: the journaled state is not JSON; the store is corrupt") from None
        if not isinstance(data, dict):
            raise StoreError(f"{where}: the journaled state is not a JSON object; the store is corrupt")
        anchor = data.pop("_ledger", None)
        try:
            state = decode(state_model(self.node), data, f"{where}: the journaled state")
        except StateError as exc:
            raise StoreError(f"{exc}; the store is corrupt") from None
        reply = decode_reply(self.run_id, self.source, record.reply)
        txs = self.store.transactions(self.run_id, self.source)
        try:
            self.books.restore(txs)
        except LedgerError as exc:
            raise BooksError(f"ledger {self.source} of run {self.run_id} cannot be read back: {exc}") from None
        if anchor is not None:
            self.books.ledger.anchor = (int(anchor["transactions"]), str(anchor["head"]))
        for agent in self.agents:
            rows = self.store.rows("fills", self.run_id, where={"agent": agent.name}, order="n")
            fills = [fill_from_row(r) for r in rows]
            self.problems += _fill_problems(self.books, agent.ref, fills)
            agent.restore_fills(fills)
            self._fills[agent.name] = len(rows)
        try:
            self.node.restore(state)  # type: ignore[arg-type]
        except StateError as exc:
            raise StoreError(f"{where}: the journaled state does not fit this node: {exc}; the store is corrupt") from None
        self.version = record.version
        self._txs = len(txs)
        for agent in self.agents:
            self._equity[agent.ref] = agent.performance.bars
        if isinstance(self.node, FarmNode):
            self._equity[self.node.ref] = self.node.performance.bars
        audit = self.books.ledger.audit()
        problems = [f"ledger {self.source}: {p}" for p in audit.problems] + self.problems
        if problems and strict:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise BooksError(
                f"run {self.run_id}: the books restored from the store do not audit: {problems[0]}{more}; "
                "the store was altered after it was written. `cival report` shows the whole audit"
            )
        return decode_batch_reply(reply)

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
        closed: dict[str, int] = {}
        for agent in self.agents:
            if agent is not node:
                taken.append((agent, len(agent.events)))
            for order in agent.orders or ():
                rows["orders"].append(
                    {"run_id": run, "id": order.id, "agent": agent.name, "symbol": order.symbol, "side": order.side,
                     "signal_at": order.at, "status": "open"}
                )
                # By reference: the store expands it from the orders row (see BY_REFERENCE).
                events.append(EventDraft(f"order:{order.id}", agent.ref, order.at, OrderSubmittedRef(order_id=order.id)))
            start = self._fills.get(agent.name, 0)
            for n, (fill, (ts_ns, ex)) in enumerate(zip(agent.fills[start:], agent.executions[start:], strict=True), start=start + 1):
                rows["fills"].append(fill_row(run, agent.name, n, fill, ts_ns, ex))
                events.append(EventDraft(f"fill:{fill.id}", agent.ref, fill.at, OrderFilledRef(fill_id=fill.id)))
            for order_id, status in agent.order_status:  # after the inserts: an order may open and close in one commit
                updates.setdefault("orders", []).append({"run_id": run, "id": order_id, "status": status})
            closed[agent.name] = len(agent.order_status)
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

        state = encode(node.state(), extra={"_ledger": {"transactions": len(ledger), "head": ledger.head}})
        batch = JournalBatch(
            source=self.source,
            version=self.version + 1,
            state=state,
            reply=encode_batch_reply(reply),
            ledger=self.source,
            currency=ledger.currency,
            transactions=ledger.hashed(self._txs),
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
            del agent.order_status[: closed.get(agent.name, 0)]

    # -- what the books say -----------------------------------------------------------

    def _ledger_events(self, txs: list[Transaction], moves: list[dict[str, Any]]) -> list[EventDraft]:
        ledger = self.books.ledger
        out: list[EventDraft] = []
        touched: dict[str, Transaction] = {}
        for tx in txs:
            owners = [ledger.account(p.account).owner for p in tx.postings]
            entity = next((o for o in owners if o), MASTER)
            # By reference: the store expands it from the ledger row (see BY_REFERENCE).
            ref = WalletTransactionRef(ledger=self.source, tx_seq=tx.seq)
            out.append(EventDraft(f"tx:{self.source}:{tx.seq}", entity, tx.at, ref))
            for p in tx.postings:
                account = ledger.account(p.account)
                if account.kind is AccountKind.CASH:
                    touched[account.owner] = tx
            if tx.type in _MONEY_TYPES and len(tx.postings) == 2:
                out += self._money_event(tx, moves)
        for wallet, tx in touched.items():
            positions = [PositionLine(symbol=p.symbol, qty=p.quantity, cost=p.cost) for p in self.books.positions(wallet)]
            data = WalletBalanceUpdatePayload(wallet=wallet, cash=self.books.cash(wallet).amount, currency=ledger.currency, positions=positions)
            out.append(EventDraft(f"balance:{wallet}:{self.source}:{tx.seq}", wallet, tx.at, data))
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
            event = EventDraft(f"collection:{key}", source, tx.at, FundCollectionPayload(source_wallet=source, target=target, amount=amount, key=key))
        else:
            kind = "rebalance" if key.startswith("rebalance:") or tx.type is TxType.REBALANCE else "allocation"
            data = FundAllocationPayload(source_wallet=source, target=target, amount=amount, key=key, kind=kind)
            event = EventDraft(f"allocation:{key}", target, tx.at, data)
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


def _fill_problems(books: WalletTree, ref: str, fills: list[tuple[Fill, int, Any]]) -> list[str]:
    """Fills (a table of their own) that disagree with the (chained) books: each fill's
    quantity and fee must be the ones its transactions booked."""
    ledger = books.ledger
    out = []
    for fill, _, _ in fills:
        trade = ledger.find(f"{fill.id}/trade")
        fee = ledger.find(f"{fill.id}/fee")
        legs = [] if trade is None else [p for p in trade.postings if p.account == position_account(ref, fill.symbol)]
        qty = legs[0].quantity if len(legs) == 1 else None
        booked_fee = fee.amount_of(f"{ref}/fees") if fee is not None else Decimal(0)
        want_qty = fill.qty if fill.side == "buy" else -fill.qty
        if qty != want_qty or booked_fee != fill.fee.quantize(ledger.quantum, rounding="ROUND_UP"):
            out.append(f"fill {fill.id}: its quantity or fee differs from what the books hold for it (the fills table was altered)")
    return out


# -- replies --------------------------------------------------------------------------
#
# A node's reply to a batch of bars is journaled so that a retried call is answered
# rather than redone. It is stored as JSON: data only, exact (floats through their
# shortest repr, NaN allowed; Decimals as text), and nothing that could run code when read.


def _report_json(report: PerformanceReport) -> dict[str, Any]:
    out = report.model_dump(mode="python")
    for k, v in out.items():
        if isinstance(v, Decimal):
            out[k] = str(v)
        elif isinstance(v, datetime):
            out[k] = stored_time(v)  # `at`, UTC already: the text is what isoformat() gave
    return out


def _trade_json(t: ClosedTrade) -> list[Any]:
    return [t.id, t.agent, stored_time(t.exit_time), str(t.pnl)]


def _trade_back(v: list[Any]) -> ClosedTrade:
    return ClosedTrade(str(v[0]), str(v[1]), parse_time(v[2]), Decimal(v[3]))


def encode_batch_reply(reply: Any) -> str | None:
    """``(batch key, AgentUpdate | FarmUpdate)`` as JSON text (None stays None)."""
    if reply is None:
        return None
    key, update = reply
    if isinstance(update, AgentUpdate):
        body: dict[str, Any] = {
            "kind": "agent", "name": update.name, "fills": update.fills, "intents": update.intents,
            "equity": [float(x) for x in update.equity], "report": _report_json(update.report),
            "position_qty": str(update.position_qty), "last_close": update.last_close, "booked_ns": list(update.booked_ns),
            "trades": [_trade_json(t) for t in update.trades],
        }
    elif isinstance(update, FarmUpdate):
        body = {
            "kind": "farm", "name": update.name, "report": _report_json(update.report),
            "agents": [_report_json(a) for a in update.agents], "fills": update.fills, "booked_ns": list(update.booked_ns),
            "positions": dict(update.positions), "trades": [_trade_json(t) for t in update.trades], "halted": update.halted,
        }
    else:
        raise TypeError(f"no JSON form for a reply of type {type(update).__name__}")
    return json.dumps({"batch": [int(k) for k in key], "update": body}, separators=(",", ":"))


def decode_batch_reply(data: Any) -> Any:
    """The reply :func:`encode_batch_reply` wrote, from its parsed JSON; what is not the
    expected shape is refused as corrupt."""
    if data is None:
        return None
    try:
        key = tuple(int(k) for k in data["batch"])
        body = data["update"]
        if body["kind"] == "agent":
            update: Any = AgentUpdate(
                name=body["name"], fills=int(body["fills"]), intents=int(body["intents"]),
                equity=np.array(body["equity"], dtype=np.float64), report=PerformanceReport.model_validate(body["report"]),
                position_qty=Decimal(body["position_qty"]), last_close=float(body["last_close"]),
                booked_ns=[int(x) for x in body["booked_ns"]], trades=[_trade_back(t) for t in body["trades"]],
            )
        elif body["kind"] == "farm":
            update = FarmUpdate(
                name=body["name"], report=PerformanceReport.model_validate(body["report"]),
                agents=[PerformanceReport.model_validate(a) for a in body["agents"]], fills=int(body["fills"]),
                booked_ns=[int(x) for x in body["booked_ns"]], positions={str(k): str(v) for k, v in body["positions"].items()},
                trades=[_trade_back(t) for t in body["trades"]], halted=body["halted"],
            )
        else:
            raise ValueError(f"unknown kind {body['kind']!r}")
    except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as exc:
        raise StoreError(f"a journaled reply has an unexpected shape ({type(exc).__name__}: {exc}); the store is corrupt") from None
    return key, update


def batch_key(batch: Any) -> tuple[int, int, int]:
    """What identifies a batch of bars: its first and last bar times and its length (a
    retried call carries the same batch)."""
    return (int(batch.ts[0]), int(batch.ts[-1]), len(batch)) if len(batch) else (0, 0, 0)


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


__all__ = ["BooksError", "Journal", "batch_key", "decode_batch_reply", "encode_batch_reply", "fill_from_row", "fill_row"]
