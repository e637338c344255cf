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
from cival.store.schema import MIGRATIONS
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
    store.update_run(first, status="interrupted", finished=True)
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
    # seq, type, key, postings (exact Decimals), time, currency, memo, and the chain hash the
    # store computed (each row's from the previous row's): the ledger's own
    assert back == tree.ledger.hashed()
    assert store.transactions(run, "other") == []


def test_writing_a_batch_again_changes_nothing(store):
    tree = books()
    run = store.create_run("r", "local", {})
    store.write_transactions(run, "master", "USD", tree.ledger.journal)
    assert store.write_transactions(run, "master", "USD", tree.ledger.journal) == 0  # a retried write
    assert store.transactions(run, "master") == tree.ledger.hashed()


def test_a_conflicting_batch_is_refused_whole(store):
    run = store.create_run("r", "local", {})
    tree = books()
    store.write_transactions(run, "master", "USD", tree.ledger.journal[:2])
    other = WalletTree("master", "USD")
    other.deposit("5", key="something-else")  # seq 1 again, another key and amount
    other.deposit("7", key="fresh")
    with pytest.raises(StoreError, match=r"transaction #1 \('something-else'\) conflicts"):
        store.write_transactions(run, "master", "USD", other.ledger.journal)
    assert store.transactions(run, "master") == tree.ledger.hashed()[:2]  # nothing of it written


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


# -- the journal's writes ------------------------------------------------------------------


from datetime import UTC, datetime, timedelta  # noqa: E402

from cival.core.events import EventDraft, HaltPayload  # noqa: E402
from cival.store.base import JournalBatch  # noqa: E402

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _event(i: int) -> EventDraft:
    return EventDraft(f"e{i}", "agent:a", T0 + timedelta(minutes=i), HaltPayload(reason=f"r{i}", resume=False))


def _fill_row(run: str, n: int) -> dict:
    return {
        "run_id": run, "id": f"a:X:{n}", "agent": "a", "n": n, "symbol": "X", "side": "buy" if n % 2 else "sell",
        "qty": Decimal("0.12345678"), "price": Decimal("42123.456789012345"), "fee": Decimal("4.2"), "notional": None,
        "reason": "signal", "at": T0, "order_id": f"a:intent:{n}", "bar_ns": 1_714_564_800_000_000_000 + n,
        "units": 12345678.0, "unit_price": 0.00042123456789012345, "exec_notional": 5200.123456789, "exec_fee": 4.2,
        "cash_after": 0.1 + 0.2,  # a float that is not a short decimal: kept exactly
    }


def test_a_commit_writes_everything_once_and_numbers_events_without_gaps(store):
    run = store.create_run("r", "local", {})
    tree = books()
    journal = tree.ledger.journal
    batch = JournalBatch(
        source="agent:a", version=1, state='{"x": NaN}', reply='{"reply": 1}', ledger="agent:a", currency="USD",
        transactions=journal[:4], rows={"fills": [_fill_row(run, 1), _fill_row(run, 2)]}, events=[_event(1), _event(2)],
    )
    result = store.commit(run, batch)
    assert (result.transactions, result.events) == (4, 2)
    # The same commit again (a retry after a lost acknowledgement) writes nothing new.
    again = store.commit(run, batch)
    assert (again.transactions, again.events) == (0, 0)
    more = JournalBatch(source="agent:a", version=2, state='{"x": 2}', ledger="agent:a", transactions=journal,
                        events=[_event(2), _event(3), _event(3), _event(4)])
    assert store.commit(run, more).events == 2  # e2 was stored, e3 is given twice
    events = store.events(run)
    assert [(e.seq, e.id) for e in events] == [(1, "e1"), (2, "e2"), (3, "e3"), (4, "e4")]
    assert events[0].data == {"reason": "r1", "resume": False} and events[0].at == T0 + timedelta(minutes=1)
    assert events[0].source == "agent:a" and events[0].run_id == run
    assert [e.seq for e in store.events(run, after=2, limit=1)] == [3]
    assert store.runs()[0].events == 4
    assert store.transactions(run, "agent:a") == tree.ledger.hashed()
    fills = store.rows("fills", run, where={"agent": "a"}, order="n")
    assert [f["n"] for f in fills] == [1, 2]
    assert fills[0]["price"] == Decimal("42123.456789012345") and fills[0]["notional"] is None
    assert float(fills[0]["cash_after"]) == 0.1 + 0.2 and float(fills[0]["unit_price"]) == 0.00042123456789012345
    assert fills[0]["at"] == T0


