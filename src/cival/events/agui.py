"""Domain events as AG-UI events: the wire format of every stream consumer.

Each domain event becomes one AG-UI ``CUSTOM`` event (``name`` = the domain type,
``value`` = envelope and payload). Around it, the encoder keeps a small **state** of the
run (wallets, farms, agents, goals) and sends its changes as ``STATE_DELTA`` events
(RFC 6902 JSON Patch), so a dashboard can show balances and progress without
interpreting domain events:

=======================  ===========================================================
domain event             AG-UI events, in order
=======================  ===========================================================
run_started              RUN_STARTED, CUSTOM, STATE_SNAPSHOT (the initial state)
run_finished             CUSTOM, STATE_DELTA, RUN_FINISHED (status "failed": RUN_ERROR)
wallet_balance_update,   CUSTOM, STATE_DELTA (only when the state changed)
fund_allocation, ...
everything else          CUSTOM
=======================  ===========================================================

The state's shape is documented in ``docs/events.md``. It is bounded: one entry per
wallet, farm, agent and goal, never a growing list of happenings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from ag_ui.core import (
    PROTOCOL_VERSION,
    BaseEvent,
    CustomEvent,
    EventType,
    RunErrorEvent,
    RunFinishedEvent,
    RunStartedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
)

from cival.core.fmt import iso_utc
from cival.core.wallets import MASTER, agent_ref, farm_ref
from cival.events.models import (
    AgentFarmAssignment,
    Event,
    EventError,
    FarmCreated,
    FarmPerformanceUpdate,
    FundAllocation,
    FundCollection,
    GoalAssignment,
    GoalCompleted,
    GoalCreated,
    GoalProgressUpdate,
    Halt,
    RunFinished,
    RunStarted,
    WalletBalanceUpdate,
    plain,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

_MODELS: dict[str, type[BaseEvent]] = {
    EventType.CUSTOM.value: CustomEvent,
    EventType.RUN_STARTED.value: RunStartedEvent,
    EventType.RUN_FINISHED.value: RunFinishedEvent,
    EventType.RUN_ERROR.value: RunErrorEvent,
    EventType.STATE_SNAPSHOT.value: StateSnapshotEvent,
    EventType.STATE_DELTA.value: StateDeltaEvent,
}


class WireEvent(NamedTuple):
    """One AG-UI event as JSON-ready data: ``agui_type`` (``CUSTOM``...) and the event as a
    camelCase dict, exactly what ``model_dump(by_alias=True, exclude_none=True)`` of the
    ag_ui model gives. The dict is the caller's: the encoder keeps no reference to it."""

    agui_type: str
    body: dict[str, Any]


_iso = lru_cache(maxsize=4_096)(iso_utc)  # many events share their bar's time


@lru_cache(maxsize=4_096)
def millis(when: datetime) -> int:
    """Milliseconds since the Unix epoch: the unit every AG-UI SDK uses for ``timestamp``."""
    return (when - _EPOCH) // _MS


