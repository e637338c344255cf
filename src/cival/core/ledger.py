"""The double-entry journal: every movement of money is one balanced transaction.

Rules (each enforced by :meth:`Ledger.post` and re-checked by :meth:`Ledger.audit`):

* A transaction's postings sum to exactly zero, in the ledger's single currency.
* Amounts are exact Decimals at the ledger's scale (8 places by default); an amount
  with more places is refused, so rounding is always the caller's explicit choice.
* Each transaction carries an idempotency key. Posting a key that is already in the
  journal returns the original transaction and changes nothing; posting a key with
  *different* content raises :class:`IdempotencyConflictError` (a bug, not a retry).
* A cash account never goes below zero (:class:`InsufficientFundsError` says how much
  is available); a position never goes below zero quantity or cost.
* Money enters and leaves only through ``deposit``/``withdrawal`` (the ``external``
  account); fees are booked only by ``fee`` transactions; realised P&L only by
  ``trade_sell``. Hence, with every transaction balanced::

      sum(cash) + sum(positions at cost) + sum(links) == deposits - withdrawals + realised P&L - fees

* ``link`` accounts connect this ledger to another one (each actor of a cluster keeps
  its own books). Sending money to another ledger moves it from cash to the link
  account for that counterparty; receiving moves it from the link account to cash. A
  link balance is what was sent to the counterparty minus what was received from it,
  so across all ledgers the links sum to the money *in flight*: sent and not yet
  received. Only allocations, collections and rebalances touch links.

Sign conventions: cash and position accounts hold positive balances. ``fees`` accounts
are positive by the fees paid. ``external`` is minus the net deposits and a
``realized_pnl`` account is minus the realised profit (profits flow *out* of it), so
that every transaction balances; :meth:`Ledger.realized_pnl` flips the sign for you.

* No balance or amount goes beyond the books' capacity (:data:`cival.core.money.CAPACITY`:
  15 digits before the point); arithmetic runs in a Decimal context wide enough that
  nothing within it is ever rounded.
* Transactions are chained: each has a hash, the SHA-256 of its content and of the
  previous transaction's hash (:func:`chain_hash`; the first follows :data:`GENESIS`),
  computed when first asked for (:meth:`Ledger.hashed`, which a store writes) and kept
  with the transactions read back (``Transaction.hash``). :meth:`Ledger.audit` recomputes
  the chain and reports the first link that does not hold, so a transaction altered,
  inserted or removed after it was written shows; an ``anchor`` (the length and head hash
  recorded elsewhere, e.g. in the owner's journaled state) shows transactions removed
  from the end.

A refused transaction leaves the ledger exactly as it was. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from cival.core.errors import CivalError
from cival.core.fmt import format_amount, plain_decimal, plain_number
from cival.core.money import (
    CAPACITY,
    DEFAULT_SCALE,
    INTEGER_DIGITS,
    Money,
    money_context,
    quantum,
    to_decimal,
)

ZERO = Decimal(0)

GENESIS = "0" * 64
"""The hash the first transaction of every ledger chains to."""


class LedgerError(CivalError):
    """A transaction was refused; the ledger is unchanged."""


class InsufficientFundsError(LedgerError):
    """A movement would take a cash account below zero."""

    def __init__(self, account: str, available: Decimal, needed: Decimal, currency: str, what: str):
        self.account = account
        self.available = available
        self.needed = needed
        super().__init__(
            f"{what} refused: {account} has {format_amount(available)} {currency} available "
            f"but needs {format_amount(needed)} {currency}. "
            f"Reduce the amount to at most {format_amount(available)} {currency} or fund the account first."
        )


class IdempotencyConflictError(LedgerError):
    """An idempotency key was reused for a different transaction."""


class TxType(StrEnum):
    """Transaction types (the seed's list)."""

    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    ALLOCATION = "allocation"
    COLLECTION = "collection"
    TRADE_BUY = "trade_buy"
    TRADE_SELL = "trade_sell"
    FEE = "fee"
    REBALANCE = "rebalance"


class AccountKind(StrEnum):
    CASH = "cash"
    POSITION = "position"
    FEES = "fees"
    REALIZED_PNL = "realized_pnl"
    EXTERNAL = "external"
    LINK = "link"


# Which kinds of account each transaction type may touch. This is what makes the
# audit identity meaningful: e.g. only deposits and withdrawals reach `external`.
ALLOWED_KINDS: dict[TxType, frozenset[AccountKind]] = {
    TxType.DEPOSIT: frozenset({AccountKind.CASH, AccountKind.EXTERNAL}),
    TxType.WITHDRAWAL: frozenset({AccountKind.CASH, AccountKind.EXTERNAL}),
    TxType.ALLOCATION: frozenset({AccountKind.CASH, AccountKind.LINK}),
    TxType.COLLECTION: frozenset({AccountKind.CASH, AccountKind.LINK}),
    TxType.REBALANCE: frozenset({AccountKind.CASH, AccountKind.LINK}),
    TxType.TRADE_BUY: frozenset({AccountKind.CASH, AccountKind.POSITION}),
    TxType.TRADE_SELL: frozenset({AccountKind.CASH, AccountKind.POSITION, AccountKind.REALIZED_PNL}),
    TxType.FEE: frozenset({AccountKind.CASH, AccountKind.FEES}),
}

EXTERNAL = "external"
"""The one account standing for the world outside the books."""


@dataclass(frozen=True, slots=True)
class Account:
    key: str
    kind: AccountKind
    owner: str
    """The wallet entity the account belongs to ('' for ``external``)."""
    symbol: str | None = None


@dataclass(frozen=True, slots=True)
class Posting:
    """One leg of a transaction. ``quantity`` is the change of units held, for position accounts only."""

    account: str
    amount: Decimal
    quantity: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class TxDraft:
    """A transaction not yet posted."""

    type: TxType
    idempotency_key: str
    postings: tuple[Posting, ...]
    at: datetime | None = None
    memo: str = ""


@dataclass(frozen=True, slots=True)
class Transaction:
    """A posted transaction; ``seq`` is its position in the journal, from 1."""

    seq: int
    type: TxType
    idempotency_key: str
    postings: tuple[Posting, ...]
    at: datetime
    currency: str
    memo: str = ""
    hash: str = ""
    """SHA-256 (hex) of this transaction's content and of the previous one's hash, as
    written to a store ("" on a transaction just posted: :meth:`Ledger.hashed`)."""

    def amount_of(self, account: str) -> Decimal:
        return sum((p.amount for p in self.postings if p.account == account), ZERO)


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The result of :meth:`Ledger.audit`. ``residual`` is zero when the books balance."""

    ok: bool
    currency: str
    transactions: int
    deposits: Decimal
    withdrawals: Decimal
    realized_pnl: Decimal
    fees: Decimal
    cash: Decimal
    positions_at_cost: Decimal
    residual: Decimal
    problems: tuple[str, ...] = field(default_factory=tuple)
    links: Decimal = ZERO
    """Net sent to other ledgers minus received from them (0 in a ledger that stands alone)."""

    def __str__(self) -> str:
        c = self.currency
        lines = [
            f"audit {'OK' if self.ok else 'FAILED'}: {self.transactions} transactions",
            f"  cash + positions at cost  {format_amount(self.cash + self.positions_at_cost)} {c}",
            *([f"  + sent - received (links) {format_amount(self.links)} {c}"] if self.links else []),
            f"  deposits - withdrawals    {format_amount(self.deposits - self.withdrawals)} {c}",
            f"  + realised P&L - fees     {format_amount(self.realized_pnl - self.fees)} {c}",
            f"  residual                  {plain_decimal(self.residual)} {c}",
        ]
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(at: datetime) -> int:
    """Microseconds since 1970 (UTC), exactly."""
    d = at - _EPOCH
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def chain_hash(prev: str, seq: int, type: TxType | str, key: str, at: datetime, currency: str, memo: str,
               postings: Iterable[Posting]) -> str:
    """The hash of a transaction chained to ``prev`` (see the module docstring). Each field
    is length-prefixed, so no two different transactions give the same text."""
    fields = [prev, str(seq), str(type), key, str(_micros(at)), currency, memo]
    for p in postings:  # plain_decimal keeps every digit, and equal values (1.50, 1.5) hash alike
        fields += (p.account, plain_decimal(p.amount), plain_decimal(p.quantity))
    text = "".join(f"{len(f)}:{f}" for f in fields)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tx_hash(prev: str, tx: Transaction) -> str:
    """:func:`chain_hash` of a posted transaction."""
    return chain_hash(prev, tx.seq, tx.type, tx.idempotency_key, tx.at, tx.currency, tx.memo, tx.postings)


def chained(transactions: Iterable[Transaction], prev: str = GENESIS) -> list[Transaction]:
    """``transactions`` with their hashes computed in order from ``prev`` (for rows written
    before transactions carried one)."""
    from dataclasses import replace

    out = []
    for tx in transactions:
        prev = tx_hash(prev, tx)
        out.append(replace(tx, hash=prev))
    return out


def _utc(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is UTC:
        return at
    if at.tzinfo is None or at.utcoffset() is None:
        raise LedgerError(f"timestamp {at.isoformat()} has no time zone; pass an aware datetime (UTC)")
    return at.astimezone(UTC)


class Ledger:
    """A single-currency double-entry journal with derived balances.

    ``scale`` is the number of decimal places amounts are kept to. The ledger is not
    thread-safe; one owner (an actor, a backtest) posts to it.
    """

    def __init__(self, currency: str = "USD", scale: int = DEFAULT_SCALE) -> None:
        if not 0 <= scale <= 18:
            raise LedgerError(f"scale must be between 0 and 18 decimal places, got {scale}")
        self.currency = Money.zero(currency).currency
        self.scale = scale
        self._quantum = quantum(scale)
        self._accounts: dict[str, Account] = {}
        self._balance: dict[str, Decimal] = {}
        self._quantity: dict[str, Decimal] = {}
        self._journal: list[Transaction] = []
        self._by_key: dict[str, Transaction] = {}
        self._fresh: frozenset[str] = frozenset()
        """The keys the latest post booked for the first time (see :meth:`posted`)."""
        self._hashes: list[str] = []
        """The chain's hashes of the first transactions (computed lazily, or as read back)."""
        self.anchor: tuple[int, str] | None = None
        """(length, head hash) of this journal as recorded elsewhere (the owner's journaled
        state), checked by :meth:`audit`; None: nothing to check against."""
        self.open_account(EXTERNAL, AccountKind.EXTERNAL, owner="")

    # -- accounts -------------------------------------------------------------------

    def open_account(self, key: str, kind: AccountKind, owner: str, symbol: str | None = None) -> Account:
        """Open an account (idempotent for the same definition)."""
        existing = self._accounts.get(key)
        if existing is not None and existing.kind is kind and existing.owner == owner and existing.symbol == symbol:
            return existing  # the common case, kept cheap: fills reopen their position account
        account = Account(key=key, kind=AccountKind(kind), owner=owner, symbol=symbol)
        if existing is not None:
            if existing != account:
                raise LedgerError(f"account {key!r} already exists as {existing}; cannot reopen it as {account}")
            return existing
        if not key:
            raise LedgerError("account key must be a non-empty string")
        self._accounts[key] = account
        self._balance[key] = ZERO
        self._quantity[key] = ZERO
        return account

    def account(self, key: str) -> Account:
        try:
            return self._accounts[key]
        except KeyError:
            raise LedgerError(f"unknown account {key!r}; open it first") from None

    def accounts(self, owner: str | None = None, kind: AccountKind | None = None) -> list[Account]:
        return [
            a
            for a in self._accounts.values()
            if (owner is None or a.owner == owner) and (kind is None or a.kind == kind)
        ]

    # -- reading --------------------------------------------------------------------

    @property
    def quantum(self) -> Decimal:
        """The smallest amount the ledger keeps: ``10 ** -scale``."""
        return self._quantum

    def balance(self, key: str) -> Decimal:
        """The balance of an account, derived from the journal (kept incrementally)."""
        self.account(key)
        return self._balance[key]

    def quantity(self, key: str) -> Decimal:
        """Units held in a position account."""
        self.account(key)
        return self._quantity[key]

    def money(self, key: str) -> Money:
        return Money(self.balance(key), self.currency)

    @property
    def journal(self) -> Sequence[Transaction]:
        return tuple(self._journal)

    def __len__(self) -> int:
        return len(self._journal)

    def _extend_chain(self) -> None:
        hashes = self._hashes
        prev = hashes[-1] if hashes else GENESIS
        for tx in self._journal[len(hashes):]:
            prev = tx_hash(prev, tx)
            hashes.append(prev)

    @property
    def head(self) -> str:
        """The hash of the last transaction (:data:`GENESIS` when there is none)."""
        self._extend_chain()
        return self._hashes[-1] if self._hashes else GENESIS

    def hashed(self, seq: int = 0) -> list[Transaction]:
        """The transactions after the ``seq``-th, each carrying its chain hash (what a store
        writes)."""
        from dataclasses import replace

        self._extend_chain()
        return [
            tx if tx.hash == h else replace(tx, hash=h)
            for tx, h in zip(self._journal[seq:], self._hashes[seq:], strict=True)
        ]

    def find(self, idempotency_key: str) -> Transaction | None:
        """The transaction posted under ``idempotency_key``, if any."""
        return self._by_key.get(idempotency_key)

    def posted(self, idempotency_key: str) -> bool:
        """Whether the latest post booked ``idempotency_key`` for the first time (False for
        a redelivered message's key, booked before): what a node acts on only once."""
        return idempotency_key in self._fresh

    def total(self, kind: AccountKind) -> Decimal:
        return sum((self._balance[a.key] for a in self._accounts.values() if a.kind == kind), ZERO)

    def since(self, seq: int) -> list[Transaction]:
        """The transactions after the ``seq``-th (all of them for 0), in order."""
        return self._journal[seq:]

    def restore(self, transactions: Iterable[Transaction]) -> None:
        """Append transactions read back from a store, exactly as they were posted (same
        sequence numbers, keys, times and memos), after those already in the journal.

        Every account they touch must be open. This trusts their content and their hashes,
        as the store checked them when they were written; :meth:`audit` checks both again. Raises
        LedgerError, changing nothing, when a sequence number does not follow, a key is
        already used, a currency differs or an account is unknown.
        """
        txs = list(transactions)
        keys: set[str] = set()
        for offset, tx in enumerate(txs, start=1):
            expected = len(self._journal) + offset
            if tx.seq != expected:
                raise LedgerError(f"restoring #{tx.seq} {tx.idempotency_key!r}: the next sequence number is {expected}")
            if tx.idempotency_key in self._by_key or tx.idempotency_key in keys:
                raise LedgerError(f"restoring #{tx.seq}: key {tx.idempotency_key!r} is already in the journal")
            if tx.currency != self.currency:
                raise LedgerError(f"restoring #{tx.seq}: currency {tx.currency} in a {self.currency} ledger")
            for p in tx.postings:
                if p.account not in self._accounts:
                    raise LedgerError(f"restoring #{tx.seq}: unknown account {p.account!r}; open it first")
            keys.add(tx.idempotency_key)
        self._extend_chain()  # the hashes of what is there before, from its own content
        with money_context():
            for tx in txs:
                for p in tx.postings:
                    self._balance[p.account] += p.amount
                    if p.quantity:
                        self._quantity[p.account] += p.quantity
                self._journal.append(tx)
                self._by_key[tx.idempotency_key] = tx
                self._hashes.append(tx.hash)  # as written: the audit checks it

    # -- posting --------------------------------------------------------------------

    def post(
        self,
        type: TxType,
        postings: Iterable[Posting],
        idempotency_key: str,
        at: datetime | None = None,
        memo: str = "",
    ) -> Transaction:
        """Post one balanced transaction; a key already posted returns the original."""
        return self.post_all([TxDraft(TxType(type), idempotency_key, tuple(postings), at, memo)])[0]

    def post_all(self, drafts: Sequence[TxDraft]) -> list[Transaction]:
        """Post several transactions atomically: all of them, or (on any error) none.

        Drafts whose key is already in the journal are returned as posted before and
        take no part in the overdraft check. Returns one transaction per draft, in order.
        """
        with money_context():
            return self._post_all(drafts)

    def _post_all(self, drafts: Sequence[TxDraft]) -> list[Transaction]:
        self._fresh = frozenset()
        results: list[Transaction | None] = []
        fresh: list[tuple[int, TxDraft, datetime]] = []
        seen_in_batch: dict[str, TxDraft] = {}
        for draft in drafts:
            draft = self._normalized(draft)
            existing = self._by_key.get(draft.idempotency_key)
            if existing is not None:
                self._check_same(existing, draft)
                results.append(existing)
                continue
            if draft.idempotency_key in seen_in_batch:
                raise IdempotencyConflictError(
                    f"idempotency key {draft.idempotency_key!r} appears twice in one batch"
                )
            seen_in_batch[draft.idempotency_key] = draft
            fresh.append((len(results), draft, _utc(draft.at)))
            results.append(None)

        # Overdraft and position checks on the combined effect of the new drafts.
        delta: dict[str, Decimal] = {}
        qdelta: dict[str, Decimal] = {}
        for _, draft, _ in fresh:
            for p in draft.postings:
                delta[p.account] = delta.get(p.account, ZERO) + p.amount
                if p.quantity:
                    qdelta[p.account] = qdelta.get(p.account, ZERO) + p.quantity

        def what() -> str:  # for error messages only
            return "+".join(dict.fromkeys(d.type.value for _, d, _ in fresh)) or "transaction"

        for key, d in delta.items():
            acct = self._accounts[key]
            after = self._balance[key] + d
            if abs(after) >= CAPACITY:
                raise LedgerError(
                    f"{what()} refused: {key} would hold {plain_number(after)} {self.currency}, beyond what the books hold "
                    f"(less than 10**{INTEGER_DIGITS}); use smaller amounts"
                )
            if acct.kind is AccountKind.CASH and after < 0:
                raise InsufficientFundsError(key, self._balance[key], -d, self.currency, what())
            if acct.kind is AccountKind.POSITION and after < 0:
                raise LedgerError(f"{what()} refused: position {key} would have a negative cost ({after})")
        for key in {**delta, **qdelta}:
            acct = self._accounts[key]
            if acct.kind is not AccountKind.POSITION:
                continue
            q_after = self._quantity[key] + qdelta.get(key, ZERO)
            c_after = self._balance[key] + delta.get(key, ZERO)
            if q_after < 0:
                raise LedgerError(
                    f"{what()} refused: {key} holds {self._quantity[key]} units; "
                    f"cannot remove {-qdelta[key]}. Sell at most what is held."
                )
            if q_after == 0 and c_after != 0:
                raise LedgerError(
                    f"{what()} refused: {key} would hold no units but a cost of {c_after}; "
                    "relieve the whole cost when closing a position"
                )

        # Apply.
        for index, draft, at in fresh:
            tx = Transaction(
                seq=len(self._journal) + 1,
                type=draft.type,
                idempotency_key=draft.idempotency_key,
                postings=draft.postings,
                at=at,
                currency=self.currency,
                memo=draft.memo,
            )
            for p in draft.postings:
                self._balance[p.account] += p.amount
                if p.quantity:
                    self._quantity[p.account] += p.quantity
            self._journal.append(tx)
            self._by_key[tx.idempotency_key] = tx
            results[index] = tx
        self._fresh = frozenset(d.idempotency_key for _, d, _ in fresh)
        return results  # type: ignore[return-value]

    def _normalized(self, draft: TxDraft) -> TxDraft:
        """Check a draft's shape and return it with exact Decimal postings."""
        key = draft.idempotency_key
        if not isinstance(key, str) or not key:
            raise LedgerError("every transaction needs a non-empty idempotency key")
        try:
            tx_type = TxType(draft.type)
        except ValueError:
            raise LedgerError(
                f"{key}: unknown transaction type {draft.type!r}; use one of {', '.join(TxType)}"
            ) from None
        if len(draft.postings) < 2:
            raise LedgerError(f"{key}: a transaction needs at least two postings")
        allowed = ALLOWED_KINDS[tx_type]
        total = ZERO
        postings: list[Posting] = []
        unchanged = True
        for p in draft.postings:
            if not isinstance(p, Posting):
                raise LedgerError(f"{key}: postings must be Posting objects, got {type(p).__name__}")
            acct = self._accounts.get(p.account)
            if acct is None:
                raise LedgerError(f"{key}: unknown account {p.account!r}; open it first")
            if acct.kind not in allowed:
                raise LedgerError(
                    f"{key}: a {tx_type.value} transaction may not touch {acct.kind.value} account {p.account}"
                )
            amount, quantity = p.amount, p.quantity
            if type(amount) is not Decimal or not amount.is_finite():
                amount = to_decimal(amount, what=f"{key}: amount for {p.account}")
                unchanged = False
            if abs(amount) >= CAPACITY:
                raise LedgerError(
                    f"{key}: amount {plain_number(amount)} for {p.account} is beyond what the books hold "
                    f"(less than 10**{INTEGER_DIGITS}); use a smaller amount"
                )
            if amount % self._quantum != 0:
                raise LedgerError(
                    f"{key}: amount {amount} for {p.account} has more than {self.scale} decimal places; "
                    "round it explicitly before posting"
                )
            if type(quantity) is not Decimal or not quantity.is_finite():
                quantity = to_decimal(quantity, what=f"{key}: quantity for {p.account}")
                unchanged = False
            if abs(quantity) >= CAPACITY:
                raise LedgerError(
                    f"{key}: quantity {plain_number(quantity)} for {p.account} is beyond what the books hold "
                    f"(less than 10**{INTEGER_DIGITS}); use a smaller quantity"
                )
            if quantity and acct.kind is not AccountKind.POSITION:
                raise LedgerError(f"{key}: only position accounts carry a quantity ({p.account} does not)")
            total += amount
            postings.append(p if unchanged else Posting(p.account, amount, quantity))
        if total != 0:
            raise LedgerError(f"{key}: postings must sum to zero, they sum to {total} {self.currency}")
        if unchanged and type(draft.postings) is tuple and draft.type is tx_type:
            return draft  # already exact: no copy
        return TxDraft(tx_type, key, tuple(postings), draft.at, draft.memo)

    @staticmethod
    def _check_same(existing: Transaction, draft: TxDraft) -> None:
        def legs(postings: Iterable[Posting]) -> list[tuple[str, Decimal, Decimal]]:
            return sorted((p.account, p.amount, p.quantity) for p in postings)

        if existing.type != draft.type or legs(existing.postings) != legs(draft.postings):
            raise IdempotencyConflictError(
                f"idempotency key {draft.idempotency_key!r} was already used by transaction "
                f"#{existing.seq} ({existing.type.value}) with different postings; "
                "a retried message must carry the same content, a new movement needs a new key"
            )

    # -- derived figures ------------------------------------------------------------

    def realized_pnl(self, owner: str | None = None) -> Decimal:
        """Realised profit (positive = gain), for one owner or for everyone."""
        return -sum((self._balance[a.key] for a in self.accounts(owner, AccountKind.REALIZED_PNL)), ZERO)

    def fees(self, owner: str | None = None) -> Decimal:
        return sum((self._balance[a.key] for a in self.accounts(owner, AccountKind.FEES)), ZERO)

    def audit(self) -> AuditReport:
        """Replay the journal from nothing and check every invariant.

        Checks: each transaction balances and touches only the account kinds its type
        allows; idempotency keys are unique and sequence numbers run 1, 2, 3...; no cash
        account or position is negative at any point; the balances kept incrementally
        equal the replayed ones; and cash + positions at cost equals deposits -
        withdrawals + realised P&L - fees (links included on the left), where those four are summed by transaction
        type. ``residual`` is the difference in that last identity. Also checks the hash
        chain (the first link that does not hold is reported, with a count of any others)
        and, when an :attr:`anchor` is set, that the journal still holds the transaction
        recorded there.
        """
        with money_context():
            return self._audit()

    def _chain_problems(self) -> list[str]:
        out: list[str] = []
        broken = 0
        prev = GENESIS
        self._extend_chain()
        for tx, stored in zip(self._journal, self._hashes, strict=True):
            if stored != tx_hash(prev, tx):
                if not broken:
                    out.append(
                        f"#{tx.seq} {tx.type.value} {tx.idempotency_key!r}: does not match its hash; the chain breaks here "
                        "(a transaction was altered, inserted or removed after it was written)"
                    )
                broken += 1
            prev = stored
        if broken > 1:
            out.append(f"{broken - 1} more transaction(s) after it do not match their hash either")
        if self.anchor is not None:
            n, head = self.anchor
            if len(self._journal) < n:
                out.append(
                    f"the journal holds {len(self._journal)} transactions but its owner recorded {n}: "
                    "transactions were removed after they were written"
                )
            elif n and self._hashes[n - 1] != head:
                out.append(f"transaction #{n} is not the one its owner recorded (head hash {head[:12]}...)")
        return out

    def _audit(self) -> AuditReport:
        problems: list[str] = self._chain_problems()
        balance: dict[str, Decimal] = {k: ZERO for k in self._accounts}
        qty: dict[str, Decimal] = {k: ZERO for k in self._accounts}
        keys: set[str] = set()
        deposits = withdrawals = realized = fees = ZERO
        for expected_seq, tx in enumerate(self._journal, start=1):
            label = f"#{tx.seq} {tx.type.value} {tx.idempotency_key!r}"
            if tx.seq != expected_seq:
                problems.append(f"{label}: sequence number should be {expected_seq}")
            if tx.idempotency_key in keys:
                problems.append(f"{label}: idempotency key used twice")
            keys.add(tx.idempotency_key)
            if tx.currency != self.currency:
                problems.append(f"{label}: currency {tx.currency} in a {self.currency} ledger")
            if sum((p.amount for p in tx.postings), ZERO) != 0:
                problems.append(f"{label}: postings do not sum to zero")
            for p in tx.postings:
                acct = self._accounts.get(p.account)
                if acct is None:
                    problems.append(f"{label}: unknown account {p.account}")
                    continue
                if acct.kind not in ALLOWED_KINDS[tx.type]:
                    problems.append(f"{label}: touches {acct.kind.value} account {p.account}")
                balance[p.account] += p.amount
                qty[p.account] += p.quantity
                if acct.kind is AccountKind.EXTERNAL:
                    if tx.type is TxType.DEPOSIT:
                        deposits -= p.amount
                    elif tx.type is TxType.WITHDRAWAL:
                        withdrawals += p.amount
                elif acct.kind is AccountKind.FEES:
                    fees += p.amount
                elif acct.kind is AccountKind.REALIZED_PNL:
                    realized -= p.amount
            for p in tx.postings:
                acct = self._accounts.get(p.account)
                if acct is None:
                    continue
                if acct.kind is AccountKind.CASH and balance[p.account] < 0:
                    problems.append(f"{label}: {p.account} goes negative ({balance[p.account]})")
                if acct.kind is AccountKind.POSITION and (qty[p.account] < 0 or balance[p.account] < 0):
                    problems.append(f"{label}: {p.account} goes negative")
                if acct.kind is AccountKind.POSITION and qty[p.account] == 0 and balance[p.account] != 0:
                    problems.append(f"{label}: {p.account} holds no units but a cost of {balance[p.account]}")
        for key in self._accounts:
            if balance[key] != self._balance[key] or qty[key] != self._quantity[key]:
                problems.append(
                    f"{key}: kept balance {self._balance[key]} (qty {self._quantity[key]}) differs from the "
                    f"journal's {balance[key]} (qty {qty[key]})"
                )
        cash = sum((balance[a.key] for a in self._accounts.values() if a.kind is AccountKind.CASH), ZERO)
        positions = sum(
            (balance[a.key] for a in self._accounts.values() if a.kind is AccountKind.POSITION), ZERO
        )
        links = sum((balance[a.key] for a in self._accounts.values() if a.kind is AccountKind.LINK), ZERO)
        residual = (cash + positions + links) - (deposits - withdrawals + realized - fees)
        if residual != 0:
            problems.append(f"cash + positions at cost (+ links) differs from the flows by {residual} {self.currency}")
        return AuditReport(
            ok=not problems,
            currency=self.currency,
            transactions=len(self._journal),
            deposits=deposits,
            withdrawals=withdrawals,
            realized_pnl=realized,
            fees=fees,
            cash=cash,
            positions_at_cost=positions,
            residual=residual,
            problems=tuple(problems),
            links=links,
        )


__all__ = [
    "ALLOWED_KINDS",
    "GENESIS",
    "chain_hash",
    "chained",
    "tx_hash",
    "EXTERNAL",
    "Account",
    "AccountKind",
    "AuditReport",
    "IdempotencyConflictError",
    "InsufficientFundsError",
    "Ledger",
    "LedgerError",
    "Posting",
    "Transaction",
    "TxDraft",
    "TxType",
]
