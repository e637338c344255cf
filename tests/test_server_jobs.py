"""Backtests and sweeps as jobs of ``cival serve``, through its real HTTP API on 127.0.0.1:
submitted, followed to the end, their results the engines' own (equal to direct calls on
the same inputs) and saved to the server's store; bad specs refused naming the field;
roles; cancelling a queued job and a running sweep; the same on a PostgreSQL store."""

from __future__ import annotations

import math
import os
import time

import pytest

from cival.backtest import backtest, sweep
from cival.config import bundled_data
from cival.runs import list_runs
from cival.store.sqlite import SqliteStore
from tests.helpers import Server, run_cival

pytestmark = pytest.mark.slow  # a server process of its own, and a vectorbt sweep in it

BUNDLED = "cival:data/BTCUSDT-1h.csv.gz"
VIEWER = ("vera", "vera-password-123")


@pytest.fixture(scope="module")
def served(tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("jobs")
    added = run_cival("users", "add", VIEWER[0], "--role", "viewer", "--path", str(folder / "store.sqlite3"), cwd=folder,
                      env={**os.environ, "CIVAL_PASSWORD": VIEWER[1], "CIVAL_DATA_DIR": str(folder / "data")})
    assert added.returncode == 0, added.stderr
    server = Server(folder)
    yield server
    assert server.stop() == 0, server.output()


def _finished(server: Server, job_id: str, timeout: float = 180) -> dict:
    """The job once it has ended (finished, failed or cancelled)."""
    deadline = time.monotonic() + timeout
    while True:
        status, job = server.call("GET", f"/jobs/{job_id}")
        assert status == 200, job
        if job["status"] in ("finished", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} did not end: {job}"
        time.sleep(0.1)


def _json(value):  # type: ignore[no-untyped-def]
    """A metric as JSON carries it: an undefined (NaN) one is null."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _saved(server: Server, kind: str) -> list[dict]:
    with SqliteStore(server.folder / "store.sqlite3") as store:
        return list_runs(store, (kind,))


def test_a_backtest_job_runs_the_engine_and_saves_its_result(served):  # type: ignore[no-untyped-def]
    spec = {"strategy": "alligator", "data": BUNDLED, "params": {"jaw_period": 21, "lips_shift": 2},
            "cash": "25000.50", "fee_bps": 7.5, "stop_loss_pct": 4}
    status, job = served.call("POST", "/backtests", spec)
    assert status == 202, job
    assert job["id"].startswith("job-") and job["kind"] == "backtest" and job["status"] in ("queued", "running")
    assert job["progress"] == {"done": 0, "total": 1} and job["result"] is None
    assert job["submitted_by"].startswith("server-token@") and job["spec"]["cash"] == "25000.50"

    # The same backtest, called directly (meanwhile: the server works in its own process).
    direct = backtest("alligator", bundled_data()[BUNDLED], {"jaw_period": 21, "lips_shift": 2},
                      cash=25000.50, fee_bps=7.5, stop_loss_pct=4)

    job = _finished(served, job["id"])
    assert job["status"] == "finished" and job["error"] is None, job
    assert job["progress"] == {"done": 1, "total": 1}
    assert job["started_at"] >= job["submitted_at"] and job["finished_at"] >= job["started_at"]
    result = job["result"]
    assert result["trades"] == direct.metrics["trades"] > 0
    assert result["metrics"]["final_equity"] == direct.metrics["final_equity"]
    assert result["metrics"] == {k: _json(v) for k, v in direct.metrics.items()}
    assert result["params"] == direct.params.model_dump() and result["costs"] == direct.model.model_dump()

    # Saved as --save saves it: readable through the API, and listed from the store.
    saved_id = result["saved_id"]
    assert saved_id.startswith("bt-")
    status, record = served.call("GET", f"/results/{saved_id}")
    assert status == 200 and record["id"] == saved_id and record["metrics"] == result["metrics"], record
    assert saved_id in [r["id"] for r in _saved(served, "backtest")]
    assert served.call("GET", "/results/bt-nosuchresult")[0] == 404


def test_a_sweep_job_reports_progress_and_finds_the_direct_sweeps_best(served):  # type: ignore[no-untyped-def]
    grid = {"jaw_period": [8, 13, 21], "teeth_period": "5:8:3", "lips_period": "3,5"}
    status, job = served.call("POST", "/sweeps", {"strategy": "alligator", "data": BUNDLED, "grid": grid,
                                                  "metric": "total_return", "chunk_size": 2, "top": 3})
    assert status == 202 and job["kind"] == "sweep" and job["progress"] == {"done": 0, "total": 12}, job

    direct = sweep("alligator", bundled_data()[BUNDLED], {"jaw_period": [8, 13, 21], "teeth_period": [5, 8], "lips_period": [3, 5]},
                   metric="total_return", chunk_size=2, backend="local")

    seen = set()
    deadline = time.monotonic() + 180
    while (job := served.call("GET", f"/jobs/{job['id']}")[1])["status"] in ("queued", "running"):
        seen.add(job["progress"]["done"])
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["status"] == "finished", job
    assert job["progress"] == {"done": 12, "total": 12}
    assert all(0 <= d <= 12 for d in seen)
    result = job["result"]
    assert result["best"] == direct.best()
    assert result["combinations"] == len(direct.table) and result["skipped"] == direct.skipped
    assert len(result["top"]) == 3
    assert [r["total_return"] for r in result["top"]] == direct.top(3)["total_return"].tolist()
    assert result["backend"] == "local" and result["metric"] == "total_return"
    assert result["saved_id"] in [r["id"] for r in _saved(served, "sweep")]
    status, record = served.call("GET", f"/results/{result['saved_id']}")
    assert status == 200 and record["best"] == direct.best() and len(record["results"]) == len(direct.table)


def test_a_job_on_bars_the_loader_refuses_fails_with_its_reason(served):  # type: ignore[no-untyped-def]
    bad = served.folder / "bad-bars.csv"  # the server runs in this folder: a relative path is read from it
    bad.write_text("timestamp,open,high,low,close\n2024-01-01,1,2,0.5,1.5\n2024-01-01,1,2,0.5,1.5\nnot-a-time,1,1,1,1\n")
    status, job = served.call("POST", "/backtests", {"strategy": "alligator", "data": "bad-bars.csv"})
    assert status == 202, job
    job = _finished(served, job["id"])
    assert job["status"] == "failed" and job["result"] is None and job["progress"]["done"] == 0, job
    assert "duplicate timestamp" in job["error"] and "unparseable timestamp" in job["error"] and "drop" in job["error"]


def test_bad_specs_are_refused_naming_the_field_and_queue_nothing(served):  # type: ignore[no-untyped-def]
    jobs_before = served.call("GET", "/jobs")[1]
    good = {"strategy": "alligator", "data": BUNDLED}
    bad = [
        ("/backtests", {**good, "strategy": "gator"}, "strategy", "known strategies"),
        ("/backtests", {**good, "params": {"jaw_period": -1}}, "params.jaw_period", "jaw_period"),
        ("/backtests", {**good, "params": {"colour": 1}}, "params.colour", "unknown parameter"),
        ("/backtests", {**good, "data": "no/such/bars.csv"}, "data", BUNDLED),
        ("/backtests", {**good, "data": "cival:data/nothing.csv"}, "data", "no bundled data"),
        ("/backtests", {**good, "data": "/etc/hostname"}, "data", "CSV or Parquet"),
        ("/backtests", {**good, "data": "x" * 4000 + ".csv"}, "data", "no file"),
        ("/backtests", {**good, "cash": "-5"}, "cash", "more than 0"),
        ("/backtests", {**good, "cash": "1.123456789"}, "cash", "cash"),
        ("/backtests", {**good, "fee_bps": 20000}, "fee_bps", "fee_bps"),
        ("/backtests", {**good, "max_move": 0.5}, "max_move", "above 1"),
        ("/backtests", {**good, "engine": "fast"}, "engine", "engine"),
        ("/backtests", {**good, "colour": "red"}, "colour", "colour"),
        ("/sweeps", {**good, "grid": {"nope": [1, 2]}}, "grid.nope", "no parameter"),
        ("/sweeps", {**good, "grid": {"jaw_period": "30:10:1"}}, "grid.jaw_period", "STOP is below START"),
        ("/sweeps", {**good, "grid": {"jaw_period": [0, 5]}}, "grid.jaw_period", "out of bounds"),
        ("/sweeps", {**good, "grid": {"jaw_period": "[1],[2]"}}, "grid.jaw_period", "not a value"),
        ("/sweeps", {**good, "grid": {"jaw_period": "2:1000:1", "teeth_period": "2:1000:1"}}, "grid", "combinations"),
        ("/sweeps", {**good, "grid": {"jaw_period": [8, 13]}, "metric": "luck"}, "metric", "sharpe"),
        ("/sweeps", good, "grid", "grid"),
    ]
    for path, body, field, words in bad:
        status, answer = served.call("POST", path, body)
        assert status == 422, (body, answer)
        error = answer["error"]
        assert error["field"] == field and words in error["message"], (body, error)
    assert served.call("GET", "/jobs")[1] == jobs_before  # nothing was queued


def test_roles_viewers_follow_jobs_operators_submit_and_cancel(served):  # type: ignore[no-untyped-def]
    status, tokens = served.call("POST", "/auth/login", {"name": VIEWER[0], "password": VIEWER[1]}, token=None)
    assert status == 200, tokens
    viewer = tokens["access_token"]
    spec = {"strategy": "darvas", "data": BUNDLED}
    for path in ("/backtests", "/sweeps"):
        status, body = served.call("POST", path, {**spec, "grid": {"lookback": [10]}} if path == "/sweeps" else spec, token=viewer)
        assert status == 403 and body["error"]["code"] == "forbidden" and "operator" in body["error"]["message"]
        status, body = served.call("POST", path, spec, token=None)
        assert status == 401 and body["error"]["code"] == "unauthenticated"
    assert served.call("GET", "/jobs", token=None)[0] == 401
    status, listed = served.call("GET", "/jobs", token=viewer)
    assert status == 200 and isinstance(listed, list)
    if listed:
        assert served.call("GET", f"/jobs/{listed[0]['id']}", token=viewer)[0] == 200
        assert served.call("POST", f"/jobs/{listed[0]['id']}/cancel", token=viewer)[0] == 403


def test_a_queued_job_is_cancelled_and_a_running_sweep_stops_at_its_next_chunk(served):  # type: ignore[no-untyped-def]
    sweeps_before = len(_saved(served, "sweep"))
    long_grid = {"jaw_period": "8:80:1", "lips_period": "2:6:1"}  # 365 combinations, 365 chunks of one
    status, blocker = served.call("POST", "/sweeps", {"strategy": "alligator", "data": BUNDLED, "grid": long_grid, "chunk_size": 1})
    assert status == 202, blocker
    status, queued = served.call("POST", "/backtests", {"strategy": "alligator", "data": BUNDLED})
    assert status == 202 and queued["status"] == "queued", queued  # one job at a time: it waits

    status, cancelled = served.call("POST", f"/jobs/{queued['id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelled" and cancelled["cancel_requested"], cancelled
    assert "before it ran" in cancelled["error"] and cancelled["started_at"] is None
    status, again = served.call("POST", f"/jobs/{queued['id']}/cancel")
    assert status == 409 and "nothing to cancel" in again["error"]["message"]

    # The sweep runs: it is asked to stop, and does after the chunk under way.
    deadline = time.monotonic() + 120
    while served.call("GET", f"/jobs/{blocker['id']}")[1]["progress"]["done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, stopping = served.call("POST", f"/jobs/{blocker['id']}/cancel")
    assert status == 200 and stopping["cancel_requested"], stopping
    job = _finished(served, blocker["id"], timeout=60)
    assert job["status"] == "cancelled" and job["result"] is None and "nothing was saved" in job["error"], job
    assert 2 <= job["progress"]["done"] < job["progress"]["total"] == 365
    assert len(_saved(served, "sweep")) == sweeps_before  # nothing saved

    listed = [j["id"] for j in served.call("GET", "/jobs")[1]]
    assert listed.index(queued["id"]) < listed.index(blocker["id"])  # newest first
    assert [j["id"] for j in served.call("GET", "/jobs?status=cancelled&kind=backtest")[1]] == [queued["id"]]
    for method, path in (("GET", "/jobs/job-nosuchjob"), ("POST", "/jobs/job-nosuchjob/cancel")):
        status, body = served.call(method, path)
        assert status == 404 and body["error"]["code"] == "not_found", body


def test_a_sweeps_progress_callback_counts_every_combination_and_can_stop_it():
    """What the job runner relies on: ``on_progress(done, total)`` after each chunk, skipped
    combinations counted, ``done`` reaching ``total``; an exception from it stops the sweep."""
    from cival.data.synthetic import synthetic_bars

    bars = synthetic_bars(600, seed=5)
    grid = {"min_retrace": [0.3, 0.5, 0.7], "max_retrace": [0.4, 0.8]}  # (0.5, 0.4) and (0.7, 0.4) break min <= max
    calls: list[tuple[int, int]] = []
    result = sweep("elliott", bars, grid, chunk_size=2, backend="local", on_progress=lambda d, t: calls.append((d, t)))
    assert result.skipped == 2 and len(result.table) == 4
    assert calls[-1] == (6, 6) and all(t == 6 for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    class Stop(Exception):
        pass

    def stop(done: int, total: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        sweep("elliott", bars, grid, chunk_size=1, backend="local", on_progress=stop)


@pytest.mark.services
def test_on_postgresql_a_jobs_result_is_saved_and_read_back_alike(tmp_path, fresh_postgres_url):  # type: ignore[no-untyped-def]
    server = Server(tmp_path, store_url=fresh_postgres_url)
    try:
        status, job = server.call("POST", "/backtests", {"strategy": "darvas", "data": BUNDLED, "params": {"lookback": 30}})
        assert status == 202, job
        direct = backtest("darvas", bundled_data()[BUNDLED], {"lookback": 30})
        job = _finished(server, job["id"])
        assert job["status"] == "finished", job
        assert job["result"]["metrics"] == {k: _json(v) for k, v in direct.metrics.items()}
        status, record = server.call("GET", f"/results/{job['result']['saved_id']}")
        assert status == 200 and record["metrics"] == job["result"]["metrics"], record
        listed = run_cival("runs", "--kind", "backtest", "--json", "--url", fresh_postgres_url, cwd=tmp_path)
        assert listed.returncode == 0 and job["result"]["saved_id"] in listed.stdout, listed.stderr
    finally:
        assert server.stop() == 0, server.output()


def test_the_client_submits_a_backtest_and_waits_for_its_saved_result(served):  # type: ignore[no-untyped-def]
    from cival.client import Client, ClientError

    client = Client(served.url, served.token)
    job = client.backtest("darvas", BUNDLED, {"lookback": 30}, cash="5000", fee_bps=5)
    result = client.wait(job["id"], timeout=180)
    direct = backtest("darvas", bundled_data()[BUNDLED], {"lookback": 30}, cash=5000.0, fee_bps=5)
    assert result["trades"] == direct.metrics["trades"] and result["metrics"]["final_equity"] == direct.metrics["final_equity"]
    assert client.saved(result["saved_id"])["id"] == result["saved_id"]
    listed = client.jobs(kind="backtest", status="finished")
    assert listed.loc[job["id"], "saved_id"] == result["saved_id"] and listed.loc[job["id"], "done"] == 1
    with pytest.raises(ClientError, match="job-nosuchjob") as refused:
        client.job("job-nosuchjob")
    assert refused.value.status == 404
    with pytest.raises(ClientError) as ended:
        client.cancel_job(job["id"])
    assert ended.value.status == 409
    client.close()
