"""What a session tells the person running it: each step before its first bar (on a
terminal only), and, once, that a paced replay cannot keep the pace it was asked for."""

from __future__ import annotations

import io
import re
import warnings

import pytest

import cival.session as session_module
from cival.config import config_from_dict
from cival.session import PaceWarning, Session, SessionConfig
from cival.startup import StartupNotes


def _config(bars: int):  # type: ignore[no-untyped-def]
    return config_from_dict({
        "name": "pace",
        "master": {"initial_deposit": 10000},
        "farms": [{"name": "f", "type": "breakout", "agents": [{"name": "a", "strategy": "darvas", "params": {"lookback": 8, "confirm": 2}}]}],
        "data": {"source": "synthetic", "bars": bars, "seed": 3},
    })


def test_a_paced_replay_that_falls_behind_says_so_once(monkeypatch):
    monkeypatch.setattr(session_module, "PACE_GRACE", 0.02)
    # Hourly bars at a billion times their pace: a million bars a second, which no cluster keeps.
    session = Session(_config(600), SessionConfig(local=True, persist=False, speed=3.6e9))
    said: list[str] = []
    session.on_warning = said.append
    result = session.run()
    assert result.bars == 600 and not result.interrupted
    assert len(said) == 1, said
    assert re.search(r"keeps up with [\d,.]+ bars/s of the 1,000,000.0 asked \(\d+ %\) \(speed 3600000000.0\)", said[0]), said[0]
    assert result.pace is not None and result.pace.asked == pytest.approx(1e6)
    assert 0 < result.pace.achieved < 0.8e6 and result.pace.behind
    # The rate is the bars fed over the time they took, not a figure of the speed asked.
    assert result.pace.achieved == pytest.approx(600 / result.seconds, rel=0.25)


def test_without_a_listener_the_pace_is_a_python_warning(monkeypatch):
    monkeypatch.setattr(session_module, "PACE_GRACE", 0.02)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Session(_config(400), SessionConfig(local=True, persist=False, speed=3.6e9)).run()
    assert [w.category for w in caught if issubclass(w.category, PaceWarning)] == [PaceWarning]


def test_a_replay_at_full_speed_has_no_pace_to_keep():
    result = Session(_config(300), SessionConfig(local=True, persist=False)).run()
    assert result.pace is None


def test_the_steps_before_the_first_bar_are_told_in_order():
    session = Session(_config(200), SessionConfig(local=True, persist=True), store=None)
    steps: list[str] = []
    session.on_stage = steps.append
    session.on_progress = lambda p: steps.append("bars") if steps[-1] != "bars" else None
    session.run()
    assert steps[:3] == ["reading the bars", "opening the store", "funding the farms"]
    assert steps[3].startswith("feeding the first batch") and steps[4:] == ["bars"]


def test_startup_notes_tick_on_a_terminal_and_stay_on_one_line(monkeypatch):
    monkeypatch.setattr("shutil.get_terminal_size", lambda fallback=None: __import__("os").terminal_size((40, 24)))
    out = io.StringIO()
    notes = StartupNotes(out=out, tty=True, tick=0.01)
    notes("starting a local Ray")
    __import__("time").sleep(0.05)
    notes("starting 7 actors (the master, 3 farms, 3 agents); each compiles its strategy's loops on first use")
    notes.end()
    notes.end()  # twice: nothing more
    finals = out.getvalue().split("\n")
    assert finals[-1] == ""  # ends with the last step's final line
    lines = [part.rsplit("\r\x1b[K", 1)[-1] for part in finals[:-1]]
    steps = [re.sub(r" \.\.\. \d+\.\d s$", "", line) for line in lines]
    assert steps[0] == "starting a local Ray"
    assert steps[1].startswith("starting 7 actors (the") and steps[1].endswith("…")  # cut to the width
    assert all(len(line) <= 39 for line in lines) and len(lines[1]) == 39
    assert out.getvalue().count("starting a local Ray") > 2  # it ticked while waiting


def test_startup_notes_write_nothing_off_a_terminal():
    out = io.StringIO()
    notes = StartupNotes(out=out, tty=False)
    notes("starting a local Ray")
    notes.end()
    assert out.getvalue() == ""
