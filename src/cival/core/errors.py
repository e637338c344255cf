"""Errors a user can cause. Each message says what is wrong and what to do.

The CLI prints these without a traceback; anything else escaping is a bug.
"""

from __future__ import annotations


class CivalError(Exception):
    """Base of every error Cival raises on purpose."""


class Terminated(KeyboardInterrupt):
    """SIGTERM asked a session to stop: handled as Ctrl-C is (a clean stop), and the
    command exits with 143 (128 + SIGTERM) rather than 130."""


__all__ = ["CivalError", "Terminated"]
