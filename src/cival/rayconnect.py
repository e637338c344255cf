"""Starting or joining Ray: the one place Cival calls ``ray.init`` and ``ray.shutdown``.

Paper sessions (:func:`cival.runtime.connect_ray`), sweeps and walk-forward runs connect
through :func:`connect` and give Ray back through :meth:`RaySession.close`.

* **A local cluster** (no address and no ``RAY_ADDRESS``) listens on loopback only: its
  GCS, raylet, runtime-env agent, driver and actors accept no connection from another
  machine. It also requires a token: unless the user gave one (``RAY_AUTH_TOKEN``, or
  ``RAY_AUTH_TOKEN_PATH`` naming a file that holds it), a fresh random token is made for
  this cluster and put in this process's environment, which Ray's processes inherit;
  nothing is written to disk, and :meth:`RaySession.close` takes it out again. An
  explicit ``RAY_AUTH_MODE=disabled`` is honoured (tests use it) with a warning, once,
  that the cluster accepts unauthenticated connections. The token is never logged.
* **Joining a cluster** (an address, or ``RAY_ADDRESS``) takes that cluster's security as
  it is: Cival changes neither ``RAY_AUTH_MODE`` nor any token. A cluster that refuses
  the connection for want of its token says so, naming the variables to set.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import socket
from typing import Any

from cival.core.errors import CivalError

log = logging.getLogger("cival.ray")

AUTH_MODE = "RAY_AUTH_MODE"
AUTH_TOKEN = "RAY_AUTH_TOKEN"
AUTH_TOKEN_PATH = "RAY_AUTH_TOKEN_PATH"
LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for single-machine clusters; ``0`` makes a node use 127.0.0.1 (see
:func:`_bind_to_loopback`)."""

_warned_unauthenticated = False


class RayUnavailable(CivalError):
    """Ray could not be started, or the cluster at an address could not be reached or joined."""


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast on an address nothing listens on (``ray.init`` would retry for many minutes)."""
    target = address.split("://", 1)[-1]
    if target in ("auto", "local") or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise RayUnavailable(
            f"could not start or reach the Ray cluster at {address} ({type(exc).__name__}: {exc}); "
            "check RAY_ADDRESS or --address"
        ) from None


class RaySession:
    """Ray as :func:`connect` left it. ``started``: whether Ray was started here, in which
    case :meth:`close` shuts it down and gives the environment back; otherwise (Ray was
    already running in this process) :meth:`close` leaves it alone."""

    def __init__(self, started: bool, address: str | None, saved: dict[str, Any] | None = None) -> None:
        self.started = started
        self.address = address
        self._saved = saved

    @property
    def local(self) -> bool:
        """Whether this process started a local cluster (rather than joining one)."""
        return self.started and not self.address

    def close(self) -> None:
        """Shut down a Ray started here and restore what :func:`connect` changed (once)."""
        if not self.started:
            return
        import ray

        self.started = False
        try:
            ray.shutdown()
        finally:
            if self._saved is not None:
                _restore(self._saved)
                self._saved = None


def ray_address(address: str | None = None) -> str | None:
    """The cluster to join: ``address``, else ``RAY_ADDRESS``; None for a local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def connect(address: str | None = None, *, num_cpus: int | None = None, **init: Any) -> RaySession:
    """Start a local Ray (no ``address`` and no ``RAY_ADDRESS``) or join the cluster at
    ``address`` (or ``RAY_ADDRESS``); ``init`` (e.g. ``logging_level``) goes to ``ray.init``.

    A local Ray gets ``num_cpus`` CPUs (default: this machine's) and no dashboard.

    A Ray already running in this process is used as it is. Raises :class:`RayUnavailable`,
    saying what to check, when Ray cannot be started or the cluster cannot be reached or
    joined (a reachable address that refuses the connection for want of a token names
    the variables that give it).
    """
    import ray

    if ray.is_initialized():
        return RaySession(False, None)
    address = ray_address(address)
    if address:
        check_reachable(address)
        _reload_auth()  # the environment as it is now, not as it was when ray was imported
        try:
            ray.init(address=address, **init)
        except Exception as exc:  # ray raises ConnectionError, RuntimeError, AuthenticationError...
            raise _join_error(address, exc) from None
        return RaySession(True, address)
    saved = _local_environment()
    try:
        context = ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **init)
    except BaseException as exc:
        _abandon(saved)
        if isinstance(exc, Exception):
            raise RayUnavailable(f"could not start a local Ray cluster ({type(exc).__name__}: {exc})") from None
        raise
    node_ip = str(context.address_info.get("node_ip_address", ""))
    if not _is_loopback(node_ip):
        log.warning(
            "this version of Ray did not keep the local cluster on loopback (its node address is %s): "
            "its ports may be reachable from the network; they still require the cluster's token",
            node_ip,
        )
    return RaySession(True, None, saved)


