"""The store's contract, run against both backends: the embedded SQLite file and a real
PostgreSQL database (a fresh one per module). Exact money, idempotent batches, conflicts
refused whole, migrations recorded."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from cival.core.wallets import WalletTree
from cival.store import StoreError, open_store
from cival.store.postgres import PostgresStore, redact
from cival.store.sqlite import SqliteStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "store.sqlite3")
    else:
        s = PostgresStore(request.getfixturevalue("postgres_url"))
    s.migrate()
    yield s
    s.close()


def books() -> WalletTree:
    """A small but complete ledger: deposit, allocations, a buy and a sale with fees."""
    tree = WalletTree("master", "USD")
    tree.add_farm("trend")
    tree.add_agent("trend", "gator")
    tree.deposit("100000.12345678", key="dep")
    tree.allocate("farm:trend", "60000", key="a1")
    tree.allocate("agent:gator", "50000", key="a2")
    tree.buy("gator", "BTCUSDT", Decimal("0.12345678"), Decimal("42123.45678901"), fee=Decimal("5.2"), key="f1")
    tree.sell("gator", "BTCUSDT", Decimal("0.12345678"), Decimal("43987.65432109"), fee=Decimal("5.43"), key="f2")
    return tree


def test_migrations_are_recorded_and_applied_once(store):
    assert [m.version for m in store.status() if m.applied_at is None] == []
    assert store.migrate() == []  # again: nothing to do
    assert all(m.applied_at is not None for m in store.status())


def test_runs_are_listed_newest_first_with_their_config(store):
    first = store.create_run("demo", "ray", {"deposit": "100000.00", "farms": ["trend"]})
    second = store.create_run("other", "local", {})
    store.finish_run(first, "interrupted")
    runs = store.runs()
    assert [r.id for r in runs] == [second, first]
    assert runs[1].status == "interrupted" and runs[1].finished_at is not None and runs[0].finished_at is None
    assert runs[1].config == {"deposit": "100000.00", "farms": ["trend"]}


def test_a_ledger_is_read_back_exactly_as_written(store):
    tree = books()
    run = store.create_run("r", "local", {})
    journal = tree.ledger.journal
    assert store.write_transactions(run, "master", "USD", journal[:3]) == 3
    assert store.write_transactions(run, "master", "USD", journal[3:]) == len(journal) - 3
    back = store.transactions(run, "master")
    assert back == list(journal)  # seq, type, key, postings (exact Decimals), time, currency, memo
    assert store.transactions(run, "other") == []


def test_writing_a_batch_again_changes_nothing(store):
    tree = books()
    run = store.create_run("r", "local", {})
    store.write_transactions(run, "master", "USD", tree.ledger.journal)
    assert store.write_transactions(run, "master", "USD", tree.ledger.journal) == 0  # a retried write
    assert store.transactions(run, "master") == list(tree.ledger.journal)


def test_a_conflicting_batch_is_refused_whole(store):
    run = store.create_run("r", "local", {})
    tree = books()
    store.write_transactions(run, "master", "USD", tree.ledger.journal[:2])
    other = WalletTree("master", "USD")
    other.deposit("5", key="something-else")  # seq 1 again, another key and amount
    other.deposit("7", key="fresh")
    with pytest.raises(StoreError, match=r"transaction #1 \('something-else'\) conflicts"):
        store.write_transactions(run, "master", "USD", other.ledger.journal)
    assert store.transactions(run, "master") == list(tree.ledger.journal[:2])  # nothing of it written


def test_money_keeps_every_digit(store):
    run = store.create_run("r", "local", {})
    tree = WalletTree("master", "USD", scale=18)
    huge = Decimal("1234567890.123456789012345678")  # 28 significant digits, 18 places
    tree.deposit(huge, key="big")
    tree.withdraw(Decimal("0.000000000000000001"), key="tiny")
    store.write_transactions(run, "master", "USD", tree.ledger.journal)
    back = store.transactions(run, "master")
    assert [p.amount for p in back[0].postings] == [-huge, huge]
    assert back[1].postings[0].amount == Decimal("-0.000000000000000001")


def test_open_store_chooses_by_url(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    s = open_store(path=tmp_path / "x.sqlite3")
    assert s.kind == "sqlite" and (tmp_path / "x.sqlite3").is_file()
    s.close()
    with pytest.raises(StoreError, match=r"cannot reach PostgreSQL at postgresql://u:\*\*\*@127.0.0.1:1/db"):
        open_store("postgresql://u:secret@127.0.0.1:1/db")
    assert redact("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_cival_db_upgrade_and_status(backend, tmp_path, capsys, monkeypatch, request):
    from cival.cli import main

    monkeypatch.delenv("DATABASE_URL", raising=False)
    where = ["--path", str(tmp_path / "db.sqlite3")]
    if backend == "postgres":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("postgres_url"))
        where = []
    assert main(["db", "status", *where]) == 0
    out = capsys.readouterr().out
    if backend == "sqlite":  # a new file (the module's PostgreSQL database may be migrated already)
        assert "v1 runs and ledgers: pending" in out
        assert main(["db", "upgrade", *where]) == 0
        assert "applied v1" in capsys.readouterr().out
    else:
        assert "postgres store" in out and "v1 runs and ledgers:" in out
    assert main(["db", "upgrade", *where]) == 0
    assert "up to date" in capsys.readouterr().out
    assert main(["db", "status", "--json", *where]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["version"] == 1 and rows[0]["applied_at"]