@lru_cache(maxsize=65_536)  # the same few paths (wallet x field) over and over
def pointer(*tokens: str) -> str:
    """The RFC 6901 JSON Pointer of ``tokens`` (``~`` and ``/`` escaped as ``~0``/``~1``)."""
    return "".join(["/" + t.replace("~", "~0").replace("/", "~1") for t in tokens])


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _copy(value: Any) -> Any:
    # State and patches must never share a container: the state is changed in place
    # later, and a patch already handed out (or waiting in a bus buffer) must not change
    # with it. The values are small JSON trees, so a plain recursive copy is cheap.
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def apply_patch(state: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """Apply RFC 6902 ``add``/``replace``/``remove`` operations on object members to
    ``state`` in place (the only operations this encoder produces). Values are copied.

    Raises :class:`EventError` for a path that does not resolve, which means the patch
    was made against another state: resynchronise from a ``STATE_SNAPSHOT``.
    """
    for op in ops:
        path = op["path"]
        tokens = [_unescape(t) for t in path.split("/")[1:]]
        if not tokens:
            if op["op"] not in ("add", "replace") or not isinstance(op["value"], dict):
                raise EventError(f"cannot apply {op['op']} to the whole state; resynchronise from a snapshot")
            state.clear()
            state.update(_copy(op["value"]))
            continue
        parent: Any = state
        try:
            for token in tokens[:-1]:
                parent = parent[token]
        except (KeyError, TypeError):
            raise EventError(f"patch path {path!r} does not exist in the state; "
                             "resynchronise from a snapshot") from None
        key = tokens[-1]
        if not isinstance(parent, dict):
            raise EventError(f"patch path {path!r} does not name an object member; resynchronise from a snapshot")
        if op["op"] == "add":
            parent[key] = _copy(op["value"])
        elif op["op"] == "replace":
            if key not in parent:
                raise EventError(f"replace of the missing {path!r}; resynchronise from a snapshot")
            parent[key] = _copy(op["value"])
        elif op["op"] == "remove":
            if parent.pop(key, _MISSING) is _MISSING:
                raise EventError(f"remove of the missing {path!r}; resynchronise from a snapshot")
        else:
            raise EventError(f"unsupported patch operation {op['op']!r}")


_MISSING = object()


def initial_state(run_id: str, cluster: str | None) -> dict[str, Any]:
    """The state before ``run_started`` (status ``pending``); see docs/events.md."""
    return {
        "run": {
            "id": run_id, "cluster": cluster, "status": "pending", "mode": None, "symbol": None, "data": None,
            "store": None, "streams": None, "currency": None, "bars": 0, "start": None, "end": None,
            "total_equity": None, "audit_ok": None,
        },
        "wallets": {},
        "farms": {},
        "agents": {},
        "goals": {},
    }


def _wallet(ref: str, parent: str | None = None, kind: str | None = None) -> dict[str, Any]:
    if kind is None:
        kind = "master" if ref == MASTER else ref.split(":", 1)[0] if ":" in ref else "wallet"
    return {"kind": kind, "parent": parent, "cash": None, "positions": {}, "allocated": "0", "collected": "0",
            "halted": None}


def _farm() -> dict[str, Any]:
    return {"farm_type": None, "agents_mode": None, "agents": [], "equity": None, "cash": None,
            "realized_pnl": None, "unrealized_pnl": None, "fees": None, "trades": 0, "in_position": False,
            "max_drawdown": None, "sharpe": None, "bars": 0}


def _agent() -> dict[str, Any]:
    return {"farm": None, "strategy": None, "symbol": None}


def _goal() -> dict[str, Any]:
    return {"goal_type": None, "target": None, "on_complete": None, "deadline": None, "status": "active",
            "progress": "0", "collected": "0", "bars": 0, "completed_at": None, "completing_trade": None,
            "assignments": {}}


class AguiEncoder:
    """Turns the domain events of one run into AG-UI events, keeping the run's state.

    Stateful: feed it every event of the run once, in ``seq`` order (the deltas are
    relative to the state the previous events left). ``thread_id`` names the AG-UI
    thread until ``run_started`` gives the cluster's name. Not thread-safe: one caller
    at a time.
    """

    def __init__(self, run_id: str, thread_id: str | None = None) -> None:
        self.run_id = run_id
        self.thread_id = thread_id or run_id
        self._state: dict[str, Any] = initial_state(run_id, thread_id)

    # -- public -----------------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """A deep copy of the current state."""
        return _copy(self._state)

    def snapshot(self, at: datetime | None = None) -> StateSnapshotEvent:
        """A ``STATE_SNAPSHOT`` of the current state (``timestamp``: ``at``, default now)."""
        return StateSnapshotEvent.model_validate(self.snapshot_wire(at).body)

    def snapshot_wire(self, at: datetime | None = None) -> WireEvent:
        """:meth:`snapshot` as data, for senders that serialise it themselves."""
        return WireEvent("STATE_SNAPSHOT", {"type": "STATE_SNAPSHOT", "timestamp": millis(at or datetime.now(UTC)),
                                            "snapshot": _copy(self._state)})

    def encode(self, event: Event) -> list[BaseEvent]:
        """The AG-UI events for ``event``, as the ag_ui package's models; updates the state."""
        return [_MODELS[w.agui_type].model_validate(w.body) for w in self.encode_wire(event)]

    def encode_wire(self, event: Event) -> list[WireEvent]:
        """:meth:`encode` as JSON-ready data (the fast path of the buses); updates the state."""
        if event.run_id != self.run_id:
            raise EventError(f"event {event.id!r} belongs to run {event.run_id!r}, not to {self.run_id!r}: "
                             "use one encoder per run")
        ms = millis(event.at)
        value = {"id": event.id, "seq": event.seq, "entity": event.entity, "source": event.source,
                 "at": _iso(event.at), **event.fields()}
        custom = WireEvent("CUSTOM", {"type": "CUSTOM", "timestamp": ms, "name": event.type, "value": value})
        if isinstance(event, RunStarted):
            self._start(event)
            return [
                WireEvent("RUN_STARTED", {"type": "RUN_STARTED", "timestamp": ms, "threadId": self.thread_id,
                                          "runId": self.run_id, "protocolVersion": PROTOCOL_VERSION}),
                custom,
                WireEvent("STATE_SNAPSHOT", {"type": "STATE_SNAPSHOT", "timestamp": ms,
                                             "snapshot": _copy(self._state)}),
            ]
        ops: list[dict[str, Any]] = []
        handler = STATE_CHANGES.get(event.type)
        if handler is not None:
            handler(self, event, ops)
        out = [custom]
        if ops:
            out.append(WireEvent("STATE_DELTA", {"type": "STATE_DELTA", "timestamp": ms, "delta": ops}))
        if isinstance(event, RunFinished):
            out.append(self._finish(event, ms))
        return out

    # -- state changes ----------------------------------------------------------------

    def _set(self, ops: list[dict[str, Any]], tokens: tuple[str, ...], value: Any) -> None:
        """Set one member (its parent must exist), recording add or replace if it changed."""
        parent = self._state
        for token in tokens[:-1]:
            parent = parent[token]
        key = tokens[-1]
        if key in parent:
            if parent[key] == value:
                return
            op = "replace"
        else:
            op = "add"
        parent[key] = _copy(value)
        ops.append({"op": op, "path": pointer(*tokens), "value": _copy(value)})

    def _upsert(self, ops: list[dict[str, Any]], section: str, key: str, updates: dict[str, Any],
                new: Any) -> None:
        """Update members of ``state[section][key]``; a missing entry is added whole (``new()``
        with ``updates`` applied) in one ``add``."""
        entries = self._state[section]
        if key not in entries:
            entry = new()
            entry.update(updates)
            self._set(ops, (section, key), entry)
            return
        for name, value in updates.items():
            self._set(ops, (section, key, name), value)

    def _add_to(self, ops: list[dict[str, Any]], ref: str, field: str, amount: Decimal) -> None:
        wallet = self._state["wallets"].get(ref)
        total = amount + Decimal(wallet[field]) if wallet is not None else amount
        self._upsert(ops, "wallets", ref, {field: plain(total)}, lambda: _wallet(ref))

    def _start(self, event: RunStarted) -> None:
        self.thread_id = event.cluster
        state = initial_state(self.run_id, event.cluster)
        state["run"].update(status="running", mode=event.mode, symbol=event.symbol, data=event.data,
                            store=event.store, streams=event.streams, currency=event.currency)
        for node in event.wallets:
            state["wallets"][node.ref] = _wallet(node.ref, node.parent, node.kind)
        self._state = state

    def _finish(self, event: RunFinished, ms: int) -> WireEvent:
        if event.status == "failed":
            return WireEvent("RUN_ERROR", {
                "type": "RUN_ERROR", "timestamp": ms, "code": "run_failed",
                "message": f"run {self.run_id} failed after {event.bars} bars; see the run's log for the cause",
            })
        body: dict[str, Any] = {
            "type": "RUN_FINISHED", "timestamp": ms, "threadId": self.thread_id, "runId": self.run_id,
            "result": {"status": event.status, "bars": event.bars, "total_equity": plain(event.total_equity),
                       "audit_ok": event.audit_ok},
        }
        if event.status == "interrupted":
            # Stopped by whoever ran it, without failing: AG-UI's "cancelled" outcome.
            body["outcome"] = {"type": "cancelled"}
        return WireEvent("RUN_FINISHED", body)

    def _run_bars(self, ops: list[dict[str, Any]], bars: int) -> None:
        if bars > self._state["run"]["bars"]:
            self._set(ops, ("run", "bars"), bars)

    def _on_finished(self, event: RunFinished, ops: list[dict[str, Any]]) -> None:
        for name, value in (("status", event.status), ("bars", event.bars), ("start", event.start),
                            ("end", event.end), ("total_equity", plain(event.total_equity)),
                            ("audit_ok", event.audit_ok)):
            self._set(ops, ("run", name), value)

    def _on_balance(self, event: WalletBalanceUpdate, ops: list[dict[str, Any]]) -> None:
        positions = {p.symbol: {"qty": plain(p.qty), "cost": plain(p.cost)} for p in event.positions}
        self._upsert(ops, "wallets", event.wallet, {"cash": plain(event.cash), "positions": positions},
                     lambda: _wallet(event.wallet))

    def _on_allocation(self, event: FundAllocation, ops: list[dict[str, Any]]) -> None:
        self._add_to(ops, event.target, "allocated", event.amount)

    def _on_collection(self, event: FundCollection, ops: list[dict[str, Any]]) -> None:
        self._add_to(ops, event.source_wallet, "collected", event.amount)

    def _on_farm_created(self, event: FarmCreated, ops: list[dict[str, Any]]) -> None:
        self._upsert(ops, "farms", event.farm, {"farm_type": event.farm_type, "agents_mode": event.agents_mode,
                                                "agents": list(event.agents)}, _farm)

    def _on_performance(self, event: FarmPerformanceUpdate, ops: list[dict[str, Any]]) -> None:
        figures = {
            "equity": plain(event.equity), "cash": plain(event.cash), "realized_pnl": plain(event.realized_pnl),
            "unrealized_pnl": plain(event.unrealized_pnl), "fees": plain(event.fees), "trades": event.trades,
            "in_position": event.in_position, "max_drawdown": event.max_drawdown, "sharpe": event.sharpe,
            "bars": event.bars,
        }
        self._upsert(ops, "farms", event.farm, figures, _farm)
        self._run_bars(ops, event.bars)

    def _on_assignment(self, event: AgentFarmAssignment, ops: list[dict[str, Any]]) -> None:
        self._upsert(ops, "agents", event.agent,
                     {"farm": event.farm, "strategy": event.strategy, "symbol": event.symbol}, _agent)
        ref = agent_ref(event.agent)
        if ref not in self._state["wallets"]:
            self._set(ops, ("wallets", ref), _wallet(ref, farm_ref(event.farm), "agent"))

    def _on_goal_created(self, event: GoalCreated, ops: list[dict[str, Any]]) -> None:
        self._upsert(ops, "goals", event.goal, {"goal_type": event.goal_type, "target": event.target,
                                                "on_complete": event.on_complete, "deadline": event.deadline},
                     _goal)

    def _on_goal_assignment(self, event: GoalAssignment, ops: list[dict[str, Any]]) -> None:
        ref = agent_ref(event.agent) if event.agent else farm_ref(event.farm) if event.farm else "all"
        goal = self._state["goals"].get(event.goal)
        if goal is None:
            self._upsert(ops, "goals", event.goal, {"assignments": {ref: plain(event.weight)}}, _goal)
        else:
            self._set(ops, ("goals", event.goal, "assignments", ref), plain(event.weight))

    def _on_goal_progress(self, event: GoalProgressUpdate, ops: list[dict[str, Any]]) -> None:
        self._upsert(ops, "goals", event.goal, {"status": event.status, "progress": plain(event.progress),
                                                "collected": plain(event.collected), "bars": event.bars}, _goal)
        self._run_bars(ops, event.bars)

    def _on_goal_completed(self, event: GoalCompleted, ops: list[dict[str, Any]]) -> None:
        self._upsert(ops, "goals", event.goal, {"status": "completed", "completed_at": event.completed_at,
                                                "completing_trade": event.completing_trade}, _goal)

    def _on_halt(self, event: Halt, ops: list[dict[str, Any]]) -> None:
        self._upsert(ops, "wallets", event.entity, {"halted": None if event.resume else event.reason},
                     lambda: _wallet(event.entity))


STATE_CHANGES: dict[str, Any] = {
    "run_finished": AguiEncoder._on_finished,
    "wallet_balance_update": AguiEncoder._on_balance,
    "fund_allocation": AguiEncoder._on_allocation,
    "fund_collection": AguiEncoder._on_collection,
    "farm_created": AguiEncoder._on_farm_created,
    "farm_performance_update": AguiEncoder._on_performance,
    "agent_farm_assignment": AguiEncoder._on_assignment,
    "goal_created": AguiEncoder._on_goal_created,
    "goal_assignment": AguiEncoder._on_goal_assignment,
    "goal_progress_update": AguiEncoder._on_goal_progress,
    "goal_completed": AguiEncoder._on_goal_completed,
    "halt": AguiEncoder._on_halt,
}
"""Event types that change the state (``run_started`` sets it whole), each with how."""

CUSTOM_ONLY: frozenset[str] = frozenset(
    {"wallet_transaction", "farm_rebalance", "order_submitted", "order_rejected", "order_filled", "operator_action"}
)
"""Event types sent as ``CUSTOM`` only. With :data:`STATE_CHANGES` and ``run_started``,
every type of :data:`cival.core.events.EVENT_TYPES`, each once (a test holds them to it)."""


__all__ = ["CUSTOM_ONLY", "STATE_CHANGES", "AguiEncoder", "WireEvent", "apply_patch", "initial_state", "millis", "pointer"]
