"""Books that show tampering, and stores that run no code.

A session is stored, then its store is altered the ways someone with write access to the
database would: a fee zeroed (both legs, so the transaction still balances), a deposit
doubled, the last transaction of a ledger deleted, one leg of a transaction changed, a
fill's fee changed. Each must show as a failed audit naming the first broken link, from
``rebuild_report`` and from ``cival report``, never as a traceback. A journaled reply
holding a pickle is refused as corrupt and never unpickled; a store written before the
chain existed is chained by its migration.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from cival.config import config_from_dict
from cival.core.errors import CivalError
from cival.core.ledger import IdempotencyConflictError
from cival.core.wallets import WalletTree
from cival.session import rebuild_report, run_paper
from cival.store import StoreError
from cival.store.sqlite import SqliteStore
from tests.helpers import cival_in_process

SRC = Path(__file__).resolve().parents[1] / "src"


def _config():
    return config_from_dict(
        {
            "name": "integrity",
            "master": {"initial_deposit": "50000"},
            "farms": [
                {"name": "trend", "type": "trend_following", "agents": [{"name": "gator", "strategy": "alligator"}]},
                {
                    "name": "breakout",
                    "type": "breakout",
                    "runtime": {"agents": "inline"},
                    "agents": [{"name": "darvas", "strategy": "darvas", "params": {"lookback": 10}}],
                },
            ],
            "data": {"source": "synthetic", "bars": 1500, "seed": 3},
        }
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A finished session's store file and run id (copied before each alteration)."""
    path = tmp_path_factory.mktemp("books") / "store.sqlite3"
    store = SqliteStore(path)
    store.migrate()
    result = run_paper(_config(), local=True, store=store)
    store.close()
    assert result.audit.ok and result.report["ledger"]["transactions"] > 20
    return path, result.run_id, result.report


def _copy(stored, tmp_path) -> tuple[Path, str]:
    path, run_id, _ = stored
    copy = tmp_path / "store.sqlite3"
    shutil.copy(path, copy)
    return copy, run_id


def _sql(path: Path, *statements: tuple[str, tuple]) -> None:
    db = sqlite3.connect(path)
    with db:
        for sql, args in statements:
            db.execute(sql, args)
    db.close()


def _one(path: Path, sql: str, args: tuple = ()):  # type: ignore[no-untyped-def]
    db = sqlite3.connect(path)
    row = db.execute(sql, args).fetchone()
    db.close()
    return row


def _report(path: Path, run_id: str):  # type: ignore[no-untyped-def]
    with SqliteStore(path) as store:
        return rebuild_report(store, run_id)


def _cli(path: Path, *args: str) -> subprocess.CompletedProcess:
    """``cival ARGS --path PATH`` through ``cival.cli.main`` in this process."""
    return cival_in_process(*args, "--path", str(path), cwd=path.parent)


def _cli_subprocess(path: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m cival ARGS --path PATH``, a real process."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "cival", *args, "--path", str(path)], env=env, capture_output=True, text=True, timeout=300
    )


def test_an_untouched_store_rebuilds_the_report_with_a_clean_audit(stored):
    path, run_id, live = stored
    report, audit = _report(path, run_id)
    assert audit.ok and report["ledger"]["problems"] == []
    assert {k: v for k, v in report.items() if k != "mode"} == {k: v for k, v in live.items() if k != "mode"}
    # Every stored row carries its hash, each chained to the one before.
    assert _one(path, "SELECT count(*) FROM ledger_transactions WHERE hash IS NULL OR length(hash) != 64") == (0,)


def _fee_tx(path: Path, run_id: str) -> tuple[str, int]:
    return _one(path, "SELECT ledger, seq FROM ledger_transactions WHERE run_id = ? AND type = 'fee' ORDER BY seq DESC", (run_id,))


