"""Cival: multi-agent paper trading and backtesting with exact books."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Client", "Cluster", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `cival --help` and light imports stay quick.
    if name == "Cluster":
        from cival.notebook import Cluster

        return Cluster
    if name == "Client":
        from cival.client import Client

        return Client
    raise AttributeError(f"module 'cival' has no attribute {name!r}")