def test_node_state_keeps_the_newest_version(store):
    run = store.create_run("r", "local", {})
    assert store.node_state(run, "farm:f") is None
    store.commit(run, JournalBatch(source="farm:f", version=2, state="two", reply='{"r": 2}'))
    store.commit(run, JournalBatch(source="farm:f", version=1, state="one"))  # a late writer of an older state
    record = store.node_state(run, "farm:f")
    assert (record.version, record.state, record.reply) == (2, "two", '{"r": 2}')
    store.commit(run, JournalBatch(source="farm:f", version=3, state="three"))
    assert store.node_state(run, "farm:f").state == "three"
    assert store.node_sources(run) == ["farm:f"]


def test_registry_updates_and_run_meta(store):
    run = store.create_run("r", "local", {"a": 1})
    goal = {"run_id": run, "name": "g", "goal_type": "profit_target", "target": {"profit": "500"}, "on_complete": "none",
            "deadline": None, "status": "active", "progress": Decimal(0), "collected": Decimal(0)}
    store.commit(run, JournalBatch(source="run", version=1, rows={"goals": [goal]}))
    update = {"run_id": run, "name": "g", "status": "completed", "progress": Decimal("100.00"), "collected": Decimal("790.2"),
              "completed_at": T0, "completing_trade": "a:trade:3"}
    store.commit(run, JournalBatch(source="master", version=1, updates={"goals": [update]}))
    (row,) = store.rows("goals", run)
    assert row["status"] == "completed" and row["collected"] == Decimal("790.2") and row["target"] == {"profit": "500"}
    assert row["completed_at"] == T0 and row["deadline"] is None
    store.update_run(run, meta={"bars": 10, "symbol": "X"})
    store.update_run(run, status="finished", meta={"bars": 12}, finished=True)
    record = store.run(run[:-2])  # a unique prefix is enough
    assert record.meta == {"bars": 12, "symbol": "X"} and record.status == "finished" and record.finished_at is not None
    with pytest.raises(StoreError, match="no run 'nope'"):
        store.run("nope")


def test_results_are_saved(store):
    row = {"id": "bt-1", "created_at": T0, "strategy": "darvas", "params": {"lookback": 20}, "data": "x.csv",
           "costs": {"fee_bps": 10}, "metrics": {"sharpe": 1.5}, "trades": 3}
    store.save("backtest_results", [row])
    assert store.rows("backtest_results") == [row]


def test_a_store_behind_the_schema_says_what_to_run(tmp_path):
    s = SqliteStore(tmp_path / "old.sqlite3")
    assert s.runs() == []  # nothing in it: nothing to upgrade, nothing to list
    with pytest.raises(StoreError, match=r"schema is behind .*run `cival db upgrade`"):
        s.check_schema()  # what a session checks before writing (without --no-migrate, it migrates)
    s.migrate()
    s.create_run("r", "local", {})
    s._db.execute("DELETE FROM schema_migrations WHERE version = ?", (MIGRATIONS[-1].version,))
    s._schema_ok = False
    with pytest.raises(StoreError, match=rf"schema is behind \(pending: v{MIGRATIONS[-1].version} .*run `cival db upgrade`"):
        s.runs()
    s.close()


