"""The store: where runs and their books are kept, behind one interface.

Two backends implement :class:`Store`: PostgreSQL through asyncpg
(:class:`cival.store.postgres.PostgresStore`, money in ``NUMERIC``, times in
``timestamptz``) and an embedded SQLite file (:class:`cival.store.sqlite.SqliteStore`,
the default when no URL is set, money as exact decimal text). The same contract tests
run against both.

Ledger transactions are written in batches and are idempotent: writing a transaction
that is already stored (same ledger, sequence number and idempotency key) changes
nothing, and one that conflicts with what is stored (same sequence number or key,
different content) raises :class:`StoreError` without writing any of the batch. Each row
carries its chain hash (:func:`cival.core.ledger.chain_hash`): the writer's, or one the
store computes from the previous row's.

Nothing read from a store is ever executed: every value is data (JSON text, numbers,
text). A node's journaled reply is JSON; a binary payload where older versions kept one
is refused as corrupt.

Schema versions are applied in order by :meth:`Store.migrate` and recorded in
``schema_migrations``; :meth:`Store.status` says which are applied and which pending.

A store opened to read (``StoreLocation.open(read_only=True)``, what ``cival runs``,
``report``, ``watch`` and ``db status`` use) creates and changes nothing: a file that is
not there is :class:`NoStore`, not a new file; a database with no schema yet, or with an
older one and nothing in it, reads as empty (:meth:`Store.readable`); only an older schema
holding runs or results asks for ``cival db upgrade``.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cival.core.errors import CivalError
from cival.core.events import (
    BY_REFERENCE,
    REFERENCES,
    EventDraft,
    StoredEvent,
    fill_event_data,
    order_event_data,
    tx_event_data,
)
from cival.core.ledger import Posting, Transaction, TxType


class StoreError(CivalError):
    """The store refused an operation or could not be reached."""


class NoStore(StoreError):
    """A store opened to read is not there: no file at its path (nothing has run there)."""


DATA_TABLES = ("runs", "backtest_results", "sweep_results")
"""The tables whose rows a user keeps: a store with none in them holds nothing to upgrade."""


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None
    """None: pending."""


@dataclass(frozen=True)
class RunRecord:
    id: str
    name: str
    mode: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)
    """What the run recorded about itself (its symbol, data, bars, first and last bar...)."""
    events: int = 0
    """Events stored for the run (the last sequence number)."""
    driver: str | None = None
    """Who drives the run (``host:pid:token``), while it holds the lease; None: nobody."""
    heartbeat_at: datetime | None = None
    """When the driver last renewed its lease."""


@dataclass(frozen=True)
class NodeState:
    """A node's latest journaled state."""

    source: str
    version: int
    state: str
    """JSON (floats exact, NaN allowed)."""
    reply: str | None
    """JSON, or None."""


@dataclass(frozen=True)
class CommitResult:
    transactions: int
    """Ledger transactions new to the store."""
    events: int
    """Events new to the store."""


@dataclass
class JournalBatch:
    """One node's commit, written in one database transaction: its new ledger
    transactions, rows for the session's tables, updates of the registry, its events and
    its state. Everything is idempotent: a batch written again (a retry after a lost
    acknowledgement) writes nothing twice, and events already stored keep their numbers.

    ``rows``: table -> rows to insert (a row whose key is stored already is left as it
    is); ``updates``: table -> rows that change the registry (by key). Row values are
    Python values: Decimal for money, aware datetimes, dicts and lists for JSON.
    """

    source: str
    version: int
    state: str | None = None
    reply: str | None = None
    """The reply to the call being handled, as JSON text."""
    ledger: str | None = None
    currency: str = "USD"
    transactions: Sequence[Transaction] = ()
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    updates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events: Sequence[EventDraft] = ()


