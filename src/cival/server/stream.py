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
see it, each client with a connection of its own: a slow client delays nobody but itself.
"""

from __future__ import annotations

import asyncio
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


async def events(where: StoreLocation, run_id: str, after: int, running: Any, gone: Any) -> AsyncIterator[str]:
    """The SSE text of the run's events after ``after``, following the run until it ends
    (``running()``: whether a session may still write events) and the last one is sent,
    or until the client has gone (``await gone()``)."""
    store: Store = await asyncio.to_thread(where.open, False, True)
    try:
        record = await asyncio.to_thread(store.run, run_id)
        encoder = AguiEncoder(record.id)
        seen = 0
        quiet = 0.0
        while True:
            if await gone():
                return
            rows = await asyncio.to_thread(store.events, record.id, seen, PAGE)
            for i, row in enumerate(rows):
                text = frames(encoder, row)  # the encoder must see every event, sent or not
                seen = row.seq
                if row.seq > after:
                    yield text
                    if i % 50 == 49 and await gone():
                        return
            if rows:
                quiet = 0.0
                continue
            if not running():
                now = await asyncio.to_thread(store.run, record.id)
                over = now.status in ENDED or not driver_alive(now)  # a driver that died writes no more
                if over and not await asyncio.to_thread(store.events, record.id, seen, 1):
                    return
            await asyncio.sleep(POLL)
            quiet += POLL
            if quiet >= KEEPALIVE:
                quiet = 0.0
                yield ": still here\n\n"
    finally:
        await asyncio.to_thread(store.close)


__all__ = ["KEEPALIVE", "POLL", "events", "frames", "resume_point"]
