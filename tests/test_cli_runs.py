"""What the reading commands (``cival runs``, ``report``, ``watch``, ``db status``) see, on
both stores: a store that is not there, a fresh one, one behind the schema; and the
backtests and sweeps kept by ``--save``, listed and shown again. Reading creates and
changes nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cival.cli import SUMMARY_ROWS
from cival.store.schema import MIGRATIONS
from cival.store.sqlite import SqliteStore
from tests.conftest import ROOT
from tests.helpers import cival_in_process

DATA = str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")


@pytest.fixture(autouse=True)
def _no_database_url(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)


def _pg(url: str, sql: str, *args):
    import asyncpg

    async def go():
        con = await asyncpg.connect(url, timeout=5)
        try:
            return await con.fetch(sql, *args)
        finally:
            await con.close()

    return asyncio.run(go())


def _pg_relations(url: str) -> list[str]:
    """Every table, view, index or sequence in the database's own schemas."""
    rows = _pg(
        url,
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
    )
    return sorted(r["relname"] for r in rows)


def _sqlite_tables(path: Path) -> list[str]:
    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master"))


def _where(backend: str, tmp_path: Path, request) -> list[str]:
    if backend == "postgres":
        return ["--url", request.getfixturevalue("fresh_postgres_url")]
    return ["--path", str(tmp_path / "store.sqlite3")]


def _writer(where: list[str]):
    """The store of ``where`` (``--path FILE`` or ``--url URL``), opened to write."""
    from cival.store.postgres import PostgresStore

    return SqliteStore(where[1]) if where[0] == "--path" else PostgresStore(where[1])


