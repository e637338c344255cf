"""Service URLs: which parts of one are secrets, and the URL without them for anything
that is shown, logged, stored or sent.

A secret is a password in the user part (``postgresql://user:secret@host/db``) or a query
parameter that carries one (``?password=...``, ``?sslpassword=...``, ``?token=...``; see
:func:`is_secret_parameter`). Configs refuse URLs that hold one (secrets come from the
environment: ``DATABASE_URL``, ``REDIS_URL``, ``PGPASSWORD``, a ``.pgpass`` file), and
:func:`redact` masks them wherever a URL is written down.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

SECRET_PARAMETERS = frozenset({
    "password", "passwd", "pass", "pwd", "sslpassword", "token", "secret", "key", "api_key", "apikey",
    "access_key", "secret_key", "private_key", "auth", "sslkey",
})
"""Query parameter names (lower case, ``-`` read as ``_``) whose value is a secret."""

SECRET_WORDS = ("password", "passwd", "secret", "token")
"""A parameter whose name holds one of these (``client_secret``, ``auth_token``) is secret too,
as is one whose name ends in ``_key``. (``passfile``, the path of a .pgpass file, is not.)"""

MASK = "***"


def is_secret_parameter(name: str) -> bool:
    """Whether a URL query parameter called ``name`` carries a secret (case-insensitive)."""
    key = name.strip().lower().replace("-", "_")
    return key in SECRET_PARAMETERS or key.endswith("_key") or any(word in key for word in SECRET_WORDS)


def url_secrets(url: str) -> list[str]:
    """Where ``url`` holds a secret: ``"password"`` for the user part's, then the name of each
    secret query parameter, in order (never the secrets themselves). ValueError for a URL
    that cannot be parsed."""
    parts = urlsplit(url)
    found = ["password"] if parts.password is not None else []
    found += [f"{name}=" for name, _ in parse_qsl(parts.query, keep_blank_values=True) if is_secret_parameter(name)]
    return found


def redact(url: str) -> str:
    """``url`` with every secret (the user part's password, secret query parameters) replaced
    by ``***``, for messages, logs, the store and events. The rest is kept as written."""
    try:
        parts = urlsplit(url)
        # Edit the text in place rather than reassembling it: urlunsplit would turn
        # postgres:///db into postgres:/db.
        if parts.query:
            pairs = parse_qsl(parts.query, keep_blank_values=True)
            if any(is_secret_parameter(name) for name, _ in pairs):
                query = urlencode([(k, MASK if is_secret_parameter(k) else v) for k, v in pairs], safe="*")
                start = url.index("?") + 1
                url = url[:start] + query + url[start + len(parts.query):]
        if parts.password is not None:
            userinfo, _, host = parts.netloc.rpartition("@")
            start = url.index("//") + 2
            url = url[:start] + f"{userinfo.split(':', 1)[0]}:{MASK}@{host}" + url[start + len(parts.netloc):]
        return url
    except ValueError:
        return "<unparseable URL>"


__all__ = ["MASK", "SECRET_PARAMETERS", "is_secret_parameter", "redact", "url_secrets"]
