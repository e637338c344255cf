"""The nodes' typed state and its one JSON codec.

* Random states of every state model survive the codec exactly (JSON and back, equal).
* State journaled before the models existed (``tests/data/node_states_v0``: written by a
  short local session of the recovery config, master, farms with agent actors and an
  inline farm, agents, including checkpoints and rebalances caught half-way) is read
  and taken up by today's nodes unchanged.
* A node rebuilt from another's state (through the codec) carries on identically.
* A stored state with a field missing or unknown is refused as a corrupt store, naming
  the node and the field.
"""

from __future__ import annotations

import json
import math
import types
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter
from typing_extensions import is_typeddict

from cival.actors.farm_ports import InlineAgents
from cival.actors.journal import Journal, state_model
from cival.actors.nodes import FarmNode, MasterNode, cluster_spec
from cival.actors.performance import PerformanceState
from cival.actors.state import (
    AgentState,
    CheckpointStep,
    FarmState,
    MasterState,
    RebalanceStep,
)
from cival.config import AllocationPolicy, config_from_dict
from cival.core.codec import (
    StateError,
    StateModel,
    apply,
    built,
    capture,
    decode,
    encode,
)
from cival.core.messages import Allocate, Collect, Halt, PerformanceReport, Transfer
from cival.goals import GoalState
from cival.runtime import LocalCluster
from cival.session import Checkpoints, replay_batches, session_bars
from cival.store import StoreError
from cival.store.sqlite import SqliteStore
from cival.strategies.base import SignalsState
from tests.helpers import recovery_config

V0 = Path(__file__).parent / "data" / "node_states_v0"

# -- random states ------------------------------------------------------------------------

TEXT = st.text(max_size=6)
WHEN = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
AMOUNT = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(10**9), places=8)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
POLICIES = [
    TypeAdapter(AllocationPolicy).validate_python(p)
    for p in (
        {"policy": "equal", "reserve_pct": "5"},
        {"policy": "fixed", "weights": {"a": "2", "b": "1"}},
        {"policy": "inverse_volatility", "lookback_bars": 20},
        {"policy": "performance", "metric": "return", "lookback_bars": 48, "min_share": "0.1"},
    )
]

MESSAGES: dict[Any, st.SearchStrategy[Any]] = {
    Halt: st.builds(Halt, id=TEXT.map(lambda s: "h" + s), at=WHEN, entity=TEXT, reason=TEXT, resume=st.booleans(),
                    only=st.none() | TEXT),
    Collect: st.builds(Collect, id=TEXT.map(lambda s: "c" + s), at=WHEN, source=TEXT, amount=st.none() | AMOUNT, reason=TEXT,
                       basis=st.sampled_from([None, "amount", "all", "profit"])),
    Allocate: st.builds(Allocate, id=TEXT.map(lambda s: "a" + s), at=WHEN, source=TEXT, target=TEXT, amount=AMOUNT),
    PerformanceReport: st.builds(
        PerformanceReport, at=WHEN, entity=TEXT, equity=AMOUNT, realized_pnl=AMOUNT, trades=st.integers(0, 10**6),
        in_position=st.booleans(), cash=st.none() | AMOUNT, max_drawdown=st.none() | FINITE, sharpe=st.none() | FINITE,
        bars=st.integers(0, 10**9),
    ),
}
SCALARS: dict[Any, st.SearchStrategy[Any]] = {
    int: st.integers(-(2**63), 2**63 - 1),
    float: st.floats(),  # NaN and infinities included: the state keeps them
    str: TEXT,
    bool: st.booleans(),
    Decimal: st.decimals(allow_nan=False, allow_infinity=False),
    datetime: WHEN,
    date: st.dates(),
    type(None): st.none(),
}


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
"""What a state keeps as plain JSON (``Any``: a goal's config, say)."""


