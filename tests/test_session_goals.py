"""Goals changed while a run goes on: added, given to more farms or agents, cancelled.

Each change is an operator command: checked before it is journaled (a wrong field, an
unknown farm, a name taken, a goal no longer active are refused, saying why), applied by
the master at a batch boundary, kept in the registry (``goals``,
``farm_goal_assignments``) and announced by the same events as a config's goals. A run
stopped after such changes and resumed ends exactly as one that was never stopped.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from cival.session import CommandError, Session, SessionConfig, resume_run
from cival.store.base import locate
from tests.helpers import recovery_config, recovery_raw
from tests.test_session_commands import _stored

BARS = 900
BUSY = {"name": "busy", "type": "trade_volume", "target": {"trades": 5}, "assign": [{"farm": "trend"}], "on_complete": "none"}


def _changes(session: Session) -> list[Any]:
    """The same goal changes, each at its bar, whoever drives the session."""
    out = []
    out.append(session.add_goal(dict(BUSY), by="ann"))
    out.append(session.assign_goal("busy", [{"agent": "darvas-a", "weight": 0.5}], by="ann"))
    out.append(session.cancel_goal("waves-quality", reason="not worth it", by="bob"))
    return out


def test_goals_are_added_assigned_and_cancelled_while_the_run_goes_on(tmp_path):
    where = locate(path=tmp_path / "runs.sqlite3")
    session = Session(recovery_config(), SessionConfig(local=True, max_bars=BARS), store=where).open()
    session.step(240)
    added, assigned, cancelled = _changes(session)
    assert added["goal"] | {"assigned": None} == {
        "name": "busy", "type": "trade_volume", "status": "active", "progress": "0", "completed_at": None,
        "completing_trade": None, "collected": "0", "on_complete": "none", "assigned": None,
        "assign": [{"farm": "trend", "weight": "1"}],
    }
    assert added["goal"]["assigned"] == {"gator-a": "1", "gator-b": "1"}  # a farm covers its agents
    assert assigned["goal"]["assigned"] == {"gator-a": "1", "gator-b": "1", "darvas-a": "0.5"}
    assert cancelled["goal"]["status"] == "cancelled"

    refusals = [
        (lambda: session.add_goal(dict(BUSY)), "a goal named 'busy' exists; give the new goal another name"),
        (lambda: session.add_goal({**BUSY, "name": "x", "target": {"trades": 0}}), r"goal.target.trades: must be > 0 \(got 0\)"),
        (lambda: session.add_goal({**BUSY, "name": "x", "tagret": {}}), "goal.tagret: unknown field"),
        (lambda: session.add_goal({**BUSY, "name": "x", "assign": [{"farm": "nope"}]}), "no farm named 'nope'; farms: breakout, trend, waves"),
        (lambda: session.assign_goal("busy", [{"farm": "trend"}]), "farm trend is assigned to the goal already"),
        (lambda: session.assign_goal("busy", [{"agent": "ghost"}]), "no agent named 'ghost'"),
        (lambda: session.assign_goal("busy", []), "give goal.assign, a list of assignments"),
        (lambda: session.assign_goal("nothing", [{"farm": "trend"}]), "no goal named 'nothing'; goals: gator-profit, breakout-busy, waves-quality, busy"),
        (lambda: session.cancel_goal("waves-quality"), "the goal is cancelled; only an active goal can change"),
    ]
    with where.open() as store:
        journaled = len(store.rows("operator_commands", session.run_id))
    for call, message in refusals:
        with pytest.raises(CommandError, match=message):
            call()
    with where.open() as store:
        assert len(store.rows("operator_commands", session.run_id)) == journaled, "a command refused at its check was journaled"

    result = session.run()
    assert result.audit.ok and result.bars == BARS
    goals = {g["name"]: g for g in session.goals}
    # busy counts trend's trades and half of darvas-a's from the change on; five were enough.
    assert goals["busy"]["status"] == "completed" and goals["busy"]["progress"] == "100"
    assert goals["waves-quality"]["status"] == "cancelled"
    with where.open() as store:
        rows = {r["name"]: r for r in store.rows("goals", result.run_id)}  # type: ignore[arg-type]
        assigned_rows = {(r["goal"], r["farm"], r["agent"], str(r["weight"])) for r in store.rows("farm_goal_assignments", result.run_id)}  # type: ignore[arg-type]
        events = [e for e in store.events(result.run_id) if e.entity in ("goal:busy", "goal:waves-quality")]  # type: ignore[arg-type]
        commands = store.rows("operator_commands", result.run_id)  # type: ignore[arg-type]
    assert (rows["busy"]["status"], rows["busy"]["goal_type"], rows["busy"]["on_complete"]) == ("completed", "trade_volume", "none")
    assert rows["waves-quality"]["status"] == "cancelled"
    assert {("busy", "trend", None, "1"), ("busy", None, "darvas-a", "0.5")} <= assigned_rows
    ids = [e.id for e in events]
    assert ids.index("goal:busy:created") < ids.index("goal:busy:assigned:0") < ids.index("goal:busy:assigned:1") < ids.index("goal:busy:completed")
    assert "goal:waves-quality:cancelled" in ids
    # busy's trades are counted from its first checkpoint on: it completed after bar 240.
    completed = next(e for e in events if e.id == "goal:busy:completed")
    assert completed.at > session.first  # type: ignore[operator]
    assert [(c["kind"], c["by"], c["status"], c["bars"]) for c in commands] == [
        ("add_goal", "ann", "applied", 240), ("assign_goal", "ann", "applied", 240), ("cancel_goal", "bob", "applied", 240),
    ]


def test_goal_changes_survive_a_resume_and_end_as_an_uninterrupted_run(tmp_path):
    where = locate(path=tmp_path / "runs.sqlite3")
    options = SessionConfig(local=True, max_bars=BARS)

    baseline = Session(recovery_config(), options, store=where).open()
    baseline.step(240)
    _changes(baseline)
    whole = baseline.run()

    stop = threading.Event()
    first = Session(recovery_config(), options, store=where).open()
    first.step(240)
    _changes(first)
    first.on_progress = lambda p: stop.set() if p.bars >= 480 else None
    stopped = first.run(stop)
    assert stopped.interrupted and 480 <= stopped.bars < BARS
    resumed = resume_run(stopped.run_id, SessionConfig(local=True), store=where)  # type: ignore[arg-type]
    assert resumed.bars == BARS and resumed.audit.ok

    expected, got = _stored(where, whole.run_id), _stored(where, stopped.run_id)  # type: ignore[arg-type]
    assert {g["name"]: g["status"] for g in got["report"]["goals"]}["busy"] == "completed"
    assert got.keys() == expected.keys()
    for key in expected:
        assert got[key] == expected[key], f"{key}: the resumed run differs from the uninterrupted one"


def test_goals_cannot_be_added_to_a_run_that_takes_no_checkpoints(tmp_path):
    raw = recovery_raw()
    raw.pop("goals")
    raw.pop("risk", None)
    raw["master"].pop("rebalance")
    for farm in raw["farms"]:
        farm.pop("rebalance", None)
    from cival.config import config_from_dict

    session = Session(config_from_dict(raw), SessionConfig(local=True, max_bars=100), store=locate(path=tmp_path / "r.sqlite3")).open()
    try:
        with pytest.raises(CommandError, match="this run takes no checkpoints .* start the run with checkpoint.always: true"):
            session.add_goal(dict(BUSY))
    finally:
        session.close()
