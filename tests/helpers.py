"""Helpers shared by several test modules (fixtures live in conftest.py): running the CLI
bounded, the recovery config, and the processes, sockets and environment of a session
running in a subprocess (read with psutil)."""

from __future__ import annotations

import ipaddress
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import psutil

from cival.config import config_from_dict
from tests.conftest import ROOT

SRC = ROOT / "src"

GiB = 1 << 30


def run_cival(
    *args: str, cwd: Path, timeout: float = 60, memory: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m cival ARGS`` with the checkout's src first on PYTHONPATH, in ``cwd``.

    ``timeout`` (seconds) and ``memory`` (bytes of address space, RLIMIT_AS) bound the
    process, so that input that makes it run away fails the test instead of holding the
    suite: subprocess.TimeoutExpired, or a MemoryError in its output.
    """
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(SRC)] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    environment.pop("PYTHONSTARTUP", None)

    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "cival", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,  # noqa: PLW1509 - only sets a resource limit
    )


def recovery_config():
    """A cluster that carries state across calls in every way a session can: rebalancing by
    performance within a farm, selling to rebalance, the master's rebalancing, goals that
    collect, a risk limit, an inline farm (see tests/test_recovery.py)."""
    return config_from_dict(recovery_raw())


def recovery_raw():
    """The raw config of :func:`recovery_config` (a fresh dict each time)."""
    return (
        {
            "name": "recovery",
            "master": {
                "initial_deposit": "100000",
                "allocation": {"policy": "performance", "metric": "return", "lookback_bars": 96, "min_share": 0.2, "reserve_pct": 10},
                "rebalance": {"every_bars": 96},
            },
            "farms": [
                {
                    "name": "trend",
                    "type": "trend_following",
                    "allocation": {"policy": "performance", "lookback_bars": 48, "reserve_pct": 5},
                    "rebalance": {"every_bars": 48},
                    "agents": [
                        {"name": "gator-a", "strategy": "alligator"},
                        {"name": "gator-b", "strategy": "alligator", "params": {"jaw_period": 21, "teeth_period": 13}},
                    ],
                },
                {
                    "name": "breakout",
                    "type": "breakout",
                    "allocation": {"policy": "equal", "reserve_pct": 5},
                    "rebalance": {"every_bars": 72, "liquidate": True},
                    "agents": [
                        {"name": "darvas-a", "strategy": "darvas"},
                        {"name": "darvas-b", "strategy": "darvas", "params": {"lookback": 40}},
                    ],
                },
                {
                    "name": "waves",
                    "type": "price_action",
                    "runtime": {"agents": "inline"},
                    "agents": [{"name": "elliott-a", "strategy": "elliott", "params": {"zigzag_pct": 3}}],
                },
            ],
            "goals": [
                {"name": "gator-profit", "type": "profit_target", "target": {"profit": "200"}, "assign": [{"agent": "gator-a"}]},
                {"name": "breakout-busy", "type": "trade_volume", "target": {"trades": 40}, "assign": [{"farm": "breakout"}],
                 "on_complete": "collect_all"},
                {"name": "waves-quality", "type": "strategy_performance", "target": {"min_win_rate": 0.9, "min_trades": 5},
                 "assign": [{"farm": "waves"}], "deadline": {"bars": 3000}},
            ],
            "risk": {"farm_max_drawdown_pct": 40},
            "checkpoint": {"every_bars": 24},
            "data": {"source": "file", "path": str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")},
        }
    )


def session_processes(pid: int) -> list[psutil.Process]:
    """A session's driver and every process under it (Ray's GCS, raylet, agents, workers)."""
    driver = psutil.Process(pid)
    return [driver, *driver.children(recursive=True)]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until_gone(processes: list[psutil.Process], timeout: float = 30.0) -> list[psutil.Process]:
    """Poll until none of ``processes`` runs (bounded by ``timeout``); returns those still running."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in processes if alive(p)]


def listening(process: psutil.Process) -> list[tuple[str, int]]:
    """The (address, port) of every TCP socket ``process`` listens on."""
    try:
        connections = process.net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
    return [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6 (``::ffff:127.0.0.1``)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped is not None and mapped.is_loopback)


def gcs_server(pid: int, timeout: float = 60.0) -> psutil.Process:
    """The GCS of the session whose driver is ``pid``, once it listens (bounded poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in session_processes(pid)[1:]:
            try:
                if p.name() == "gcs_server" and listening(p):
                    return p
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no gcs_server listening under process {pid}")


def gcs_port(gcs: psutil.Process) -> int:
    ports = {port for _, port in listening(gcs)}
    assert len(ports) == 1, f"the GCS listens on {sorted(ports)}"
    return ports.pop()


def environment_value(process: psutil.Process, name: str) -> str | None:
    """A variable of the environment ``process`` was started with (what a driver sets in
    its own os.environ shows in the processes it starts, not in /proc of the driver)."""
    return process.environ().get(name)


def processes_holding(name: str, value: str) -> list[int]:
    """The pids of every process on this machine whose environment has ``name=value``
    (a per-cluster token marks every process of that cluster, wherever it was reparented)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(name) == value and alive(p):
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found