@pytest.mark.parametrize(
    "alteration",
    ["fee zeroed", "deposit doubled", "last transaction deleted", "one leg changed", "transaction inserted"],
)
def test_tampering_that_keeps_the_books_balanced_fails_the_audit(stored, tmp_path, alteration):
    path, run_id = _copy(stored, tmp_path)
    if alteration == "fee zeroed":  # both legs: the transaction still sums to zero
        ledger, seq = _fee_tx(path, run_id)
        _sql(path, ("UPDATE ledger_postings SET amount = '0' WHERE run_id = ? AND ledger = ? AND seq = ?", (run_id, ledger, seq)))
        first = f"#{seq} fee"
    elif alteration == "deposit doubled":
        ledger, seq = "master", 1
        _sql(path, ("UPDATE ledger_postings SET amount = CAST(amount AS REAL) * 2 WHERE run_id = ? AND ledger = 'master' AND seq = 1",
                    (run_id,)))
        first = "#1 deposit"
    elif alteration == "last transaction deleted":
        ledger, seq = _one(path, "SELECT ledger, max(seq) FROM ledger_transactions WHERE run_id = ? AND ledger LIKE 'agent:%'",
                           (run_id,))
        where = "run_id = ? AND ledger = ? AND seq = ?"
        _sql(path, (f"DELETE FROM ledger_postings WHERE {where}", (run_id, ledger, seq)),
             (f"DELETE FROM ledger_transactions WHERE {where}", (run_id, ledger, seq)))
        first = f"holds {seq - 1} transactions but its owner recorded {seq}"
    elif alteration == "one leg changed":
        ledger, seq = _fee_tx(path, run_id)
        _sql(path, ("UPDATE ledger_postings SET amount = '0' WHERE run_id = ? AND ledger = ? AND seq = ? AND leg = 1",
                    (run_id, ledger, seq)))
        first = f"#{seq} fee"
    else:  # a transaction slipped in the middle: every later number moves up by one
        ledger, seq = _fee_tx(path, run_id)
        _sql(path, ("UPDATE ledger_postings SET seq = seq + 1000000 WHERE run_id = ? AND ledger = ? AND seq >= ?", (run_id, ledger, seq)),
             ("UPDATE ledger_transactions SET seq = seq + 1000000 WHERE run_id = ? AND ledger = ? AND seq >= ?", (run_id, ledger, seq)),
             ("UPDATE ledger_postings SET seq = seq - 1000000 + 1 WHERE run_id = ? AND ledger = ? AND seq >= 1000000", (run_id, ledger)),
             ("UPDATE ledger_transactions SET seq = seq - 1000000 + 1 WHERE run_id = ? AND ledger = ? AND seq >= 1000000", (run_id, ledger)),
             ("INSERT INTO ledger_transactions (run_id, ledger, seq, type, idempotency_key, at, memo, currency, hash) "
              "SELECT run_id, ledger, ?, type, idempotency_key || '-again', at, memo, currency, hash FROM ledger_transactions "
              "WHERE run_id = ? AND ledger = ? AND seq = ?", (seq, run_id, ledger, seq + 1)),
             ("INSERT INTO ledger_postings SELECT run_id, ledger, ?, leg, account, amount, quantity FROM ledger_postings "
              "WHERE run_id = ? AND ledger = ? AND seq = ?", (seq, run_id, ledger, seq + 1)))
        first = f"#{seq} fee"
    report, audit = _report(path, run_id)
    assert not audit.ok and report["ledger"]["audit_ok"] is False
    problems = report["ledger"]["problems"]
    assert any(ledger in p and first in p for p in problems), problems
    # The command says so, with the broken link, exits 1, and shows no traceback.
    shown = _cli(path, "report", run_id)
    assert shown.returncode == 1, shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr
    assert "audit FAILED" in shown.stdout and first in shown.stdout, shown.stdout
    as_json = _cli(path, "report", run_id, "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["ledger"]["audit_ok"] is False


def test_a_fill_altered_in_its_own_table_fails_the_audit(stored, tmp_path):
    path, run_id = _copy(stored, tmp_path)
    fill_id, agent = _one(path, "SELECT id, agent FROM fills WHERE run_id = ? ORDER BY n DESC", (run_id,))
    _sql(path, ("UPDATE fills SET fee = '0' WHERE run_id = ? AND id = ?", (run_id, fill_id)))
    report, audit = _report(path, run_id)
    assert not audit.ok and any(fill_id in p and "fills table" in p for p in report["ledger"]["problems"])


@pytest.mark.slow
def test_a_pickle_in_the_journal_is_refused_as_corrupt_and_never_run(stored, tmp_path):
    path, run_id = _copy(stored, tmp_path)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # what a crafted row would do when unpickled
            return (os.system, (f"touch {marker}",))

    blob = pickle.dumps(("key", Payload()))
    source = _one(path, "SELECT source FROM node_states WHERE run_id = ? AND source LIKE 'agent:%'", (run_id,))[0]
    for column, value in (("reply", blob), ("reply_json", blob)):
        copy = tmp_path / f"{column}.sqlite3"
        shutil.copy(path, copy)
        _sql(copy, (f"UPDATE node_states SET {column} = ? WHERE run_id = ? AND source = ?", (value, run_id, source)))
        with pytest.raises(StoreError, match="corrupt|does not read") as caught:
            _report(copy, run_id)
        assert source in str(caught.value)
        shown = _cli_subprocess(copy, "report", run_id)
        assert shown.returncode == 1 and "Traceback" not in shown.stderr and source in shown.stderr, shown.stderr
        assert not marker.exists()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_store_from_before_the_chain_is_chained_by_its_migration(tmp_path, monkeypatch, request, backend):
    import cival.store.postgres as postgres_store
    import cival.store.sqlite as sqlite_store
    from cival.store.schema import MIGRATIONS

    module = sqlite_store if backend == "sqlite" else postgres_store
    monkeypatch.setattr(module, "MIGRATIONS", MIGRATIONS[:2])  # a store of version 2
    if backend == "sqlite":
        store = SqliteStore(tmp_path / "old.sqlite3")
    else:
        store = postgres_store.PostgresStore(request.getfixturevalue("postgres_url"))
    store.migrate()
    run = store.create_run("old", "local", {})
    tree = WalletTree("master", "USD")
    tree.add_farm("f")
    tree.deposit("1000", key="d1")
    tree.allocate("farm:f", "400", key="a1")
    # Version 2 wrote no hash and kept replies as pickles.
    statements = []
    for tx in tree.ledger.journal:
        statements.append(("INSERT INTO ledger_transactions (run_id, ledger, seq, type, idempotency_key, at, memo, currency) "
                           "VALUES ({}, 'master', {}, {}, {}, {}, {}, 'USD')", (run, tx.seq, tx.type.value, tx.idempotency_key, tx.at, tx.memo)))
        for leg, p in enumerate(tx.postings):
            statements.append(("INSERT INTO ledger_postings VALUES ({}, 'master', {}, {}, {}, {}, {})",
                               (run, tx.seq, leg, p.account, p.amount, p.quantity)))
    statements.append(("INSERT INTO node_states (run_id, source, version, state, reply, updated_at) VALUES ({}, 'master', 1, '{{}}', {}, {})",
                       (run, pickle.dumps("old reply"), tree.ledger.journal[0].at)))
    if backend == "sqlite":
        for sql, args in statements:
            store._db.execute(sql.format(*["?"] * len(args)), [a.isoformat() if hasattr(a, "isoformat") else str(a) if isinstance(a, Decimal) else a
                                                               for a in args])
    else:
        async def write(con):  # type: ignore[no-untyped-def]
            for sql, args in statements:
                await con.execute(sql.format(*[f"${i}" for i in range(1, len(args) + 1)]), *args)

        store._call(write)
    monkeypatch.setattr(module, "MIGRATIONS", MIGRATIONS)
    assert store.migrate() == [m.version for m in MIGRATIONS if m.version >= 3]
    back = store.transactions(run, "master")
    assert back == tree.ledger.hashed()  # every row hashed, chained as the ledger chains them
    restored = WalletTree("master", "USD")
    restored.add_farm("f")
    restored.ledger.restore(back)
    assert restored.ledger.audit().ok
    assert store.node_state(run, "master").reply is None  # the pickle is gone, never read
    store.close()


# -- the books themselves ---------------------------------------------------------------


def _tree() -> WalletTree:
    tree = WalletTree("master", "USD")
    tree.add_farm("f")
    tree.add_agent("f", "a")
    tree.deposit("10000", key="dep")
    tree.allocate("farm:f", "10000", key="a1")
    tree.allocate("agent:a", "10000", key="a2")
    return tree


@pytest.mark.parametrize(
    "change", [{"price": Decimal("42001")}, {"fee": Decimal("0")}, {"fee": Decimal("4.3")}, {"quantity": Decimal("0.2")}]
)
@pytest.mark.parametrize("side", ["buy", "sell"])
def test_a_fill_replayed_with_different_content_is_refused(side, change):
    tree = _tree()
    args = {"quantity": Decimal("0.1"), "price": Decimal("42000"), "fee": Decimal("4.2")}
    tree.buy("a", "BTC", key="f1", **args)
    if side == "sell":
        tree.buy("a", "BTC", key="f0", **args)
        tree.sell("a", "BTC", key="f2", **args)
    key = "f1" if side == "buy" else "f2"
    book = tree.buy if side == "buy" else tree.sell
    before = len(tree.ledger)
    assert book("a", "BTC", key=key, **args).trade.seq <= before  # the same fill again: the original, nothing booked
    with pytest.raises(IdempotencyConflictError, match=f"fill key '{key}' was already booked as a different fill"):
        book("a", "BTC", key=key, **{**args, **change})
    assert len(tree.ledger) == before and tree.ledger.audit().ok


def test_the_books_refuse_amounts_beyond_their_capacity_and_lose_no_digit_within_it():
    tree = WalletTree("master", "USD")
    for amount in ("1e20", "6e19", "1000000000000000"):
        with pytest.raises(CivalError, match="beyond what the books hold"):
            tree.deposit(amount, key=f"too-much-{amount}")
    tree.deposit("600000000000000", key="d1")
    with pytest.raises(CivalError, match="beyond what the books hold"):
        tree.deposit("600000000000000", key="d2")  # the balance would pass the capacity
    assert len(tree.ledger) == 1
    # 33 significant digits: beyond Python's default 28, within the books' context.
    fine = WalletTree("master", "USD", scale=18)
    fine.deposit("123456789012345.123456789012345678", key="d1")
    fine.deposit("0.000000000000000001", key="d2")
    assert fine.cash("master").amount == Decimal("123456789012345.123456789012345679")
    audit = fine.ledger.audit()
    assert audit.ok and audit.deposits == Decimal("123456789012345.123456789012345679")


def test_journaled_replies_are_json_that_reads_back_to_the_same_reply(tmp_path):
    from dataclasses import fields

    import numpy as np

    from cival.actors.journal import decode_batch_reply, encode_batch_reply
    from cival.actors.nodes import cluster_spec
    from cival.runtime import LocalCluster
    from cival.session import replay_batches, session_bars

    config = _config()
    store = SqliteStore(tmp_path / "s.sqlite3")
    store.migrate()
    run = store.create_run("r", "local", {})
    cluster = LocalCluster(cluster_spec(config), store, run)
    cluster.fund()
    batch = next(replay_batches(session_bars(config), batch_size=800))
    cluster.submit(batch)
    assert {"farm:trend", "farm:breakout", "agent:gator"} <= set(cluster.replies)
    for ref, reply in cluster.replies.items():
        text = encode_batch_reply(reply)
        back = decode_batch_reply(json.loads(text))
        assert back[0] == reply[0]
        for f in fields(reply[1]):
            ours, theirs = getattr(back[1], f.name), getattr(reply[1], f.name)
            if isinstance(theirs, np.ndarray):
                assert np.array_equal(ours, theirs, equal_nan=True) and ours.dtype == theirs.dtype, (ref, f.name)
            else:
                assert ours == theirs or (ours != ours and theirs != theirs), (ref, f.name)
        # What was journaled is that JSON, and the node rebuilt from the store answers with it.
        assert json.loads(store.node_state(run, ref).reply) == json.loads(text)
    for bad in ('{"batch": [1, 2, 3], "update": {"kind": "agent"}}', '{"batch": "x"}', "[1]"):
        with pytest.raises(StoreError, match="unexpected shape"):
            decode_batch_reply(json.loads(bad))
    store.close()