def new_run_id() -> str:
    """A run id: UTC start time and a random suffix, so ids sort by time."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


class Store(ABC):
    """Runs and their ledgers (see the module docstring)."""

    kind: str = ""
    read_only: bool = False
    """Opened to read: it creates and changes nothing (see the module docstring)."""

    @property
    @abstractmethod
    def location(self) -> StoreLocation:
        """Where this store is (for other processes to open it)."""

    @abstractmethod
    def migrate(self) -> list[int]:
        """Apply the pending schema versions; returns those applied now."""

    @abstractmethod
    def status(self) -> list[MigrationStatus]:
        """Every schema version, applied (with its time) or pending."""

    def check_schema(self) -> None:
        """StoreError, saying what to run, when schema versions are pending."""
        if getattr(self, "_schema_ok", False):
            return
        pending = [m for m in self.status() if m.applied_at is None]
        if pending:
            raise StoreError(
                f"the {self.kind} store's schema is behind (pending: {', '.join(f'v{m.version} {m.name}' for m in pending)}); "
                "run `cival db upgrade`"
            )
        self._schema_ok = True

    def readable(self) -> bool:
        """Whether there is anything to read: True when the schema is this code's; False
        when the store is empty (no schema yet, or an older one with nothing in
        :data:`DATA_TABLES`: nothing to upgrade, nothing to list). A StoreError saying to
        run ``cival db upgrade`` when the schema is older and runs or results are stored."""
        if getattr(self, "_schema_ok", False):
            return True
        if all(m.applied_at is not None for m in self.status()):
            self._schema_ok = True
            return True
        if not self.holds_data():
            return False
        self.check_schema()  # raises, naming the pending versions
        return True

    @abstractmethod
    def holds_data(self) -> bool:
        """Whether any of :data:`DATA_TABLES` that exist has a row (whatever the schema)."""

    @abstractmethod
    def create_run(self, name: str, mode: str, config: dict[str, Any], run_id: str | None = None) -> str:
        """Record a new run; returns its id."""

    @abstractmethod
    def runs(self) -> list[RunRecord]:
        """Every run, newest first; none in an empty store (see :meth:`readable`)."""

    @abstractmethod
    def write_transactions(self, run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> int:
        """Write a batch of one ledger's transactions; returns how many were new."""

    @abstractmethod
    def transactions(self, run_id: str, ledger: str) -> list[Transaction]:
        """One ledger's transactions, in sequence order, exactly as written."""

    @abstractmethod
    def commit(self, run_id: str, batch: JournalBatch) -> CommitResult:
        """Write one node's commit (see :class:`JournalBatch`) in one database transaction."""

    @abstractmethod
    def node_state(self, run_id: str, source: str) -> NodeState | None:
        """A node's latest journaled state, or None if it never committed."""

    @abstractmethod
    def node_sources(self, run_id: str) -> list[str]:
        """Every node that journaled state in the run."""

    @abstractmethod
    def events(self, run_id: str, after: int = 0, limit: int | None = None) -> list[StoredEvent]:
        """The run's events with a sequence number above ``after``, in order, each with its
        data written out in full (those stored by reference are expanded)."""

    @abstractmethod
    def transactions_at(self, run_id: str, ledger: str, seqs: Sequence[int]) -> list[Transaction]:
        """Some of one ledger's transactions, by sequence number."""

    def expand(self, run_id: str, events: list[StoredEvent]) -> list[StoredEvent]:
        """``events`` with the data of those stored by reference (see
        :data:`cival.core.events.BY_REFERENCE`) read from the rows they refer to. A
        reference to a row that is not stored is refused as corrupt."""
        from dataclasses import replace

        seqs: dict[str, set[int]] = {}
        ids: dict[str, set[str]] = {"fills": set(), "orders": set()}
        for e in events:
            if not _by_reference(e):
                continue
            if e.type == "wallet_transaction":
                seqs.setdefault(str(e.data["ledger"]), set()).add(int(e.data["tx_seq"]))
            else:
                ids[_TABLE[e.type]].add(str(e.data[BY_REFERENCE[e.type]]))
        if not seqs and not any(ids.values()):
            return events
        txs = {(ledger, tx.seq): tx for ledger, wanted in seqs.items() for tx in self.transactions_at(run_id, ledger, sorted(wanted))}
        rows: dict[str, dict[str, dict[str, Any]]] = {table: {} for table in ids}
        for table, wanted in ids.items():
            keys = sorted(wanted)
            for i in range(0, len(keys), 500):
                rows[table].update((r["id"], r) for r in self.rows(table, run_id, where={"id": keys[i : i + 500]}))
        out = []
        for e in events:
            if _by_reference(e):
                if e.type == "wallet_transaction":
                    tx = txs.get((str(e.data["ledger"]), int(e.data["tx_seq"])))
                    data = None if tx is None else tx_event_data(str(e.data["ledger"]), tx)
                else:
                    row = rows[_TABLE[e.type]].get(str(e.data[BY_REFERENCE[e.type]]))
                    data = None if row is None else (fill_event_data(row) if e.type == "order_filled" else order_event_data(row))
                if data is None:
                    raise StoreError(f"run {run_id}: event #{e.seq} ({e.type}) refers to a row that is not stored; the store is corrupt")
                e = replace(e, data=data)
            out.append(e)
        return out

    @abstractmethod
    def rows(
        self, table: str, run_id: str | None = None, where: dict[str, Any] | None = None, order: str | None = None,
        columns: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of a session table (see :data:`cival.store.schema.COLUMNS`), values as
        written (Decimal money, aware datetimes, parsed JSON); ``columns``: only these."""

    @abstractmethod
    def update_row(self, table: str, row: dict[str, Any]) -> bool:
        """Set the columns ``row`` gives of the row with its key (outside a run's journal:
        accounts); whether a row was changed."""

    @abstractmethod
    def delete_row(self, table: str, key: dict[str, Any]) -> bool:
        """Delete the row with this key (accounts); whether there was one."""

    @abstractmethod
    def save(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows outside a run's journal (backtest and sweep results)."""

    @abstractmethod
    def update_run(self, run_id: str, status: str | None = None, meta: dict[str, Any] | None = None, finished: bool = False) -> None:
        """Change a run's status and merge ``meta`` into what it recorded."""

    @abstractmethod
    def claim_run(self, run_id: str, driver: str, expected: str | None) -> bool:
        """Make ``driver`` the run's driver if its driver is still ``expected`` (None: no
        driver), renewing the heartbeat; False if another claim came first. Atomic: of
        two processes claiming the same run from the same ``expected``, one wins."""

    @abstractmethod
    def beat(self, run_id: str, driver: str) -> bool:
        """Renew ``driver``'s lease on the run; False if it no longer holds it."""

    @abstractmethod
    def release_run(self, run_id: str, driver: str) -> None:
        """Give up ``driver``'s lease (nothing if it no longer holds it)."""

    def run(self, run_id: str) -> RunRecord:
        """One run by id (a unique prefix is enough); StoreError naming what to do if unknown."""
        runs = self.runs()
        exact = [r for r in runs if r.id == run_id]
        found = exact or [r for r in runs if r.id.startswith(run_id)]
        if len(found) == 1:
            return found[0]
        if not found:
            raise StoreError(f"no run {run_id!r} in the {self.kind} store; `cival runs` lists them")
        raise StoreError(f"{run_id!r} matches {len(found)} runs ({', '.join(r.id for r in found[:5])}); give more of the id")

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def with_hashes(prev: str, txs: Sequence[Transaction]) -> list[Transaction]:
    """``txs`` (consecutive, after the transaction whose hash is ``prev``) each carrying its
    chain hash: the one it has, or one computed here."""
    from dataclasses import replace

    from cival.core.ledger import tx_hash

    out = []
    for tx in txs:
        if not tx.hash:
            tx = replace(tx, hash=tx_hash(prev, tx))
        out.append(tx)
        prev = tx.hash
    return out


_TABLE = {"order_filled": "fills", "order_submitted": "orders"}


def _by_reference(e: StoredEvent) -> bool:
    """Whether ``e`` is stored by reference (its data is only the reference), rather than
    written out in full as events of these types were before."""
    ref = REFERENCES.get(e.type)
    return ref is not None and e.data.keys() == ref.model_fields.keys()


def tx_rows(run_id: str, ledger: str, currency: str, txs: Sequence[Transaction]) -> tuple[list[tuple], list[tuple]]:
    """Rows for ``ledger_transactions`` and ``ledger_postings`` (amounts as Decimals);
    every transaction must carry its hash (:func:`with_hashes`)."""
    head = [(run_id, ledger, tx.seq, tx.type.value, tx.idempotency_key, tx.at, tx.memo, currency, tx.hash) for tx in txs]
    legs = [
        (run_id, ledger, tx.seq, i, p.account, p.amount, p.quantity)
        for tx in txs
        for i, p in enumerate(tx.postings)
    ]
    return head, legs


def rebuild(heads: Sequence[Any], legs: Sequence[Any]) -> list[Transaction]:
    """Transactions from rows (head: seq, type, key, at, memo, currency, hash; legs: seq,
    account, amount, quantity)."""
    by_seq: dict[int, list[Posting]] = {}
    for seq, account, amount, quantity in legs:
        by_seq.setdefault(int(seq), []).append(Posting(account, amount, quantity))
    return [
        Transaction(int(seq), TxType(type_), key, tuple(by_seq.get(int(seq), ())), at, currency, memo, hash_ or "")
        for seq, type_, key, at, memo, currency, hash_ in heads
    ]


def decode_reply(run_id: str, source: str, text: str | None, legacy: Any = None) -> Any:
    """A journaled reply read back: parsed JSON (None if there is none). A binary payload in
    the legacy column, or text that is not JSON, is refused as corrupt: nothing read from a
    store is executed."""
    import json

    where = f"run {run_id}, node {source}"
    if legacy is not None:
        raise StoreError(
            f"{where}: the journal holds a binary reply, which Cival does not read (binary payloads could run code); "
            "the store was altered or written by an older version. Run `cival db upgrade` on a store you trust, "
            "or discard this run"
        )
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise StoreError(f"{where}: the journaled reply is not JSON; the store is corrupt or was altered") from None


def check_batch(existing: dict[int, Transaction], txs: Sequence[Transaction], ledger: str) -> list[Transaction]:
    """The transactions of ``txs`` not stored yet; StoreError if one conflicts with what is."""
    fresh = []
    by_key = {t.idempotency_key: t for t in existing.values()}
    for tx in txs:
        stored = existing.get(tx.seq) or by_key.get(tx.idempotency_key)
        if stored is None:
            fresh.append(tx)
            continue
        same = (
            stored.seq == tx.seq
            and stored.idempotency_key == tx.idempotency_key
            and stored.type == tx.type
            and [(p.account, p.amount, p.quantity) for p in stored.postings]
            == [(p.account, p.amount, p.quantity) for p in tx.postings]
        )
        if not same:
            raise StoreError(
                f"ledger {ledger}: transaction #{tx.seq} ({tx.idempotency_key!r}) conflicts with the stored "
                f"#{stored.seq} ({stored.idempotency_key!r}); nothing of this batch was written"
            )
    return fresh


def data_dir() -> Path:
    """Where Cival keeps its embedded store: ``CIVAL_DATA_DIR``, else ``cival`` in the
    user's data directory (``XDG_DATA_HOME`` or ``~/.local/share``)."""
    configured = os.environ.get("CIVAL_DATA_DIR")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "cival"


@dataclass(frozen=True)
class StoreLocation:
    """Where a store is, picklable: each actor process opens its own connection to it."""

    url: str | None = None
    path: str | None = None

    @property
    def kind(self) -> str:
        return "postgres" if self.url else "sqlite"

    def open(self, wait: bool = False, read_only: bool = False) -> Store:
        """Open the store; ``wait``: retry while a PostgreSQL server is unreachable (see
        :class:`~cival.store.postgres.PostgresStore`); ``read_only``: to read, creating
        and changing nothing (:class:`NoStore` if the file is not there)."""
        opener = BACKENDS.get(self.kind)
        if opener is None:  # the backends register themselves when cival.store is imported
            raise StoreError(f"no {self.kind} backend is loaded")
        return opener(self, wait, read_only)

    def __str__(self) -> str:
        if self.url:
            from cival.core.urls import redact

            return redact(self.url)
        return str(self.path)

    def __repr__(self) -> str:
        # A repr lands in logs and error reports: never with the URL's password.
        return f"StoreLocation(url={str(self) if self.url else None!r}, path={self.path!r})"


def locate(url: str | None = None, path: str | os.PathLike[str] | None = None) -> StoreLocation:
    """PostgreSQL when ``url`` (or ``DATABASE_URL``) is set, else the SQLite file at ``path``
    (default: ``cival.sqlite3`` in :func:`data_dir`)."""
    url = url or os.environ.get("DATABASE_URL") or None
    if url:
        return StoreLocation(url=url)
    return StoreLocation(path=str(Path(path) if path is not None else data_dir() / "cival.sqlite3"))


def open_store(url: str | None = None, path: str | os.PathLike[str] | None = None, read_only: bool = False) -> Store:
    """PostgreSQL when ``url`` (or ``DATABASE_URL``) is set, else SQLite at ``path``
    (default: ``cival.sqlite3`` in :func:`data_dir`); ``read_only``: see :meth:`StoreLocation.open`."""
    return locate(url, path).open(read_only=read_only)


BACKENDS: dict[str, Callable[[StoreLocation, bool, bool], Store]] = {}
"""Store kind (``postgres``, ``sqlite``) -> how to open a location of it. Each backend
module registers itself (:func:`register_backend`); ``cival.store`` imports them all."""


def register_backend(kind: str, opener: Callable[[StoreLocation, bool, bool], Store]) -> None:
    """Make ``opener(location, wait, read_only)`` the way locations of ``kind`` are opened."""
    BACKENDS[kind] = opener


__all__ = [
    "BACKENDS",
    "CommitResult",
    "DATA_TABLES",
    "JournalBatch",
    "MigrationStatus",
    "NoStore",
    "NodeState",
    "RunRecord",
    "Store",
    "StoreError",
    "StoreLocation",
    "check_batch",
    "data_dir",
    "decode_reply",
    "locate",
    "new_run_id",
    "open_store",
    "rebuild",
    "register_backend",
    "tx_rows",
    "with_hashes",
]
