"""``cival serve``: sessions hosted by a long-running process behind the operator API.

:func:`serve` opens the store, takes up the runs the server was driving when it last
stopped, starts the configs it is given, and serves :func:`~cival.server.app.create_app`
with uvicorn until it is stopped (Ctrl-C or SIGTERM: every session stops at a batch
boundary, recorded as interrupted, and the next start resumes it).

The API is opened by the server's token: ``CIVAL_SERVER_TOKEN`` when set, else a random
one kept in the data directory (``server-token``, readable by its owner only) and reused
from one start to the next.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from cival.core.errors import CivalError
from cival.store.base import data_dir

TOKEN_ENV = "CIVAL_SERVER_TOKEN"


class ServeError(CivalError):
    """The server cannot start as asked."""


def server_token(folder: Path | None = None) -> tuple[str, str]:
    """The token that opens the API, and where it comes from (for the start-up message,
    which never prints the token itself)."""
    given = os.environ.get(TOKEN_ENV)
    if given:
        if len(given) < 24:
            raise ServeError(f"{TOKEN_ENV} is too short to be a secret: give at least 24 characters")
        return given, f"${TOKEN_ENV}"
    path = (folder or data_dir()) / "server-token"
    return kept_secret(path, shortest=24, size=32), str(path)


def write_owner_only(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by its owner only (created so:
    never readable by others, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)  # a file that existed keeps its mode through os.open


def kept_secret(path: Path, shortest: int, size: int) -> str:
    """The random secret kept in ``path`` (owner-only); made there (``size`` random bytes,
    URL-safe) when the file is missing or holds fewer than ``shortest`` characters."""
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        kept = ""
    if len(kept) < shortest:
        kept = secrets.token_urlsafe(size)
    write_owner_only(path, kept + "\n")
    return kept


def loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["TOKEN_ENV", "ServeError", "kept_secret", "loopback", "server_token", "write_owner_only"]
