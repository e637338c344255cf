"""The live wallet tree a paper session shows in the terminal.

On a terminal the tree is redrawn in place (at most ``fps`` times a second), fitted to
the terminal's width: columns are dropped by a fixed priority (trades, then cash, then
position) and names shortened with an ellipsis, so that no line is longer than the
terminal is wide and each redraw moves the cursor back over exactly the rows it wrote.
When the output is a file or a pipe, a progress line is printed every few seconds
instead, so logs stay readable. Rows: the master wallet, each farm (its own cash; equity
and P&L of the whole farm) and each agent (cash, equity at the last close, net P&L, the
open position and closed trades); a footer says that net P&L = realised + unrealised -
fees.
"""

from __future__ import annotations

import math
import shutil
import re
import sys
import textwrap
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TextIO

from cival.core.fmt import money, percent, quantity, short_time
from cival.session import Progress

ZERO = Decimal(0)

NET_PNL = "net P&L = realised + unrealised - fees"
"""What the tree's and the summary's net P&L is, said once under each."""

ELLIPSIS = "\u2026"

GAP = 2
"""Spaces before each column after the wallet's name."""

NAME_MIN = 12
"""Names are shortened (with an ellipsis) down to this many cells (after the tree's
branches) before a column is dropped."""

HALTED = " HALTED"
"""After a halted farm's name when the position column (which says it otherwise) is dropped."""


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    min_width: int
    drop: int | None
    """Order in which the column is dropped when the terminal is too narrow (1 first);
    None: always shown."""


COLUMNS = (
    Column("cash", "cash", 11, 2),
    Column("equity", "equity", 11, None),
    Column("pnl", "net P&L", 11, None),
    Column("position", "position", 10, 3),
    Column("trades", "trades", 6, 1),
)
"""The tree's columns after the wallet's name, left to right. Money columns are at least
11 cells wide (``-100,000.00``), the position 10 (``0.12345678``), so that they do not
shift as values grow."""


def cell_width(text: str) -> int:
    """The cells ``text`` takes in a terminal: 2 for a wide (East Asian) character, 0 for
    a combining mark, 1 otherwise."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text
    )


def clip(text: str, width: int) -> str:
    """``text`` cut to at most ``width`` cells, ending with an ellipsis when cut."""
    if cell_width(text) <= width:
        return text
    if width <= 0:
        return ""
    out, used = [], 0
    for c in text:
        w = cell_width(c)
        if used + w > width - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + ELLIPSIS


def rows_taken(line_widths: list[int], width: int) -> int:
    """The terminal rows lines of ``line_widths`` cells take at ``width`` columns (a line
    longer than the width wraps onto more rows; an empty line takes one)."""
    return sum(max(1, math.ceil(w / max(1, width))) for w in line_widths)


def terminal_width() -> int:
    """The terminal's width in columns (80 when it cannot be told)."""
    return shutil.get_terminal_size((80, 24)).columns


@dataclass
class _Row:
    prefix: str
    name: str
    cells: dict[str, str]
    halted: bool = False


@dataclass
class _Table:
    rows: list[_Row] = field(default_factory=list)

    def lines(self, width: int | None) -> list[str]:
        """The header and the rows, fitted to ``width`` cells (None: no limit)."""
        columns = list(COLUMNS)
        widths = {
            c.key: max(c.min_width, len(c.header), *(cell_width(r.cells.get(c.key, "")) for r in self.rows))
            for c in COLUMNS
        }

        def natural(status: bool) -> int:
            return max(
                cell_width("wallet"),
                *(cell_width(r.prefix + r.name + (HALTED if status and r.halted else "")) for r in self.rows),
            )

        name_width = natural(False)
        if width is not None:
            droppable = sorted((c for c in COLUMNS if c.drop is not None), key=lambda c: c.drop or 0)
            while True:
                rest = sum(GAP + widths[c.key] for c in columns)
                name_width = natural(all(c.key != "position" for c in columns))
                if name_width + rest <= width:
                    break
                shortest = max(cell_width("wallet"), *(cell_width(r.prefix) + min(cell_width(r.name), NAME_MIN)
                                                       for r in self.rows))
                if shortest + rest <= width:
                    name_width = width - rest
                    break
                if not droppable:
                    name_width = max(1, width - rest)
                    break
                columns.remove(droppable.pop(0))
        status = all(c.key != "position" for c in columns)  # halts go by the name instead

        def line(name: str, cells: dict[str, str]) -> str:
            text = f"{name}{' ' * (name_width - cell_width(name))}" + "".join(
                f"{' ' * GAP}{cells.get(c.key, ''):>{widths[c.key]}}" for c in columns
            )
            return text.rstrip()

        out = [line(clip("wallet", name_width), {c.key: c.header for c in COLUMNS})]
        for r in self.rows:
            room = name_width - cell_width(r.prefix)
            suffix = HALTED if status and r.halted else ""
            if room < 2:  # too narrow for the tree's branches
                name = clip(r.prefix + r.name + suffix, name_width)
            elif suffix and room > len(suffix) + 3:
                name = r.prefix + clip(r.name, room - len(suffix)) + suffix  # the halt is not cut off
            else:
                name = r.prefix + clip(r.name + suffix, room)
            out.append(line(name, r.cells))
        return out


