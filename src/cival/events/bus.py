"""Where domain events go: subscribers in this process, or Redis Streams.

Trading must never wait for events. :meth:`EventBus.publish` returns at once and never
raises because a backend is down: the in-process bus calls its subscribers and swallows
their exceptions (counted in :attr:`BusStats.errors`); the Redis bus encodes the events
to AG-UI, appends them to a bounded buffer and lets a background thread send them.

Redis layout (details in docs/events.md): one stream per run,
``{prefix}:run:{run_id}:events``, with explicit entry ids ``{seq}-{k}`` so that a
re-published event is refused by Redis and written exactly once; a capped global stream
``{prefix}:events`` with the same entries under automatic ids. A small Lua script adds
each entry to the run's stream and, only when that was accepted, to the global stream.

When the buffer is full the oldest events are dropped (counted in ``dropped``). Consumers
then cannot follow the state by deltas, so the next entry sent after a drop is a
``STATE_SNAPSHOT`` of the state as of the entries that follow it (entry id
``{last dropped seq}-999999``, type ``resync``).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json as _to_json

from cival.core.urls import redact
from cival.events.agui import AguiEncoder, apply_patch, initial_state
from cival.events.models import Event, EventError

log = logging.getLogger("cival.events")

RESYNC_ENTRY = 999_999
"""The second part of a resync snapshot's entry id: ``{last dropped seq}-999999``, above
every ``{seq}-{k}`` of that seq and below the next seq's first entry."""

RESYNC_TYPE = "resync"
"""The ``type`` field of a resync snapshot entry (not a domain event type)."""

BATCH_ENTRIES = 1_000
"""Stream entries sent per round trip."""

SOCKET_TIMEOUT = 2.0
"""Seconds a Redis command or connection attempt may take before it counts as failed."""

BACKOFF_FIRST, BACKOFF_MAX = 0.05, 2.0


@dataclass(frozen=True, slots=True)
class BusStats:
    """What a bus did so far, in domain events (not stream entries).

    ``published`` = ``delivered`` + ``dropped`` + ``buffered`` (``delivered`` includes
    ``duplicates``: events already in the stream, refused by Redis or skipped because this
    bus had already taken an event with that seq). ``errors`` counts failed attempts
    (a send that failed and will be retried, a subscriber that raised), not lost events.
    """

    published: int
    delivered: int
    dropped: int
    buffered: int
    errors: int
    last_error: str | None
    connected: bool
    duplicates: int = 0


class EventBus(ABC):
    """Takes domain events from the runtime and delivers them; never makes trading wait."""

    @abstractmethod
    def publish(self, events: Sequence[Event]) -> None:
        """Hand over ``events`` (in ``seq`` order). Returns at once; never raises because
        the backend is unreachable."""

    @abstractmethod
    def flush(self, timeout: float = 5.0) -> bool:
        """Wait (at most ``timeout`` seconds) until everything published so far was delivered
        or dropped. True if every event published so far was delivered (none dropped,
        none still buffered)."""

    @abstractmethod
    def stats(self) -> BusStats:
        """The counters so far."""

    @abstractmethod
    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is buffered (for at most ``timeout`` seconds), then stop. Events
        published after closing are dropped (counted), not raised."""

    def __enter__(self) -> EventBus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- in-process -------------------------------------------------------------------------------


class InProcessBus(EventBus):
    """Delivers each event to this process's subscribers, synchronously in :meth:`publish`.

    A subscriber that raises does not stop the others (the error is counted in
    ``errors``). Subscribers run on the publishing thread: they must be quick; a slow
    consumer should take a :meth:`queue` instead.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Callable[[Event], None], ...] = ()
        self._queues: dict[int, Callable[[], None]] = {}
        self._published = self._delivered = self._dropped = self._errors = 0
        self._last_error: str | None = None
        self._closed = False

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every event published from now on; returns the
        function that unsubscribes it."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not callback)

        return unsubscribe

    def queue(self, maxsize: int = 10_000) -> queue.Queue[Event]:
        """A queue that receives every event published from now on. When it is full, the new
        event is not put (counted in ``dropped``). Stop it with :meth:`remove_queue`."""
        q: queue.Queue[Event] = queue.Queue(maxsize)

        def put(event: Event) -> None:
            try:
                q.put_nowait(event)
            except queue.Full:
                with self._lock:
                    self._dropped += 1
                    self._last_error = f"a subscriber queue is full ({maxsize} events); event {event.id!r} not put"

        self._queues[id(q)] = self.subscribe(put)
        return q

    def remove_queue(self, q: queue.Queue[Event]) -> None:
        """Stop putting events into a queue made by :meth:`queue`."""
        unsubscribe = self._queues.pop(id(q), None)
        if unsubscribe is not None:
            unsubscribe()

    def publish(self, events: Sequence[Event]) -> None:
        with self._lock:
            subscribers = self._subscribers
            self._published += len(events)
            if self._closed:
                self._dropped += len(events)
                self._last_error = "events published after close() were dropped"
                return
        errors = 0
        last: str | None = None
        for event in events:
            for callback in subscribers:
                try:
                    callback(event)
                except Exception as exc:  # noqa: BLE001 - a consumer's bug must not stop trading
                    errors += 1
                    last = f"subscriber {getattr(callback, '__qualname__', callback)!s} raised on event " \
                           f"{event.id!r}: {type(exc).__name__}: {exc}"
        with self._lock:
            self._delivered += len(events)
            if errors:
                self._errors += errors
                self._last_error = last

    def flush(self, timeout: float = 5.0) -> bool:
        with self._lock:
            return self._dropped == 0

    def stats(self) -> BusStats:
        with self._lock:
            return BusStats(self._published, self._delivered, self._dropped, 0, self._errors, self._last_error,
                            not self._closed)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            self._subscribers = ()


