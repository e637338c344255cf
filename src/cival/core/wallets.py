"""The wallet hierarchy: one master wallet funds farms, each farm funds its agents.

A small pure model over :class:`~cival.core.ledger.Ledger`. Every operation is one
or more ledger transactions under the caller's idempotency key, so repeating a call
with the same key (a message delivered twice) returns the original booking and moves
nothing. Refused operations raise and leave every balance as it was.

Entities are addressed by reference: ``master``, ``farm:<name>``, ``agent:<name>``.
Each has a cash account; agents also have, per symbol, a position account at cost,
plus ``fees`` and ``realized_pnl`` accounts.

A tree holds the whole hierarchy (one process, one ledger) or only part of it: in a
cluster each actor keeps its own books, a tree rooted at its own wallet
(:meth:`WalletTree.rooted`) whose parent and children may live in other ledgers. Money
crosses between ledgers with :meth:`WalletTree.send` and :meth:`WalletTree.receive`
through ``link`` accounts (see :mod:`cival.core.ledger`), so that what is in flight
between two actors is always accounted for.

Rounding rule for amounts derived from price x quantity: the ledger's scale is
applied *against the account holder*: a purchase's cost and every fee round up, a
sale's proceeds round down, so the books never credit money that was not there.
Cost relieved by a partial sale is the average cost of the units sold, rounded half
to even; closing a position relieves all of its remaining cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_UP, Decimal
from enum import StrEnum

from cival.core.errors import CivalError
from cival.core.fmt import plain_number
from cival.core.ledger import (
    EXTERNAL,
    ZERO,
    AccountKind,
    IdempotencyConflictError,
    Ledger,
    Posting,
    Transaction,
    TxDraft,
    TxType,
)
from cival.core.money import (
    DEFAULT_QTY_STEP,
    DEFAULT_SCALE,
    Amountlike,
    Money,
    exact_methods,
    money_context,
    to_decimal,
    within_capacity,
)

MASTER = "master"
PERCENT_PLACES = Decimal("0.0001")


class WalletError(CivalError):
    """A wallet operation was refused (unknown entity, wrong direction, bad amount)."""


class EntityKind(StrEnum):
    MASTER = "master"
    FARM = "farm"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Entity:
    ref: str
    kind: EntityKind
    name: str
    parent: str | None


@dataclass(frozen=True, slots=True)
class AllocationRecord:
    """One allocation, as in the ``fund_allocations`` table."""

    idempotency_key: str
    source: str
    target_type: EntityKind
    target: str
    """The target's name (its reference is ``f"{target_type}:{target}"``)."""
    amount: Money
    percentage_of_parent: Decimal
    """The amount as a percentage of the parent's total funds just before it (its own cash and
    positions at cost plus everything below it), to 4 places."""
    at: datetime
    seq: int


@dataclass(frozen=True, slots=True)
class FillBooking:
    """What booking a fill posted: the trade, the fee (if any) and the realised P&L of a sale."""

    trade: Transaction
    fee: Transaction | None
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    quantity: Decimal
    cost: Decimal


@dataclass(frozen=True, slots=True)
class WalletRow:
    """One line of the wallet tree (amounts in the ledger's currency)."""

    depth: int
    ref: str
    kind: EntityKind
    name: str
    cash: Decimal
    positions_at_cost: Decimal
    equity: Decimal
    """Own cash plus own positions (at mark where a mark is given, else at cost)."""
    total_equity: Decimal
    """Equity of the entity and everything below it."""
    realized_pnl: Decimal
    fees: Decimal


def farm_ref(name: str) -> str:
    return f"farm:{name}"


def agent_ref(name: str) -> str:
    return f"agent:{name}"


def cash_account(ref: str) -> str:
    return f"{ref}/cash"


def position_account(ref: str, symbol: str) -> str:
    return f"{ref}/position/{symbol}"


