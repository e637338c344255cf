"""A run's live events as Server-Sent Events, in the AG-UI format, resumable.

``GET /api/v1/runs/{id}/stream`` sends every AG-UI event of the run (``RUN_STARTED``,
``STATE_SNAPSHOT`` / ``STATE_DELTA``, ``CUSTOM`` per domain event, ``RUN_FINISHED``; see
:mod:`cival.events.agui`), one SSE message each (``event:`` the AG-UI type, ``data:`` its
JSON), then follows the run until it ends. The events of one domain event go together,
and the last of them carries ``id:`` = that event's sequence number in the run, so a
client that reconnects with ``Last-Event-ID`` gets every event after the last one it got
whole, in order, none twice. The deltas a reconnecting client gets apply to the state it
had; one that comes without a ``Last-Event-ID`` starts from the run's beginning.

Events are read from the store, where the session commits every event before anyone can
see it, by one reader per run that encodes each once (:class:`RunFeed`), woken by the run's
event relay as soon as new events are published (for a run this server drives; else it
looks every :data:`POLL` seconds); every subscriber
of the run is sent the same text from there, at its own pace: a slow client delays nobody
but itself, and a hundred cost little more than one.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import AsyncIterator
from typing import Any

from cival.core.errors import CivalError
from cival.events.agui import AguiEncoder
from cival.events.models import parse_event
from cival.session import driver_alive
from cival.store.base import Store, StoreLocation

POLL = 0.1
"""Seconds between looks at the store while a run is quiet."""

KEEPALIVE = 15.0
"""Seconds of silence after which a comment line is sent (proxies close idle streams)."""

PAGE = 1000
"""Events read from the store at a time."""

ENDED = ("finished", "interrupted", "failed")


def resume_point(header: str | None) -> int:
    """The sequence number a ``Last-Event-ID`` header names (0: from the start)."""
    if header is None or not header.strip():
        return 0
    try:
        value = int(header.strip())
    except ValueError:
        raise CivalError(f"Last-Event-ID {header[:40]!r} is not an event's sequence number") from None
    if value < 0:
        raise CivalError(f"Last-Event-ID {value} is negative")
    return value


def frames(encoder: AguiEncoder, row: Any) -> str:
    """The SSE messages of one stored event: one per AG-UI event, the last with its id."""
    wire = encoder.encode_wire(parse_event(row))
    out = []
    for i, event in enumerate(wire):
        head = f"id: {row.seq}\n" if i == len(wire) - 1 else ""
        out.append(f"{head}event: {event.agui_type}\ndata: {json.dumps(event.body, separators=(',', ':'))}\n\n")
    return "".join(out)


class RunFeed:
    """One run's events as SSE text, read from the store and encoded once, for every
    subscriber of the run: ``frames`` (sequence number, text) grows as the run goes on;
    ``ended`` once the run is over and its last event read."""

    def __init__(self, where: StoreLocation, run_id: str, running: Any, attach: Any = None) -> None:
        self.where = where
        self.run_id = run_id
        self.running = running
        self.attach = attach
        """``attach(callback)``: have ``callback()`` called when the run's events were published
        (returns the function that detaches it, or None when it cannot yet); between calls
        the store is looked at every :data:`POLL` seconds."""
        self._detach: Any = None
        self.frames: list[tuple[int, str]] = []
        self.ended = False
        self.failed: BaseException | None = None
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            store: Store = await asyncio.to_thread(self.where.open, False, True)
            loop = asyncio.get_running_loop()
            poked = asyncio.Event()

            def poke() -> None:  # on the relay's thread
                loop.call_soon_threadsafe(poked.set)

            try:
                encoder = AguiEncoder(self.run_id)
                seen = 0
                while True:
                    if self._detach is None and self.attach is not None:
                        self._detach = self.attach(poke)
                    poked.clear()
                    rows = await asyncio.to_thread(store.events, self.run_id, seen, PAGE)
                    if rows:
                        texts = await asyncio.to_thread(lambda: [(r.seq, frames(encoder, r)) for r in rows])
                        seen = rows[-1].seq
                        self.frames.extend(texts)
                        self._wake()
                        continue
                    if not self.running():
                        now = await asyncio.to_thread(store.run, self.run_id)
                        over = now.status in ENDED or not driver_alive(now)  # a driver that died writes no more
                        if over and not await asyncio.to_thread(store.events, self.run_id, seen, 1):
                            return
                    try:
                        await asyncio.wait_for(poked.wait(), POLL)
                    except TimeoutError:
                        pass
            finally:
                if self._detach is not None:
                    self._detach()
                    self._detach = None
                await asyncio.to_thread(store.close)
        except BaseException as exc:  # noqa: BLE001 - told to every subscriber
            self.failed = exc
            raise
        finally:
            self.ended = True
            self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class Feeds:
    """The :class:`RunFeed` of each run being streamed (kept once the run is over, for
    late subscribers: at most ``keep`` runs' worth)."""

    def __init__(self, keep: int = 16) -> None:
        self.keep = keep
        self.feeds: dict[str, RunFeed] = {}

    def feed(self, where: StoreLocation, run_id: str, running: Any, attach: Any = None) -> RunFeed:
        feed = self.feeds.get(run_id)
        if feed is None or feed.failed is not None:
            feed = self.feeds[run_id] = RunFeed(where, run_id, running, attach)
            for old in [k for k, f in self.feeds.items() if f.ended][: max(0, len(self.feeds) - self.keep)]:
                del self.feeds[old]
        feed.start()
        return feed


async def events(feed: RunFeed, after: int, gone: Any) -> AsyncIterator[str]:
    """The SSE text of the feed's events after ``after``, until the run's last one is sent
    or the client has gone (``await gone()``)."""
    at = bisect.bisect_right(feed.frames, after, key=lambda f: f[0])
    quiet = 0.0
    while True:
        if await gone():
            return
        if at < len(feed.frames):
            end = len(feed.frames)
            yield "".join(text for _, text in feed.frames[at:end])
            at, quiet = end, 0.0
            continue
        if feed.ended:
            if feed.failed is not None:
                raise feed.failed
            return
        changed = feed.changed
        try:
            await asyncio.wait_for(changed.wait(), POLL * 5)
        except TimeoutError:
            quiet += POLL * 5
            if quiet >= KEEPALIVE:
                quiet = 0.0
                yield ": still here\n\n"


__all__ = ["KEEPALIVE", "POLL", "Feeds", "RunFeed", "events", "frames", "resume_point"]
