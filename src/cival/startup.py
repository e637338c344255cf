"""What a session is doing before its first bar, shown on a terminal while it happens.

Starting a session on Ray takes seconds to tens of seconds (Ray's own processes, one
actor per node, each compiling its strategy's loops). :class:`StartupNotes` shows each
step on one line of the terminal with the seconds it has taken so far, ticking, and
leaves it with its final time when the next step begins::

    starting a local Ray ... 6.2 s
    starting 7 actors (the master, 3 farms, 3 agents); each compiles ... 14.9 s

On anything but a terminal it writes nothing: logs and pipes stay as they were.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from typing import TextIO


class StartupNotes:
    """``notes(text)`` begins a step (ending the one before); ``notes.end()`` ends the last."""

    def __init__(self, out: TextIO | None = None, tty: bool | None = None, tick: float = 0.2) -> None:
        self.out = out or sys.stderr
        self.enabled = self.out.isatty() if tty is None else tty
        self.tick = tick
        self._lock = threading.Lock()
        self._text: str | None = None
        self._since = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def __call__(self, text: str) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._end_line()
            self._text, self._since = text, time.monotonic()
            self._write(final=False)
        if self._thread is None:
            self._thread = threading.Thread(target=self._ticking, name="cival-startup-notes", daemon=True)
            self._thread.start()

    def break_line(self) -> None:
        """End the current line (for something else to be printed); the step goes on
        ticking on the next line."""
        if not self.enabled:
            return
        with self._lock:
            if self._text is not None:
                self._write(final=True)

    def end(self) -> None:
        """End the step under way (its line keeps its final time); nothing more is shown."""
        if not self.enabled:
            return
        self._stop.set()
        with self._lock:
            self._end_line()
        if self._thread is not None:
            self._thread.join(1.0)

    def _ticking(self) -> None:
        while not self._stop.wait(self.tick):
            with self._lock:
                if self._text is not None:
                    self._write(final=False)

    def _end_line(self) -> None:
        if self._text is not None:
            self._write(final=True)
            self._text = None

    def _write(self, final: bool) -> None:
        assert self._text is not None
        elapsed = f" ... {time.monotonic() - self._since:.1f} s"
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        text = self._text
        if len(text) + len(elapsed) > width:  # one line, never wrapped: the \r must return to its start
            text = text[: max(0, width - len(elapsed) - 1)] + "…"
        self.out.write("\r\x1b[K" + text + elapsed + ("\n" if final else ""))
        self.out.flush()


__all__ = ["StartupNotes"]
