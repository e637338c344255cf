"""The live wallet tree fitted to the terminal's width, its in-place redraw, and the
session summary's P&L (no terminal needed: the tree is drawn into a string)."""

from __future__ import annotations

import io
import re
from decimal import Decimal as D

import pandas as pd
import pytest

from cival.actors.nodes import FarmUpdate
from cival.console import NET_PNL, LiveTree, cell_width, clip, rows_taken, summary_lines
from cival.core.messages import PerformanceReport
from cival.session import Progress

CURSOR_UP = re.compile(r"\x1b\[(\d+)F\x1b\[J")


def report(entity: str, equity: str, cash: str, realised: str = "0", unrealised: str = "0", fees: str = "0",
           trades: int = 0) -> PerformanceReport:
    return PerformanceReport(entity=entity, equity=D(equity), cash=D(cash), realized_pnl=D(realised),
                             unrealized_pnl=D(unrealised), fees=D(fees), trades=trades)


def progress(bars: int = 12_556, agent: str = "gator-13-8-5", trend_halted: str | None = "farm drawdown 25.20 % reached the limit of 25.00 %",
             goals: bool = True) -> Progress:
    """The demo's tree: a halted farm, a farm with an open position, three goals."""
    farms = [
        FarmUpdate("trend", report("farm:trend", "33299.2", "1800", "-1500", "0", "410.6", 74),
                   [report(f"agent:{agent}", "31499.2", "31499.2", "-1500", "0", "410.6", 74)], 120,
                   halted=trend_halted),
        FarmUpdate("breakout", report("farm:breakout", "25230.81", "1350", "-1500.5", "0", "268.69", 45),
                   [report("agent:darvas-20-3", "23880.81", "23880.81", "-1500.5", "0", "268.69", 45)], 90),
        FarmUpdate("price-action", report("farm:price-action", "31412.35140113", "1350", "4700.37016619",
                                          "-201.80548755", "86.21327751", 1),
                   [report("agent:elliott-5pct", "30062.35", "0", "4700.37", "-201.8", "86.21", 1)], 2,
                   positions={"elliott-5pct": "0.30632564"}),
    ]
    goal_rows = [
        {"name": "trend-profit", "status": "completed", "progress": "100", "collected": "790.2"},
        {"name": "breakout-volume", "status": "active", "progress": "85", "collected": "0"},
        {"name": "price-action-quality", "status": "failed", "progress": "10", "collected": "0"},
    ]
    return Progress(bars, 12_556, pd.Timestamp("2026-02-19 03:00", tz="UTC"), farms, D("10790.2"), 13.1,
                    goal_rows if goals else [])


def drawings(out: io.StringIO) -> list[str]:
    """What each drawing wrote, the cursor movement that starts it included."""
    text = out.getvalue()
    starts = [0] + [m.start() for m in CURSOR_UP.finditer(text)]
    return [text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)]


def shown(drawing: str) -> list[str]:
    """The lines a drawing shows (without its cursor movement)."""
    return CURSOR_UP.sub("", drawing).split("\n")[:-1]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_no_line_is_wider_than_the_terminal_and_redraws_go_back_exactly(width):
    out = io.StringIO()
    tree = LiveTree("demo", out=out, tty=True, width=width)
    tree.draw(progress(bars=6_000))
    tree.draw(progress(bars=12_556))
    tree.draw(progress(bars=12_556, agent="gator-with-a-much-longer-name-than-the-column-has-room-for"))
    first, *redraws = drawings(out)
    assert not CURSOR_UP.match(first)  # nothing to go back over yet
    previous = first
    for drawing in redraws:
        back = CURSOR_UP.match(drawing)
        assert back, "each redraw starts by going back over the previous drawing"
        assert int(back.group(1)) == previous.count("\n") == len(shown(previous))  # one row per line written
        previous = drawing
    for drawing in (first, *redraws):
        lines = shown(drawing)
        assert lines and all(cell_width(line) <= width for line in lines), [(cell_width(x), x) for x in lines]
        assert "\x1b" not in "".join(lines)


def test_columns_are_dropped_by_priority_and_names_shortened():
    def header(width: int) -> list[str]:
        lines = LiveTree("demo", width=width).lines(progress(), width)
        return next(line for line in lines if line.startswith("wallet")).split()

    assert header(120) == ["wallet", "cash", "equity", "net", "P&L", "position", "trades"]
    assert header(80) == header(120)  # the demo's tree fits in 80 columns whole
    assert header(64) == ["wallet", "equity", "net", "P&L", "position"]  # trades first, then cash
    assert header(40) == ["wallet", "equity", "net", "P&L"]  # then the position

    long = "gator-with-a-much-longer-name-than-the-column-has-room-for"
    lines = LiveTree("demo").lines(progress(agent=long), 80)
    row = next(line for line in lines if "gator-with" in line)
    assert "…" in row and long not in row  # shortened with an ellipsis ...
    assert row.split()[-1] == "74"  # ... before any column is dropped


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_a_halt_stays_visible_at_every_width(width):
    lines = LiveTree("demo").lines(progress(), width)
    table = lines[lines.index(next(x for x in lines if x.startswith("wallet"))):]
    trend, breakout = table[2], table[4]  # after the header and the master
    assert trend.startswith("├─ tre") and "HALTED" in trend
    assert breakout.startswith("├─ bre") and "HALTED" not in breakout