# -- Redis Streams --------------------------------------------------------------------------

# KEYS: the run's stream, the global stream. ARGV: maxlen, global maxlen, run id, and the
# batch as one JSON array of entries, each [entry id, seq, id, type, entity, agui_type,
# event] (one argument, decoded by Redis' cjson: packing thousands of arguments one by
# one is what costs most on the Python side). Returns {flags} or {flags, error}: one
# character per entry taken ('1' added, '0' already there) and the error that stopped it.
# Both streams get an entry or neither (per entry), so a retry or a re-publication
# duplicates nothing, in the global stream either.
_XADD_BOTH = """
local out = {}
for _, e in ipairs(cjson.decode(ARGV[4])) do
  local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], e[1],
    'run_id', ARGV[3], 'seq', e[2], 'id', e[3], 'type', e[4], 'entity', e[5], 'agui_type', e[6], 'event', e[7])
  if type(added) == 'table' and added.err then
    if not string.find(added.err, 'equal or smaller', 1, true) then
      return {table.concat(out), 'run stream: ' .. added.err}
    end
    out[#out + 1] = '0'
  else
    out[#out + 1] = '1'
    local copied = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
      'run_id', ARGV[3], 'seq', e[2], 'id', e[3], 'type', e[4], 'entity', e[5], 'agui_type', e[6], 'event', e[7])
    if type(copied) == 'table' and copied.err then
      return {table.concat(out), 'global stream: ' .. copied.err}
    end
  end
end
return {table.concat(out)}
"""


def run_stream_key(run_id: str, prefix: str = "cival") -> str:
    """The key of a run's event stream."""
    return f"{prefix}:run:{run_id}:events"


def global_stream_key(prefix: str = "cival") -> str:
    """The key of the capped stream of every run's events."""
    return f"{prefix}:events"