def test_reading_a_missing_file_creates_nothing(tmp_path):
    missing = tmp_path / "not" / "here.sqlite3"
    where = ["--path", str(missing)]
    says = f"no store at {missing} (nothing has run there yet"

    done = cival_in_process("runs", *where, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(says), done
    done = cival_in_process("runs", "--json", *where, cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout) == [] and says in done.stderr, done
    for command in (["report", "20240101"], ["report", "bt-1"], ["watch", "--no-follow"]):
        done = cival_in_process(*command, *where, cwd=tmp_path)
        assert done.returncode == 1 and done.stderr.startswith(f"error: {says}"), (command, done)
    done = cival_in_process("db", "status", *where, cwd=tmp_path)
    assert done.returncode == 0 and says in done.stdout and "v1 runs and ledgers: pending" in done.stdout, done
    done = cival_in_process("db", "status", "--json", *where, cwd=tmp_path)
    assert [m["applied_at"] for m in json.loads(done.stdout)] == [None] * len(MIGRATIONS)
    assert list(tmp_path.iterdir()) == []  # not the file, not its folder


def test_a_folder_given_as_the_store_is_named(tmp_path):
    done = cival_in_process("runs", "--path", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 1 and f"{tmp_path} is a folder: give the store's file" in done.stderr, done


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_reading_a_fresh_store_says_it_is_empty_and_changes_nothing(backend, tmp_path, request):
    where = _where(backend, tmp_path, request)
    if backend == "sqlite":
        Path(where[1]).touch()  # an empty file: a database with nothing in it

    done = cival_in_process("runs", *where, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"no runs yet in the {backend} store"), done
    assert "schema" not in done.stdout + done.stderr
    done = cival_in_process("runs", "--kind", "backtest", *where, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith(f"no saved backtests yet in the {backend} store"), done
    done = cival_in_process("runs", "--json", *where, cwd=tmp_path)
    assert done.returncode == 0 and json.loads(done.stdout) == [], done
    done = cival_in_process("report", "20240101", *where, cwd=tmp_path)
    assert done.returncode == 1 and "no run '20240101'" in done.stderr, done
    done = cival_in_process("report", "sw-1", *where, cwd=tmp_path)
    assert done.returncode == 1 and "no saved sweep 'sw-1'" in done.stderr, done
    done = cival_in_process("watch", "--no-follow", *where, cwd=tmp_path)
    assert done.returncode == 1 and f"no runs in the {backend} store" in done.stderr, done
    done = cival_in_process("db", "status", "--json", *where, cwd=tmp_path)
    assert done.returncode == 0 and [m["applied_at"] for m in json.loads(done.stdout)] == [None] * len(MIGRATIONS)

    if backend == "sqlite":
        assert Path(where[1]).stat().st_size == 0
        assert sorted(p.name for p in tmp_path.iterdir()) == ["store.sqlite3"]  # no log, no reserve
    else:
        assert _pg_relations(where[1]) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_older_schema_asks_for_an_upgrade_only_when_it_holds_something(backend, tmp_path, request):
    where = _where(backend, tmp_path, request)
    older = MIGRATIONS[-1]
    cival_in_process("db", "upgrade", *where, cwd=tmp_path)

    def behind() -> None:  # the last version not applied: a store from before it
        if backend == "sqlite":
            with closing(sqlite3.connect(where[1])) as db, db:
                db.execute("DELETE FROM schema_migrations WHERE version = ?", (older.version,))
        else:
            _pg(where[1], "DELETE FROM schema_migrations WHERE version = $1", older.version)

    behind()
    done = cival_in_process("runs", *where, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("no runs yet"), done  # nothing in it to upgrade

    row = {"id": "bt-1", "created_at": datetime(2024, 5, 1, tzinfo=UTC), "strategy": "darvas", "params": {"lookback": 20},
           "data": "x.csv", "costs": {"fee_bps": 10}, "metrics": {"sharpe": 1.5}, "trades": 3}
    with _writer(where) as store:  # kept by a version from before the last schema version
        store.save("backtest_results", [row])
    for command in (["runs"], ["runs", "--kind", "sweep"], ["report", "bt"], ["watch", "--no-follow"]):
        done = cival_in_process(*command, *where, cwd=tmp_path)
        assert done.returncode == 1, (command, done)
        assert f"schema is behind (pending: v{older.version} {older.name}); run `cival db upgrade`" in done.stderr, (command, done)
    if backend == "sqlite":  # still behind: reading applied nothing
        with closing(sqlite3.connect(where[1])) as db:
            assert older.version not in {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
    else:
        assert not _pg(where[1], "SELECT 1 FROM schema_migrations WHERE version = $1", older.version)


def _table(out: str, first: str) -> list[str]:
    """The lines of ``out`` from the one starting with ``first`` to the next blank line."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_saved_backtests_and_sweeps_are_listed_and_shown_again(backend, tmp_path, request):
    where = _where(backend, tmp_path, request)
    args = ["darvas", "--data", DATA, "--param", "lookback=30", "--fee-bps", "7"]
    printed = cival_in_process("backtest", *args, "--save", *where, cwd=tmp_path)
    assert printed.returncode == 0, printed
    bt = printed.stdout.split("saved as ")[1].split()[0]
    assert bt.startswith("bt-") and f"`cival report {bt} {' '.join(where)}` shows it again" in printed.stdout
    as_json = json.loads(cival_in_process("backtest", *args, "--json", cwd=tmp_path).stdout)
    swept = cival_in_process("sweep", "darvas", "--data", DATA, "--grid", "lookback=10,30", "--local", "--save", *where, cwd=tmp_path)
    assert swept.returncode == 0, swept
    sw = swept.stdout.split("saved as ")[1].split()[0]
    assert sw.startswith("sw-")
    with _writer(where) as store:
        paper = store.create_run("demo", "local", {})  # a paper run's record, beside them

    listed = json.loads(cival_in_process("runs", "--json", *where, cwd=tmp_path).stdout)
    assert [(r["kind"], r["id"]) for r in listed] == [("paper", paper), ("sweep", sw), ("backtest", bt)]
    (b,) = [r for r in listed if r["kind"] == "backtest"]
    assert (b["name"], b["trades"], b["bars"], b["total_return"]) == ("darvas", as_json["trades"], as_json["bars"], as_json["total_return"])
    (s,) = [r for r in listed if r["kind"] == "sweep"]
    assert s["combinations"] == 2 and s["metric"] == "sharpe" and s["grid"] == {"lookback": [10, 30], "confirm": [3]}
    for kind, wanted in (("backtest", [bt]), ("sweep", [sw]), ("paper", [paper])):
        only = json.loads(cival_in_process("runs", "--json", "--kind", kind, *where, cwd=tmp_path).stdout)
        assert [r["id"] for r in only] == wanted
    table = cival_in_process("runs", *where, cwd=tmp_path).stdout.splitlines()
    assert table[0].split()[:3] == ["kind", "id", "name"]
    assert [line.split()[:2] for line in table[1:]] == [["paper", paper], ["sweep", sw], ["backtest", bt]]
    assert f"{as_json['trades']} trades" in table[3]

    # The backtest's report: its metrics as the command printed them.
    shown = cival_in_process("report", bt[:-4], *where, cwd=tmp_path)
    assert shown.returncode == 0, shown
    assert shown.stdout.splitlines()[:2] == printed.stdout.splitlines()[:2]  # strategy, params, costs
    rows = 1 + len(SUMMARY_ROWS)  # the header (the data file), then a line per metric
    assert _table(shown.stdout, "      ")[:rows] == _table(printed.stdout, "      ")[:rows]
    assert len(_table(shown.stdout, "      ")) == rows
    record = json.loads(cival_in_process("report", bt, "--json", *where, cwd=tmp_path).stdout)
    assert record["kind"] == "backtest" and record["id"] == bt and record["strategy"] == "darvas"
    assert record["params"] == as_json["params"] and record["costs"] == as_json["costs"] and record["trades"] == as_json["trades"]
    assert record["metrics"] == {k: v for k, v in as_json.items() if k not in ("strategy", "params", "data", "costs")}

    # The sweep's: its best combinations as the command printed them.
    shown = cival_in_process("report", sw, *where, cwd=tmp_path)
    assert shown.returncode == 0, shown
    assert _table(shown.stdout, "top 2 by sharpe")[:4] == _table(swept.stdout, "top 2 by sharpe")[:4]  # header and rows
    record = json.loads(cival_in_process("report", sw, "--json", *where, cwd=tmp_path).stdout)
    assert record["kind"] == "sweep" and record["combinations"] == len(record["results"]) == 2

    done = cival_in_process("report", "bt-nope", *where, cwd=tmp_path)
    assert done.returncode == 1 and "no saved backtest 'bt-nope'" in done.stderr and "cival runs --kind backtest" in done.stderr
