"""Reading a run's events back from Redis and printing them one line each (``cival watch``).

:func:`read_stream` yields the run stream's entries (every AG-UI event, with the domain
event's seq, id, type and entity); :func:`tail_lines` turns them into terminal lines,
keeping the domain events that pass :func:`matches`; :func:`format_event` is the line of
one domain event.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

from cival.core.fmt import money, parse_time, percent, plain_decimal, price, quantity, ratio, short_time
from cival.events.bus import RESYNC_TYPE, redact, redis_client, run_stream_key
from cival.events.models import (
    AgentFarmAssignment,
    Event,
    EventError,
    FarmCreated,
    FarmPerformanceUpdate,
    FarmRebalance,
    FundAllocation,
    FundCollection,
    GoalAssignment,
    GoalCompleted,
    GoalCreated,
    GoalProgressUpdate,
    Halt,
    OperatorAction,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    RunFinished,
    RunStarted,
    WalletBalanceUpdate,
    WalletTransaction,
    event_from_fields,
)

_LAST_OF_SEQ = 18_446_744_073_709_551_615
"""The largest second part of a stream entry id: ``{seq}-{this}`` is after every entry of seq."""

_END_TYPES = ("RUN_FINISHED", "RUN_ERROR")


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry of a run's stream: one AG-UI event (``agui``, as sent) of the domain event
    ``seq``/``id``/``type``/``entity``. ``type`` is ``resync`` for a snapshot the publisher
    sent after dropping events. ``stream_id`` is the Redis entry id (``{seq}-{k}``)."""

    run_id: str
    seq: int
    id: str
    type: str
    entity: str
    agui_type: str
    agui: dict[str, Any]
    stream_id: str = ""

    @property
    def is_resync(self) -> bool:
        return self.type == RESYNC_TYPE

    def event(self) -> Event | None:
        """The domain event, rebuilt from a ``CUSTOM`` entry (None for the other AG-UI
        events). Raises :class:`EventError` if the entry does not hold a valid event."""
        if self.agui_type != "CUSTOM":
            return None
        value = self.agui.get("value")
        if not isinstance(value, dict):
            raise EventError(f"stream entry {self.stream_id} (seq {self.seq}) has no event in its CUSTOM value")
        return event_from_fields(self.agui.get("name", self.type), self.run_id, value)


def parse_entry(stream_id: bytes | str, fields: dict[bytes, bytes] | dict[str, str]) -> StreamEntry:
    """A :class:`StreamEntry` from a raw Redis entry; raises :class:`EventError` if fields are missing."""
    text = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in fields.items()}
    sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    try:
        return StreamEntry(run_id=text["run_id"], seq=int(text["seq"]), id=text["id"], type=text["type"],
                           entity=text["entity"], agui_type=text["agui_type"], agui=json.loads(text["event"]),
                           stream_id=sid)
    except (KeyError, ValueError) as exc:
        raise EventError(f"stream entry {sid} is not a cival event entry ({type(exc).__name__}: {exc}); "
                         "is the key written by something else?") from None


def read_stream(url: str, run_id: str, *, after_seq: int = 0, follow: bool = False, block_ms: int = 1000,
                group: str | None = None, consumer: str | None = None, prefix: str = "cival",
                count: int = 500) -> Iterator[StreamEntry]:
    """The entries of run ``run_id``'s stream after domain event ``after_seq``, in order.

    Without ``follow`` it stops at the end of what is there; with ``follow`` it waits for
    new entries (``block_ms`` at a time) until the run's ``RUN_FINISHED``/``RUN_ERROR``
    entry has been yielded, or the caller stops iterating.

    With ``group``, it reads as ``consumer`` (default: host-pid) of that consumer group
    (created at ``after_seq`` if missing): first the entries delivered to this consumer
    before and not acknowledged, then new ones; each entry is acknowledged when the
    caller asks for the next one, so an entry being handled when the reader stops is
    delivered again (at least once). Raises :class:`EventError` when Redis cannot be reached.
    """
    import redis

    key = run_stream_key(run_id, prefix)
    start = f"{after_seq}-{_LAST_OF_SEQ}" if after_seq > 0 else "0-0"
    client = redis_client(url, timeout=block_ms / 1000 + 5.0)
    try:
        if group is None:
            yield from _read(client, key, start, follow, block_ms, count)
        else:
            who = consumer or f"{socket.gethostname()}-{os.getpid()}"
            yield from _read_group(client, key, group, who, start, follow, block_ms, count)
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise EventError(f"Redis at {redact(url)} is not reachable ({type(exc).__name__}: {exc}); "
                         "start it or check REDIS_URL") from None
    finally:
        client.close()