@exact_methods
class WalletTree:
    """Master wallet, farms and agents over one ledger."""

    def __init__(
        self,
        master_name: str = MASTER,
        currency: str = "USD",
        scale: int = DEFAULT_SCALE,
        qty_step: Decimal = DEFAULT_QTY_STEP,
        root: Entity | None = None,
    ) -> None:
        if qty_step <= 0:
            raise WalletError(f"qty_step must be positive, got {qty_step}")
        self.ledger = Ledger(currency=currency, scale=scale)
        self.qty_step = qty_step
        """Fill quantities must be whole multiples of this step."""
        self.master_name = master_name
        self._entities: dict[str, Entity] = {}
        self._children: dict[str, list[str]] = {}
        self._allocations: list[AllocationRecord] = []
        self._allocation_by_key: dict[str, AllocationRecord] = {}
        self.root = root or Entity(MASTER, EntityKind.MASTER, master_name, None)
        """The top wallet of these books (the master, unless the tree is a cluster actor's)."""
        self._add(self.root)

    @classmethod
    def rooted(
        cls,
        kind: EntityKind | str,
        name: str,
        parent: str | None = None,
        currency: str = "USD",
        scale: int = DEFAULT_SCALE,
        qty_step: Decimal = DEFAULT_QTY_STEP,
    ) -> WalletTree:
        """Books whose top wallet is ``kind:name``, a child of ``parent`` kept in other books.

        ``WalletTree.rooted("farm", "trend", parent="master")`` is a farm actor's books: the
        farm's wallet (and any agents added below it), funded by the master through
        :meth:`receive`.
        """
        kind = EntityKind(kind)
        _check_name(name, kind.value)
        ref = MASTER if kind is EntityKind.MASTER else f"{kind.value}:{name}"
        if kind is not EntityKind.MASTER and parent is None:
            raise WalletError(f"a {kind.value} wallet needs its parent's reference (master or farm:<name>)")
        return cls(
            master_name=name if kind is EntityKind.MASTER else MASTER,
            currency=currency,
            scale=scale,
            qty_step=qty_step,
            root=Entity(ref, kind, name, None if kind is EntityKind.MASTER else parent),
        )

    @property
    def currency(self) -> str:
        return self.ledger.currency

    # -- structure ------------------------------------------------------------------

    def _add(self, entity: Entity) -> Entity:
        existing = self._entities.get(entity.ref)
        if existing is not None:
            if existing != entity:
                raise WalletError(f"{entity.ref} already exists under {existing.parent}")
            return existing
        self._entities[entity.ref] = entity
        self._children[entity.ref] = []
        if entity.parent is not None and entity.parent in self._children:  # else kept in other books
            self._children[entity.parent].append(entity.ref)
        self.ledger.open_account(cash_account(entity.ref), AccountKind.CASH, owner=entity.ref)
        if entity.kind is EntityKind.AGENT:
            self.ledger.open_account(f"{entity.ref}/fees", AccountKind.FEES, owner=entity.ref)
            self.ledger.open_account(f"{entity.ref}/realized_pnl", AccountKind.REALIZED_PNL, owner=entity.ref)
        return entity

    def add_farm(self, name: str) -> Entity:
        _check_name(name, "farm")
        if self.root.kind is not EntityKind.MASTER:
            raise WalletError(f"farm {name!r} cannot be added below {self.root.ref}; farms belong to the master")
        return self._add(Entity(farm_ref(name), EntityKind.FARM, name, MASTER))

    def add_agent(self, farm: str, name: str) -> Entity:
        _check_name(name, "agent")
        parent = self.entity(farm_ref(farm) if ":" not in farm else farm)
        if parent.kind is not EntityKind.FARM:
            raise WalletError(f"agent {name!r} must belong to a farm, not to {parent.ref}")
        return self._add(Entity(agent_ref(name), EntityKind.AGENT, name, parent.ref))

    def entity(self, ref: str) -> Entity:
        try:
            return self._entities[ref]
        except KeyError:
            known = ", ".join(self._entities) or "none"
            raise WalletError(f"unknown wallet {ref!r}; known wallets: {known}") from None

    def entities(self) -> list[Entity]:
        return list(self._entities.values())

    def children(self, ref: str) -> list[Entity]:
        self.entity(ref)
        return [self._entities[c] for c in self._children[ref]]

    # -- balances -------------------------------------------------------------------

    def cash(self, ref: str) -> Money:
        self.entity(ref)
        return self.ledger.money(cash_account(ref))

    def positions(self, ref: str) -> list[PositionView]:
        self.entity(ref)
        return [
            PositionView(a.symbol or "", self.ledger.quantity(a.key), self.ledger.balance(a.key))
            for a in self.ledger.accounts(ref, AccountKind.POSITION)
            if self.ledger.quantity(a.key) != 0
        ]

    def realized_pnl(self, ref: str) -> Money:
        self.entity(ref)
        return Money(self.ledger.realized_pnl(ref), self.currency)

    def fees(self, ref: str) -> Money:
        self.entity(ref)
        return Money(self.ledger.fees(ref), self.currency)

    def equity(self, ref: str, marks: dict[str, Decimal] | None = None) -> Money:
        """Own cash plus own positions, valued at ``marks[symbol]`` where given, else at cost."""
        total = self.cash(ref).amount
        for pos in self.positions(ref):
            mark = (marks or {}).get(pos.symbol)
            total += pos.cost if mark is None else pos.quantity * to_decimal(mark, what=f"mark for {pos.symbol}")
        return Money(total, self.currency)

    def total_equity(self, ref: str, marks: dict[str, Decimal] | None = None) -> Money:
        """Equity of ``ref`` and every wallet below it."""
        total = self.equity(ref, marks)
        for child in self._children[ref]:
            total = total + self.total_equity(child, marks)
        return total

    @property
    def allocations(self) -> list[AllocationRecord]:
        return list(self._allocations)

    def restore(self, transactions: list[Transaction]) -> None:
        """Append transactions read back from a store to these books (whose wallets must
        already be added), opening the link and position accounts they name the way the
        operations that posted them did. See :meth:`Ledger.restore`. (The
        :attr:`allocations` records of in-book allocations are not rebuilt.)"""
        for tx in transactions:
            for p in tx.postings:
                key = p.account
                if key == EXTERNAL or key in self.ledger._accounts:
                    continue
                if "/link/" in key:
                    owner, peer = key.split("/link/", 1)
                    self.entity(owner)
                    self._link_account(owner, peer)
                elif "/position/" in key:
                    owner, symbol = key.split("/position/", 1)
                    self.entity(owner)
                    self._position_account(owner, symbol)
        self.ledger.restore(transactions)

    def tree(self, marks: dict[str, Decimal] | None = None) -> list[WalletRow]:
        """The hierarchy, depth first, one row per wallet."""
        rows: list[WalletRow] = []

        def walk(ref: str, depth: int) -> None:
            e = self._entities[ref]
            cost = sum((p.cost for p in self.positions(ref)), ZERO)
            rows.append(
                WalletRow(
                    depth=depth,
                    ref=ref,
                    kind=e.kind,
                    name=e.name,
                    cash=self.cash(ref).amount,
                    positions_at_cost=cost,
                    equity=self.equity(ref, marks).amount,
                    total_equity=self.total_equity(ref, marks).amount,
                    realized_pnl=self._subtree_sum(ref, self.ledger.realized_pnl),
                    fees=self._subtree_sum(ref, self.ledger.fees),
                )
            )
            for child in self._children[ref]:
                walk(child, depth + 1)

        walk(self.root.ref, 0)
        return rows

    def _subtree_sum(self, ref: str, figure) -> Decimal:  # type: ignore[no-untyped-def]
        return figure(ref) + sum((self._subtree_sum(c, figure) for c in self._children[ref]), ZERO)

    # -- movements ------------------------------------------------------------------

    def _amount(self, amount: Amountlike | Money, what: str) -> Decimal:
        if isinstance(amount, Money):
            Money.zero(self.currency)._check(amount)
            value = amount.amount
        else:
            value = to_decimal(amount, what=what)
        if value <= 0:
            raise WalletError(f"{what} must be positive, got {plain_number(value)}")
        if not within_capacity(value):
            raise WalletError(f"{what} {plain_number(value)} is beyond what the books hold (less than 10**15); use a smaller amount")
        with money_context():
            off_scale = value % self.ledger.quantum != 0
        if off_scale:
            raise WalletError(
                f"{what} {value} has more than {self.ledger.scale} decimal places; round it first"
            )
        return value

    def deposit(self, amount: Amountlike | Money, key: str, at: datetime | None = None) -> Transaction:
        """External money into the master wallet."""
        self._need_master("deposit")
        value = self._amount(amount, "deposit")
        return self._move(TxType.DEPOSIT, EXTERNAL, cash_account(MASTER), value, key, at)

    def withdraw(self, amount: Amountlike | Money, key: str, at: datetime | None = None) -> Transaction:
        """Money out of the master wallet to the outside world."""
        self._need_master("withdrawal")
        value = self._amount(amount, "withdrawal")
        return self._move(TxType.WITHDRAWAL, cash_account(MASTER), EXTERNAL, value, key, at)

    def allocate(
        self, target: str, amount: Amountlike | Money, key: str, at: datetime | None = None
    ) -> AllocationRecord:
        """Move cash from a wallet's parent down to it (master -> farm, farm -> agent)."""
        child = self.entity(target)
        if child.parent is None:
            raise WalletError(f"{target} has no parent to be funded from; deposit into it instead")
        self._local_parent(child, "allocation")
        value = self._amount(amount, f"allocation to {target}")
        parent_funds = self.total_equity(child.parent).amount
        tx = self._move(TxType.ALLOCATION, cash_account(child.parent), cash_account(target), value, key, at)
        prior = self._allocation_by_key.get(key)
        if prior is not None:  # the ledger found the same allocation under this key: a replay
            return prior
        record = AllocationRecord(
            idempotency_key=key,
            source=child.parent,
            target_type=child.kind,
            target=child.name,
            amount=Money(value, self.currency),
            percentage_of_parent=(value * 100 / parent_funds).quantize(PERCENT_PLACES, ROUND_HALF_EVEN),
            at=tx.at,
            seq=tx.seq,
        )
        self._allocations.append(record)
        self._allocation_by_key[key] = record
        return record

    def collect(
        self, source: str, amount: Amountlike | Money | None, key: str, at: datetime | None = None
    ) -> Transaction:
        """Move cash from a wallet back up to its parent; ``amount=None`` collects all its cash.

        Collecting all from an empty wallet still books a (zero) collection under ``key``,
        so that the same message delivered later, after cash has arrived, moves nothing.
        """
        child = self.entity(source)
        if child.parent is None:
            raise WalletError(f"{source} has no parent to collect into; withdraw from it instead")
        self._local_parent(child, "collection")
        if amount is None:
            # "All" depends on the current balance, so a replay is recognised by its key.
            prior = self.ledger.find(key)
            if prior is not None:
                if prior.type is not TxType.COLLECTION or prior.amount_of(cash_account(source)) > 0:
                    raise IdempotencyConflictError(
                        f"idempotency key {key!r} was already used for a different movement"
                    )
                return prior
            value = self.ledger.balance(cash_account(source))
        else:
            value = self._amount(amount, f"collection from {source}")
        return self._move(TxType.COLLECTION, cash_account(source), cash_account(child.parent), value, key, at)

    def transfer(
        self,
        source: str,
        target: str,
        amount: Amountlike | Money,
        key: str,
        at: datetime | None = None,
        type: TxType = TxType.REBALANCE,
    ) -> Transaction:
        """Move cash between any two wallets (a rebalance, by default)."""
        self.entity(source)
        self.entity(target)
        if source == target:
            raise WalletError(f"cannot transfer from {source} to itself")
        if TxType(type) not in (TxType.REBALANCE, TxType.ALLOCATION, TxType.COLLECTION):
            raise WalletError(f"a transfer is a rebalance, allocation or collection, not {type}")
        value = self._amount(amount, f"transfer {source} -> {target}")
        return self._move(TxType(type), cash_account(source), cash_account(target), value, key, at)

    def send(
        self,
        source: str,
        peer: str,
        amount: Amountlike | Money | None,
        key: str,
        at: datetime | None = None,
        type: TxType = TxType.ALLOCATION,
    ) -> Transaction:
        """Send cash from ``source`` to ``peer``, a wallet kept in other books.

        The money leaves ``source``'s cash for its link account with ``peer``, where it
        stays (counted, in flight) until the peer books the matching :meth:`receive`.
        ``amount=None`` sends all of ``source``'s cash (a collection of everything); as
        with :meth:`collect`, a replay of that is recognised by its key.
        """
        self.entity(source)
        self._remote(peer)
        link = self._link_account(source, peer)
        if amount is None:
            prior = self.ledger.find(key)
            if prior is not None:
                if prior.amount_of(link) < 0 or prior.type is not TxType(type):
                    raise IdempotencyConflictError(f"idempotency key {key!r} was already used for a different movement")
                return prior
            value = self.ledger.balance(cash_account(source))
        elif not isinstance(amount, Money) and to_decimal(amount, what="transfer") == 0:
            value = ZERO  # a zero sending (nothing to collect), booked so its receipt matches
        else:
            value = self._amount(amount, f"transfer {source} -> {peer}")
        return self._move(TxType(type), cash_account(source), link, value, key, at)

    def receive(
        self,
        target: str,
        peer: str,
        amount: Amountlike | Money | Decimal,
        key: str,
        at: datetime | None = None,
        type: TxType = TxType.ALLOCATION,
    ) -> Transaction:
        """Book cash that ``peer`` (a wallet in other books) sent to ``target``.

        ``key`` must be the sender's key for the same movement (the message id), so a
        message delivered twice is booked once. A zero amount (a "collect all" of an empty
        wallet) is booked too, for the same reason.
        """
        self.entity(target)
        self._remote(peer)
        value = amount.amount if isinstance(amount, Money) else to_decimal(amount, what=f"transfer {peer} -> {target}")
        if value != 0:
            value = self._amount(value, f"transfer {peer} -> {target}")
        return self._move(TxType(type), self._link_account(target, peer), cash_account(target), value, key, at)

    def link_balance(self, ref: str, peer: str) -> Decimal:
        """Sent by ``ref`` to ``peer`` minus received from it (in these books)."""
        key = f"{ref}/link/{peer}"
        return self.ledger.balance(key) if any(a.key == key for a in self.ledger.accounts(ref, AccountKind.LINK)) else ZERO

    def buy(
        self,
        agent: str,
        symbol: str,
        quantity: Amountlike,
        price: Amountlike,
        fee: Amountlike,
        key: str,
        at: datetime | None = None,
        notional: Decimal | None = None,
    ) -> FillBooking:
        """Book a buy fill: cash pays quantity x price (rounded up) into the position at cost, plus the fee.

        ``notional``, when given, is the cash the broker settled for the trade (fee
        excluded) and is booked instead of quantity x price; it must be positive and at the
        ledger's scale. Paper trading passes it so that the books hold exactly the cash the
        broker holds (to the ledger's scale).
        """
        ref, qty, px, fee_amount = self._fill_args(agent, symbol, quantity, price, fee)
        with money_context():
            cost = (qty * px).quantize(self.ledger.quantum, ROUND_UP) if notional is None else self._notional(notional)
        prior = self._replayed_fill(key, TxType.TRADE_BUY, ref, symbol, qty, px, -cost, fee_amount)
        if prior is not None:
            return prior
        pos = self._position_account(ref, symbol)
        trade = TxDraft(
            TxType.TRADE_BUY,
            f"{key}/trade",
            (Posting(cash_account(ref), -cost), Posting(pos, cost, qty)),
            at,
            f"buy {qty} {symbol} @ {px}",
        )
        return self._book_fill(trade, ref, fee_amount, key, at, ZERO)

    def sell(
        self,
        agent: str,
        symbol: str,
        quantity: Amountlike,
        price: Amountlike,
        fee: Amountlike,
        key: str,
        at: datetime | None = None,
        notional: Decimal | None = None,
    ) -> FillBooking:
        """Book a sell fill: proceeds (rounded down) to cash, average cost out of the position, the difference to realised P&L.

        ``notional``, when given, is the broker's settled proceeds (fee excluded), booked
        instead of quantity x price (see :meth:`buy`)."""
        ref, qty, px, fee_amount = self._fill_args(agent, symbol, quantity, price, fee)
        with money_context():
            proceeds = (qty * px).quantize(self.ledger.quantum, ROUND_DOWN) if notional is None else self._notional(notional)
        # A sale's postings depend on the position at the time, so a replay is
        # recognised by its key (and checked to be the same fill) before anything else.
        prior = self._replayed_fill(key, TxType.TRADE_SELL, ref, symbol, -qty, px, proceeds, fee_amount)
        if prior is not None:
            return prior
        pos = self._position_account(ref, symbol)
        held = self.ledger.quantity(pos)
        if qty > held:
            raise WalletError(
                f"sell refused: {ref} holds {held} {symbol}, cannot sell {qty}. Sell at most what is held."
            )
        held_cost = self.ledger.balance(pos)
        with money_context():
            relieved = (
                held_cost
                if qty == held
                else (held_cost * qty / held).quantize(self.ledger.quantum, ROUND_HALF_EVEN)
            )
        pnl = proceeds - relieved
        trade = TxDraft(
            TxType.TRADE_SELL,
            f"{key}/trade",
            (
                Posting(cash_account(ref), proceeds),
                Posting(pos, -relieved, -qty),
                Posting(f"{ref}/realized_pnl", -pnl),
            ),
            at,
            f"sell {qty} {symbol} @ {px}",
        )
        return self._book_fill(trade, ref, fee_amount, key, at, pnl)

    # -- helpers --------------------------------------------------------------------

    def _fill_args(
        self, agent: str, symbol: str, quantity: Amountlike, price: Amountlike, fee: Amountlike
    ) -> tuple[str, Decimal, Decimal, Decimal]:
        ref = agent if ":" in agent else agent_ref(agent)
        if self.entity(ref).kind is not EntityKind.AGENT:
            raise WalletError(f"only agents trade; {ref} is a {self.entity(ref).kind.value}")
        if not symbol or "/" in symbol:
            raise WalletError(f"symbol {symbol!r} must be non-empty and contain no '/'")
        qty = to_decimal(quantity, what="fill quantity")
        px = to_decimal(price, what="fill price")
        fee_value = to_decimal(fee, what="fill fee")
        for name, value in (("quantity", qty), ("price", px), ("fee", fee_value)):
            if not within_capacity(value):
                raise WalletError(f"fill {name} {plain_number(value)} is beyond what the books hold (less than 10**15)")
        if qty <= 0:
            raise WalletError(f"fill quantity must be positive, got {qty}")
        with money_context():
            off_step = qty % self.qty_step != 0
        if off_step:
            raise WalletError(
                f"fill quantity {qty} is not a multiple of the quantity step {self.qty_step}; "
                "round it down with quantize_quantity() before booking"
            )
        if px <= 0:
            raise WalletError(f"fill price must be positive, got {px}")
        if fee_value < 0:
            raise WalletError(f"fee must not be negative, got {fee_value}")
        return ref, qty, px, fee_value.quantize(self.ledger.quantum, ROUND_UP)

    def _notional(self, value: Decimal) -> Decimal:
        value = to_decimal(value, what="fill notional")
        if not within_capacity(value):
            raise WalletError(f"fill notional {plain_number(value)} is beyond what the books hold (less than 10**15)")
        with money_context():
            off_scale = value % self.ledger.quantum != 0
        if value <= 0 or off_scale:
            raise WalletError(f"fill notional {value} must be positive with at most {self.ledger.scale} decimal places")
        return value

    def _need_master(self, what: str) -> None:
        if self.root.kind is not EntityKind.MASTER:
            raise WalletError(f"a {what} goes through the master wallet; these books are {self.root.ref}'s")

    def _local_parent(self, child: Entity, what: str) -> None:
        if child.parent not in self._entities:
            raise WalletError(
                f"{child.ref}'s parent {child.parent} keeps other books; book the {what} with send() and receive()"
            )

    def _remote(self, peer: str) -> None:
        if peer in self._entities:
            raise WalletError(f"{peer} is in these books; move money to it with allocate(), collect() or transfer()")
        if not peer or "/" in peer or " " in peer:
            raise WalletError(f"peer {peer!r} must be a wallet reference such as master, farm:<name>, agent:<name>")

    def _link_account(self, ref: str, peer: str) -> str:
        key = f"{ref}/link/{peer}"
        self.ledger.open_account(key, AccountKind.LINK, owner=ref)
        return key

    def _position_account(self, ref: str, symbol: str) -> str:
        key = position_account(ref, symbol)
        self.ledger.open_account(key, AccountKind.POSITION, owner=ref, symbol=symbol)
        return key

    def _move(
        self, tx_type: TxType, source: str, target: str, value: Decimal, key: str, at: datetime | None
    ) -> Transaction:
        """Post ``value`` from account ``source`` to account ``target`` as one transaction."""
        return self.ledger.post(
            tx_type,
            (Posting(source, -value), Posting(target, value)),
            key,
            at,
            memo=f"{tx_type.value} {source.removesuffix('/cash')} -> {target.removesuffix('/cash')}",
        )

    def _book_fill(
        self, trade: TxDraft, ref: str, fee: Decimal, key: str, at: datetime | None, pnl: Decimal
    ) -> FillBooking:
        """Post a fill's trade and (if any) its fee atomically: both or neither."""
        drafts = [trade]
        if fee != 0:
            drafts.append(
                TxDraft(TxType.FEE, f"{key}/fee", (Posting(cash_account(ref), -fee), Posting(f"{ref}/fees", fee)), at, "fee")
            )
        posted = self.ledger.post_all(drafts)
        return FillBooking(posted[0], posted[1] if len(posted) > 1 else None, pnl)

    def _replayed_fill(
        self, key: str, tx_type: TxType, ref: str, symbol: str, qty: Decimal, px: Decimal, cash: Decimal, fee_amount: Decimal
    ) -> FillBooking | None:
        """The booking of a fill already booked under ``key``, if any. A fill replayed under
        the same key must be the same fill: same side, quantity, price, cash and fee; any
        difference raises IdempotencyConflictError (as an altered allocation does)."""
        trade = self.ledger.find(f"{key}/trade")
        if trade is None:
            return None
        fee = self.ledger.find(f"{key}/fee")
        legs = [p for p in trade.postings if p.account == position_account(ref, symbol)]
        booked_px = _memo_price(trade.memo)
        booked_fee = fee.amount_of(f"{ref}/fees") if fee is not None else ZERO
        differs = [
            what
            for what, same in (
                ("side", trade.type is tx_type),
                ("quantity", len(legs) == 1 and legs[0].quantity == qty),
                ("price", booked_px is not None and booked_px == px),
                ("cash", trade.amount_of(cash_account(ref)) == cash),
                ("fee", booked_fee == fee_amount),
            )
            if not same
        ]
        if differs:
            raise IdempotencyConflictError(
                f"fill key {key!r} was already booked as a different fill (#{trade.seq} {trade.memo}; the "
                f"{', '.join(differs)} differ{'s' if len(differs) == 1 else ''}); a retried fill must be identical, "
                "a new fill needs a new key"
            )
        pnl = ZERO - trade.amount_of(f"{ref}/realized_pnl")
        return FillBooking(trade, fee, pnl)


def _memo_price(memo: str) -> Decimal | None:
    """The price a fill's memo (``buy QTY SYMBOL @ PRICE``) names, or None."""
    _, at, text = memo.rpartition(" @ ")
    if not at:
        return None
    try:
        return Decimal(text)
    except ArithmeticError:
        return None


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not name or any(c in name for c in ":/ "):
        raise WalletError(f"{what} name {name!r} must be non-empty with no spaces, ':' or '/'")


__all__ = [
    "MASTER",
    "AllocationRecord",
    "Entity",
    "EntityKind",
    "FillBooking",
    "PositionView",
    "WalletError",
    "WalletRow",
    "WalletTree",
    "agent_ref",
    "cash_account",
    "farm_ref",
    "position_account",
]
