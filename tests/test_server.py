"""``cival serve`` through its real HTTP API on 127.0.0.1: runs started and steered while
bars flow, the one error shape, the token, and a server killed mid-run that takes its run
up again when restarted and ends it exactly as an uninterrupted run."""

from __future__ import annotations

import os
import stat
import time
from decimal import Decimal

import pytest

from cival.config import config_from_dict
from cival.session import run_paper
from tests.helpers import Server, comparable, run_cival

pytestmark = pytest.mark.slow  # every test here starts a server process of its own

RAW = {
    "name": "served",
    "master": {"initial_deposit": "100000", "allocation": {"policy": "equal", "reserve_pct": 10}},
    "farms": [
        {"name": "trend", "type": "trend_following", "allocation": {"policy": "equal", "reserve_pct": 5},
         "agents": [{"name": "gator", "strategy": "alligator"}, {"name": "gator-fast", "strategy": "alligator",
                    "params": {"jaw_period": 8, "jaw_shift": 5, "teeth_period": 5, "teeth_shift": 3, "lips_period": 3, "lips_shift": 2}}]},
        {"name": "breakout", "type": "breakout", "agents": [{"name": "darvas", "strategy": "darvas", "params": {"lookback": 10, "confirm": 2}}]},
    ],
    "checkpoint": {"every_bars": 24, "always": True},  # goals may be added while it runs
    "data": {"source": "synthetic", "bars": 3000, "seed": 21, "timeframe": "1h"},
}
PACED = 3600 * 400  # 400 bars a second: a run of 3,000 bars lasts long enough to be steered