def _read(client: Any, key: str, last: str, follow: bool, block_ms: int, count: int) -> Iterator[StreamEntry]:
    while True:
        reply = client.xread({key: last}, count=count, block=block_ms if follow else None)
        if not reply:
            if follow:
                continue
            return
        for stream_id, fields in reply[0][1]:
            entry = parse_entry(stream_id, fields)
            last = entry.stream_id
            yield entry
            if follow and entry.agui_type in _END_TYPES:
                return


def _read_group(client: Any, key: str, group: str, consumer: str, start: str, follow: bool, block_ms: int,
                count: int) -> Iterator[StreamEntry]:
    import redis

    try:
        client.xgroup_create(key, group, id=start, mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise EventError(f"cannot create consumer group {group!r} on {key}: {exc}") from None
    cursor = "0"  # this consumer's unacknowledged entries first, then new ones (">")
    while True:
        new = cursor == ">"
        reply = client.xreadgroup(group, consumer, {key: cursor}, count=count,
                                  block=block_ms if (follow and new) else None)
        rows = reply[0][1] if reply else []
        if not new and rows:
            cursor = rows[-1][0]  # page through the pending list
        if not rows:
            if not new:
                cursor = ">"
                continue
            if follow:
                continue
            return
        for stream_id, fields in rows:
            if not fields:  # a pending entry since trimmed away: nothing to read, just acknowledge
                client.xack(key, group, stream_id)
                continue
            entry = parse_entry(stream_id, fields)
            yield entry
            client.xack(key, group, stream_id)
            if follow and entry.agui_type in _END_TYPES:
                return


# -- filters and lines ------------------------------------------------------------------------


def matches(event_type: str, entity: str, *, types: set[str] | frozenset[str] | None = None,
            entities: list[str] | None = None) -> bool:
    """Whether an event passes the filters: its type is in ``types`` (None: any) and its
    entity equals one of ``entities`` or matches it as a glob (``agent:gator*``; None: any)."""
    if types is not None and event_type not in types:
        return False
    if entities is None:
        return True
    return any(entity == pattern or fnmatchcase(entity, pattern) for pattern in entities)


def tail_lines(entries: Iterable[StreamEntry], *, types: set[str] | None = None,
               entities: list[str] | None = None) -> Iterator[str]:
    """One line per domain event among ``entries`` that passes :func:`matches`, and a line
    for each resync (the publisher dropped events). Other AG-UI entries give no line."""
    for entry in entries:
        if entry.is_resync:
            yield f"#{entry.seq:>6} -- the publisher dropped events up to here; state resynchronised from a snapshot"
            continue
        if entry.agui_type != "CUSTOM" or not matches(entry.type, entry.entity, types=types, entities=entities):
            continue
        try:
            event = entry.event()
        except EventError as exc:
            yield f"#{entry.seq:>6} {entry.type} {entry.entity}: unreadable ({exc})"
            continue
        if event is not None:
            yield format_event(event)


def tail_store(store: Any, run_id: str, *, follow: bool = False, poll: float = 0.5, types: set[str] | None = None,
               entities: list[str] | None = None, after_seq: int = 0) -> Iterator[str]:
    """The lines of a run's events read from the store (the embedded one included), in
    order. With ``follow`` it keeps looking every ``poll`` seconds while the run is
    running, and stops after its ``run_finished`` event."""
    import time

    from cival.events.models import parse_event

    seq = after_seq
    while True:
        rows = store.events(run_id, after=seq, limit=1_000)
        for row in rows:
            seq = row.seq
            if not matches(row.type, row.entity, types=types, entities=entities):
                continue
            try:
                yield format_event(parse_event(row))
            except EventError as exc:
                yield f"#{row.seq:>6} {row.type} {row.entity}: unreadable ({exc})"
        if any(r.type == "run_finished" for r in rows):
            return
        if not rows:
            if not follow or store.run(run_id).status != "running":
                return
            time.sleep(poll)


def _num(value: Decimal | None) -> str:
    """A plain decimal without exponent or trailing zeros (``71234.50`` -> ``71234.5``),
    for what is not an amount: weights, parameters."""
    if value is None:
        return "-"
    return plain_decimal(value)


def _money(value: Decimal | None, signed: bool = False) -> str:
    return money(value, signed=signed)


_MEMO_PRICE = re.compile(r"^(buy|sell) (\S+) (\S+) @ (\S+)$")


def _memo(memo: str) -> str:
    """A fill's memo (``buy QTY SYMBOL @ PRICE``, stored as booked) with its quantity and
    price as people read them; any other memo as it is."""
    found = _MEMO_PRICE.match(memo)
    if found is None:
        return memo
    side, qty, symbol, at = found.groups()
    try:
        return f"{side} {quantity(qty)} {symbol} @ {price(at)}"
    except ValueError:
        return memo


def _iso_short(text: str | None) -> str:
    if text is None:
        return "-"
    try:
        return short_time(parse_time(text))
    except ValueError:
        return text


def _names(names: list[str], shown: int = 4) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f" (+{len(names) - shown} more)"


def _compact(mapping: dict[str, Any] | None) -> str:
    if not mapping:
        return ""
    return ", ".join(f"{k}={v}" for k, v in mapping.items())


def _order_filled(event: OrderFilled) -> str:
    text = f"{event.side} {quantity(event.qty)} {event.symbol} @ {price(event.price)} fee {_money(event.fee)}"
    return text + (" (stop)" if event.reason == "stop" else "")


def _order_submitted(event: OrderSubmitted) -> str:
    return f"{event.side} {event.symbol} on the signal of {_iso_short(event.signal_at)} (order {event.order_id})"


def _order_rejected(event: OrderRejected) -> str:
    return f"{event.side} {event.symbol} not placed: {event.reason}"


def _balance(event: WalletBalanceUpdate) -> str:
    held = "; ".join(f"{p.symbol} {quantity(p.qty)} (cost {_money(p.cost)})" for p in event.positions if p.qty != 0)
    return f"cash {_money(event.cash)} {event.currency}" + (f", {held}" if held else ", flat")


def _transaction(event: WalletTransaction) -> str:
    legs = ", ".join(
        f"{p.account} {_money(p.amount, signed=True)}" + (f" (qty {quantity(p.quantity, signed=True)})" if p.quantity != 0 else "")
        for p in event.postings
    )
    return f"{event.tx_type} #{event.tx_seq} [{event.key}] {legs}" + (f" - {_memo(event.memo)}" if event.memo else "")


def _allocation(event: FundAllocation) -> str:
    kind = "" if event.kind == "allocation" else f" ({event.kind})"
    return f"{event.source_wallet} -> {event.target} {_money(event.amount)}{kind} [{event.key}]"


def _collection(event: FundCollection) -> str:
    return f"{event.source_wallet} -> {event.target} {_money(event.amount)} collected [{event.key}]"


def _performance(event: FarmPerformanceUpdate) -> str:
    net = event.realized_pnl + event.unrealized_pnl - event.fees
    figures = [f"equity {_money(event.equity)}", f"cash {_money(event.cash)}",
               f"net P&L {_money(net, signed=True)} (realised {_money(event.realized_pnl, signed=True)} "
               f"+ unrealised {_money(event.unrealized_pnl, signed=True)} - fees {_money(event.fees)})",
               _trades(event.trades), "in position" if event.in_position else "flat"]
    if event.max_drawdown is not None:
        figures.append(f"drawdown {percent(event.max_drawdown)}")
    if event.sharpe is not None:
        figures.append(f"Sharpe {ratio(event.sharpe)}")
    return " ".join([", ".join(figures), f"(bar {event.bars:,})"])


def _trades(count: int) -> str:
    return f"{count:,} trade" + ("" if count == 1 else "s")


def _rebalance(event: FarmRebalance) -> str:
    moves = ", ".join(f"{name} {_money(move, signed=True)}" for name, move in event.moves.items())
    return f"{event.wallet} at bar {event.bars}: {moves or 'no moves'}"


def _farm_created(event: FarmCreated) -> str:
    return f"{event.farm} ({event.farm_type}, {event.agents_mode}): {len(event.agents)} agents {_names(event.agents)}"


def _assignment(event: AgentFarmAssignment) -> str:
    return f"{event.agent} in farm {event.farm}: {event.strategy}({_compact(event.params)}) on {event.symbol}"


def _goal_created(event: GoalCreated) -> str:
    deadline = f", deadline {_compact(event.deadline)}" if event.deadline else ""
    return f"{event.goal} ({event.goal_type}): {_compact(event.target)}, then {event.on_complete}{deadline}"


def _goal_assignment(event: GoalAssignment) -> str:
    who = f"agent:{event.agent}" if event.agent else f"farm:{event.farm}" if event.farm else "everyone"
    return f"{event.goal} -> {who} weight {_num(event.weight)}"


def _goal_progress(event: GoalProgressUpdate) -> str:
    return (f"{event.goal} {event.status} {percent(event.progress / 100)} collected {_money(event.collected)} "
            f"(bar {event.bars:,})")


def _goal_completed(event: GoalCompleted) -> str:
    by = f" by trade {event.completing_trade}" if event.completing_trade else ""
    return f"{event.goal} completed {_iso_short(event.completed_at)}{by}, then {event.on_complete}"


def _halt(event: Halt) -> str:
    return f"resumed ({event.reason})" if event.resume else f"halted: {event.reason}"


def _operator_action(event: OperatorAction) -> str:
    what = f"{event.command} {event.target} by {event.by}"
    if event.status == "refused":
        return f"{what}: refused ({event.result.get('error', '')})"
    amount = event.result.get("amount")
    return f"{what}: {event.status}" + (f", {money(amount)}" if amount is not None else "")


def _run_started(event: RunStarted) -> str:
    kinds = [node.kind for node in event.wallets]
    tree = f"{kinds.count('farm')} farms, {kinds.count('agent')} agents"
    source = f" from {event.data}" if event.data else ""
    return (f"{event.cluster}: {event.mode}, {event.symbol}{source}, {tree}, {event.currency}; "
            f"store {event.store}, streams {event.streams}")


def _run_finished(event: RunFinished) -> str:
    span = f" ({_iso_short(event.start)} .. {_iso_short(event.end)})" if event.start else ""
    audit = "audit ok" if event.audit_ok else "AUDIT FAILED"
    return f"{event.status} after {event.bars:,} bars{span}, total equity {_money(event.total_equity)}, {audit}"


DETAILS: dict[str, Callable[[Any], str]] = {
    "wallet_balance_update": _balance,
    "fund_allocation": _allocation,
    "fund_collection": _collection,
    "wallet_transaction": _transaction,
    "farm_created": _farm_created,
    "farm_performance_update": _performance,
    "agent_farm_assignment": _assignment,
    "farm_rebalance": _rebalance,
    "goal_created": _goal_created,
    "goal_progress_update": _goal_progress,
    "goal_completed": _goal_completed,
    "goal_assignment": _goal_assignment,
    "order_submitted": _order_submitted,
    "order_rejected": _order_rejected,
    "order_filled": _order_filled,
    "halt": _halt,
    "operator_action": _operator_action,
    "run_started": _run_started,
    "run_finished": _run_finished,
}
"""Event type (each of :data:`cival.core.events.EVENT_TYPES`) -> what its line says after
the envelope."""


def _detail(event: Event) -> str:
    detail = DETAILS.get(event.type)
    return detail(event) if detail is not None else _compact(event.fields())


def format_event(event: Event) -> str:
    """One line for a terminal: seq, time, type, entity and what happened, numbers as
    :mod:`cival.core.fmt` shows them to people (money with two decimals, prices with six
    significant digits, quantities with up to eight decimals), e.g. ``#   412 2024-10-30
    16:00Z order_filled        agent:gator-13-8-5  buy 0.5 BTCUSDT @ 71,234.50 fee 35.60``."""
    return f"#{event.seq:>6} {short_time(event.at)} {event.type:<19} {event.entity:<18}  {_detail(event)}"


__all__ = ["StreamEntry", "format_event", "matches", "parse_entry", "read_stream", "tail_lines", "tail_store"]
