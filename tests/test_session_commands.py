"""Operator commands given to a running session from another thread.

A session feeds bars in one thread while an operator, in another, allocates, collects,
halts, resumes, changes a farm's policy, pauses and unpauses the feed, and gives commands
that must be refused. Each command is applied at a batch boundary, journaled in the store
with its author and the bar count it was applied at; the books reconcile; and replaying
the same commands at the same bars from one thread gives the same books, fills and
report.
"""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal
from typing import Any

import pytest

from cival.core.errors import CivalError
from cival.session import Command, CommandError, Session, SessionConfig, SessionError
from cival.store.base import locate
from tests.helpers import recovery_config

BARS = 1500


def _plan() -> list[Command]:
    return [
        Command("allocate", "trend", amount=Decimal("1500.5"), by="alice"),
        Command("halt", "gator-a", reason="looking into it", by="bob"),
        Command("collect", "breakout", amount=Decimal(250), by="alice"),
        Command("allocate", "waves", amount=Decimal("1e9"), by="alice"),  # beyond the master's cash: refused
        Command("halt", "nobody", by="bob"),  # no such farm or agent: refused
        Command("resume", "agent:gator-a", by="bob"),
        Command("set_policy", "trend", policy={"policy": "equal", "reserve_pct": 10}, by="carol"),
        Command("collect", "waves", by="alice"),  # everything
        Command("allocate", "waves", amount=Decimal(3000), by="alice"),
        Command("add_goal", "busy", goal={"name": "busy", "type": "trade_volume", "target": {"trades": 3}, "assign": [{"farm": "trend"}]}, by="dana"),
        Command("cancel_goal", "waves-quality", by="dana"),
    ]


def _stored(where: Any, run_id: str) -> dict[str, Any]:
    from cival.session import rebuild_report

    with where.open() as store:
        report, audit = rebuild_report(store, run_id)
        report.pop("generated_at")
        out: dict[str, Any] = {"report": report, "audit_ok": audit.ok}
        out["commands"] = [
            {k: row[k] for k in ("n", "kind", "args", "by", "bars", "status", "result")} for row in store.rows("operator_commands", run_id)
        ]
        for source in store.node_sources(run_id):
            out[f"ledger {source}"] = [(t.idempotency_key, t.at, t.hash) for t in store.transactions(run_id, source)]
        out["fills"] = [{k: v for k, v in r.items() if k != "run_id"} for r in store.rows("fills", run_id)]
        out["events"] = [(e.id, e.type, e.data) for e in store.events(run_id) if e.type not in ("run_started", "run_finished")]
        return out


@pytest.mark.slow
def test_commands_from_another_thread_equal_the_same_commands_given_in_one_thread(tmp_path):
    where = locate(path=tmp_path / "runs.sqlite3")
    config = recovery_config()
    options = SessionConfig(local=True, max_bars=BARS)

    given = threading.Event()

    def slowly(progress: Any) -> None:
        if not given.is_set():
            time.sleep(0.05)  # bars arrive at a human pace while the operator works, so commands land mid-run

    session = Session(config, options, store=where, on_progress=slowly).open()
    answers: list[Any] = []
    paused_at: list[tuple[int, int]] = []
    started = threading.Event()

    def operator() -> None:
        rng = random.Random(11)
        started.wait(30)
        while session.seen < 200:
            time.sleep(0.005)
        for i, command in enumerate(_plan()):
            time.sleep(rng.uniform(0.01, 0.06))
            if i == 4:  # hold the feed: it stops at a boundary, and commands still apply
                session.pause()
                assert session.holding.wait(30), "the feed did not hold at a batch boundary"
                before = session.seen
                time.sleep(0.2)
                paused_at.append((before, session.seen))
            try:
                answers.append(session.command(command, timeout=60))
            except CommandError as exc:
                answers.append(exc)
            if i == 4:
                session.unpause()
        given.set()

    thread = threading.Thread(target=operator)
    thread.start()
    started.set()
    result = session.run()
    thread.join(60)
    assert not thread.is_alive()
    assert result.audit.ok and result.bars == BARS and not result.interrupted

    # Refused ones say why; the others answered with what they did.
    assert isinstance(answers[3], CommandError) and "of free cash, less than the 1,000,000,000.00 asked" in str(answers[3])
    assert isinstance(answers[4], CommandError) and "no farm or agent named 'nobody'" in str(answers[4])
    assert (answers[0].kind, answers[0].n, answers[0].target, answers[0].amount) == ("allocate", 1, "farm:trend", Decimal("1500.5"))
    assert answers[0].as_dict()["amount"] == "1500.5" and answers[0].key == "command:1"
    assert answers[2].amount == Decimal(250)
    assert answers[7].amount > 0
    # While paused the feed did not move.
    assert paused_at and paused_at[0][0] == paused_at[0][1]

    threaded = _stored(where, result.run_id)  # type: ignore[arg-type]
    commands = threaded["commands"]
    assert [c["status"] for c in commands] == ["applied", "applied", "applied", "refused", "applied", "applied", "applied", "applied", "applied", "applied"]
    assert [c["by"] for c in commands] == ["alice", "bob", "alice", "alice", "bob", "carol", "alice", "alice", "dana", "dana"]
    bars = [c["bars"] for c in commands]
    assert bars == sorted(bars) and 200 <= bars[0] and bars[-1] < BARS, f"commands were not given while bars flowed: {bars}"
    assert all(b % config.checkpoint.every_bars == 0 for b in bars), "a command was applied inside a batch"

    # The same commands at the same bars, from one thread.
    again = Session(config, options, store=where).open()
    for row in commands:
        if row["bars"] > again.seen:
            again.step(row["bars"] - again.seen)
        command = Command.from_row({"kind": row["kind"], "args": row["args"], "by": row["by"]})
        try:
            again.command(command)
        except CommandError:
            assert row["status"] == "refused"
    replayed = again.run()
    assert replayed.audit.ok
    one_thread = _stored(where, replayed.run_id)  # type: ignore[arg-type]
    assert one_thread.keys() == threaded.keys()
    for key, value in threaded.items():
        assert one_thread[key] == value, f"{key}: commands from another thread differ from the same commands in one thread"


