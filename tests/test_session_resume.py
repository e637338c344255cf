"""A run whose driver died resumes where it stopped, and ends as if nothing happened.

The driver (``cival paper``, a process of its own) is killed with SIGKILL at random
moments: after a random number of events has been committed, plus a random few
milliseconds, so that kills land inside commits, between a node's commit and the next
message, inside checkpoints, during funding. ``cival resume`` (or ``Session.resume``)
then carries the run on, and everything it stored must equal an uninterrupted run of the
same config on the same bars: the report, every ledger transaction for transaction (with
its hash), the fills, orders, halts, equity snapshots, the registry, the nodes' final
states, and the events (numbered 1..N without gaps or repeats, in the same order).

Both stores (the embedded SQLite file and a real PostgreSQL), farms with agents in
actors of their own and inline, and runs with and without checkpoints.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from cival.config import config_from_dict
from cival.session import (
    RunBusy,
    Session,
    SessionConfig,
    SessionError,
    rebuild_report,
    resume_run,
    run_paper,
    run_status,
)
from cival.store.base import StoreLocation, locate
from tests.helpers import SRC, recovery_raw, run_cival

pytestmark = pytest.mark.slow

BARS = 1200
VOLATILE_REPORT = ("generated_at",)


def _without_checkpoints(raw: dict[str, Any]) -> dict[str, Any]:
    raw = json.loads(json.dumps(raw))
    raw["name"] = "resume-plain"
    raw.pop("goals", None)
    raw.pop("risk", None)
    raw.pop("checkpoint", None)
    raw["master"].pop("rebalance", None)
    for farm in raw["farms"]:
        farm.pop("rebalance", None)
    return raw


VARIANTS = {
    # name: (config, batch size); with checkpoints, batches end on them (every 24 bars)
    "checkpoints": (recovery_raw(), 24),
    "plain": (_without_checkpoints(recovery_raw()), 100),
}


def _config_file(tmp: Path, variant: str, storage: dict[str, Any]) -> Path:
    raw, _ = VARIANTS[variant]
    raw = {**json.loads(json.dumps(raw)), "storage": storage}
    path = tmp / f"{variant}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _store_for(backend: str, tmp: Path, postgres_url: str | None) -> tuple[StoreLocation, dict[str, Any]]:
    if backend == "sqlite":
        path = tmp / "runs.sqlite3"
        return locate(path=path), {"path": str(path)}
    assert postgres_url is not None
    return locate(url=postgres_url), {"url": postgres_url}


def dump(where: StoreLocation, run_id: str) -> dict[str, Any]:
    """Everything a run stored that must not depend on how often its driver died."""
    with where.open() as store:
        report, audit = rebuild_report(store, run_id)
        for key in VOLATILE_REPORT:
            report.pop(key, None)
        events = store.events(run_id)
        seqs = [e.seq for e in events]
        assert seqs == list(range(1, len(events) + 1)), "events numbered with a gap or a repeat"
        out: dict[str, Any] = {
            "report": report,
            "audit_ok": audit.ok,
            "events": [
                (e.id, e.type, e.source, e.entity, e.at if e.type not in ("run_started", "run_finished", *_STARTING) else None,
                 _no_times(e.data) if e.type in ("run_started", "run_finished") else e.data)
                for e in events
            ],
        }
        for source in store.node_sources(run_id):
            out[f"ledger {source}"] = [
                (t.seq, t.type, t.idempotency_key, t.at, t.memo, t.hash, [(p.account, p.amount, p.quantity) for p in t.postings])
                for t in store.transactions(run_id, source)
            ]
            state = store.node_state(run_id, source)
            assert state is not None
            out[f"state {source}"] = json.loads(state.state)
        for table in ("fills", "orders", "halts", "equity_snapshots", "fund_allocations", "master_wallets", "farms",
                      "agent_configs", "goals"):
            out[table] = [{k: v for k, v in row.items() if k != "run_id"} for row in store.rows(table, run_id)]
        return out


_STARTING = ("farm_created", "agent_farm_assignment", "goal_created", "goal_assignment")
"""Events written when a run starts, stamped with the wall clock (not a bar's time)."""


def _no_times(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in ("config",)}


def _equal(resumed: dict[str, Any], baseline: dict[str, Any]) -> None:
    assert resumed.keys() == baseline.keys()
    for key, value in baseline.items():
        assert resumed[key] == value, f"{key} differs from the uninterrupted run"


def _driver(config: Path, batch: int, env: dict[str, str]) -> subprocess.Popen[str]:
    environment = dict(env)
    environment["PYTHONPATH"] = str(SRC)
    return subprocess.Popen(
        [sys.executable, "-m", "cival", "paper", str(config), "--local", "--quiet", "--bars", str(BARS), "--batch", str(batch)],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _newest_run(where: StoreLocation, known: set[str]) -> Any:
    with where.open() as store:
        try:
            fresh = [r for r in store.runs() if r.id not in known]
        except Exception:  # noqa: BLE001 - the schema is being created
            return None
        return fresh[0] if fresh else None


def _kill_at(
    where: StoreLocation, driver: subprocess.Popen[str], known: set[str], events: int, jitter: float, before: Any = None
) -> str:
    """SIGKILL the driver once its run stored ``events`` events (and ``jitter`` seconds
    more; ``before()`` is called just before); returns the run's id."""
    store = None
    run = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if driver.poll() is not None:
                out = driver.stdout.read() if driver.stdout else ""
                raise AssertionError(f"the driver ended before it was killed (exit {driver.returncode}):\n{out[-2000:]}")
            if run is None:
                run = _newest_run(where, known)
            else:
                store = store or where.open()
                if store.run(run.id).events >= events:
                    break
            time.sleep(0.002)
        else:
            raise AssertionError("the driver made no progress in 120 s")
        time.sleep(jitter)
        if before is not None:
            before()
        driver.send_signal(signal.SIGKILL)
        driver.wait(30)
    finally:
        if store is not None:
            store.close()
        if driver.poll() is None:
            driver.kill()
    assert run is not None
    return run.id


def _baseline(where: StoreLocation, variant: str) -> tuple[str, int]:
    raw, batch = VARIANTS[variant]
    result = run_paper(config_from_dict(raw), SessionConfig(local=True, max_bars=BARS, batch_size=batch), store=where)
    assert result.audit.ok and not result.interrupted
    with where.open() as store:
        return result.run_id, store.run(result.run_id).events  # type: ignore[arg-type]


@pytest.mark.services
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_driver_killed_at_random_moments_resumes_to_the_uninterrupted_result(backend, tmp_path, request):
    postgres_url = request.getfixturevalue("postgres_url") if backend == "postgres" else None
    where, storage = _store_for(backend, tmp_path, postgres_url)
    baselines = {}
    for variant in VARIANTS:
        run_id, events = _baseline(where, variant)
        baselines[variant] = (dump(where, run_id), events)
    rng = random.Random(f"resume-{backend}")
    env = {**os.environ}
    for seed in range(10):
        variant = "checkpoints" if seed % 2 == 0 else "plain"
        baseline, total = baselines[variant]
        config = _config_file(tmp_path, variant, storage)
        with where.open() as store:
            known = {r.id for r in store.runs()}
        events = rng.randint(1, total - 2)
        jitter = rng.choice([0.0, 0.0005, 0.002, 0.01])
        run_id = _kill_at(where, _driver(config, VARIANTS[variant][1], env), known, events, jitter)
        with where.open() as store:
            record = store.run(run_id)
            # Left running by a driver that is gone: read as interrupted.
            assert record.status == "running" and record.driver is not None
            assert run_status(record) == "interrupted"
        if seed < 2:  # through the command line
            args = ["resume", run_id, "--local", "--quiet"]
            args += ["--path", storage["path"]] if backend == "sqlite" else ["--url", storage["url"]]
            done = run_cival(*args, cwd=tmp_path, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            assert f"resuming run {run_id}" in done.stdout
        else:
            result = resume_run(run_id, SessionConfig(local=True), store=where)
            assert result.audit.ok and not result.interrupted
            assert result.resumed_from is not None and 0 <= result.resumed_from <= BARS
        with where.open() as store:
            record = store.run(run_id)
            assert record.status == "finished" and record.driver is None
            assert record.meta["resumed"], "the run does not record that it was resumed"
        _equal(dump(where, run_id), baseline)


def test_a_run_whose_driver_is_alive_is_not_resumed(tmp_path):
    where = locate(path=tmp_path / "runs.sqlite3")
    raw, batch = VARIANTS["plain"]
    session = Session(config_from_dict(raw), SessionConfig(local=True, max_bars=400, batch_size=batch), store=where).open()
    try:
        session.step(100)
        with pytest.raises(RunBusy, match=rf"run {session.run_id} is being driven by .*:{os.getpid()}:"):
            Session.resume(session.run_id, SessionConfig(local=True), store=where)  # type: ignore[arg-type]
        with where.open() as store:
            assert run_status(store.run(session.run_id)) == "running"  # type: ignore[arg-type]
    finally:
        result = session.run()
    assert result.bars == 400 and not result.interrupted
    with pytest.raises(SessionError, match="is finished: there is nothing to resume"):
        Session.resume(result.run_id, store=where)  # type: ignore[arg-type]


def test_a_lease_held_elsewhere_is_refused_until_it_goes_stale(tmp_path):
    where = locate(path=tmp_path / "runs.sqlite3")
    raw, batch = VARIANTS["plain"]
    session = Session(config_from_dict(raw), SessionConfig(local=True, max_bars=300, batch_size=batch), store=where).open()
    session.step(100)
    run_id = session.run_id
    assert run_id is not None
    # The driver's process is gone without a word; another machine took the run and still beats.
    session.lease._stop.set()  # type: ignore[union-attr]
    session.cluster.close()  # type: ignore[union-attr]
    session._closed = True
    other = "another-host:4242:feedbeef"
    with where.open() as store:
        assert store.claim_run(run_id, other, session.driver)
        with pytest.raises(RunBusy, match="another-host:4242:feedbeef"):
            Session.resume(run_id, SessionConfig(local=True), store=store)
        # Its heartbeat stops: after five missed beats the lease is stale and the run is taken up.
        old = datetime.now(UTC) - timedelta(seconds=30)
        if hasattr(store, "_db"):
            store._db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (old.isoformat(), run_id))
        assert run_status(store.run(run_id)) == "interrupted"
    result = resume_run(run_id, SessionConfig(local=True), store=where)
    assert result.bars == 300 and result.resumed_from == 100 and result.audit.ok


def test_a_run_fed_by_its_caller_is_not_resumed_and_says_why(tmp_path):
    from cival.session import replay_batches, session_bars

    where = locate(path=tmp_path / "runs.sqlite3")
    raw, _ = VARIANTS["plain"]
    config = config_from_dict(raw)
    frame = session_bars(config, max_bars=200)
    stop = __import__("threading").Event()
    stop.set()
    result = run_paper(config, SessionConfig(local=True), batches=replay_batches(frame, "max", 50), store=where, stop=stop)
    with where.open() as store:
        store.update_run(result.run_id, status="running")  # type: ignore[arg-type]
    with pytest.raises(SessionError, match="fed by its caller's feed; it cannot be resumed"):
        Session.resume(result.run_id, store=where)  # type: ignore[arg-type]


def test_a_driving_session_renews_its_lease_and_gives_it_up_when_it_ends(tmp_path):
    where = locate(path=tmp_path / "runs.sqlite3")
    raw, batch = VARIANTS["plain"]
    session = Session(config_from_dict(raw), SessionConfig(local=True, max_bars=300, batch_size=batch, heartbeat=0.05), store=where).open()
    run_id = session.run_id
    assert run_id is not None
    with where.open() as store:
        first = store.run(run_id)
        assert first.driver == session.driver and first.heartbeat_at is not None
        deadline = time.monotonic() + 10
        while store.run(run_id).heartbeat_at == first.heartbeat_at and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.run(run_id).heartbeat_at > first.heartbeat_at, "the lease was not renewed"
    session.run()
    with where.open() as store:
        record = store.run(run_id)
    assert (record.status, record.driver) == ("finished", None)
    listed = run_cival("runs", "--json", "--path", str(tmp_path / "runs.sqlite3"), cwd=tmp_path)
    assert json.loads(listed.stdout)[0]["status"] == "finished"


def test_cival_runs_shows_a_run_whose_driver_died_as_interrupted(tmp_path):
    where = locate(path=tmp_path / "runs.sqlite3")
    raw, batch = VARIANTS["plain"]
    session = Session(config_from_dict(raw), SessionConfig(local=True, max_bars=300, batch_size=batch), store=where).open()
    session.step(100)
    run_id = session.run_id
    with where.open() as store:  # a driver on this machine whose process is gone
        assert store.claim_run(run_id, "x", session.driver)  # type: ignore[arg-type]
        assert store.claim_run(run_id, f"{os.uname().nodename}:999999:dead", "x")  # type: ignore[arg-type]
    session.lease._stop.set()  # type: ignore[union-attr]
    listed = run_cival("runs", "--json", "--path", str(tmp_path / "runs.sqlite3"), cwd=tmp_path)
    (row,) = json.loads(listed.stdout)
    assert (row["id"], row["status"]) == (run_id, "interrupted")
    result = resume_run(run_id, SessionConfig(local=True), store=where)  # type: ignore[arg-type]
    assert result.resumed_from == 100 and result.bars == 300 and result.audit.ok
    session._closed = True


def test_a_driver_on_ray_killed_with_its_whole_process_tree_resumes_on_a_new_ray(tmp_path):
    """Ray mode: the driver and every process under it (Ray's GCS, raylet, the actors) die
    at once, as on a lost machine; ``cival resume`` starts a new Ray whose actors rebuild
    themselves from the store."""
    from tests.helpers import session_processes, wait_until_gone

    where, storage = _store_for("sqlite", tmp_path, None)
    variant = "checkpoints"
    run_id, total = _baseline(where, variant)
    baseline = dump(where, run_id)
    config = _config_file(tmp_path, variant, storage)
    environment = {**os.environ, "PYTHONPATH": str(SRC)}
    driver = subprocess.Popen(
        [sys.executable, "-m", "cival", "paper", str(config), "--quiet", "--bars", str(BARS), "--batch", "24"],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    with where.open() as store:
        known = {r.id for r in store.runs()}
    tree: list[Any] = []
    run_id = _kill_at(where, driver, known, total // 2, 0.0, before=lambda: tree.extend(session_processes(driver.pid)))
    for process in tree:  # the rest of the machine goes with it
        try:
            process.kill()
        except Exception:  # noqa: BLE001, S110 - gone already
            pass
    assert not wait_until_gone(tree)
    done = run_cival("resume", run_id, "--quiet", "--path", storage["path"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    resumed = dump(where, run_id)
    assert resumed["report"]["mode"] == "ray"
    # The baseline ran the same nodes in this process: the runs differ in what they say of it alone.
    resumed["report"]["mode"] = baseline["report"]["mode"]
    resumed["events"] = [
        (*e[:5], {**e[5], "mode": "local"}) if e[1] == "run_started" else e for e in resumed["events"]
    ]
    # Actors commit side by side: each node's events in its own order, the nodes interleaved as they ran.
    for d in (resumed, baseline):
        d["events"] = sorted(d["events"], key=lambda e: e[2])  # stable: each source's order kept
    _equal(resumed, baseline)


def test_a_run_stopped_early_resumes_to_the_end_of_its_bars(tmp_path):
    import threading

    where = locate(path=tmp_path / "runs.sqlite3")
    raw, batch = VARIANTS["checkpoints"]
    run_id, _ = _baseline(where, "checkpoints")
    baseline = dump(where, run_id)
    stop = threading.Event()

    def halfway(progress: Any) -> None:
        if progress.bars >= BARS // 2:
            stop.set()

    first = run_paper(config_from_dict(raw), SessionConfig(local=True, max_bars=BARS, batch_size=batch), store=where,
                      on_progress=halfway, stop=stop)
    assert first.interrupted and first.bars < BARS
    with where.open() as store:
        assert store.run(first.run_id).status == "interrupted"  # type: ignore[arg-type]
    result = resume_run(first.run_id, SessionConfig(local=True), store=where)  # type: ignore[arg-type]
    assert result.resumed_from == first.bars and result.bars == BARS and not result.interrupted
    resumed = dump(where, first.run_id)  # type: ignore[arg-type]
    ends = [e for e in resumed["events"] if e[1] == "run_finished"]
    assert [(e[0], e[5]["status"]) for e in ends] == [("run:finished", "interrupted"), ("run:finished:1", "finished")]
    for d in (resumed, baseline):
        d["events"] = [e for e in d["events"] if e[1] not in ("run_started", "run_finished")]
    _equal(resumed, baseline)


def test_a_resume_that_fails_leaves_the_run_resumable(tmp_path):
    import shutil
    import threading

    where = locate(path=tmp_path / "runs.sqlite3")
    raw, batch = VARIANTS["plain"]
    raw = json.loads(json.dumps(raw))
    data = tmp_path / "bars.csv.gz"
    shutil.copy(raw["data"]["path"], data)
    raw["data"]["path"] = str(data)
    stop = threading.Event()
    first = run_paper(config_from_dict(raw), SessionConfig(local=True, max_bars=300, batch_size=batch), store=where,
                      on_progress=lambda p: stop.set(), stop=stop)
    assert first.interrupted and first.bars == batch
    data.rename(tmp_path / "elsewhere.csv.gz")
    with pytest.raises(Exception, match="bars.csv.gz"):
        Session.resume(first.run_id, store=where)  # type: ignore[arg-type]
    with where.open() as store:
        record = store.run(first.run_id)  # type: ignore[arg-type]
    assert (record.status, record.driver) == ("interrupted", None), "a failed resume changed the run"
    (tmp_path / "elsewhere.csv.gz").rename(data)
    result = resume_run(first.run_id, SessionConfig(local=True), store=where)  # type: ignore[arg-type]
    assert result.resumed_from == batch and result.bars == 300 and result.audit.ok


def test_a_paced_run_stopped_between_checkpoints_resumes_with_the_trades_its_next_checkpoint_needs(tmp_path):
    """Bar by bar (``speed=N``), a run stops between two checkpoints: the trades closed since
    the last one are in no journaled reply, and the resumed session rebuilds them for the
    next checkpoint's goals. Stopped and resumed four times, it ends as an uninterrupted
    paced run does."""
    import threading

    where = locate(path=tmp_path / "runs.sqlite3")
    raw, _ = VARIANTS["checkpoints"]
    config = config_from_dict(raw)
    options = SessionConfig(local=True, max_bars=600, speed=2_000_000)
    calm = run_paper(config, options, store=where)
    baseline = dump(where, calm.run_id)  # type: ignore[arg-type]
    stops = [37, 157, 301, 455]  # none on a checkpoint (every 24 bars)
    stop = threading.Event()

    def at_stop(progress: Any) -> None:
        if stops and progress.bars >= stops[0]:
            stops.pop(0)
            stop.set()

    first = run_paper(config, options, store=where, on_progress=at_stop, stop=stop)
    run_id, resumed_at = first.run_id, [first.bars]
    while True:
        stop.clear()
        session = Session.resume(run_id, SessionConfig(local=True), store=where, on_progress=at_stop)  # type: ignore[arg-type]
        result = session.run(stop)
        if not result.interrupted:
            break
        resumed_at.append(result.bars)
    assert resumed_at == [37, 157, 301, 455] and result.bars == 600
    resumed = dump(where, run_id)  # type: ignore[arg-type]
    for d in (resumed, baseline):
        d["events"] = [e for e in d["events"] if e[1] not in ("run_started", "run_finished")]
    _equal(resumed, baseline)


def test_a_run_fed_a_frame_resumes_with_the_frame_given_again(tmp_path):
    import threading

    from cival.session import session_bars

    where = locate(path=tmp_path / "runs.sqlite3")
    raw, batch = VARIANTS["plain"]
    config = config_from_dict(raw)
    frame = session_bars(config, max_bars=500)
    calm = run_paper(config, SessionConfig(local=True, batch_size=batch), bars=frame, store=where)
    stop = threading.Event()
    first = run_paper(config, SessionConfig(local=True, batch_size=batch), bars=frame, store=where,
                      on_progress=lambda p: stop.set() if p.bars >= 200 else None, stop=stop)
    assert first.interrupted and first.bars == 200
    with pytest.raises(SessionError, match=r"resume it with Session.resume\(run_id, bars=...\)"):
        Session.resume(first.run_id, store=where)  # type: ignore[arg-type]
    with pytest.raises(SessionError, match="are not in its data"):
        Session.resume(first.run_id, store=where, bars=frame.iloc[250:])  # type: ignore[arg-type]
    result = Session.resume(first.run_id, store=where, bars=frame).run()  # type: ignore[arg-type]
    assert result.resumed_from == 200 and result.bars == 500
    resumed, baseline = dump(where, first.run_id), dump(where, calm.run_id)  # type: ignore[arg-type]
    for d in (resumed, baseline):
        d["events"] = [e for e in d["events"] if e[1] not in ("run_started", "run_finished")]
    _equal(resumed, baseline)
