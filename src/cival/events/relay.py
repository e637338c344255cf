"""From the store to the bus: a run's events, published in the order they were committed.

Nodes write their events to the store with their books (:mod:`cival.actors.journal`);
the store numbers them per run in commit order. A :class:`Relay` in the session's
process reads what is new, in order, and hands it to the event bus (Redis Streams or the
in-process bus), on a thread of its own: trading never waits for it, and what the bus
could not take is still in the store. The session nudges it after each batch; it also
looks every ``interval`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cival.events.bus import BusStats, EventBus
from cival.events.models import EventError, parse_event
from cival.store.base import Store, StoreLocation

log = logging.getLogger("cival.events")

PAGE = 5_000
"""Events read from the store per query."""


@dataclass(frozen=True)
class RelayStats:
    """What the relay did: events read from the store, unreadable ones, and the bus's counters."""

    relayed: int
    unreadable: int
    last_seq: int
    bus: BusStats


class Relay:
    """Publishes a run's stored events to ``bus`` (see the module docstring). It opens its
    own connection to the store at ``where``."""

    def __init__(self, where: StoreLocation, run_id: str, bus: EventBus, interval: float = 0.25) -> None:
        self.run_id = run_id
        self.bus = bus
        self.interval = interval
        self._store: Store = where.open()
        self._seq = 0
        self._relayed = 0
        self._unreadable = 0
        self._error: str | None = None
        self._nudged = threading.Event()
        self.listeners: list[Callable[[], None]] = []
        """Called (on the relay's thread; quick, never raising) after events were published."""
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"cival-relay-{run_id}", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """New events were committed: look now rather than at the next interval."""
        self._nudged.set()

    def pump(self) -> int:
        """Publish every event committed so far and not yet published; returns how many."""
        done = 0
        with self._lock:
            while True:
                rows = self._store.events(self.run_id, after=self._seq, limit=PAGE)
                if not rows:
                    return done
                events = []
                for row in rows:
                    try:
                        events.append(parse_event(row))
                    except EventError as exc:  # a producer's bug: say so, keep the stream going
                        self._unreadable += 1
                        log.error("event #%d (%s) of run %s cannot be published: %s", row.seq, row.id, self.run_id, exc)
                self.bus.publish(events)
                self._seq = rows[-1].seq
                self._relayed += len(rows)
                done += len(rows)
                for listener in tuple(self.listeners):
                    try:
                        listener()
                    except Exception:  # noqa: BLE001 - a listener's fault is not the relay's
                        log.exception("a listener of run %s's relay failed", self.run_id)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._nudged.wait(self.interval)
            self._nudged.clear()
            try:
                self.pump()
                self._error = None
            except Exception as exc:  # noqa: BLE001 - the store is away: try again at the next look
                if self._error is None:
                    log.warning("relay of run %s: reading events from the store failed (%s); retrying", self.run_id, exc)
                self._error = f"{type(exc).__name__}: {exc}"

    def close(self, timeout: float = 10.0) -> RelayStats:
        """Publish what is left, wait (at most ``timeout`` seconds in all; 2 when the bus
        never reached its backend) for the bus to deliver it, close the bus and the store
        connection; returns the final counts (what could not be delivered is dropped,
        and still in the store)."""
        end = time.monotonic() + timeout
        self._stopping.set()
        self._nudged.set()
        self._thread.join(timeout)
        try:
            self.pump()
        except Exception as exc:  # noqa: BLE001 - reported in the stats
            self._error = f"{type(exc).__name__}: {exc}"
        bus = self.bus.stats()
        if not bus.connected and bus.delivered == 0:
            end = min(end, time.monotonic() + 2.0)
        self.bus.flush(max(0.0, end - time.monotonic()))
        self.bus.close(max(0.0, end - time.monotonic()))
        self._store.close()
        return self.stats()

    def stats(self) -> RelayStats:
        return RelayStats(self._relayed, self._unreadable, self._seq, self.bus.stats())


__all__ = ["Relay", "RelayStats"]