def test_the_tree_shows_net_pnl_and_says_what_it_is():
    lines = LiveTree("demo").lines(progress(), 120)
    assert NET_PNL in lines
    elliott = next(line for line in lines if "elliott-5pct" in line).split()
    # 4700.37 - 201.8 - 86.21 = 4412.36; cash, equity, net P&L, position, trades
    assert elliott[-5:] == ["0.00", "30,062.35", "+4,412.36", "0.30632564", "1"]
    goal = next(line for line in lines if line.startswith("goal trend-profit"))
    assert "100.00 %" in goal and "collected 790.20 USD" in goal


def test_a_resized_terminal_is_followed():
    out = io.StringIO()
    widths = iter([120, 50])
    tree = LiveTree("demo", out=out, tty=True, width=lambda: next(widths))
    tree.draw(progress())
    tree.draw(progress())
    first, second = drawings(out)
    back = int(CURSOR_UP.match(second).group(1))
    # the first drawing's lines, as wide as 120 columns allowed, wrap at 50
    assert back == rows_taken([cell_width(line) for line in shown(first)], 50) > len(shown(first))
    assert all(cell_width(line) <= 50 for line in shown(second))


def test_wide_characters_count_twice():
    assert cell_width("資金") == 4 and cell_width("e\u0301") == 1
    assert clip("資金管理農場", 7) == "資金管…" and cell_width(clip("資金管理農場", 7)) <= 7
    assert clip("short", 10) == "short" and clip("abcdef", 4) == "abc…"
    lines = LiveTree("demo").lines(progress(agent="資金管理エージェント-農場-一番"), 60)
    assert all(cell_width(line) <= 60 for line in lines)


def test_not_a_terminal_gets_plain_progress_lines_and_the_whole_tree_at_the_end():
    out = io.StringIO()
    tree = LiveTree("demo", out=out, tty=False, log_every=0.0, width=40)
    tree(progress(bars=6_000))
    lines = out.getvalue().splitlines()
    assert lines == ["demo: bar 6,000/12,556 (48 %) at 2026-02-19 03:00Z, 13.1 s; equity 100,732.56 USD; 212 fills"]
    tree(progress(bars=12_556))  # the end: printed by finish()
    tree.finish()
    text = out.getvalue()
    assert "\x1b" not in text
    assert "wallet" in text and "trades" in text and "gator-13-8-5" in text  # not fitted to any width


def test_the_summary_gives_net_pnl_with_its_parts():
    agent = {"name": "elliott-5pct", "trade_count": 1, "realized_pnl": "4700.37016619", "unrealized_pnl": "-201.80548755",
             "fees": "86.21327751", "equity": "30062.35", "positions": [
                 {"qty": "0.30632564", "symbol": "BTCUSDT", "cost": "30264.16", "value": "30062.35"}]}
    report_ = {
        "mode": "local", "interrupted": False, "bars": 2000, "symbol": "BTCUSDT", "start": "a", "end": "b",
        "farms": [{"name": "price-action", "agents": [agent]}], "master": {"name": "master"},
        "goals": [{"name": "g", "status": "active", "completed_at": None, "progress": "45.5", "collected": "0"}],
        "ledger": {"currency": "USD", "total_equity": "112137.44", "deposits": "100000", "realized_pnl": "16740.02",
                   "unrealized_pnl": "-201.81", "fees": "4400.78"},
    }
    lines = summary_lines(report_, "audit OK", 1.0, 0.5)
    assert f"  ({NET_PNL}, amounts in USD)" in lines
    assert ("  price-action/elliott-5pct: 1 trade, net P&L +4,412.35 (realised +4,700.37, unrealised -201.81, "
            "fees 86.21), equity 30,062.35; open: 0.30632564 BTCUSDT (cost 30,264.16, value 30,062.35)") in lines
    assert "  goal g: active, progress 45.50 %, collected 0.00 USD" in lines
    assert ("Total equity 112,137.44 USD from deposits of 100,000.00 USD; net P&L +12,137.43 (realised +16,740.02, "
            "unrealised -201.81, fees 4,400.78).") in lines


def test_a_note_stays_above_the_tree_and_the_tree_redraws_below_it():
    out = io.StringIO()
    tree = LiveTree("demo", out=out, tty=True, width=80)
    tree(progress(bars=6_000))  # drawn through the callback: the tree keeps it as the latest
    tree.note("warning: the cluster keeps up with 6.6 bars/s of the 55.6 asked (12 %)")
    tree.draw(progress(bars=7_000))
    first, cleared, redrawn = drawings(out)
    # The note goes where the tree was; the tree is drawn again under it, then a redraw
    # goes back over the tree alone, so the note stays.
    assert int(CURSOR_UP.match(cleared).group(1)) == len(shown(first))
    lines = shown(cleared)
    assert lines[0].startswith("warning: the cluster keeps up") and lines[1:] == shown(first)
    assert int(CURSOR_UP.match(redrawn).group(1)) == len(shown(first))
    assert "warning" not in "".join(shown(redrawn))