def _wait(server: Server, run_id: str, until, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        status, run = server.call("GET", f"/runs/{run_id}")
        assert status == 200, run
        if until(run):
            return run
        assert time.monotonic() < deadline, f"run {run_id} never got there: {run}"
        time.sleep(0.1)


def test_a_run_is_started_steered_and_stopped_through_the_api(tmp_path):
    server = Server(tmp_path)
    try:
        assert server.call("GET", "/health", token=None)[0] == 200
        # Without the token, or with another, nothing but the health check answers.
        status, body = server.call("GET", "/runs", token=None)
        assert status == 401 and body["error"]["code"] == "unauthenticated" and "Bearer" in body["error"]["message"]
        status, body = server.call("GET", "/runs", token="not-the-token")
        assert status == 401 and body["error"]["code"] == "unauthenticated"
        status, body = server.call("GET", "/nowhere")
        assert status == 404 and body["error"]["code"] == "not_found" and "/api/v1" in body["error"]["message"]

        # A config with mistakes: every one, with its field, in the one error shape.
        bad = {**RAW, "farms": [{**RAW["farms"][0], "agents": [{"name": "g", "strategy": "gator"}]}], "master": {}}
        status, body = server.call("POST", "/runs", {"config": bad})
        assert status == 422 and body["error"]["code"] == "invalid_config"
        fields = [i["field"] for i in body["error"]["issues"]]
        assert "config.master.initial_deposit" in fields and "config.farms[0].agents[0].strategy" in fields
        status, body = server.call("POST", "/runs", {"config": RAW, "options": {"speed": "fast"}})
        assert status == 422 and body["error"]["field"] == "options.speed"
        status, body = server.call("POST", "/runs", {"config": RAW, "colour": "red"})
        assert status == 422 and body["error"]["field"] == "colour"

        status, run = server.call("POST", "/runs", {"config": RAW, "options": {"speed": PACED}})
        assert status == 201 and run["status"] == "running" and run["hosted"]["bars_total"] == 3000, run
        run_id = run["id"]
        _wait(server, run_id, lambda r: r["hosted"]["bars_fed"] >= 200)

        # Commands, the feed held at a batch boundary (commands still apply): each answered
        # with what it booked, or why it was refused.
        status, paused = server.call("POST", f"/runs/{run_id}/pause")
        assert status == 200 and paused["hosted"]["paused"]
        held = paused["hosted"]["bars_fed"]
        status, booked = server.call("POST", f"/runs/{run_id}/commands", {"kind": "allocate", "target": "trend", "amount": "2500.50"})
        assert status == 200 and (booked["command"], booked["target"], booked["amount"]) == ("allocate", "farm:trend", "2500.5")
        status, body = server.call("POST", f"/runs/{run_id}/commands", {"kind": "allocate", "target": "trend", "amount": "1000000"})
        assert status == 409 and body["error"]["code"] == "command_refused" and "of free cash" in body["error"]["message"]
        status, booked = server.call("POST", f"/runs/{run_id}/commands", {"kind": "deposit", "amount": "100"})
        assert status == 200 and booked["target"] == "master"
        # Held at a batch boundary, nothing trades: a collection beyond the farm's own cash
        # takes the rest from its agents (the 2,500.50 just allocated is cash there), to the cent.
        before = {r["name"]: r for r in server.call("GET", f"/runs/{run_id}/wallets")[1]}
        own = Decimal(before["trend"]["cash"])
        agents = Decimal(before["gator"]["cash"]) + Decimal(before["gator-fast"]["cash"])
        assert agents >= Decimal("2000")
        amount = own + Decimal("1500.25")
        status, booked = server.call("POST", f"/runs/{run_id}/commands", {"kind": "collect", "target": "trend", "amount": str(amount)})
        assert status == 200 and Decimal(booked["amount"]) == amount, booked
        after = {r["name"]: r for r in server.call("GET", f"/runs/{run_id}/wallets")[1]}
        assert Decimal(after["trend"]["cash"]) == 0
        assert Decimal(after["gator"]["cash"]) + Decimal(after["gator-fast"]["cash"]) == agents - Decimal("1500.25")
        assert Decimal(after["master"]["cash"]) == Decimal(before["master"]["cash"]) + amount
        assert server.call("GET", f"/runs/{run_id}")[1]["hosted"]["bars_fed"] == held  # the feed did not move
        server.call("POST", f"/runs/{run_id}/resume")
        _wait(server, run_id, lambda r: r["hosted"]["bars_fed"] > held)
        status, halted = server.call("POST", f"/runs/{run_id}/commands", {"kind": "halt", "target": "gator-fast", "reason": "checking"})
        assert status == 200 and halted["entity"] == "agent:gator-fast"
        status, body = server.call("POST", f"/runs/{run_id}/commands", {"kind": "halt", "target": "nobody"})
        assert status == 409 and "no farm or agent named 'nobody'" in body["error"]["message"]

        # Goals: added (validated as a config's goals are), given to more agents, cancelled.
        goal = {"name": "busy", "type": "trade_volume", "target": {"trades": 0}, "assign": [{"farm": "trend"}]}
        status, body = server.call("POST", f"/runs/{run_id}/goals", goal)
        assert status == 422 and body["error"]["code"] == "invalid_goal" and body["error"]["field"] == "target.trades", body
        status, added = server.call("POST", f"/runs/{run_id}/goals", {**goal, "target": {"trades": 1_000_000}})
        assert status == 201 and added["goal"]["status"] == "active" and added["goal"]["assigned"] == {"gator": "1", "gator-fast": "1"}
        status, body = server.call("POST", f"/runs/{run_id}/goals", {**goal, "target": {"trades": 5}})
        assert status == 409 and "a goal named 'busy' exists" in body["error"]["message"]
        status, assigned = server.call("POST", f"/runs/{run_id}/goals/busy/assign", {"assign": [{"agent": "darvas", "weight": "0.5"}]})
        assert status == 200 and assigned["goal"]["assigned"]["darvas"] == "0.5"
        status, body = server.call("POST", f"/runs/{run_id}/goals/busy/assign", {"assign": [{"farm": "trend", "agent": "darvas"}]})
        assert status == 422 and body["error"]["field"].startswith("assign.0"), body
        status, cancelled = server.call("POST", f"/runs/{run_id}/goals/busy/cancel", {"reason": "changed my mind"})
        assert status == 200 and cancelled["goal"]["status"] == "cancelled"
        status, body = server.call("POST", f"/runs/{run_id}/goals/ghost/cancel")
        assert status == 409 and "no goal named 'ghost'" in body["error"]["message"]
        status, goals = server.call("GET", f"/runs/{run_id}/goals")
        assert status == 200 and [(g["name"], g["status"], g["goal_type"]) for g in goals] == [("busy", "cancelled", "trade_volume")]
        assert sorted(goals[0]["assign"], key=str) == sorted([{"farm": "trend", "weight": "1"}, {"agent": "darvas", "weight": "0.5"}], key=str)

        status, tree = server.call("GET", f"/runs/{run_id}/wallets")
        assert status == 200 and [r["name"] for r in tree] == ["master", "trend", "gator", "gator-fast", "breakout", "darvas"]
        assert {r["name"]: r["halted"] for r in tree}["gator-fast"] == "checking"
        assert Decimal(tree[0]["equity"]) == Decimal(tree[0]["cash"]) + sum(Decimal(r["equity"]) for r in tree if r["kind"] == "farm")

        # The kill switch: every farm halted; at the next open every agent has sold.
        status, killed = server.call("POST", f"/runs/{run_id}/commands", {"kind": "kill", "reason": "market closed"})
        assert status == 200 and killed["halted"] == ["trend", "breakout"], killed
        tree = server.call("GET", f"/runs/{run_id}/wallets")[1]  # published by the command itself
        assert all(r["halted"] == "market closed" for r in tree if r["kind"] == "farm")
        at = server.call("GET", f"/runs/{run_id}")[1]["hosted"]["bars_fed"]
        _wait(server, run_id, lambda r: r["hosted"]["bars_fed"] >= at + 3)
        time.sleep(0.3)  # the tree is published at most 0.1 s apart while bars flow
        tree = server.call("GET", f"/runs/{run_id}/wallets")[1]
        assert all(not r["positions"] for r in tree if r["kind"] == "agent"), tree

        status, stopped = server.call("POST", f"/runs/{run_id}/stop")
        assert status == 200 and stopped["status"] == "interrupted" and stopped["hosted"]["done"]
        status, report = server.call("GET", f"/runs/{run_id}/report")  # rebuilt from the store now
        assert status == 200 and report["ledger"]["audit_ok"] and report["bars"] == stopped["hosted"]["bars_fed"]
        assert Decimal(report["ledger"]["deposits"]) == Decimal("100100")
        status, body = server.call("POST", f"/runs/{run_id}/commands", {"kind": "deposit", "amount": "1"})
        assert status == 409 and "has ended" in body["error"]["message"]
    finally:
        assert server.stop() == 0, server.output()  # SIGTERM: a clean stop
    # Every command is in the store with who gave it, from where.
    from cival.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "store.sqlite3")
    commands = store.rows("operator_commands", run_id, order="n")
    actions = [e for e in store.events(run_id) if e.type == "operator_action"]
    store.close()
    assert [(c["kind"], c["status"]) for c in commands] == [
        ("allocate", "applied"), ("allocate", "refused"), ("deposit", "applied"), ("collect", "applied"), ("halt", "applied"),
        ("add_goal", "applied"), ("assign_goal", "applied"), ("cancel_goal", "applied"), ("kill", "applied"),
    ]
    assert {c["by"] for c in commands} == {"server-token@127.0.0.1"}
    # ... and an operator_action event each, with who, what and what it did.
    assert [(a.data["n"], a.data["command"], a.data["status"], a.data["by"]) for a in actions] == [
        (c["n"], c["kind"], c["status"], c["by"]) for c in commands
    ]
    assert "of free cash" in actions[1].data["result"]["error"] and actions[3].data["result"]["amount"] == str(amount)
    assert server.token not in (tmp_path / f"serve-{server.port}.log").read_text()

    # The same commands at the same bars, given in one thread to a session of the same
    # config: the same books, fills, commands and events as through the API while bars flowed.
    from cival.session import Command, CommandError, Session, SessionConfig
    from cival.store.base import locate
    from tests.test_session_commands import _stored

    where = locate(path=tmp_path / "store.sqlite3")
    again = Session(config_from_dict(RAW), SessionConfig(local=True, max_bars=report["bars"], speed=PACED), store=where).open()
    for row in commands:
        if row["bars"] > again.seen:
            again.step(row["bars"] - again.seen)
        try:
            again.command(Command.from_row(row))
        except CommandError:
            assert row["status"] == "refused"
    one_thread = again.run()
    assert one_thread.bars == report["bars"] and one_thread.audit.ok
    through_api, in_one_thread = _stored(where, run_id), _stored(where, one_thread.run_id)  # type: ignore[arg-type]
    for key in through_api:
        if key != "report":  # one was stopped, the other ran to the same bar
            assert in_one_thread[key] == through_api[key], f"{key}: commands through the API differ from the same in one thread"


