"""The cluster's books as a whole: every actor's ledger, reconciled.

Each master wallet, farm and agent actor keeps its own ledger. Money moving between two
of them is booked twice: sent (cash -> link account, in the sender's ledger) and
received (link account -> cash, in the receiver's), under the same key, the message id.
:func:`combine` puts the summaries of all ledgers together and checks:

* every ledger's own audit (balanced transactions, no overdraft, its identity);
* every receipt matches a sending of the same amount under the same key (otherwise money
  was created, or a message was altered in flight);
* the money in flight (sent, not yet received) equals the sum of all link balances;
* conservation over the cluster: cash + positions at cost + in flight ==
  deposits - withdrawals + realised P&L - fees. ``residual`` is the difference.

It holds at every moment, while transfers are in flight too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cival.core.fmt import format_amount, plain_decimal
from cival.core.ledger import ZERO, AccountKind, AuditReport, TxType
from cival.core.messages import Collect, Transfer
from cival.core.wallets import WalletTree


@dataclass(frozen=True)
class LinkMove:
    """One side of a money movement between two ledgers."""

    key: str
    wallet: str
    peer: str
    amount: Decimal
    sent: bool
    """True: sent by ``wallet`` to ``peer``; False: received by ``wallet`` from ``peer``."""


@dataclass(frozen=True)
class BooksSummary:
    """What :func:`combine` needs from one ledger."""

    owner: str
    audit: AuditReport
    links: tuple[LinkMove, ...]
    cash: Decimal
    positions_at_cost: Decimal


def send_up(books: WalletTree, source: str, parent: str, msg: Collect, amount: Decimal | None = None) -> Transfer:
    """Answer a Collect: book the sending of ``amount`` (default: ``msg.amount``; all cash
    when that is None too; zero allowed) from ``source`` to ``parent`` (in other books) and
    return the Transfer for the parent to book. Its id derives from the Collect's, so a
    duplicate Collect returns the same Transfer and books nothing."""
    transfer_id = f"{msg.id}:transfer"
    value = msg.amount if amount is None else amount
    tx = books.send(source, parent, value, key=transfer_id, at=msg.at, type=TxType.COLLECTION)
    moved = tx.amount_of(f"{source}/link/{parent}")
    return Transfer(id=transfer_id, at=msg.at, source=source, target=parent, amount=moved, cause=msg.id)


def summarize(books: WalletTree) -> BooksSummary:
    """One ledger's audit and its link movements."""
    ledger = books.ledger
    link_accounts = {a.key: a for a in ledger.accounts(kind=AccountKind.LINK)}
    moves: list[LinkMove] = []
    for tx in ledger.journal:
        for index, p in enumerate(tx.postings):
            acct = link_accounts.get(p.account)
            if acct is not None:
                # A sending posts (cash -v, link +v), a receipt (link -v, cash +v): the link
                # leg's place tells the direction even of a zero amount.
                peer = p.account.split("/link/", 1)[1]
                moves.append(
                    LinkMove(
                        tx.idempotency_key,
                        acct.owner,
                        peer,
                        abs(p.amount),
                        sent=index == 1,
                    )
                )
    audit = ledger.audit()
    return BooksSummary(
        books.root.ref, audit, tuple(moves), audit.cash, audit.positions_at_cost
    )


@dataclass(frozen=True)
class ClusterAudit:
    """The cluster's books reconciled (see the module docstring)."""

    ok: bool
    currency: str
    ledgers: int
    transactions: int
    deposits: Decimal
    withdrawals: Decimal
    realized_pnl: Decimal
    fees: Decimal
    cash: Decimal
    positions_at_cost: Decimal
    in_flight: Decimal
    residual: Decimal
    pending: tuple[LinkMove, ...] = ()
    """Sendings not yet received."""
    problems: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "audit_ok": self.ok,
            "ledgers": self.ledgers,
            "transactions": self.transactions,
            "deposits": plain_decimal(self.deposits),
            "withdrawals": plain_decimal(self.withdrawals),
            "fees": plain_decimal(self.fees),
            "realized_pnl": plain_decimal(self.realized_pnl),
            "cash": plain_decimal(self.cash),
            "positions_at_cost": plain_decimal(self.positions_at_cost),
            "in_flight": plain_decimal(self.in_flight),
            "residual": plain_decimal(self.residual),
            "problems": list(self.problems),
        }

    def __str__(self) -> str:
        c = self.currency
        lines = [
            f"audit {'OK' if self.ok else 'FAILED'}: {self.ledgers} ledgers, {self.transactions} transactions",
            f"  cash + positions at cost  {format_amount(self.cash + self.positions_at_cost)} {c}",
            f"  + in flight               {format_amount(self.in_flight)} {c}",
            f"  deposits - withdrawals    {format_amount(self.deposits - self.withdrawals)} {c}",
            f"  + realised P&L - fees     {format_amount(self.realized_pnl - self.fees)} {c}",
            f"  residual                  {plain_decimal(self.residual)} {c}",
        ]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


def combine(summaries: list[BooksSummary], currency: str = "USD") -> ClusterAudit:
    """Reconcile the ledgers of a cluster (see the module docstring)."""
    problems: list[str] = []
    sent: dict[str, LinkMove] = {}
    received: dict[str, LinkMove] = {}
    links = ZERO
    for s in summaries:
        if not s.audit.ok:
            problems += [f"{s.owner}: {p}" for p in s.audit.problems]
        links += s.audit.links
        for move in s.links:
            (sent if move.sent else received).setdefault(move.key, move)
    for key, move in received.items():
        origin = sent.get(key)
        if origin is None:
            problems.append(
                f"{move.wallet} received {move.amount} from {move.peer} under {key!r}, which was never sent"
            )
            continue
        if (
            origin.wallet != move.peer
            or origin.peer != move.wallet
            or origin.amount != move.amount
        ):
            problems.append(
                f"{key!r}: {origin.wallet} sent {origin.amount} to {origin.peer}, "
                f"but {move.wallet} received {move.amount} from {move.peer}"
            )
    pending = tuple(m for k, m in sent.items() if k not in received)
    in_flight = sum((m.amount for m in pending), ZERO)
    if in_flight != links:
        problems.append(f"link balances sum to {links} but {in_flight} is in flight")
    deposits = sum((s.audit.deposits for s in summaries), ZERO)
    withdrawals = sum((s.audit.withdrawals for s in summaries), ZERO)
    realized = sum((s.audit.realized_pnl for s in summaries), ZERO)
    fees = sum((s.audit.fees for s in summaries), ZERO)
    cash = sum((s.cash for s in summaries), ZERO)
    positions = sum((s.positions_at_cost for s in summaries), ZERO)
    residual = (cash + positions + in_flight) - (
        deposits - withdrawals + realized - fees
    )
    if residual != 0:
        problems.append(
            f"cash + positions + in flight differs from the flows by {residual}"
        )
    return ClusterAudit(
        ok=not problems,
        currency=currency,
        ledgers=len(summaries),
        transactions=sum(s.audit.transactions for s in summaries),
        deposits=deposits,
        withdrawals=withdrawals,
        realized_pnl=realized,
        fees=fees,
        cash=cash,
        positions_at_cost=positions,
        in_flight=in_flight,
        residual=residual,
        pending=pending,
        problems=tuple(problems),
    )


__all__ = ["BooksSummary", "ClusterAudit", "LinkMove", "combine", "send_up", "summarize"]
