"""Who may use the operator API: users with roles, their tokens, and API keys.

Roles, each including the one before: ``viewer`` reads; ``operator`` also gives commands
(money, halts, pause and resume of the feed); ``admin`` also starts and stops runs.
Passwords and API keys are kept only as argon2 hashes (pwdlib), in the store's ``users``
and ``api_keys`` tables.

Signing in (``POST /api/v1/auth/login``) gives a short-lived access token (a JWT signed
with HS256, :data:`ACCESS_TTL`) and a refresh token (:data:`REFRESH_TTL`) that buys new
ones. The signing secret is ``CIVAL_SECRET_KEY``, else a random one kept in the data
directory (``secret-key``, owner-only). An API key (``cvk_<id>_<secret>``, shown once)
opens the API as its user until it is revoked.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
from pwdlib import PasswordHash

from cival.core.errors import CivalError
from cival.server import kept_secret
from cival.store.base import StoreLocation, data_dir

ROLES = ("viewer", "operator", "admin")
SECRET_ENV = "CIVAL_SECRET_KEY"
ACCESS_TTL = int(os.environ.get("CIVAL_ACCESS_TTL", "900"))
"""Seconds an access token lasts (15 minutes; ``CIVAL_ACCESS_TTL`` sets another)."""
SERVER_PRINCIPAL = "server-token"
"""The name the server's own token acts under (as an admin)."""
STREAM_TTL = 300
"""Seconds a stream token may be used to open a run's stream (the stream itself lasts)."""
REFRESH_TTL = 7 * 24 * 3600
NAME = re.compile(r"^[a-z][a-z0-9._-]{0,63}$")
MIN_PASSWORD = 12

_hasher = PasswordHash.recommended()
_DUMMY = _hasher.hash(secrets.token_hex(16))
"""Verified against when a user does not exist, so that a wrong name takes as long as a wrong password."""


class AccountError(CivalError):
    """An account operation was refused (unknown user, weak password, bad role...)."""


