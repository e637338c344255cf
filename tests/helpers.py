"""Helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

GiB = 1 << 30


def run_cival(
    *args: str, cwd: Path, timeout: float = 60, memory: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m cival ARGS`` with the checkout's src first on PYTHONPATH, in ``cwd``.

    ``timeout`` (seconds) and ``memory`` (bytes of address space, RLIMIT_AS) bound the
    process, so that input that makes it run away fails the test instead of holding the
    suite: subprocess.TimeoutExpired, or a MemoryError in its output.
    """
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(SRC)] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    environment.pop("PYTHONSTARTUP", None)

    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "cival", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,  # noqa: PLW1509 - only sets a resource limit
    )