def redis_client(url: str, timeout: float = SOCKET_TIMEOUT) -> Any:
    """A redis-py client for ``url`` whose commands fail after ``timeout`` seconds instead of
    hanging, and that does not retry by itself (the caller decides). Raises
    :class:`EventError` for a malformed URL."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    try:
        return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                    retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
    except ValueError as exc:
        raise EventError(f"the Redis URL {redact(url)} is not valid ({exc}); "
                         "use redis://host:port/db or rediss://... (set REDIS_URL)") from None


class _Record:
    """One domain event, encoded: its stream entries and its effects on the state."""

    __slots__ = ("seq", "ms", "entries", "effects", "added")

    def __init__(self, seq: int, ms: int, entries: list[bytes], effects: list[dict[str, Any]]) -> None:
        self.seq = seq
        self.ms = ms
        self.entries = entries
        self.effects = effects
        """JSON Patch operations that take the state from before this event to after it."""
        self.added = False
        """Whether Redis added any of its entries (False at the end: it was there already)."""


class RedisBus(EventBus):
    """Publishes AG-UI-encoded events to Redis Streams from a background thread.

    ``buffer``: domain events held while Redis is slow or away (the oldest are dropped
    beyond it). ``maxlen``/``global_maxlen``: approximate caps of the run's stream and
    of the global stream. ``thread_id``: the AG-UI thread until ``run_started`` names the
    cluster. Publish each run's events once, in ``seq`` order: an event whose seq is not
    above the last one this bus took is counted as a duplicate and not sent.
    """

    def __init__(self, url: str, run_id: str, *, buffer: int = 100_000, maxlen: int = 1_000_000,
                 global_maxlen: int = 100_000, prefix: str = "cival", thread_id: str | None = None) -> None:
        if buffer < 1:
            raise EventError(f"the event buffer must hold at least 1 event, not {buffer}")
        self.url = url
        self.run_id = run_id
        self.stream_key = run_stream_key(run_id, prefix)
        self.global_key = global_stream_key(prefix)
        self._capacity = buffer
        self._maxlen = maxlen
        self._global_maxlen = global_maxlen
        self._client = redis_client(url)
        self._script = self._client.register_script(_XADD_BOTH)
        self._encoder = AguiEncoder(run_id, thread_id)
        self._run_id_b = run_id.encode()

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: deque[_Record] = deque()
        # Entries taken by the sender and not yet accepted by Redis, each with its event
        # (None: a resync snapshot) and whether it is that event's last entry. Events in
        # flight are never dropped: Redis may already have them.
        self._pending: list[tuple[bytes, _Record | None, bool]] = []
        self._inflight = 0  # events with entries in _pending
        # The state as of the oldest queued event: what consumers will have once they read
        # everything before it. A resync snapshot after a drop is taken from here.
        self._base: dict[str, Any] = initial_state(run_id, thread_id)
        self._resync: tuple[int, int] | None = None  # (seq, ms) of the last dropped event
        self._last_seq = 0
        self._published = self._delivered = self._dropped = self._duplicates = self._errors = 0
        self._last_error: str | None = None
        self._connected = False
        self._closing = False
        self._deadline = 0.0
        self._thread = threading.Thread(target=self._run, name=f"cival-events-{run_id}", daemon=True)
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------

    def publish(self, events: Sequence[Event]) -> None:
        with self._lock:
            if self._closing:
                self._published += len(events)
                self._dropped += len(events)
                self._last_error = "events published after close() were dropped"
                return
            for event in events:
                self._published += 1
                if event.seq <= self._last_seq:
                    self._delivered += 1
                    self._duplicates += 1
                    continue
                try:
                    record = self._record(event)
                except Exception as exc:  # noqa: BLE001 - an encoding bug must not stop trading
                    self._errors += 1
                    self._dropped += 1
                    self._last_error = f"event {event.id!r} (seq {event.seq}) could not be encoded: " \
                                       f"{type(exc).__name__}: {exc}"
                    log.error("%s", self._last_error)
                    continue
                self._last_seq = event.seq
                self._queue.append(record)
                while len(self._queue) + self._inflight > self._capacity and self._queue:
                    self._drop(self._queue.popleft())
            self._wake.notify_all()

    def _record(self, event: Event) -> _Record:
        wire = self._encoder.encode_wire(event)
        seq = str(event.seq)
        entries = []
        effects: list[dict[str, Any]] = []
        for k, (agui_type, body) in enumerate(wire):
            entries.append(_to_json([f"{seq}-{k}", seq, event.id, event.type, event.entity, agui_type,
                                     _to_json(body).decode()]))
            if agui_type == "STATE_SNAPSHOT":
                effects.append({"op": "replace", "path": "", "value": body["snapshot"]})
            elif agui_type == "STATE_DELTA":
                effects.extend(body["delta"])
        return _Record(event.seq, wire[0].body["timestamp"], entries, effects)

    def _drop(self, record: _Record) -> None:
        # Called with the lock held. The dropped event still changed the state: carry its
        # effects into the base, so that the resync snapshot is right for what follows.
        self._apply(record)
        self._dropped += 1
        self._resync = (record.seq, record.ms)

    def _apply(self, record: _Record) -> None:
        if record.effects:
            try:
                apply_patch(self._base, record.effects)
            except EventError as exc:  # a bug: the base no longer mirrors the encoder
                self._errors += 1
                self._last_error = f"resync state out of step at seq {record.seq}: {exc}"

    def flush(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            target = self._published
            while self._delivered + self._dropped < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.wait(left)
            return self._dropped == 0

    def stats(self) -> BusStats:
        with self._lock:
            return BusStats(
                published=self._published, delivered=self._delivered, dropped=self._dropped,
                buffered=len(self._queue) + self._inflight, errors=self._errors,
                last_error=self._last_error, connected=self._connected, duplicates=self._duplicates,
            )

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + max(0.0, timeout)
            self._wake.notify_all()
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 0.1)
        with self._lock:
            if not self._thread.is_alive():
                # Never to be sent: count them so that published = delivered + dropped.
                lost = len(self._queue) + self._inflight
                if lost:
                    self._dropped += lost
                    self._last_error = f"closed with {lost} events not delivered"
                    log.warning("event bus for run %s closed with %d events not delivered to %s",
                                self.run_id, lost, redact(self.url))
                self._queue.clear()
                self._inflight = 0
                self._pending = []
                self._wake.notify_all()
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail; nothing to do
            pass

    def ensure_group(self, group: str, start: str = "0") -> None:
        """Create the consumer group ``group`` on the run's stream (and the stream, if
        missing), reading from entry id ``start``; an existing group is left as it is."""
        import redis

        try:
            self._client.xgroup_create(self.stream_key, group, id=start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise EventError(f"cannot create consumer group {group!r} on {self.stream_key}: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise EventError(f"Redis at {redact(self.url)} is not reachable ({exc}); start it or check "
                             "REDIS_URL") from None

    # -- the sender thread -------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        self._ping()
        while True:
            idle = False
            with self._lock:
                if not (self._pending or self._queue or self._resync or self._closing):
                    self._wake.wait(1.0)
                    idle = not (self._queue or self._resync or self._closing)
                if not self._pending:
                    self._take()
                if self._closing and (not self._pending or time.monotonic() >= self._deadline):
                    return
                batch = b"[" + b",".join(entry for entry, _record, _last in self._pending) + b"]"
                connected = self._connected
            if idle and not connected:
                self._ping()  # so that stats() shows a server that came back while nothing was sent
                continue
            if batch == b"[]":
                continue
            try:
                reply = self._script(keys=[self.stream_key, self.global_key],
                                     args=[self._maxlen, self._global_maxlen, self._run_id_b, batch])
                problem = self._account(reply)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the buffer, retry
                problem = f"{type(exc).__name__}: {exc}"
                if _is_connection_error(exc):
                    with self._lock:
                        self._connected = False
            if problem is None:
                backoff = 0.0
                continue
            backoff = min(BACKOFF_MAX, backoff * 2) if backoff else BACKOFF_FIRST
            with self._lock:
                self._errors += 1
                if self._last_error != problem:
                    log.warning("event bus: sending to Redis at %s failed (%s); %d events buffered, retrying",
                                redact(self.url), problem, len(self._queue) + self._inflight)
                self._last_error = problem
                end = time.monotonic() + backoff
                if self._closing:
                    end = min(end, self._deadline)
                while (left := end - time.monotonic()) > 0:
                    self._wake.wait(left)
                    if self._closing:
                        end = min(end, self._deadline)

    def _ping(self) -> None:
        try:
            self._client.ping()
        except Exception as exc:  # noqa: BLE001 - unreachable now; the sender retries later
            with self._lock:
                self._connected = False
                self._last_error = f"{type(exc).__name__}: {exc}"
            return
        with self._lock:
            self._connected = True

    def _take(self) -> None:
        """Move the next batch from the queue to the pending list (lock held)."""
        pending: list[tuple[bytes, _Record | None, bool]] = []
        if self._resync is not None:
            seq, ms = self._resync
            self._resync = None
            body = {"type": "STATE_SNAPSHOT", "timestamp": ms, "snapshot": self._base}
            entry = _to_json([f"{seq}-{RESYNC_ENTRY}", str(seq), f"resync:{seq}", RESYNC_TYPE, "run",
                              "STATE_SNAPSHOT", _to_json(body).decode()])
            pending.append((entry, None, False))
        records = 0
        while self._queue and len(pending) < BATCH_ENTRIES:
            record = self._queue.popleft()
            records += 1
            last = len(record.entries) - 1
            pending.extend((entry, record, k == last) for k, entry in enumerate(record.entries))
            self._apply(record)
        self._pending = pending
        self._inflight = records

    def _account(self, reply: list[bytes]) -> str | None:
        """Book the entries Redis took; returns the error that stopped the script, if any."""
        flags = reply[0]
        problem = reply[1].decode(errors="replace") if len(reply) > 1 else None
        with self._lock:
            if not self._connected:
                log.info("event bus: Redis at %s reachable again", redact(self.url))
            self._connected = True
            for flag, (_entry, record, last) in zip(flags, self._pending, strict=False):
                if record is None:
                    continue
                if flag == 49:  # b"1"
                    record.added = True
                if last:
                    self._inflight -= 1
                    self._delivered += 1
                    if not record.added:
                        self._duplicates += 1
            del self._pending[:len(flags)]
            self._wake.notify_all()
        return problem


def _is_connection_error(exc: BaseException) -> bool:
    import redis

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | OSError)


def open_bus(url: str | None, run_id: str, **kw: Any) -> EventBus:
    """The bus for a run: a :class:`RedisBus` when ``url`` (or the ``REDIS_URL`` environment
    variable) is set, else an :class:`InProcessBus` (``kw`` are the RedisBus options)."""
    url = url or os.environ.get("REDIS_URL") or None
    if url:
        log.info("streaming events of run %s to Redis at %s", run_id, redact(url))
        return RedisBus(url, run_id, **kw)
    return InProcessBus()


__all__ = [
    "BATCH_ENTRIES",
    "RESYNC_ENTRY",
    "RESYNC_TYPE",
    "BusStats",
    "EventBus",
    "InProcessBus",
    "RedisBus",
    "global_stream_key",
    "open_bus",
    "redact",
    "redis_client",
    "run_stream_key",
]
