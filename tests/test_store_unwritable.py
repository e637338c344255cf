"""An embedded store that cannot be written: read-only from the start, or full in the
middle of a session (a file size limit, a disk that fills up; with the nodes in the
session's process and on Ray actors). The session fails with a message that names the
file and says what to do, without a traceback or a crash; the run is marked
interrupted; and once the store can be written again, it is whole: `cival runs` and
`cival report` work on it, and so does the next session.

Sessions run as `cival` subprocesses, as a user runs them (and so that a file size
limit or a crash stays theirs).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from cival.cli import main
from cival.runtime import actor_error
from cival.session import stopped_by_store
from cival.store.base import StoreError

BARS = 3000
"""Bars of the sessions that fill their store: it is full long before the end."""


def cival(*args: str, data_dir: Path, limit: int | None = None, ordinary: bool = False) -> subprocess.CompletedProcess[str]:
    """`cival ARGS` with its embedded store in ``data_dir`` (no PostgreSQL, no Redis).
    ``limit``: the largest file it may write, in bytes (``ulimit -f``). ``ordinary``: as
    an ordinary user would, subject to file permissions (root is not: it runs without the
    capabilities that let it ignore them)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS")}
    env.update(CIVAL_DATA_DIR=str(data_dir), RAY_AUTH_MODE="disabled")
    command = [sys.executable, "-m", "cival", *args]
    if ordinary and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to run cival without root's power over file permissions")
        drop = "-dac_override,-dac_read_search,-fowner"
        command = [setpriv, "--bounding-set", drop, "--inh-caps", drop, "--", *command]

    def limited() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, preexec_fn=limited)


def assert_clear_failure(done: subprocess.CompletedProcess[str], store: Path, says: str) -> None:
    """Exit 1 with the store's message (which file, what happened, what to do), no
    traceback, no crash."""
    assert done.returncode != -signal.SIGBUS, "killed by SIGBUS"
    assert done.returncode == 1, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr and "RayTaskError" not in done.stderr, done.stderr[-3000:]
    assert f"error: the embedded store at {store}" in done.stderr, done.stderr[-3000:]
    assert says in done.stderr and "or use another store" in done.stderr, done.stderr[-3000:]