class Unauthenticated(CivalError):
    """A request without a valid credential."""


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a user (or the server's own token, an admin) and its role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def signing_secret(folder: Path | None = None) -> str:
    """``CIVAL_SECRET_KEY``, else the secret kept (made once, owner-only) in the data directory."""
    given = os.environ.get(SECRET_ENV)
    if given:
        if len(given) < 32:
            raise AccountError(f"{SECRET_ENV} is too short: give at least 32 random characters")
        return given
    return kept_secret((folder or data_dir()) / "secret-key", shortest=32, size=48)


class Accounts:
    """The users and API keys in a store, and the tokens signed with ``secret``."""

    def __init__(self, where: StoreLocation, secret: str) -> None:
        self.where = where
        self.secret = secret

    # -- users ------------------------------------------------------------------------

    def add_user(self, name: str, role: str, password: str, by: str) -> None:
        if not NAME.match(name):
            raise AccountError(f"user name {name!r}: lower-case letters, digits, '.', '_' and '-', starting with a letter")
        if role not in ROLES:
            raise AccountError(f"role {role!r}: one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
        with self.where.open() as store:
            if store.rows("users", where={"name": name}):
                raise AccountError(f"user {name!r} exists already; remove it first to replace it")
            store.save("users", [{"name": name, "role": role, "password_hash": _hasher.hash(password),
                                  "created_at": datetime.now(UTC), "created_by": by}])

    def users(self) -> list[dict[str, Any]]:
        """Every user: name, role, created_at, created_by (never the hash)."""
        with self.where.open(read_only=True) as store:
            if not store.readable():
                return []
            return store.rows("users", columns=["name", "role", "created_at", "created_by"])

    def remove_user(self, name: str) -> None:
        with self.where.open() as store:
            if not store.delete_row("users", {"name": name}):
                raise AccountError(f"no user {name!r}")
            for key in store.rows("api_keys", where={"user_name": name}):
                if key["revoked_at"] is None:
                    store.update_row("api_keys", {"id": key["id"], "revoked_at": datetime.now(UTC)})

    def _user(self, name: str) -> dict[str, Any] | None:
        with self.where.open(read_only=True) as store:
            found = store.rows("users", where={"name": name})
        return found[0] if found else None

    def sign_in(self, name: str, password: str) -> Principal:
        user = self._user(name)
        if user is None:
            _hasher.verify(password, _DUMMY)
            raise Unauthenticated("wrong user name or password")
        if not _hasher.verify(password, user["password_hash"]):
            raise Unauthenticated("wrong user name or password")
        return Principal(user["name"], user["role"])

    # -- tokens -----------------------------------------------------------------------

    def tokens(self, who: Principal) -> dict[str, Any]:
        now = int(time.time())
        claims = {"sub": who.name, "role": who.role, "iat": now}
        access = jwt.encode({**claims, "typ": "access", "exp": now + ACCESS_TTL}, self.secret, algorithm="HS256")
        refresh = jwt.encode({**claims, "typ": "refresh", "exp": now + REFRESH_TTL, "jti": secrets.token_hex(8)},
                             self.secret, algorithm="HS256")
        return {"access_token": access, "refresh_token": refresh, "token_type": "bearer", "expires_in": ACCESS_TTL}

    def stream_token(self, who: Principal, run_id: str) -> dict[str, Any]:
        """A short-lived token that opens one run's stream (``?token=``), for a browser's
        EventSource, which cannot send an Authorization header."""
        now = int(time.time())
        claims = {"sub": who.name, "role": who.role, "iat": now, "typ": "stream", "run": run_id, "exp": now + STREAM_TTL}
        return {"token": jwt.encode(claims, self.secret, algorithm="HS256"), "run_id": run_id, "expires_in": STREAM_TTL}

    def check_stream_token(self, token: str, run_id: str) -> Principal:
        """The user a stream token was given to, if it is for ``run_id`` and still valid."""
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"require": ["exp", "sub", "typ", "run"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the stream token has expired: ask for another (POST /api/v1/runs/{id}/stream-token)") from None
        except jwt.InvalidTokenError:
            raise Unauthenticated("not a valid stream token") from None
        if claims.get("typ") != "stream" or claims.get("run") != run_id:
            raise Unauthenticated(f"not a stream token for run {run_id}")
        if claims["sub"] == SERVER_PRINCIPAL:
            return Principal(SERVER_PRINCIPAL, "admin")
        user = self._user(str(claims["sub"]))
        if user is None:
            raise Unauthenticated("the user of this token no longer exists")
        return Principal(user["name"], user["role"])

    def check_token(self, token: str, kind: str = "access") -> Principal:
        """The user a token was given to, as it is now (a removed user's tokens stop working)."""
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], options={"require": ["exp", "sub", "typ"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(f"the {kind} token has expired: " + ("refresh it" if kind == "access" else "sign in again")) from None
        except jwt.InvalidTokenError:
            raise Unauthenticated(f"not a valid {kind} token") from None
        if claims.get("typ") != kind:
            raise Unauthenticated(f"not an {kind} token" if kind == "access" else f"not a {kind} token")
        user = self._user(str(claims["sub"]))
        if user is None:
            raise Unauthenticated("the user of this token no longer exists")
        return Principal(user["name"], user["role"])

    # -- API keys ---------------------------------------------------------------------

    def create_key(self, who: Principal, label: str) -> dict[str, Any]:
        """A new API key for ``who``: the key itself is in the answer, and nowhere else."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        with self.where.open() as store:
            store.save("api_keys", [{"id": key_id, "user_name": who.name, "key_hash": _hasher.hash(secret),
                                     "label": label, "created_at": datetime.now(UTC), "revoked_at": None}])
        return {"id": key_id, "key": f"cvk_{key_id}_{secret}", "label": label, "user": who.name}

    def keys(self, who: Principal) -> list[dict[str, Any]]:
        with self.where.open(read_only=True) as store:
            rows = store.rows("api_keys", where=None if who.role == "admin" else {"user_name": who.name},
                              columns=["id", "user_name", "label", "created_at", "revoked_at"])
        return rows

    def revoke_key(self, who: Principal, key_id: str) -> None:
        with self.where.open() as store:
            found = store.rows("api_keys", where={"id": key_id})
            if not found or (found[0]["user_name"] != who.name and who.role != "admin"):
                raise AccountError(f"no API key {key_id!r} of yours")
            store.update_row("api_keys", {"id": key_id, "revoked_at": datetime.now(UTC)})

    def check_key(self, key: str) -> Principal:
        _, key_id, secret = (key.split("_", 2) + ["", ""])[:3]
        with self.where.open(read_only=True) as store:
            found = store.rows("api_keys", where={"id": key_id})
        if not found or found[0]["revoked_at"] is not None or not _hasher.verify(secret, found[0]["key_hash"]):
            _hasher.verify(secret or "x", _DUMMY) if not found else None
            raise Unauthenticated("not a valid API key (revoked, or never issued)")
        user = self._user(found[0]["user_name"])
        if user is None:
            raise Unauthenticated("the user of this API key no longer exists")
        return Principal(user["name"], user["role"])


__all__ = [
    "ACCESS_TTL", "ROLES", "SERVER_PRINCIPAL", "STREAM_TTL", "AccountError", "Accounts", "Principal", "Unauthenticated", "signing_secret",
]
