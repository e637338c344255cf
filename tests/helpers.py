"""Helpers shared by test modules: the processes, sockets and environment of a session
running in a subprocess (read with psutil)."""

from __future__ import annotations

import ipaddress
import time

import psutil


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