def assert_whole_again(data_dir: Path, stopped: str, capsys, monkeypatch) -> None:
    """The store, writable again: the run that stopped is listed as interrupted, part of
    the way; its report is rebuilt and audits; the file is intact; a new session works."""
    store = data_dir / "cival.sqlite3"
    capsys.readouterr()
    assert main(["runs", "--json", "--path", str(store)]) == 0
    (run,) = [r for r in json.loads(capsys.readouterr().out) if r["id"] == stopped]
    assert run["status"] == "interrupted" and 0 < run["bars"] < BARS and run["finished_at"], run
    assert main(["report", stopped, "--json", "--path", str(store)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["interrupted"] and report["bars"] == run["bars"], report
    assert report["ledger"]["audit_ok"] and report["ledger"]["transactions"] > 0, report["ledger"]
    with closing(sqlite3.connect(store)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIVAL_DATA_DIR", str(data_dir))
    assert main(["demo", "--local", "--bars", "100", "--quiet"]) == 0
    assert capsys.readouterr().out.startswith("run ")


def run_id_of(done: subprocess.CompletedProcess[str]) -> str:
    first = done.stdout.splitlines()[0]
    assert first.startswith("run "), done.stdout
    return first.split()[1]


@pytest.mark.slow
@pytest.mark.parametrize("read_only", ["file", "file and folder"])
def test_a_store_read_only_from_the_start_is_a_clear_error(tmp_path, monkeypatch, read_only):
    data_dir = tmp_path / "data"
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CIVAL_DATA_DIR", str(data_dir))
    assert main(["demo", "--local", "--bars", "50", "--quiet"]) == 0  # a store with a run in it
    store = data_dir / "cival.sqlite3"
    before = store.read_bytes()
    store.chmod(0o444)
    if read_only == "file and folder":
        data_dir.chmod(0o555)
    try:
        done = cival("demo", "--local", "--bars", "50", "--quiet", data_dir=data_dir, ordinary=True)
    finally:
        data_dir.chmod(0o755)
        store.chmod(0o644)
    assert_clear_failure(done, store, "cannot be written")
    assert "writable by this user" in done.stderr
    assert done.stdout == ""  # no run was started
    assert store.read_bytes() == before


@pytest.mark.slow
def test_a_store_that_reaches_the_file_size_limit_mid_run_interrupts_the_run(tmp_path, capsys, monkeypatch):
    data_dir = tmp_path / "data"
    done = cival("demo", "--local", "--bars", str(BARS), "--quiet", data_dir=data_dir, limit=1_500_000)
    store = data_dir / "cival.sqlite3"
    assert_clear_failure(done, store, "could not be written")
    assert "file size limit" in done.stderr
    run_id = run_id_of(done)
    assert f"run {run_id} is marked interrupted after" in done.stderr
    assert_whole_again(data_dir, run_id, capsys, monkeypatch)


@pytest.mark.slow
def test_a_store_whose_disk_fills_up_mid_run_interrupts_the_run(small_disk, capsys, monkeypatch):
    done = cival("demo", "--local", "--bars", str(BARS), "--quiet", data_dir=small_disk.path)
    assert_clear_failure(done, small_disk.path / "cival.sqlite3", "the disk is full")
    run_id = run_id_of(done)
    assert f"run {run_id} is marked interrupted after" in done.stderr
    small_disk.grow()
    assert_whole_again(small_disk.path, run_id, capsys, monkeypatch)


@pytest.mark.slow
def test_a_store_whose_disk_fills_up_under_ray_actors_interrupts_the_run(small_disk, capsys, monkeypatch):
    """The actors' writes fail inside Ray: the driver reports the store's message."""
    done = cival("demo", "--bars", str(BARS), "--quiet", data_dir=small_disk.path)
    assert_clear_failure(done, small_disk.path / "cival.sqlite3", "the disk is full")
    run_id = run_id_of(done)
    assert f"run {run_id} is marked interrupted after" in done.stderr
    small_disk.grow()
    assert_whole_again(small_disk.path, run_id, capsys, monkeypatch)


def test_an_actors_store_error_is_recognised_inside_rays_errors():
    ray = pytest.importorskip("ray")
    failure = StoreError("the embedded store at /x cannot grow: the disk is full")
    # An agent's task failed; the farm that called it failed with that; the driver sees the farm's.
    agent = ray.exceptions.RayTaskError("AgentActor.on_batch", "Traceback ...", failure).as_instanceof_cause()
    farm = ray.exceptions.RayTaskError("FarmActor.on_bars", "Traceback ...", agent).as_instanceof_cause()
    assert actor_error(farm) is failure
    other = ray.exceptions.RayTaskError("FarmActor.on_bars", "Traceback ...", ZeroDivisionError("x")).as_instanceof_cause()
    assert actor_error(other) is other  # not ours: left as it is
    assert actor_error(failure) is failure


def test_a_run_the_store_cannot_even_mark_interrupted_is_said_to_stay_running():
    class Refusing:
        def update_run(self, *args, **kwargs):
            raise StoreError("the embedded store at /x cannot grow: the disk is full")

    failure = StoreError("the embedded store at /x could not be written (disk I/O error)")
    error = stopped_by_store(Refusing(), "20261201T000000Z-abcd1234", failure, 72, None, None)
    first, fate = str(error).split("\n")
    assert first == str(failure)
    assert "could not be marked interrupted" in fate and "listed as running" in fate
    assert "`cival report 20261201T000000Z-abcd1234`" in fate


def test_a_full_disk_still_takes_the_record_that_a_run_stopped(small_disk):
    """The store keeps a reserve beside its file and gives it up for the one write that
    records a run as stopped; other writes on the full disk are refused."""
    from cival.store.sqlite import RESERVE, SqliteStore, StoreFull

    store = SqliteStore(small_disk.path / "cival.sqlite3")
    store.migrate()
    run = store.create_run("r", "local", {})
    reserve = small_disk.path / "cival.sqlite3-reserve"
    assert reserve.stat().st_size == RESERVE
    with open(small_disk.path / "filler", "wb") as filler:  # every byte left
        try:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        except OSError:
            pass
    with pytest.raises(StoreFull, match="the disk is full"):
        store.create_run("another", "local", {"big": "x" * 100_000})
    store.update_run(run, status="interrupted", meta={"bars": 7}, finished=True)
    assert not reserve.exists()
    record = store.run(run)
    assert record.status == "interrupted" and record.meta["bars"] == 7 and record.finished_at is not None
    store.close()
