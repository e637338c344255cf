"""Rate limits of the operator API, with the ``limits`` package (a moving window).

Three limits, each a ``limits`` expression (``"600/minute"``, ``"5 per 3 seconds"``):

- per address, every request but the health check: ``CIVAL_RATE_ADDRESS`` (1200/minute);
- per user (or API key's user), once it is known who asks: ``CIVAL_RATE_USER`` (600/minute);
- sign-in attempts, per address and per name: ``CIVAL_RATE_LOGIN`` (10/minute).

Beyond one, the answer is 429 with ``Retry-After`` (seconds). The counts live in Redis when
``REDIS_URL`` is set (shared by every process of the server), else in memory.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from cival.core.errors import CivalError
from cival.core.urls import redact


class RateLimited(CivalError):
    """Too many requests; ``retry_after``: seconds until one is allowed again."""

    def __init__(self, what: str, retry_after: int) -> None:
        super().__init__(f"too many {what}; try again in {retry_after} s")
        self.retry_after = retry_after


def _item(env: str, default: str) -> RateLimitItem:
    text = os.environ.get(env, default)
    try:
        return parse(text)
    except ValueError:
        raise CivalError(f"{env}={text!r} is not a rate (e.g. '600/minute' or '5 per 3 seconds')") from None


@dataclass
class RateLimits:
    address: RateLimitItem
    user: RateLimitItem
    login: RateLimitItem
    limiter: MovingWindowRateLimiter
    where: str

    @classmethod
    def from_environment(cls) -> RateLimits:
        url = os.environ.get("REDIS_URL")
        storage: Storage = storage_from_string(url) if url else MemoryStorage()
        return cls(
            _item("CIVAL_RATE_ADDRESS", "1200/minute"), _item("CIVAL_RATE_USER", "600/minute"),
            _item("CIVAL_RATE_LOGIN", "10/minute"), MovingWindowRateLimiter(storage),
            f"Redis at {redact(url)}" if url else "memory",
        )

    def hit(self, item: RateLimitItem, what: str, *keys: str) -> None:
        """Count one request under ``keys``; RateLimited (with its wait) beyond the limit."""
        if self.limiter.hit(item, "cival", *keys):
            return
        reset = self.limiter.get_window_stats(item, "cival", *keys).reset_time
        raise RateLimited(what, max(1, math.ceil(reset - time.time())))


__all__ = ["RateLimited", "RateLimits"]
