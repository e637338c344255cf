"""Goals complete on exactly the right trade, once; fail at their deadline; and say what
they collect. Scenario tables over the three goal types."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from cival.config import config_from_dict
from cival.goals import ClosedTrade, GoalError, GoalStatus, GoalTracker, collectable

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FARMS = {"trend": ["g1", "g2"], "breakout": ["d1"]}


def goal(type_, target, assign=None, deadline=None, on_complete="collect_profit"):
    raw = {
        "name": "c",
        "master": {"initial_deposit": "1000"},
        "farms": [
            {"name": "trend", "type": "trend_following", "agents": [{"name": "g1", "strategy": "alligator"}, {"name": "g2", "strategy": "alligator"}]},
            {"name": "breakout", "type": "breakout", "agents": [{"name": "d1", "strategy": "darvas"}]},
        ],
        "goals": [
            {
                "name": "the-goal",
                "type": type_,
                "target": target,
                "assign": assign or [{"farm": "trend"}],
                "on_complete": on_complete,
                **({"deadline": deadline} if deadline else {}),
            }
        ],
        "data": {"source": "synthetic"},
    }
    return GoalTracker.for_goal(config_from_dict(raw).goals[0], FARMS)


def trades(pnls, agent="g1"):
    return [ClosedTrade(f"{agent}:{i}", agent, T0 + timedelta(hours=i), D(str(p))) for i, p in enumerate(pnls)]


@pytest.mark.parametrize(
    "type_, target, pnls, completes_on, progress",
    [
        # "3 trades at $5 profit each": the 4 and the 4.99 do not count.
        ("trade_volume", {"trades": 3, "min_profit_per_trade": "5"}, [6, 4, 5, 4.99, 7, 9], 4, ["33.33", "33.33", "66.66", "66.66", "100"]),
        ("trade_volume", {"trades": 2}, [-1, -2, 3], 1, ["50", "100"]),
        ("profit_target", {"profit": "100"}, [50, -20, 69.99, 0.01, 5], 3, ["50", "30", "99.99", "100"]),
        ("profit_target", {"profit": "10"}, [-5, -5], None, ["0", "0"]),
        ("strategy_performance", {"min_win_rate": 0.6, "min_trades": 3}, [1, -1, 1], 2, ["33.33", "66.66", "100"]),
        ("strategy_performance", {"min_win_rate": 0.6, "min_trades": 3}, [1, -1, -1, 1, 1], 4, ["33.33", "66.66", "99", "99", "100"]),
    ],
)
def test_each_goal_type_completes_on_exactly_the_right_trade(type_, target, pnls, completes_on, progress):
    tracker = goal(type_, target)
    events = []
    seen_progress = []
    for i, trade in enumerate(trades(pnls)):
        event = tracker.on_trade(trade)
        if event is not None:
            events.append((i, event))
        if tracker.status is GoalStatus.ACTIVE or event is not None:
            seen_progress.append(str(tracker.progress.normalize()))
    if completes_on is None:
        assert events == [] and tracker.status is GoalStatus.ACTIVE
    else:
        assert [i for i, _ in events] == [completes_on]  # exactly once
        event = events[0][1]
        assert event.status is GoalStatus.COMPLETED and event.trade_id == f"g1:{completes_on}"
        assert tracker.completed_at == T0 + timedelta(hours=completes_on)
    assert seen_progress == [str(D(p).normalize()) for p in progress]


def test_a_trade_delivered_twice_counts_once_and_a_completed_goal_never_fires_again():
    tracker = goal("trade_volume", {"trades": 2})
    first, second, third = trades([1, 1, 1])
    assert tracker.on_trade(first) is None
    assert tracker.on_trade(first) is None  # the same trade again
    assert tracker.count == 1 and tracker.progress == D(50)
    event = tracker.on_trade(second)
    assert event is not None and event.trade_id == second.id
    assert tracker.on_trade(second) is None and tracker.on_trade(third) is None
    assert tracker.status is GoalStatus.COMPLETED and tracker.count == 2


def test_sharpe_targets_use_the_latest_reported_ratio():
    tracker = goal("strategy_performance", {"min_sharpe": 1.5, "min_trades": 2})
    a, b, c = trades([1, 2, 3])
    tracker.on_sharpe(1.2)
    assert tracker.on_trade(a) is None and tracker.on_trade(b) is None  # enough trades, Sharpe too low
    tracker.on_sharpe(1.6)
    assert tracker.on_trade(c).trade_id == c.id


def test_weights_and_assignments_count_contributions():
    tracker = goal("profit_target", {"profit": "100"}, assign=[{"farm": "trend", "weight": 0.5}, {"agent": "d1"}])
    assert tracker.weights == {"g1": D("0.5"), "g2": D("0.5"), "d1": D(1)}
    assert tracker.on_trade(ClosedTrade("x", "g2", T0, D(100))) is None  # counts 50
    assert tracker.on_trade(ClosedTrade("y", "nobody", T0, D(1000))) is None  # not assigned: ignored
    assert tracker.progress == D(50)
    assert tracker.on_trade(ClosedTrade("z", "d1", T0, D(50))).status is GoalStatus.COMPLETED


def test_an_unmet_goal_fails_at_its_deadline_and_then_ignores_trades():
    by_bars = goal("trade_volume", {"trades": 5}, deadline={"bars": 100})
    assert by_bars.on_bar(99, T0) is None
    event = by_bars.on_bar(100, T0 + timedelta(hours=100))
    assert event.status is GoalStatus.FAILED and by_bars.status is GoalStatus.FAILED
    assert by_bars.on_trade(trades([1])[0]) is None and by_bars.on_bar(200, T0) is None
    by_time = goal("profit_target", {"profit": "1"}, deadline={"time": "2025-01-02T00:00:00Z"})
    assert by_time.on_bar(10, T0 + timedelta(hours=23)) is None
    assert by_time.on_bar(11, T0 + timedelta(hours=24)).status is GoalStatus.FAILED
    done = goal("trade_volume", {"trades": 1}, deadline={"bars": 10})
    done.on_trade(trades([1])[0])
    assert done.on_bar(10, T0) is None and done.status is GoalStatus.COMPLETED  # met in time


def test_report_entry():
    tracker = goal("trade_volume", {"trades": 4})
    tracker.on_trade(trades([1])[0])
    entry = tracker.as_dict()
    assert entry | {"assigned": None, "assign": None} == {
        "name": "the-goal", "type": "trade_volume", "status": "active", "progress": "25", "completed_at": None,
        "completing_trade": None, "collected": "0", "on_complete": "collect_profit", "assigned": None, "assign": None,
    }
    assert entry["assign"] == [a.model_dump(mode="json", exclude_none=True) for a in tracker.config.assign]


def test_unknown_assignees_are_refused():
    config = goal("trade_volume", {"trades": 1}).config
    with pytest.raises(GoalError, match="no farm named 'trend'"):
        GoalTracker.for_goal(config, {"other": ["x"]})


@pytest.mark.parametrize(
    "action, principal, cash, positions, expected",
    [
        ("collect_profit", "1000", "1250", "0", "250"),  # flat: the profit above the principal
        ("collect_profit", "1000", "300", "900", "200"),  # in a position: profit 200, cash covers it
        ("collect_profit", "1000", "100", "1050", "100"),  # profit 150 but only 100 in cash
        ("collect_profit", "1000", "900", "0", "0"),  # a loss: nothing
        ("collect_all", "1000", "1250", "0", "1250"),
        ("none", "1000", "1250", "0", None),
    ],
)
def test_what_a_completed_goal_collects(action, principal, cash, positions, expected):
    got = collectable(action, D(principal), D(cash), D(positions))
    assert got == (None if expected is None else D(expected))