class LiveTree:
    """Renders :class:`~cival.runtime.Progress` as a wallet tree.

    ``width``: the terminal's width in columns, or a function giving it (default: asked
    of the terminal at each redraw, so a resized window is followed)."""

    def __init__(
        self,
        title: str,
        currency: str = "USD",
        out: TextIO | None = None,
        fps: float = 8.0,
        log_every: float = 5.0,
        tty: bool | None = None,
        master: str = "master",
        width: int | Callable[[], int] | None = None,
    ) -> None:
        self.title = title
        self.master = master
        self.currency = currency
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.width: Callable[[], int] = (
            terminal_width if width is None else width if callable(width) else (lambda: width)  # type: ignore[misc]
        )
        self.interval = 1.0 / fps
        self.log_every = log_every
        self._written: list[int] = []
        """The cell width of each line of the last drawing (to move back over its rows)."""
        self._last = 0.0
        self._last_log = time.monotonic()
        self.latest: Progress | None = None

    def __call__(self, progress: Progress) -> None:
        self.latest = progress
        now = time.monotonic()
        done = progress.total is not None and progress.bars >= progress.total
        if self.tty:
            if done or now - self._last >= self.interval:
                self._last = now
                self.draw(progress)
        elif not done and now - self._last_log >= self.log_every:  # the end is printed by finish()
            self._last_log = now
            print(self.status(progress), file=self.out, flush=True)

    def status(self, p: Progress) -> str:
        total = f"/{p.total:,}" if p.total else ""
        pct = f" ({100 * p.bars / p.total:.0f} %)" if p.total else ""
        when = short_time(p.last_time) if p.last_time is not None else ""
        equity = p.master_cash + sum((Decimal(f.report.equity) for f in p.farms), ZERO)
        fills = sum(f.fills for f in p.farms)
        return (
            f"{self.title}: bar {p.bars:,}{total}{pct} at {when}, {p.elapsed:.1f} s; "
            f"equity {money(equity)} {self.currency}; {fills:,} fills"
        )

    def lines(self, p: Progress, width: int | None = None) -> list[str]:
        """The tree as lines of at most ``width`` cells (None: as wide as they come)."""
        table = _Table()
        total_equity = p.master_cash + sum((Decimal(f.report.equity) for f in p.farms), ZERO)
        table.rows.append(_Row("", self.master, {"cash": money(p.master_cash), "equity": money(total_equity)}))
        for i, f in enumerate(p.farms):
            last_farm = i == len(p.farms) - 1
            r = f.report
            pnl = Decimal(r.realized_pnl) + Decimal(r.unrealized_pnl) - Decimal(r.fees)
            table.rows.append(_Row(
                "└─ " if last_farm else "├─ ", f.name,
                {"cash": money(r.cash), "equity": money(r.equity), "pnl": money(pnl, signed=True),
                 "position": "HALTED" if f.halted else "", "trades": f"{r.trades:,}"},
                halted=bool(f.halted),
            ))
            for j, a in enumerate(f.agents):
                stem = "   " if last_farm else "│  "
                branch = "└─ " if j == len(f.agents) - 1 else "├─ "
                name = a.entity.removeprefix("agent:")
                pnl = Decimal(a.realized_pnl) + Decimal(a.unrealized_pnl) - Decimal(a.fees)
                qty = Decimal(f.positions.get(name, "0"))
                table.rows.append(_Row(
                    stem + branch, name,
                    {"cash": money(a.cash), "equity": money(a.equity), "pnl": money(pnl, signed=True),
                     "position": "" if qty == 0 else quantity(qty), "trades": f"{a.trades:,}"},
                ))
        lines = [*self._status_lines(p, width), "", *table.lines(width), NET_PNL]
        if p.goals:
            lines.append("")
            names = min(24, max(len(g["name"]) for g in p.goals))
            for g in p.goals:
                collected = Decimal(g["collected"])
                lines.append(
                    f"goal {g['name']:<{names}}  {g['status']:<9} {percent(Decimal(g['progress']) / 100):>8}"
                    + (f"  collected {money(collected)} {self.currency}" if collected else "")
                )
        if width is None:
            return lines
        return [clip(line, width) for line in lines]

    def _status_lines(self, p: Progress, width: int | None) -> list[str]:
        """The status, on as many lines as ``width`` needs (broken between words)."""
        text = self.status(p)
        if width is None or cell_width(text) <= width:
            return [text]
        out: list[str] = []
        for chunk in re.split(r"(?<=[;,]) ", text):  # keeps "13.1 s" and "(100 %)" whole
            if out and cell_width(f"{out[-1]} {chunk}") <= width:
                out[-1] = f"{out[-1]} {chunk}"
            elif cell_width(chunk) <= width:
                out.append(chunk)
            else:
                out.extend(textwrap.wrap(chunk, width, break_on_hyphens=False))
        return out

    def draw(self, progress: Progress) -> list[str]:
        """Draw the tree over the previous drawing, fitted to the terminal's width now;
        returns the lines written."""
        width = max(1, self.width())
        lines = self.lines(progress, width)
        if self._written:
            # Back over every row the previous drawing took at this width (a line that
            # was as wide as an older, wider window wraps now), then clear below.
            back = rows_taken(self._written, width)
            self.out.write(f"\x1b[{back}F\x1b[J")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._written = [cell_width(line) for line in lines]
        return lines

    def note(self, text: str) -> None:
        """Print ``text`` above the tree, where it stays (a redraw only goes back over the
        tree); then the tree again below it."""
        width = max(1, self.width())
        if self._written:
            self.out.write(f"\x1b[{rows_taken(self._written, width)}F\x1b[J")
            self._written = []
        self.out.write(text + "\n")
        self.out.flush()
        if self.tty and self.latest is not None:
            self.draw(self.latest)

    def finish(self) -> None:
        """Draw the last state (so a non-terminal log ends with the full tree)."""
        if self.latest is None:
            return
        if self.tty:
            self.draw(self.latest)
        else:
            print("\n".join(self.lines(self.latest)), file=self.out, flush=True)


