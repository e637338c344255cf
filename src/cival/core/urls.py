"""Service URLs in messages and logs: never with their password."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit


def redact(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter), for
    messages and logs."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            userinfo, _, host = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}"
        query = parts.query
        if "password" in query.lower():
            query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(query)])
        return parts._replace(netloc=netloc, query=query).geturl()
    except ValueError:
        return "<unparseable URL>"


__all__ = ["redact"]