def local_processes_alive() -> bool:
    """Whether the GCS and raylet of a local Ray started by this process still run.

    True when this process joined a cluster (its processes are not ours to watch) or runs
    no Ray. A session stopped by a signal sent to all its processes asks this before
    waiting on actors that may have died with it.
    """
    import ray

    # Ray's node object is the only record of the processes it started for us.
    node = ray._private.worker._global_node  # noqa: SLF001
    if node is None or not getattr(node, "head", False):
        return True
    try:
        dead = {kind for kind, _ in node.dead_processes()}
    except Exception:  # noqa: BLE001 - a Ray without this bookkeeping: assume alive
        return True
    return not dead & {"gcs_server", "raylet"}


# -- the local cluster's environment ------------------------------------------------------


def _local_environment() -> dict[str, Any]:
    """Make the next ``ray.init`` start a loopback-only cluster that requires a token;
    returns what :func:`_restore` needs to undo it."""
    global _warned_unauthenticated

    saved: dict[str, Any] = {k: os.environ.get(k) for k in (AUTH_MODE, AUTH_TOKEN, LOOPBACK_SWITCH)}
    saved["enable_ray_cluster"] = _bind_to_loopback()
    mode = (os.environ.get(AUTH_MODE) or "").strip().lower()
    if mode == "disabled":
        if not _warned_unauthenticated:
            _warned_unauthenticated = True
            log.warning(
                "RAY_AUTH_MODE=disabled: the local Ray cluster accepts unauthenticated connections "
                "from any process on this machine; unset it to require a token"
            )
    elif mode in ("", "token"):
        os.environ[AUTH_MODE] = "token"
        if not (os.environ.get(AUTH_TOKEN) or os.environ.get(AUTH_TOKEN_PATH)):
            # One token per cluster, in the environment only: Ray's processes inherit it,
            # and it goes when this cluster does.
            os.environ[AUTH_TOKEN] = secrets.token_hex(32)
    # Any other mode is the user's explicit choice, passed to Ray as it is.
    _reload_auth()
    return saved


def _abandon(saved: dict[str, Any]) -> None:
    """After a failed start: stop whatever Ray had started, then restore the environment."""
    import ray

    try:
        ray.shutdown()
    except Exception:  # noqa: BLE001, S110 - the start's own error is the one to report
        pass
    _restore(saved)


def _restore(saved: dict[str, Any]) -> None:
    """Undo :func:`_local_environment`."""
    from ray._private import ray_constants

    for key in (AUTH_MODE, AUTH_TOKEN, LOOPBACK_SWITCH):
        if saved.get(key) is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved[key]
    ray_constants.ENABLE_RAY_CLUSTER = saved["enable_ray_cluster"]
    _reload_auth()


def _bind_to_loopback() -> bool:
    """Make the next local Ray listen on loopback only; returns Ray's previous setting.

    Ray (2.x) takes a node's address from ``ray_constants.ENABLE_RAY_CLUSTER``: when it
    is on (the default on Linux) the node uses the machine's routable address and every
    process listens on all interfaces; passing ``_node_ip_address="127.0.0.1"`` does not
    help, as Ray resolves localhost back to that address. Off, the node address is
    127.0.0.1 and the GCS, raylet, agents, driver and workers listen there alone. The
    constant is read in this process, and the environment variable behind it in the
    processes Ray spawns, so both are set. This relies on a Ray internal;
    ``tests/test_ray_security.py`` reads the sockets of a real session to catch a Ray that
    changes it.
    """
    from ray._private import ray_constants

    previous = bool(ray_constants.ENABLE_RAY_CLUSTER)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[LOOPBACK_SWITCH] = "0"
    return previous


def _reload_auth() -> None:
    """Make this process's Ray read RAY_AUTH_MODE and the token again: it caches both when
    ``ray`` is first imported, and a stale ``disabled`` would start a GCS that requires a
    token nobody sends."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _join_error(address: str, exc: BaseException) -> RayUnavailable:
    """The error for a failed ``ray.init(address=...)``: a refusal for want of the
    cluster's token says which variables give it."""
    text = []
    seen: BaseException | None = exc
    while seen is not None and len(text) < 10:
        text.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    joined = "\n".join(text)
    if any(mark in joined for mark in ("AuthenticationError", "InvalidAuthToken", "authentication token")):
        return RayUnavailable(
            f"the Ray cluster at {address} refused the connection: it requires its authentication token. "
            f"Set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN to that cluster's token "
            f"(or RAY_AUTH_TOKEN_PATH to a file holding it)"
        )
    return RayUnavailable(f"could not start or reach the Ray cluster at {address} ({type(exc).__name__}: {exc})")


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped is not None and mapped.is_loopback)


__all__ = ["RaySession", "RayUnavailable", "check_reachable", "connect", "local_processes_alive", "ray_address"]