def _net(entity: dict[str, Any]) -> str:
    """``net P&L +X (realised +R, unrealised +U, fees F)`` of a report's agent or ledger."""
    realised, unrealised, fees = (Decimal(entity[k]) for k in ("realized_pnl", "unrealized_pnl", "fees"))
    return (
        f"net P&L {money(realised + unrealised - fees, signed=True)} (realised {money(realised, signed=True)}, "
        f"unrealised {money(unrealised, signed=True)}, fees {money(fees)})"
    )


def summary_lines(report: dict[str, Any], audit: Any, seconds: float | None, start_seconds: float | None) -> list[str]:
    """The end-of-session summary: per agent trades and P&L, the books, the audit (times
    None: a report rebuilt from the store). P&L is net, as in the live tree, with its
    parts: net P&L = realised + unrealised - fees."""
    cur = report["ledger"]["currency"]
    timing = (
        f" in {seconds:.1f} s (cluster start {start_seconds:.1f} s, {report['mode']})"
        if seconds is not None and start_seconds is not None
        else f" ({report['mode']}; report generated {report['generated_at']})"
    )
    lines = [
        "",
        f"Session {'interrupted' if report['interrupted'] else 'finished'}: {report['bars']:,} bars of "
        f"{report['symbol']} ({report['start']} to {report['end']}){timing}.",
        f"  ({NET_PNL}, amounts in {cur})",
    ]
    for farm in report["farms"]:
        for a in farm["agents"]:
            pos = ", ".join(
                f"{quantity(p['qty'])} {p['symbol']} (cost {money(p['cost'])}, value {money(p['value'])})"
                for p in a["positions"]
            )
            count = a["trade_count"]
            lines.append(
                f"  {farm['name']}/{a['name']}: {count:,} trade{'' if count == 1 else 's'}, {_net(a)}, "
                f"equity {money(a['equity'])}" + (f"; open: {pos}" if pos else "; flat")
            )
    for g in report.get("goals", []):
        when = f" at {g['completed_at']}" if g["completed_at"] else ""
        lines.append(
            f"  goal {g['name']}: {g['status']}{when}, progress {percent(Decimal(g['progress']) / 100)}, "
            f"collected {money(g['collected'])} {cur}"
        )
    entities = [report["master"]] + [f for f in report["farms"]]
    for entity in entities:
        for h in entity.get("halts", []):
            verb = "resumed" if h.get("resumed") else "halted"
            lines.append(f"  {entity['name']} {verb} at {h['at']}: {h['reason']}")
    ledger = report["ledger"]
    lines += [
        f"Total equity {money(ledger['total_equity'])} {cur} from deposits of {money(ledger['deposits'])} {cur}; "
        f"{_net(ledger)}.",
        str(audit),
    ]
    return lines


__all__ = ["COLUMNS", "NET_PNL", "LiveTree", "cell_width", "clip", "money", "rows_taken", "summary_lines"]
