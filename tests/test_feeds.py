"""Market feeds: replay in batches or paced, synthetic live-like bars; a fake clock, no waiting."""

from __future__ import annotations

import pytest

from cival.actors.agent import Agent
from cival.data import DataError, load_bars, synthetic_bars
from cival.data.feeds import ReplayFeed, SyntheticFeed, bars_from_frame, parse_speed
from cival.execution import FillModel


class FakeClock:
    """A clock that only moves when the feed sleeps, recording each sleep."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_replay_at_max_speed_sends_every_bar_once_in_batches():
    frame = synthetic_bars(2_345, seed=3)
    feed = ReplayFeed(frame, speed="max", batch_size=1000)
    batches = list(feed.batches())
    assert [len(b) for b in batches] == [1000, 1000, 345]
    flat = [bar for batch in batches for bar in batch]
    assert flat == bars_from_frame(frame)
    assert flat[0].timestamp == frame.index[0].to_pydatetime() and flat[-1].close == frame["close"].iloc[-1]


def test_replay_at_n_times_real_time_waits_for_each_bar():
    frame = synthetic_bars(5, seed=1, timeframe="1h")
    clock = FakeClock()
    feed = ReplayFeed(frame, speed=3600, clock=clock, sleep=clock.sleep)  # an hour of bars per second
    batches = list(feed.batches())
    assert [len(b) for b in batches] == [1] * 5
    assert clock.sleeps == pytest.approx([1.0] * 4)  # nothing to wait for the first bar
    assert clock.now == pytest.approx(104.0)


def test_replay_does_not_wait_when_it_is_behind():
    frame = synthetic_bars(3, seed=1, timeframe="1h")
    clock = FakeClock()

    def slow_sleep(seconds: float) -> None:  # the consumer took longer than the gap
        clock.sleep(seconds + 5.0)

    list(ReplayFeed(frame, speed=3600, clock=clock, sleep=slow_sleep).batches())
    assert clock.sleeps == pytest.approx([6.0])  # the third bar was already due


@pytest.mark.parametrize("speed, expected", [("max", None), ("MAX", None), (10, 10.0), ("2.5", 2.5)])
def test_parse_speed(speed, expected):
    assert parse_speed(speed) == expected


@pytest.mark.parametrize("speed", [0, -1, "fast", "nan"])
def test_bad_speed_is_a_clear_error(speed):
    with pytest.raises(DataError, match="use 'max' or a positive number"):
        parse_speed(speed)


def test_synthetic_feed_is_seeded_and_paced():
    clock = FakeClock()
    feed = SyntheticFeed(n=4, seed=9, interval=1.0, clock=clock, sleep=clock.sleep)
    bars = [bar for batch in feed.batches() for bar in batch]
    assert bars == bars_from_frame(synthetic_bars(4, seed=9))
    assert clock.sleeps == pytest.approx([1.0, 1.0, 1.0])
    fast = SyntheticFeed(n=2500, seed=9, interval=0, batch_size=1000)
    assert [len(b) for b in fast.batches()] == [1000, 1000, 500]
    with pytest.raises(DataError, match="interval"):
        SyntheticFeed(interval=-1)


def test_an_agent_fed_from_a_replay_matches_one_fed_bar_by_bar(shared_data):
    frame = load_bars(shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv")
    batched, single = (Agent("a", "darvas", {"lookback": 10}, FillModel(), "SOL") for _ in range(2))
    from_feed = [m for batch in ReplayFeed(frame, batch_size=128).batches() for m in batched.on_bars(batch)]
    by_bar = [m for bar in bars_from_frame(frame) for m in single.on_bar(bar)]
    key = lambda m: (m.kind, m.at, m.side)  # noqa: E731
    assert [key(m) for m in from_feed] == [key(m) for m in by_bar] and from_feed