def test_a_command_is_checked_before_it_is_journaled(tmp_path):
    where = locate(path=tmp_path / "runs.sqlite3")
    session = Session(recovery_config(), SessionConfig(local=True, max_bars=100), store=where).open()
    try:
        with pytest.raises(CommandError, match="no farm named 'nowhere'; farms: trend, breakout, waves"):
            session.allocate("nowhere", "10")
        with pytest.raises(CommandError, match="an allocation must be positive, got -5"):
            session.allocate("trend", "-5")
        with pytest.raises(CommandError, match="not a float"):
            session.allocate("trend", 1.5)  # type: ignore[arg-type]
        with pytest.raises(CommandError, match="'ten' is not a number"):
            session.allocate("trend", "ten")
        with where.open() as store:
            assert store.rows("operator_commands", session.run_id) == []
        answer = session.halt("trend")
        assert answer == {"command": "halt", "n": 1, "entity": "farm:trend"}
        with where.open() as store:
            (row,) = store.rows("operator_commands", session.run_id)
        assert (row["kind"], row["args"], row["by"], row["status"], row["bars"]) == ("halt", {"target": "farm:trend", "reason": "halted by hand"}, "local", "applied", 0)
    finally:
        session.close()
    with pytest.raises(SessionError, match="closed"):
        session.allocate("trend", "10")


def test_a_wrong_session_option_is_refused_by_name():
    from cival.session import run_paper

    with pytest.raises(SessionError, match="batchsize: not an option of a session"):
        run_paper(recovery_config(), batchsize=10)
    with pytest.raises(CivalError, match="speed 'fast': use 'max' or a positive number"):
        run_paper(recovery_config(), speed="fast")


def test_submit_hands_back_a_future_and_stop_interrupts_the_feed(tmp_path):
    where = locate(path=tmp_path / "runs.sqlite3")
    session = Session(recovery_config(), SessionConfig(local=True, max_bars=600), store=where).open()
    try:
        # No bars flowing: applied at once, the answer (or the refusal) in the future.
        done = session.submit(Command("allocate", "trend", amount=Decimal("10"), by="dana"))
        assert done.result(0).as_dict() | {"at": None} == {
            "command": "allocate", "n": 1, "source": "master", "target": "farm:trend", "amount": "10", "at": None, "key": "command:1",
        }
        refused = session.submit(Command("collect", "nowhere"))
        with pytest.raises(CommandError, match="no farm named 'nowhere'"):
            refused.result(0)
        # While bars flow, from another thread: applied at a boundary; stop() ends the feed there.
        futures = []

        def operator(progress: Any) -> None:
            if progress.bars == 120 and not futures:
                threading.Thread(target=lambda: futures.append(session.submit(Command("halt", "waves", by="dana")))).start()
                deadline = time.monotonic() + 30
                while not futures and time.monotonic() < deadline:  # queued before the feed goes on
                    time.sleep(0.001)
            if progress.bars >= 240:
                session.stop()

        session.on_progress = operator
        session.step(None)
        assert session.seen == 240 and not session.done
        assert futures and futures[0].result(10) == {"command": "halt", "n": 2, "entity": "farm:waves"}
    finally:
        result = session.close()
    assert result.interrupted and result.bars == 240 and result.audit.ok
    with where.open() as store:
        rows = store.rows("operator_commands", result.run_id)
    assert [(r["n"], r["kind"], r["by"], r["bars"]) for r in rows] == [(1, "allocate", "dana", 0), (2, "halt", "dana", 120)]