def test_a_server_killed_mid_run_takes_the_run_up_again_and_ends_it_as_if_uninterrupted(tmp_path):
    server = Server(tmp_path)
    status, run = server.call("POST", "/runs", {"config": RAW, "options": {"speed": PACED}})
    assert status == 201, run
    run_id = run["id"]
    _wait(server, run_id, lambda r: r["hosted"]["bars_fed"] >= 700)
    server.kill()

    again = Server(tmp_path)
    try:
        assert f"resumed run {run_id}" in again.output()
        finished = _wait(again, run_id, lambda r: r["status"] != "running", timeout=180)
        assert finished["status"] == "finished", again.output()
        status, report = again.call("GET", f"/runs/{run_id}/report")
        assert status == 200
    finally:
        assert again.stop() == 0, again.output()
    whole = run_paper(config_from_dict(RAW), local=True, persist=False).report
    a, b = comparable(report), comparable(whole)
    for r in (a, b):
        r.pop("interrupted", None)
    assert a == b


def test_a_server_stopped_cleanly_takes_its_runs_up_when_it_starts_but_not_one_an_operator_stopped(tmp_path):
    server = Server(tmp_path)
    status, run = server.call("POST", "/runs", {"config": RAW, "options": {"speed": PACED, "max_bars": 1200}})
    assert status == 201, run
    run_id = run["id"]
    status, halted = server.call("POST", "/runs", {"config": {**RAW, "name": "stopped-by-hand"}, "options": {"speed": PACED, "max_bars": 1200}})
    assert status == 201, halted
    _wait(server, run_id, lambda r: r["hosted"]["bars_fed"] >= 300)
    assert server.call("POST", f"/runs/{halted['id']}/stop")[1]["status"] == "interrupted"
    assert server.stop() == 0, server.output()  # SIGTERM: every session stops at a boundary

    again = Server(tmp_path)
    try:
        assert f"resumed run {run_id}" in again.output() and halted["id"] not in again.output(), again.output()
        finished = _wait(again, run_id, lambda r: r["status"] != "running", timeout=180)
        assert finished["status"] == "finished", again.output()
        report = again.call("GET", f"/runs/{run_id}/report")[1]
        assert again.call("GET", f"/runs/{halted['id']}")[1]["status"] == "interrupted"
    finally:
        assert again.stop() == 0, again.output()
    third = Server(tmp_path)  # taken up once: a finished run is not resumed again
    try:
        assert "resumed run" not in third.output(), third.output()
    finally:
        third.stop()
    whole = run_paper(config_from_dict(RAW), local=True, persist=False, max_bars=1200).report
    a, b = comparable(report), comparable(whole)
    for r in (a, b):
        r.pop("interrupted", None)
    assert a == b


def test_the_server_stays_on_this_machine_and_keeps_its_token_to_its_owner(tmp_path):
    refused = run_cival("serve", "--host", "0.0.0.0", "--path", str(tmp_path / "s.sqlite3"), cwd=tmp_path)
    assert refused.returncode == 1 and "--host 0.0.0.0" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "s.sqlite3").exists()
    # Without CIVAL_SERVER_TOKEN a token is made once, kept owner-only, and used again.
    first = Server(tmp_path, token=None)
    first.stop()
    kept = tmp_path / "data" / "server-token"
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    token = kept.read_text().strip()
    assert len(token) >= 32 and token not in first.output() and str(kept) in first.output()
    second = Server(tmp_path, token=None)
    try:
        assert second.call("GET", "/runs", token=token)[0] == 200
    finally:
        second.stop()
    assert kept.read_text().strip() == token


