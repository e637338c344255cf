"""Ray as Cival starts it: a local cluster listens on loopback only and admits only the
processes that hold its own token; joining a cluster leaves its security as it is.

The sessions run in subprocesses, as a user runs them. A refused ``ray.init`` gives up
only after about 20 s, so the refused attempts run side by side."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT
from tests.helpers import (
    environment_value,
    gcs_port,
    gcs_server,
    is_loopback,
    listening,
    processes_holding,
    session_processes,
    wait_until_gone,
)

SRC = ROOT / "src"
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS")

JOIN = """
import sys
import ray
ray.init(address=sys.argv[1], logging_level="ERROR")
print("joined", ray.get(ray.remote(lambda: 6 * 7).remote()), flush=True)
ray.shutdown()
"""


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any Ray address or authentication setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in AUTH_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def routable_addresses() -> list[str]:
    """This machine's addresses other than loopback and link-local ones."""
    found = []
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            host = a.address.split("%", 1)[0]
            if not is_loopback(host) and not host.startswith("fe80"):
                found.append(host)
    return found


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return False
    except OSError:
        return True


@pytest.mark.slow
def test_a_local_session_listens_on_loopback_only_and_admits_only_its_token(tmp_path):
    """During a real ``cival demo`` (default settings): every socket of the driver, the GCS,
    the raylet, the agents and the actors is on loopback; the GCS port refuses connections
    on the machine's other addresses; ``ray.init`` from another process fails without the
    cluster's token or with a wrong one, and succeeds with the right one; ``cival`` joining
    it without a token says which variables to set. The token appears in no output and
    nowhere in the store, and no process holding it outlives the session."""
    data = tmp_path / "data"
    env = clean_env(CIVAL_DATA_DIR=str(data))
    # 12,556 hourly bars at 36,000x: a bar every 0.1 s, far longer than this test needs.
    session = subprocess.Popen(
        [sys.executable, "-m", "cival", "demo", "--speed", "36000"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    attempts: dict[str, subprocess.Popen[str]] = {}
    try:
        head = []
        for _ in range(5):  # the banner, the run id, then a progress line once bars flow
            line = session.stdout.readline()
            head.append(line)
            if re.match(r"demo: bar [\d,]+/12,556", line):
                break
        assert re.match(r"demo: bar ", head[-1]), "".join(head)

        processes = session_processes(session.pid)
        sockets = {(p.name(), host, port) for p in processes for host, port in listening(p)}
        names = {name for name, _, _ in sockets}
        assert {"gcs_server", "raylet"} <= names and any(n.startswith("ray::") for n in names), sockets
        assert [s for s in sockets if not is_loopback(s[1])] == [], "listening beyond loopback"

        gcs = gcs_server(session.pid)
        port = gcs_port(gcs)
        others = routable_addresses()
        assert all(refused(host, port) for host in others), others
        assert refused("127.0.0.1", port) is False  # it is there, on loopback

        # The driver put the token in its environment before starting Ray, whose
        # processes inherited it.
        assert environment_value(gcs, "RAY_AUTH_MODE") == "token"
        token = environment_value(gcs, "RAY_AUTH_TOKEN")
        assert token is not None and re.fullmatch(r"[0-9a-f]{64}", token)

        address = f"127.0.0.1:{port}"
        # Another process on this machine dials the loopback cluster (a node of its own
        # address would not be found on 127.0.0.1: the same switch as Cival's).
        dial = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        for name, extra in {
            "no token": {"RAY_AUTH_MODE": "disabled"},
            "wrong token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},
            "its token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token},
        }.items():
            attempts[name] = subprocess.Popen(
                [sys.executable, "-c", JOIN, address], env=clean_env(**dial, **extra),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            )
        attempts["cival without a token"] = subprocess.Popen(
            [sys.executable, "-m", "cival", "demo", "--bars", "24", "--json", "--address", address],
            cwd=tmp_path, env=clean_env(CIVAL_DATA_DIR=str(tmp_path / "joiner"), **dial),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        results = {name: (p, *p.communicate(timeout=180)) for name, p in attempts.items()}

        for name in ("no token", "wrong token"):
            proc, out, err = results[name]
            assert proc.returncode != 0 and "joined" not in out, (name, out, err[-2000:])
        proc, out, err = results["its token"]
        assert proc.returncode == 0 and "joined 42" in out, err[-2000:]
        proc, out, err = results["cival without a token"]
        assert proc.returncode == 1, err[-2000:]
        message = next((line for line in err.splitlines() if line.startswith("error: ")), "")
        assert message.startswith(f"error: the Ray cluster at {address} refused the connection"), err[-2000:]
        assert "RAY_AUTH_TOKEN" in message and "RAY_AUTH_TOKEN_PATH" in message and "RAY_AUTH_MODE=token" in message
        assert "Traceback" not in err

        assert session.poll() is None  # all this while, the session ran on
        os.killpg(session.pid, signal.SIGINT)
        output = "".join(head) + session.communicate(timeout=120)[0]
    finally:
        for proc in [session, *attempts.values()]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    assert session.returncode == 130, output[-3000:]
    assert "audit OK: 7 ledgers" in output
    assert token not in output
    stored = b"".join(f.read_bytes() for f in data.iterdir() if f.is_file())
    assert stored and token.encode() not in stored
    assert wait_until_gone(processes) == []
    assert processes_holding("RAY_AUTH_TOKEN", token) == []


@pytest.mark.slow
def test_a_local_ray_started_in_process_has_a_token_of_its_own_and_gives_the_environment_back(monkeypatch):
    """``connect()`` starts Ray on 127.0.0.1 with a fresh token in the environment (Ray's
    processes inherit it; nothing is written to ~/.ray), and ``close()`` takes it out."""
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants

    from cival.rayconnect import connect

    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")
    for name in (*AUTH_VARIABLES, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    default_token_file = Path.home() / ".ray" / "auth_token"
    had_token_file = default_token_file.exists()
    was_cluster = ray_constants.ENABLE_RAY_CLUSTER

    session = connect(None, num_cpus=2, logging_level="ERROR")
    try:
        token = os.environ.get("RAY_AUTH_TOKEN")
        assert os.environ.get("RAY_AUTH_MODE") == "token" and token and re.fullmatch(r"[0-9a-f]{64}", token)
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}

        @ray.remote
        def worker_environment() -> tuple[str | None, bool]:
            return os.environ.get("RAY_AUTH_MODE"), os.environ.get("RAY_AUTH_TOKEN") == token

        assert ray.get(worker_environment.remote()) == ("token", True)
    finally:
        session.close()
    assert not ray.is_initialized()
    assert [n for n in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") if n in os.environ] == []
    assert ray_constants.ENABLE_RAY_CLUSTER == was_cluster
    assert default_token_file.exists() == had_token_file


def test_a_local_ray_keeps_the_users_token_and_honours_an_explicit_opt_out(monkeypatch, caplog):
    """A token the user gave (RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH) is the cluster's; an
    explicit RAY_AUTH_MODE=disabled is honoured, with one warning per process; each time
    the environment is given back as it was."""
    ray = pytest.importorskip("ray")

    from cival import rayconnect

    if ray.is_initialized():
        pytest.skip("a Ray is already running in this process")
    for name in (*AUTH_VARIABLES, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
        monkeypatch.delenv(name, raising=False)

    def prepared(**env: str) -> dict[str, str | None]:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        before = dict(os.environ)
        saved = rayconnect._local_environment()
        try:
            return {n: os.environ.get(n) for n in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
        finally:
            rayconnect._restore(saved)
            assert dict(os.environ) == before
            for name in env:
                monkeypatch.delenv(name)

    assert prepared(RAY_AUTH_TOKEN="the-users-token") == {
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "the-users-token", "RAY_AUTH_TOKEN_PATH": None}
    assert prepared(RAY_AUTH_TOKEN_PATH="/somewhere/token") == {
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": None, "RAY_AUTH_TOKEN_PATH": "/somewhere/token"}
    first, second = prepared()["RAY_AUTH_TOKEN"], prepared()["RAY_AUTH_TOKEN"]
    assert first and second and first != second  # one per cluster

    monkeypatch.setattr(rayconnect, "_warned_unauthenticated", False)
    with caplog.at_level("WARNING", logger="cival.ray"):
        for _ in range(2):
            assert prepared(RAY_AUTH_MODE="disabled") == {
                "RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": None, "RAY_AUTH_TOKEN_PATH": None}
    warnings = [r.getMessage() for r in caplog.records if r.name == "cival.ray"]
    assert len(warnings) == 1 and "accepts unauthenticated connections" in warnings[0]
