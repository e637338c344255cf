"""Errors a user can cause. Each message says what is wrong and what to do.

The CLI prints these without a traceback; anything else escaping is a bug.
"""

from __future__ import annotations


class CivalError(Exception):
    """Base of every error Cival raises on purpose."""


__all__ = ["CivalError"]