def test_backtest_and_sweep_results_are_saved_on_request(tmp_path, monkeypatch, capsys):
    from cival.cli import main
    from tests.conftest import ROOT

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("CIVAL_DATA_DIR", str(tmp_path))
    data = str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")
    assert main(["backtest", "darvas", "--data", data, "--param", "lookback=30", "--save", "--json"]) == 0
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert "saved as bt-" in out.err
    assert main(["sweep", "darvas", "--data", data, "--grid", "lookback=10,30", "--local", "--save", "--json"]) == 0
    swept = json.loads(capsys.readouterr().out)
    with SqliteStore(tmp_path / "cival.sqlite3") as store:
        (bt,) = store.rows("backtest_results")
        (sw,) = store.rows("sweep_results")
    assert bt["params"] == {"lookback": 30, "confirm": 3} and bt["trades"] == summary["trades"]
    assert bt["metrics"]["final_equity"] == summary["final_equity"] and bt["costs"] == summary["costs"]
    assert sw["grid"] == {"lookback": [10, 30], "confirm": [3]} and sw["combinations"] == 2
    assert sw["best"] == swept["best"] and len(sw["results"]) == 2


def test_a_large_commit_retried_writes_everything_once(store):
    """Large batches take the bulk path (COPY on PostgreSQL); a retry still writes nothing twice."""
    run = store.create_run("r", "local", {})
    tree = WalletTree("master", "USD")
    tree.add_farm("f")
    tree.add_agent("f", "a")
    tree.deposit("1000000", key="dep")
    tree.allocate("farm:f", "900000", key="a1")
    tree.allocate("agent:a", "800000", key="a2")
    for i in range(300):
        tree.buy("a", "X", Decimal("0.5"), Decimal("40000.12345678"), fee=Decimal("2.5"), key=f"b{i}")
        tree.sell("a", "X", Decimal("0.5"), Decimal("40010.87654321"), fee=Decimal("2.51"), key=f"s{i}")
    txs = tree.ledger.journal
    fills = [_fill_row(run, n) for n in range(1, 401)]
    events = [_event(i) for i in range(700)]
    half = JournalBatch(source="agent:a", version=1, state="1", ledger="agent:a", transactions=txs[:500],
                        rows={"fills": fills[:250]}, events=events[:400])
    whole = JournalBatch(source="agent:a", version=2, state="2", ledger="agent:a", transactions=txs,
                         rows={"fills": fills}, events=events)
    assert store.commit(run, half).events == 400
    result = store.commit(run, whole)  # the first half again, and the rest
    assert (result.transactions, result.events) == (len(txs) - 500, 300)
    assert store.transactions(run, "agent:a") == tree.ledger.hashed()
    assert [f["n"] for f in store.rows("fills", run, order="n")] == list(range(1, 401))
    assert [e.id for e in store.events(run)] == [f"e{i}" for i in range(700)]


def test_a_session_migrates_the_store_unless_told_not_to(tmp_path, monkeypatch, capsys):
    from cival.cli import main

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("CIVAL_DATA_DIR", str(tmp_path))
    assert main(["demo", "--bars", "60", "--local", "--quiet", "--no-migrate"]) == 1
    err = capsys.readouterr().err
    assert "schema is behind (pending: v1 runs and ledgers, v2 sessions" in err and "cival db upgrade" in err
    assert main(["demo", "--bars", "60", "--local", "--quiet"]) == 0
    out = capsys.readouterr().out
    run_id = out.split()[1]
    assert out.startswith(f"run {run_id} (sqlite store: {tmp_path / 'cival.sqlite3'})")
    with SqliteStore(tmp_path / "cival.sqlite3") as store:
        assert [m.applied_at is not None for m in store.status()] == [True] * len(MIGRATIONS)
        assert store.run(run_id).status == "finished" and store.run(run_id).meta["bars"] == 60


def test_a_location_of_a_file_opens_that_file_even_with_database_url_set(tmp_path, monkeypatch):
    from cival.store.base import StoreLocation

    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/nowhere")
    path = tmp_path / "runs.sqlite3"
    with StoreLocation(path=str(path)).open() as store:
        assert isinstance(store, SqliteStore) and store.kind == "sqlite"
    assert path.exists()