def _read(server: Server, run_id: str, last: int | None = None, most: int | None = None, query: str = "", headers=None):  # type: ignore[no-untyped-def]
    """SSE messages of the run's stream: (id, event, data) up to and including the last one
    that carried an id (a client keeps a group of messages only once it got it whole),
    the connection dropped after ``most`` messages (None: read to the end)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    headers = {"Authorization": f"Bearer {server.token}"} if headers is None else dict(headers)
    if last is not None:
        headers["Last-Event-ID"] = str(last)
    conn.request("GET", f"/api/v1/runs/{run_id}/stream{query}", headers=headers)
    response = conn.getresponse()
    assert response.status == 200 and response.getheader("content-type", "").startswith("text/event-stream")
    got, message, kept = [], {}, 0
    try:
        while most is None or len(got) < most:
            line = response.readline().decode()
            if not line:
                break
            line = line.rstrip("\n")
            if line.startswith(":"):
                continue
            if line:
                key, _, value = line.partition(": ")
                message[key] = value
                continue
            got.append((int(message["id"]) if "id" in message else None, message["event"], message["data"]))
            if "id" in message:
                kept = len(got)
            message = {}
    finally:
        conn.close()
    return got[:kept]


def test_the_stream_resumes_with_last_event_id_and_misses_nothing(tmp_path):
    import json
    import random

    server = Server(tmp_path)
    try:
        status, run = server.call("POST", "/runs", {"config": RAW, "options": {"speed": PACED, "max_bars": 1500}})
        assert status == 201, run
        run_id = run["id"]
        rng = random.Random(7)
        pieces, last, connections = [], None, 0
        while True:  # the client drops the connection at random points while bars flow
            got = _read(server, run_id, last, most=rng.randint(1, 400))
            connections += 1
            pieces += got
            if got:
                last = got[-1][0]
            if pieces and pieces[-1][1] == "RUN_FINISHED":
                break
            assert connections < 500, "the stream never reached the run's end"
        whole = _read(server, run_id)  # after the run: everything, in one go
        status, body = server.call("GET", f"/runs/{run_id}/stream", token="wrong")
        assert status == 401
    finally:
        server.stop()
    assert connections > 3
    assert pieces == whole, "reconnecting with Last-Event-ID lost, repeated or reordered events"
    customs = [json.loads(data)["value"]["seq"] for _, event, data in whole if event == "CUSTOM"]
    from cival.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "store.sqlite3")
    stored = [e.seq for e in store.events(run_id)]
    store.close()
    assert customs == stored == list(range(1, len(stored) + 1))
    assert whole[0][1] == "RUN_STARTED" and [e for _, e, _ in whole].count("STATE_SNAPSHOT") == 1


def _signed_in(server: Server, name: str, password: str, cookie: bool = False):  # type: ignore[no-untyped-def]
    """Sign in by HTTP: (the tokens, the Set-Cookie header or None)."""
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = json.dumps({"name": name, "password": password, "cookie": cookie})
    conn.request("POST", "/api/v1/auth/login", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    tokens = json.loads(response.read())
    assert response.status == 200, tokens
    cookie_header = response.getheader("set-cookie")
    conn.close()
    return tokens, cookie_header


def _get(server: Server, path: str, headers: dict[str, str], method: str = "GET"):  # type: ignore[no-untyped-def]
    import http.client
    import json

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request(method, f"/api/v1{path}", headers=headers)
    response = conn.getresponse()
    body = json.loads(response.read() or b"null")
    conn.close()
    return response.status, body, response


def test_a_browser_opens_the_stream_with_a_stream_token_or_its_session_cookie(tmp_path):
    store_path = str(tmp_path / "store.sqlite3")
    env = {**os.environ, "CIVAL_PASSWORD": "vera-password-123", "CIVAL_DATA_DIR": str(tmp_path / "data")}
    assert run_cival("users", "add", "vera", "--role", "viewer", "--path", store_path, cwd=tmp_path, env=env).returncode == 0
    server = Server(tmp_path)
    try:
        status, run = server.call("POST", "/runs", {"config": RAW, "options": {"max_bars": 300}})
        assert status == 201, run
        run_id = run["id"]
        _wait(server, run_id, lambda r: r["hosted"]["done"])
        whole = _read(server, run_id)
        assert whole[-1][1] == "RUN_FINISHED"

        tokens, cookie = _signed_in(server, "vera", "vera-password-123", cookie=True)
        assert cookie is not None and cookie.startswith("cival_access=")
        flags = {part.strip().lower() for part in cookie.split(";")}
        assert {"httponly", "samesite=strict", "path=/api/v1"} <= flags and "secure" not in flags  # plain HTTP on loopback
        assert _signed_in(server, "vera", "vera-password-123")[1] is None  # only when asked for

        # A stream token: the stream without any header, for an EventSource.
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        status, minted, _ = _get(server, f"/runs/{run_id}/stream-token", bearer, "POST")
        assert status == 200 and minted["run_id"] == run_id and minted["expires_in"] == 300
        assert _read(server, run_id, query=f"?token={minted['token']}", headers={}) == whole
        # An EventSource opened again cannot send Last-Event-ID: the query says it.
        middle = whole[len(whole) // 2][0]
        after = _read(server, run_id, query=f"?token={minted['token']}&last_event_id={middle}", headers={})
        assert after == whole[[i for i, (seq, _, _) in enumerate(whole) if seq == middle][-1] + 1:]
        status, body, _ = _get(server, f"/runs/{run_id}/stream?token=not-a-token", {})
        assert status == 401 and body["error"]["field"] == "token"
        status, other = server.call("POST", "/runs", {"config": RAW, "options": {"max_bars": 48}})
        status, body, _ = _get(server, f"/runs/{other['id']}/stream?token={minted['token']}", {})
        assert status == 401 and f"not a stream token for run {other['id']}" in body["error"]["message"]
        status, body, _ = _get(server, f"/runs?token={minted['token']}", {})
        assert status == 401, "a stream token opened another route"

        # The session cookie: reads and the stream, never a command.
        jar = {"Cookie": cookie.split(";")[0]}
        status, runs, _ = _get(server, "/runs", jar)
        assert status == 200 and run_id in [r["id"] for r in runs]
        assert _read(server, run_id, headers=jar) == whole
        status, body, _ = _get(server, f"/runs/{run_id}/pause", jar, "POST")
        assert status == 401, "a cookie gave a command"
        status, body, response = _get(server, "/auth/logout", jar, "POST")
        assert status == 200 and "max-age=0" in (response.getheader("set-cookie") or "").lower()
        status, body, _ = _get(server, "/runs", {"Cookie": "cival_access=forged"})
        assert status == 401 and "session cookie" in body["error"]["message"]
    finally:
        server.stop()


def test_another_host_needs_user_accounts_and_tls(tmp_path):
    import shutil
    import ssl
    import subprocess
    import urllib.request

    store = tmp_path / "store.sqlite3"
    env = {**os.environ, "CIVAL_PASSWORD": "ada-password-789", "CIVAL_DATA_DIR": str(tmp_path / "data")}
    refused = run_cival("serve", "--host", "0.0.0.0", "--path", str(store), cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "has no user accounts" in refused.stderr and "cival users add" in refused.stderr
    assert not store.exists(), "a refused start left a store behind"
    assert run_cival("users", "add", "ada", "--role", "admin", "--path", str(store), cwd=tmp_path, env=env).returncode == 0
    refused = run_cival("serve", "--host", "0.0.0.0", "--path", str(store), cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "plain HTTP" in refused.stderr and "--tls-cert" in refused.stderr
    half = run_cival("serve", "--tls-cert", str(tmp_path / "cert.pem"), "--path", str(store), cwd=tmp_path, env=env)
    assert half.returncode == 1 and "give both --tls-cert and --tls-key" in half.stderr

    # Over TLS (here on 127.0.0.1; the same flags serve another --host).
    openssl = shutil.which("openssl")
    assert openssl, "the TLS test makes its certificate with openssl: install it (apt-get install openssl)"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    server = Server(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key), cafile=cert)
    try:
        status, tokens = server.call("POST", "/auth/login", {"name": "ada", "password": "ada-password-789", "cookie": True}, token=None)
        assert status == 200 and server.call("GET", "/auth/me", token=tokens["access_token"])[1] == {"name": "ada", "role": "admin"}
        request = urllib.request.Request(
            server.url + "/auth/login", method="POST", headers={"Content-Type": "application/json"},
            data=b'{"name": "ada", "password": "ada-password-789", "cookie": true}',
        )
        with urllib.request.urlopen(request, context=ssl.create_default_context(cafile=str(cert)), timeout=60) as response:
            assert "secure" in {p.strip().lower() for p in response.headers["set-cookie"].split(";")}  # over HTTPS only
        with pytest.raises(OSError):  # plain HTTP is not served
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/v1/health", timeout=10)
        assert "https://127.0.0.1" in server.output()
    finally:
        server.stop()


def test_users_sign_in_and_act_by_their_role(tmp_path):
    store_path = str(tmp_path / "store.sqlite3")
    passwords = {"vera": "vera-password-123", "otto": "otto-password-456", "ada": "ada-password-789"}
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("ada", "admin")):
        added = run_cival("users", "add", name, "--role", role, "--path", store_path, cwd=tmp_path,
                          env={**os.environ, "CIVAL_PASSWORD": passwords[name], "CIVAL_DATA_DIR": str(tmp_path / "data")})
        assert added.returncode == 0, added.stderr
    weak = run_cival("users", "add", "eve", "--role", "admin", "--path", store_path, cwd=tmp_path,
                     env={**os.environ, "CIVAL_PASSWORD": "short", "CIVAL_DATA_DIR": str(tmp_path / "data")})
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr
    from cival.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "store.sqlite3")
    hashes = {u["name"]: u["password_hash"] for u in store.rows("users")}
    store.close()
    assert set(hashes) == {"vera", "otto", "ada"}  # eve was refused
    assert all(h.startswith("$argon2id$") and passwords[n] not in h for n, h in hashes.items())

    server = Server(tmp_path, env={"CIVAL_ACCESS_TTL": "3"})
    try:
        def login(name: str, password: str) -> tuple[int, dict]:
            return server.call("POST", "/auth/login", {"name": name, "password": password}, token=None)

        assert login("otto", "not-his-password")[0] == 401
        status, body = login("nobody", "whatever-it-is")
        assert status == 401 and body["error"]["message"] == "wrong user name or password"
        tokens = {}
        for name, password in passwords.items():
            status, body = login(name, password)
            assert status == 200 and body["token_type"] == "bearer" and body["expires_in"] == 3
            tokens[name] = body
        access = {name: t["access_token"] for name, t in tokens.items()}
        assert server.call("GET", "/auth/me", token=access["otto"])[1] == {"name": "otto", "role": "operator"}

        # Roles: a viewer reads; an operator also commands; an admin also starts and stops runs.
        for name in ("vera", "otto"):
            status, body = server.call("POST", "/runs", {"config": RAW, "options": {"speed": PACED}}, token=access[name])
            assert status == 403 and body["error"]["code"] == "forbidden" and "admin role" in body["error"]["message"]
        status, run = server.call("POST", "/runs", {"config": RAW, "options": {"speed": PACED}}, token=access["ada"])
        assert status == 201, run
        run_id = run["id"]
        assert server.call("GET", "/runs", token=access["vera"])[0] == 200
        status, body = server.call("POST", f"/runs/{run_id}/commands", {"kind": "halt", "target": "trend"}, token=access["vera"])
        assert status == 403 and "vera is a viewer; this needs the operator role" in body["error"]["message"]
        status, body = server.call("POST", f"/runs/{run_id}/commands", {"kind": "halt", "target": "trend"}, token=access["otto"])
        assert status == 200, body
        assert server.call("POST", f"/runs/{run_id}/stop", token=access["otto"])[0] == 403

        # API keys: shown once, kept hashed, revocable.
        status, key = server.call("POST", "/keys", {"label": "nightly script"}, token=access["otto"])
        assert status == 201 and key["key"].startswith("cvk_")
        assert server.call("POST", f"/runs/{run_id}/commands", {"kind": "resume", "target": "trend"}, token=key["key"])[0] == 200
        status, listed = server.call("GET", "/keys", token=access["otto"])
        assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0] and "key_hash" not in listed[0]
        assert server.call("DELETE", f"/keys/{key['id']}", token=access["otto"])[0] == 200
        status, body = server.call("GET", "/runs", token=key["key"])
        assert status == 401 and "revoked" in body["error"]["message"]

        # Tokens: a refresh token buys new ones; an access token does not refresh; they expire.
        assert server.call("POST", "/auth/refresh", {"refresh_token": access["ada"]}, token=None)[0] == 401
        time.sleep(3.5)
        status, body = server.call("GET", "/runs", token=access["ada"])
        assert status == 401 and "expired" in body["error"]["message"]
        status, fresh = server.call("POST", "/auth/refresh", {"refresh_token": tokens["ada"]["refresh_token"]}, token=None)
        assert status == 200 and server.call("POST", f"/runs/{run_id}/stop", token=fresh["access_token"])[0] == 200

        # A removed user's tokens stop working.
        removed = run_cival("users", "remove", "vera", "--path", store_path, cwd=tmp_path,
                            env={**os.environ, "CIVAL_DATA_DIR": str(tmp_path / "data")})
        assert removed.returncode == 0, removed.stderr
        status, fresh = server.call("POST", "/auth/refresh", {"refresh_token": tokens["vera"]["refresh_token"]}, token=None)
        assert status == 401 and "no longer exists" in fresh["error"]["message"]
    finally:
        server.stop()
    log = server.output()
    assert not any(secret in log for secret in [*passwords.values(), *access.values(), key["key"]])
    store = SqliteStore(tmp_path / "store.sqlite3")
    commands = store.rows("operator_commands", run_id, order="n")
    keys = store.rows("api_keys")
    store.close()
    assert [(c["kind"], c["by"]) for c in commands] == [("halt", "otto@127.0.0.1"), ("resume", "otto@127.0.0.1")]
    assert keys[0]["revoked_at"] is not None and key["key"].split("_", 2)[2] not in keys[0]["key_hash"]


def test_rate_limits_answer_429_with_retry_after_and_recover(tmp_path):
    added = run_cival("users", "add", "otto", "--role", "operator", "--path", str(tmp_path / "store.sqlite3"), cwd=tmp_path,
                      env={**os.environ, "CIVAL_PASSWORD": "otto-password-456", "CIVAL_DATA_DIR": str(tmp_path / "data")})
    assert added.returncode == 0, added.stderr
    server = Server(tmp_path, env={"CIVAL_RATE_LOGIN": "3 per 4 seconds", "CIVAL_RATE_USER": "5 per 4 seconds"})
    try:
        # Sign-in attempts: three wrong ones, then even the right password waits.
        assert [server.call("POST", "/auth/login", {"name": "otto", "password": f"guess-{i}-xxxxxxx"}, token=None)[0]
                for i in range(3)] == [401, 401, 401]
        status, body = server.call("POST", "/auth/login", {"name": "otto", "password": "otto-password-456"}, token=None)
        assert status == 429 and body["error"]["code"] == "rate_limited" and 1 <= body["error"]["retry_after"] <= 4
        time.sleep(body["error"]["retry_after"] + 0.2)
        status, tokens = server.call("POST", "/auth/login", {"name": "otto", "password": "otto-password-456"}, token=None)
        assert status == 200, tokens
        # Requests by one user: five, then 429 (the health check is never limited), then again.
        statuses = [server.call("GET", "/runs", token=tokens["access_token"])[0] for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        assert server.call("GET", "/health", token=None)[0] == 200
        assert server.call("GET", "/runs")[0] == 200  # another user (the server's token) is not held back
        time.sleep(4.2)
        assert server.call("GET", "/runs", token=tokens["access_token"])[0] == 200
    finally:
        server.stop()


def test_a_runs_books_fills_equity_and_events_read_in_pages(tmp_path):
    server = Server(tmp_path)
    try:
        status, run = server.call("POST", "/runs", {"config": RAW, "options": {"max_bars": 1200}})
        assert status == 201, run
        run_id = run["id"]
        _wait(server, run_id, lambda r: r["status"] == "finished")
        report = server.call("GET", f"/runs/{run_id}/report")[1]

        def pages(path: str, size: int) -> list[dict]:
            items, offset = [], 0
            while True:
                status, page = server.call("GET", f"{path}{'&' if '?' in path else '?'}offset={offset}&limit={size}")
                assert status == 200, page
                items += page["items"]
                offset += size
                if offset >= page["total"]:
                    return items

        everything = server.call("GET", f"/runs/{run_id}/transactions?limit=1000")[1]
        assert everything["total"] == report["ledger"]["transactions"] > 100
        assert pages(f"/runs/{run_id}/transactions", 37) == everything["items"][: everything["total"]] or everything["total"] > 1000
        trend = pages(f"/runs/{run_id}/transactions?wallet=farm:trend", 50)
        assert trend and all(any(p["account"].startswith("farm:trend/") for p in t["postings"]) for t in trend)
        allocations = pages(f"/runs/{run_id}/transactions?type=allocation", 50)
        assert allocations and {t["type"] for t in allocations} == {"allocation"}
        for t in everything["items"]:  # every transaction balances, in exact decimal strings
            assert sum(Decimal(p["amount"]) for p in t["postings"]) == 0

        fills = pages(f"/runs/{run_id}/fills", 25)
        agents = [a for f in report["farms"] for a in f["agents"]]
        assert len(fills) == sum(2 * a["trade_count"] + len(a["positions"]) for a in agents)
        darvas = pages(f"/runs/{run_id}/fills?agent=darvas", 25)
        assert darvas and {f["agent"] for f in darvas} == {"darvas"} and all(Decimal(f["qty"]) > 0 for f in darvas)
        trades = server.call("GET", f"/runs/{run_id}/trades")[1]
        assert len(trades) == sum(a["trade_count"] for a in agents)
        equity = pages(f"/runs/{run_id}/equity?entity=farm:trend", 100)
        assert equity and {e["entity"] for e in equity} == {"farm:trend"}

        seen, after = [], 0
        while True:
            page = server.call("GET", f"/runs/{run_id}/events?after={after}&limit=200")[1]["items"]
            if not page:
                break
            seen += page
            after = page[-1]["seq"]
        assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1)) and seen[-1]["type"] == "run_finished"
        fills_only = server.call("GET", f"/runs/{run_id}/events?type=order_filled&limit=1000")[1]["items"]
        assert len(fills_only) == len(fills)
        status, body = server.call("GET", f"/runs/{run_id}/fills?limit=5000")
        assert status == 422 and body["error"]["field"] == "limit"
        for query in ("events?after=", "fills?offset="):  # beyond what the store's integers hold: refused, not a 500
            status, body = server.call("GET", f"/runs/{run_id}/{query}{2**70}")
            assert status == 422, body
    finally:
        server.stop()


def test_the_client_and_the_cli_speak_to_a_served_run(tmp_path):
    from cival import Client
    from cival.client import ClientError

    env = {**os.environ, "CIVAL_DATA_DIR": str(tmp_path / "data")}
    for name, role in (("otto", "operator"), ("vera", "viewer")):
        added = run_cival("users", "add", name, "--role", role, "--path", str(tmp_path / "store.sqlite3"), cwd=tmp_path,
                          env={**env, "CIVAL_PASSWORD": f"{name}-password-123"})
        assert added.returncode == 0, added.stderr
    server = Server(tmp_path)
    try:
        admin = Client(server.url, Server.TOKEN)
        run_id = admin.start(config_from_dict(RAW).model_dump(mode="json"), speed=PACED, max_bars=2000)
        with Client(server.url.removesuffix("/api/v1"), name="otto", password="otto-password-123") as otto:
            assert otto.me() == {"name": "otto", "role": "operator"}
            tree = otto.wallets(run_id)
            assert list(tree.index) == ["master", "trend", "gator", "gator-fast", "breakout", "darvas"]
            assert tree["equity"].dtype == "float64" and isinstance(otto.wallets(run_id, exact=True)["cash"].iloc[0], Decimal)
            assert otto.halt(run_id, "darvas", "client test")["entity"] == "agent:darvas"
            with pytest.raises(ClientError) as refused:
                otto.allocate(run_id, "trend", "1000000000")
            assert refused.value.status == 409 and "of free cash" in str(refused.value)
            events, kept, last = [], 0, None
            for event in otto.stream(run_id):  # the connection breaks after 300 messages...
                events.append(event)
                if event["_id"] is not None:
                    kept, last = len(events), event["_id"]
                if len(events) == 300:
                    break
            events = events[:kept]  # ... keeping what ended with an id, and takes up from there
            events += list(otto.stream(run_id, last_event_id=last))
            assert events[-1]["type"] == "RUN_FINISHED"
            seqs = [e["value"]["seq"] for e in events if e["type"] == "CUSTOM"]
            assert seqs == list(range(1, len(seqs) + 1))
        with Client(server.url, name="vera", password="vera-password-123") as vera:
            with pytest.raises(ClientError) as forbidden:
                vera.kill(run_id)
            assert forbidden.value.status == 403 and forbidden.value.code == "forbidden"
            assert len(vera.trades(run_id)) > 0

        # The CLI: sign in once, then status and commands; the tokens kept owner-only.
        client_env = {**env, "CIVAL_DATA_DIR": str(tmp_path / "client"), "CIVAL_PASSWORD": "otto-password-123"}
        signed = run_cival("login", "otto", "--server", server.url, cwd=tmp_path, env=client_env)
        assert signed.returncode == 0 and "signed in" in signed.stdout, signed.stderr
        kept = tmp_path / "client" / "client.json"
        assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
        listed = run_cival("status", cwd=tmp_path, env=client_env)
        assert listed.returncode == 0 and run_id in listed.stdout and "finished" in listed.stdout
        tree_text = run_cival("status", run_id, cwd=tmp_path, env=client_env)
        assert tree_text.returncode == 0 and "darvas" in tree_text.stdout and "HALTED: client test" in tree_text.stdout
        ended = run_cival("command", run_id, "deposit", "10", cwd=tmp_path, env=client_env)
        assert ended.returncode == 1 and "has ended" in ended.stderr and "Traceback" not in ended.stderr
    finally:
        server.stop()


def test_on_postgresql_and_redis_accounts_commands_and_the_stream_work_alike(tmp_path, fresh_postgres_url, redis_url):
    import redis as redis_lib

    from cival import Client
    from cival.client import ClientError

    env = {**os.environ, "CIVAL_DATA_DIR": str(tmp_path / "data")}
    added = run_cival("users", "add", "otto", "--role", "operator", "--url", fresh_postgres_url, cwd=tmp_path,
                      env={**env, "CIVAL_PASSWORD": "otto-password-123"})
    assert added.returncode == 0, added.stderr
    server = Server(tmp_path, store_url=fresh_postgres_url, env={"REDIS_URL": redis_url})
    try:
        run_id = Client(server.url, Server.TOKEN).start(RAW, speed=PACED, max_bars=1500)
        with Client(server.url, name="otto", password="otto-password-123") as otto:
            assert otto.halt(run_id, "trend", "on postgres")["entity"] == "farm:trend"
            key = otto._call("POST", "/keys", {"label": "pg"})
            assert otto._call("DELETE", f"/keys/{key['id']}")["revoked"]  # an update in PostgreSQL
            with pytest.raises(ClientError):
                Client(server.url, key["key"]).runs()
            events = list(otto.stream(run_id))
            assert events[-1]["type"] == "RUN_FINISHED" and events[-1]["result"]["audit_ok"]
            seqs = [e["value"]["seq"] for e in events if e["type"] == "CUSTOM"]
            assert seqs == list(range(1, len(seqs) + 1))
            assert any(e["type"] == "CUSTOM" and e["name"] == "operator_action" for e in events)
        # The rate limits counted in Redis, shared by every process of the server.
        client = redis_lib.Redis.from_url(redis_url)
        assert any(b"otto" in k for k in client.scan_iter("LIMITS*", count=1000))
        client.close()
        removed = run_cival("users", "remove", "otto", "--url", fresh_postgres_url, cwd=tmp_path, env=env)  # a delete
        assert removed.returncode == 0, removed.stderr
        status, body = server.call("POST", "/auth/login", {"name": "otto", "password": "otto-password-123"}, token=None)
        assert status == 401
    finally:
        server.stop()


def test_a_server_hosts_its_sessions_on_ray_by_default(tmp_path):
    server = Server(tmp_path, local=False)
    try:
        status, run = server.call("POST", "/runs", {"config": RAW, "options": {"max_bars": 480, "speed": 3600 * 300}})
        assert status == 201, run
        run_id = run["id"]
        # A second run on the same Ray, longer: the first one's end must not take Ray from under it.
        status, longer = server.call("POST", "/runs", {"config": {**RAW, "name": "longer"}, "options": {"max_bars": 960, "speed": 3600 * 300}})
        assert status == 201, longer
        _wait(server, run_id, lambda r: r["hosted"]["bars_fed"] >= 48, timeout=180)
        status, booked = server.call("POST", f"/runs/{run_id}/commands", {"kind": "allocate", "target": "breakout", "amount": "100"})
        assert status == 200 and booked["amount"] == "100", booked
        status, added = server.call("POST", f"/runs/{run_id}/goals", {"name": "busy", "type": "trade_volume", "target": {"trades": 2},
                                                                     "assign": [{"farm": "trend"}]})
        assert status == 201, added
        done = _wait(server, run_id, lambda r: r["hosted"]["done"], timeout=300)
        assert done["status"] == "finished" and done["hosted"]["error"] is None, done
        status, report = server.call("GET", f"/runs/{run_id}/report")
        assert status == 200 and report["mode"] == "ray" and report["ledger"]["audit_ok"] and report["bars"] == 480
        assert "busy" in [g["name"] for g in report["goals"]]
        other = _wait(server, longer["id"], lambda r: r["hosted"]["done"], timeout=300)
        assert other["status"] == "finished" and other["hosted"]["error"] is None and other["hosted"]["bars_fed"] == 960, other
        assert server.call("GET", f"/runs/{longer['id']}/report")[1]["ledger"]["audit_ok"]
    finally:
        assert server.stop() == 0, server.output()