def values_of(tp: Any) -> st.SearchStrategy[Any]:
    """Values of the type ``tp`` as a state model declares it (plain Python values, which
    the model validates)."""
    if tp is Any:
        return JSON_VALUES
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return values_of(args[0])
    if tp in SCALARS:
        return SCALARS[tp]
    if tp in MESSAGES:
        return MESSAGES[tp]
    if origin in (Union, types.UnionType):
        if set(args) == {type(p) for p in POLICIES}:
            return st.sampled_from(POLICIES)
        return st.one_of(*[values_of(a) for a in args])
    if origin is Literal:
        return st.sampled_from(args)
    if origin is list:
        return st.lists(values_of(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(TEXT, values_of(args[1]), max_size=3)
    if origin is tuple:
        return st.tuples(*[values_of(a) for a in args])
    if is_typeddict(tp):
        return st.fixed_dictionaries({k: values_of(v) for k, v in get_type_hints(tp).items()})
    if isinstance(tp, type) and issubclass(tp, Enum):
        return st.sampled_from(list(tp))
    if isinstance(tp, type) and issubclass(tp, StateModel):
        fields = {name: values_of(f.annotation) for name, f in tp.model_fields.items()}
        return st.fixed_dictionaries(fields).map(tp.model_validate)
    raise AssertionError(f"no strategy for {tp!r}: add one here")


MODELS = [MasterState, FarmState, AgentState, GoalState, PerformanceState, SignalsState, CheckpointStep, RebalanceStep]


@pytest.mark.parametrize("model", MODELS, ids=[m.__name__ for m in MODELS])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_state_survives_the_codec_exactly(model, data):
    state = data.draw(values_of(model))
    text = encode(state)
    back = decode(model, text, "test")
    assert encode(back) == text
    if "NaN" not in text:  # NaN is not equal to itself; the text above shows it kept
        assert back == state


def test_the_codec_writes_exact_decimals_times_and_nan():
    state = GoalState(status="completed", completed_at=datetime(2024, 3, 1, 12, 30, tzinfo=UTC), completing_trade="t",
                      collected=Decimal("1E+3"), count=Decimal("0.10"), profit=Decimal("-0.00000001"), wins=Decimal(0),
                      trades=Decimal(2), sharpe=math.nan, seen=["t"])
    raw = json.loads(encode(state, extra={"_ledger": {"transactions": 1}}), parse_constant=lambda c: c)
    assert raw["_ledger"] == {"transactions": 1}
    assert raw["collected"] == "1E+3" and raw["count"] == "0.10" and raw["profit"] == "-1E-8"
    assert raw["completed_at"] == "2024-03-01T12:30:00Z" and raw["sharpe"] == "NaN"


def test_a_value_of_an_undeclared_type_is_refused_when_written():
    state = PerformanceState.model_construct(start_equity=1.0, bars="many", first_ns=0, last_ns=0, last_equity=1.0, peak=1.0,
                                             max_drawdown=0.0, mean=0.0, m2=0.0)
    with pytest.raises(Exception, match="int"):
        encode(state)


# -- state written before the typed models --------------------------------------------------


@pytest.fixture(scope="module")
def spec():
    return cluster_spec(recovery_config())


def _node(spec, name: str) -> Any:
    kind, _, rest = name.partition("-")
    if kind == "master":
        return MasterNode(spec)
    if kind == "farm":
        farm = rest.split("-")[0]
        return FarmNode(next(f for f in spec.farms if f.name == farm))
    agent = "-".join(rest.split("-")[:2])
    return next(a for a in spec.agents if a.name == agent).build()


def _with_fills(node: Any, raw: dict[str, Any]) -> None:
    """Stand-ins for the fills the journal restores first (the state only counts them)."""
    inline = raw.get("agents", {})
    agents = [node] if isinstance(raw.get("fills"), int) else [node.agents[n] for n in inline]
    counts = [raw["fills"]] if isinstance(raw.get("fills"), int) else [s["fills"] for s in inline.values()]
    for agent, count in zip(agents, counts, strict=True):
        agent.fills.extend([None] * count)


NEW_PERFORMANCE_SUMS = ("_growth", "_downside")
"""A performance tracker's sums that came after these states were written: read as NaN
(its total return, CAGR, Sortino and Calmar ratios are then None, not wrong)."""


def _same(old: Any, new: Any, path: str = "") -> None:
    """``new`` (today's JSON) says what ``old`` (the stored JSON) said: the same members and
    values, times in either ISO form, a step's missing member as null."""
    if isinstance(old, dict):
        assert isinstance(new, dict), path
        for key in new.keys() - old.keys():
            if path.endswith(".performance") and key in NEW_PERFORMANCE_SUMS:
                assert math.isnan(new[key]), f"{path}.{key}: a sum the old state lacks must be unknown (NaN)"
                continue
            assert new[key] is None, f"{path}.{key}: a new member that is not a step left to run"
        for key in old:
            _same(old[key], new[key], f"{path}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), path
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _same(a, b, f"{path}[{i}]")
    elif isinstance(old, str) and isinstance(new, str) and old != new:
        assert datetime.fromisoformat(old) == datetime.fromisoformat(new), path
    elif isinstance(old, float) and math.isnan(old):
        assert isinstance(new, float) and math.isnan(new), path
    else:
        assert old == new, path


V0_FILES = sorted(V0.glob("*.json"))


def test_the_old_state_files_cover_every_kind_of_node_and_step():
    names = [p.stem for p in V0_FILES]
    assert any(n.startswith("master-checkpoint") for n in names) and "master" in names
    assert "farm-waves" in names  # inline agents
    assert any(n.startswith("farm-trend") for n in names) and any("rebalance" in n for n in names)
    assert any(n.endswith("releases") for n in names) and any(n.startswith("agent-") for n in names)


@pytest.mark.parametrize("path", V0_FILES, ids=[p.stem for p in V0_FILES])
def test_state_journaled_before_the_typed_models_is_taken_up_unchanged(spec, path):
    raw = json.loads(path.read_text())
    raw.pop("_ledger")
    node = _node(spec, path.stem)
    _with_fills(node, raw)
    node.restore(decode(state_model(node), raw, path.stem))
    again = json.loads(encode(node.state()))
    _same(raw, again)
    # The steps under way come back as messages, not dicts, and carry on as they were.
    if isinstance(node, MasterNode) and raw["checkpoint"] is not None:
        step = node._checkpoint
        assert isinstance(step, CheckpointStep) and step.bars == raw["checkpoint"]["bars"]
        for key in ("halts", "collects", "allocs", "goals"):
            stored = raw["checkpoint"].get(key)
            assert (getattr(step, key) is None) == (stored is None)
            if stored is not None:
                assert [m.model_dump(mode="json") for m in getattr(step, key)] == stored
    if isinstance(node, FarmNode):
        assert all(isinstance(c, Collect) for cs in node._releases.values() for c in cs)
        assert node._releases == {k: [Collect.model_validate(c) for c in v] for k, v in raw["releases"].items()}
        if raw["rebalance"] is not None:
            assert node._rebalance.halts == [Halt.model_validate(h) for h in raw["rebalance"]["halts"]]
            assert node._rebalance.plan == raw["rebalance"]["plan"]
        assert {n: list(d) for n, d in node._returns.items()} == raw["returns"]
        assert node.spec.config.allocation.model_dump(mode="json") == raw["allocation"]


class _RecordingPorts:
    """A master's ports that deliver nothing but record what was sent; farms answer a
    Collect with a Transfer of a made-up amount."""

    def __init__(self) -> None:
        self.sent: dict[str, list[Any]] = {}

    def _record(self, kind: str, msg: Any) -> None:
        self.sent.setdefault(kind, []).append(msg)

    def commit(self) -> None:
        self._record("commit", None)

    def farm_halt(self, msg: Halt) -> None:
        self._record("halts", msg)

    def farm_rebalance(self, farms: list[str], bars: int, now: datetime) -> None:
        self._record("farm_rebalance", bars)

    def farm_allocate(self, msg: Allocate) -> None:
        self._record("allocs", msg)

    def farm_info(self, farm: str) -> Any:
        raise AssertionError("the rebalance was planned before: it must not be planned again")

    def farm_release(self, msg: Collect) -> Transfer:
        self._record("collects", msg)
        return Transfer(id=f"{msg.id}:transfer", at=msg.at, source=msg.source, target="master", amount=Decimal(7))

    def goal_collect(self, msg: Collect) -> Transfer:
        self._record("goals", msg)
        return Transfer(id=f"{msg.id}:up:transfer", at=msg.at, source="farm:trend", target="master", amount=Decimal(7))


CHECKPOINTS_V0 = ["master-checkpoint-halts-collects-allocs", "master-checkpoint-halts-goals"]


@pytest.mark.parametrize("name", CHECKPOINTS_V0)
def test_a_master_restored_from_old_state_finishes_its_checkpoint_with_the_stored_messages(spec, name):
    raw = json.loads((V0 / f"{name}.json").read_text())
    raw.pop("_ledger")
    master = MasterNode(spec)
    master.restore(decode(MasterState, raw, "master"))
    master.books.deposit(Decimal(10**7), key="test")  # what the allocations it sends are booked from
    ports = _RecordingPorts()
    step = raw["checkpoint"]
    master.run_checkpoint(ports, [], step["bars"], datetime.fromisoformat(step_time(step)), {}, {})  # type: ignore[arg-type]
    for key in ("halts", "collects", "allocs", "goals"):
        if step.get(key) is not None:
            assert [m.model_dump(mode="json") for m in ports.sent.get(key, [])] == step[key], key
    assert any(step.get(k) for k in ("collects", "allocs", "goals"))  # the fixture has messages to deliver
    assert master._checkpoint is None and master.checkpoint_done == step["bars"]


def step_time(step: dict[str, Any]) -> str:
    messages = [m for k in ("halts", "collects", "allocs", "goals") for m in step.get(k) or ()]
    return messages[0]["at"]


# -- a node rebuilt from another's state carries on ------------------------------------------


def _carry_over(old: Any, new: Any) -> None:
    """What Journal.restore does, without a store: the books, the fills, then the state
    through the codec (as JSON text)."""
    new.books.restore(list(old.books.ledger.journal))
    pairs = list(zip(old.agents.values(), new.agents.values(), strict=True)) if isinstance(old, FarmNode) else []
    if not isinstance(old, (MasterNode, FarmNode)):
        pairs = [(old, new)]
    for a, b in pairs:
        b.restore_fills([(f, ts, ex) for f, (ts, ex) in zip(a.fills, a.executions, strict=True)])
    new.restore(decode(state_model(new), encode(old.state()), "test"))


def _ledger(node: Any) -> list[Any]:
    return [(t.seq, t.idempotency_key, t.postings) for t in node.books.ledger.journal]


def _state_without_report_ids(node: Any) -> Any:
    raw = json.loads(encode(node.state()), parse_constant=lambda c: c)

    def scrub(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: scrub(x) for k, x in v.items() if not (k == "id" and v.get("kind") == "performance")}
        if isinstance(v, list):
            return [scrub(x) for x in v]
        return v

    return scrub(raw)


def _drive(cluster: LocalCluster, checkpoints: Checkpoints, batches: list[Any], seen: int, total: int) -> int:
    for batch in batches:
        updates = cluster.wait(cluster.submit(batch))
        seen += len(batch)
        checkpoints.after_batch(cluster, updates, seen, datetime.fromtimestamp(batch.ts[-1] / 1e9, UTC), seen == total)
    return seen


@pytest.mark.slow
def test_a_cluster_rebuilt_from_its_nodes_states_carries_on_identically():
    config = recovery_config()
    frame = session_bars(config, max_bars=720)
    batches = list(replay_batches(frame, "max", 24))  # every batch ends on a checkpoint (every 24 bars)
    spec = cluster_spec(config)
    first, every = LocalCluster(spec), config.checkpoint.every_bars
    checkpoints = Checkpoints(every)
    first.fund()
    seen = _drive(first, checkpoints, batches[:15], 0, len(frame))
    assert not checkpoints.pending

    second = LocalCluster(spec)
    _carry_over(first.master, second.master)
    for name in first.farms:
        _carry_over(first.farms[name], second.farms[name])
    for name in first.agents:
        _carry_over(first.agents[name], second.agents[name])
    assert _state_without_report_ids(second.master) == _state_without_report_ids(first.master)

    ends = [_drive(c, Checkpoints(every), batches[15:], seen, len(frame)) for c in (first, second)]
    assert ends == [len(frame), len(frame)]
    assert second.master_snapshot() == first.master_snapshot()
    assert second.farm_snapshots() == first.farm_snapshots()
    assert second.goal_states() == first.goal_states()
    for a, b in [(first.master, second.master), *zip(first.farms.values(), second.farms.values()),
                 *zip(first.agents.values(), second.agents.values())]:
        assert _ledger(b) == _ledger(a)
        assert _state_without_report_ids(b) == _state_without_report_ids(a)
    assert any(len(f.rebalances) > 1 for f in first.farms.values()) and first.master.rebalances  # it did rebalance


def _inline_farm():
    config = config_from_dict({
        "name": "inline", "master": {"initial_deposit": "90000"},
        "farms": [{
            "name": "mix", "type": "trend_following", "runtime": {"agents": "inline"},
            "allocation": {"policy": "performance", "metric": "return", "lookback_bars": 24},
            "rebalance": {"every_bars": 40, "liquidate": True},
            "agents": [{"name": "g", "strategy": "alligator"}, {"name": "d", "strategy": "darvas", "params": {"lookback": 10}},
                       {"name": "e", "strategy": "elliott"}],
        }],
        "checkpoint": {"every_bars": 20},
        "data": {"source": "synthetic", "bars": 400, "seed": 11},
    })
    return config, cluster_spec(config).farms[0]


def _run_farm(farm: FarmNode, batches: list[Any], seen: int) -> int:
    ports = InlineAgents(farm)
    for batch in batches:
        farm.run_batch(ports, batch)
        seen += len(batch)
        farm.run_rebalance(ports, seen, datetime.fromtimestamp(batch.ts[-1] / 1e9, UTC))
    return seen


def test_a_farm_with_inline_agents_rebuilt_from_its_state_carries_on_identically():
    config, farm_spec = _inline_farm()
    batches = list(replay_batches(session_bars(config), "max", 20))
    first = FarmNode(farm_spec)
    first.on_allocate(Allocate(id="fund", source="master", target="farm:mix", amount=Decimal(90000)), InlineAgents(first))
    seen = _run_farm(first, batches[:9], 0)
    second = FarmNode(farm_spec)
    _carry_over(first, second)
    assert _state_without_report_ids(second) == _state_without_report_ids(first)
    for farm in (first, second):
        _run_farm(farm, batches[9:], seen)
    assert second.snapshot(InlineAgents(second).agent_snapshots()) == first.snapshot(InlineAgents(first).agent_snapshots())
    assert _ledger(second) == _ledger(first)
    assert _state_without_report_ids(second) == _state_without_report_ids(first)
    assert len(first.rebalances) >= 2 and first.fill_count > 0  # it traded and rebalanced on both sides of the cut


# -- a corrupt store -------------------------------------------------------------------------


@pytest.fixture
def journaled(tmp_path):
    """A store holding one commit of a master, an inline farm and an agent of the recovery config."""
    store = SqliteStore(tmp_path / "store.sqlite3")
    store.migrate()
    run_id = store.create_run("state", "paper", {})
    spec = cluster_spec(recovery_config())
    nodes = {
        "master": MasterNode(spec),
        "farm:waves": FarmNode(next(f for f in spec.farms if f.name == "waves")),
        "agent:gator-a": next(a for a in spec.agents if a.name == "gator-a").build(),
    }
    for node in nodes.values():
        Journal(store, run_id, node).commit()
    fresh = {
        "master": lambda: MasterNode(spec),
        "farm:waves": lambda: FarmNode(next(f for f in spec.farms if f.name == "waves")),
        "agent:gator-a": lambda: next(a for a in spec.agents if a.name == "gator-a").build(),
    }
    yield store, run_id, fresh
    store.close()


def _rewrite(store: SqliteStore, run_id: str, source: str, change: Any) -> None:
    record = store.node_state(run_id, source)
    raw = json.loads(record.state)
    change(raw)
    store._db.execute("UPDATE node_states SET state = ? WHERE run_id = ? AND source = ?", (json.dumps(raw), run_id, source))
    store._db.commit()


CORRUPTIONS = [
    ("master", lambda s: s.pop("checkpoint_done"), "field 'checkpoint_done' is missing"),
    ("master", lambda s: s["goals"][1].pop("seen"), "field 'goals.1.seen' is missing"),
    ("master", lambda s: s.update(surprise=1), "unknown field 'surprise'"),
    ("master", lambda s: s["goals"].pop(), "field 'goals': the state holds 2 entries, this node 3"),
    ("farm:waves", lambda s: s["agents"]["elliott-a"]["signals"].pop("buf_shape"), "field 'agents.elliott-a.signals.buf_shape' is missing"),
    ("farm:waves", lambda s: s["halts"].append({"reason": "x", "at": "2024-01-01T00:00:00Z", "resumed": False, "by": "me"}),
     "unknown field 'halts.0.by'"),
    ("farm:waves", lambda s: s["performance"].pop("_m2"), "field 'performance._m2' is missing"),
    ("farm:waves", lambda s: s.update(agents={}), "field 'agents'.*elliott-a"),
    ("agent:gator-a", lambda s: s.pop("principal"), "field 'principal' is missing"),
    ("agent:gator-a", lambda s: s.update(principal="lots"), "field 'principal'"),
    ("agent:gator-a", lambda s: s["signals"].update(buf_shape=[1, 1]), "shapes"),
]


@pytest.mark.parametrize("source, change, message", CORRUPTIONS, ids=[f"{s}-{m[:30]}" for s, _, m in CORRUPTIONS])
def test_a_stored_state_with_a_field_missing_or_unknown_is_refused_as_corrupt(journaled, source, change, message):
    store, run_id, fresh = journaled
    _rewrite(store, run_id, source, change)
    with pytest.raises(StoreError, match=message) as caught:
        Journal(store, run_id, fresh[source]()).restore()
    text = str(caught.value)
    assert source in text and run_id in text and "corrupt" in text


def test_the_untouched_store_restores(journaled):
    store, run_id, fresh = journaled
    for build in fresh.values():
        node = build()
        Journal(store, run_id, node).restore()
        assert encode(node.state()) == encode(build().state())  # a fresh node's state, read back


def test_capture_and_apply_read_and_write_the_attributes_the_fields_name():
    class Tracker:
        def __init__(self) -> None:
            self.start_equity, self.bars, self.first_ns, self.last_ns = 1.0, 2, 3, 4
            self.last_equity, self.peak, self.max_drawdown, self._mean, self._m2 = 5.0, 6.0, 0.5, 0.1, 0.2
            self._growth, self._downside = 1.5, 0.01

    tracker = Tracker()
    state = capture(tracker, PerformanceState)
    assert json.loads(encode(state))["_mean"] == 0.1
    other = Tracker()
    other._m2 = 9.0
    apply(other, state, "tracker")
    assert other._m2 == 0.2
    with pytest.raises(StateError, match="nor _state"):
        capture(tracker, SignalsState)


def test_a_state_built_without_validation_is_the_model_pydantic_would_construct():
    values = {"start_equity": 1.0, "bars": 2, "first_ns": 3, "last_ns": 4, "last_equity": 5.0, "peak": 6.0,
              "max_drawdown": 0.5, "mean": 0.1, "m2": 0.2, "growth": 1.5, "downside": 0.01}
    fast, slow = built(PerformanceState, dict(values)), PerformanceState.model_construct(**values)
    assert fast == slow and fast.model_fields_set == slow.model_fields_set
    assert encode(fast) == encode(slow) == encode(PerformanceState.model_validate(values))
