"""The live wallet tree a paper session shows in the terminal.

On a terminal the tree is redrawn in place (at most ``fps`` times a second); when the
output is a file or a pipe, a progress line is printed every few seconds instead, so logs
stay readable. Rows: the master wallet, each farm (its own cash; equity and P&L of the
whole farm) and each agent (cash, equity at the last close, net P&L = realised +
unrealised - fees, the open position and closed trades).
"""

from __future__ import annotations

import sys
import time
from decimal import Decimal
from typing import Any, TextIO

from cival.core.fmt import short_time
from cival.session import Progress

ZERO = Decimal(0)


def money(value: Decimal | str | None, places: int = 2) -> str:
    if value is None:
        return ""
    d = Decimal(value)
    return f"{d:,.{places}f}"


class LiveTree:
    """Renders :class:`~cival.runtime.Progress` as a wallet tree."""

    def __init__(
        self,
        title: str,
        currency: str = "USD",
        out: TextIO | None = None,
        fps: float = 8.0,
        log_every: float = 5.0,
        tty: bool | None = None,
        master: str = "master",
    ) -> None:
        self.title = title
        self.master = master
        self.currency = currency
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.interval = 1.0 / fps
        self.log_every = log_every
        self._drawn = 0
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
                self._draw(self.lines(progress))
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
            f"equity {money(equity)} {self.currency}; {fills} fills"
        )

    def lines(self, p: Progress) -> list[str]:
        rows: list[tuple[str, str, str, str, str, str]] = []
        total_equity = p.master_cash
        for f in p.farms:
            total_equity += Decimal(f.report.equity)
        rows.append((self.master, money(p.master_cash), money(total_equity), "", "", ""))
        for i, f in enumerate(p.farms):
            last_farm = i == len(p.farms) - 1
            r = f.report
            pnl = Decimal(r.realized_pnl) + Decimal(r.unrealized_pnl) - Decimal(r.fees)
            rows.append(
                (
                    ("└─ " if last_farm else "├─ ") + f.name,
                    money(r.cash),
                    money(r.equity),
                    money(pnl),
                    "HALTED" if f.halted else "",
                    f"{r.trades}",
                )
            )
            for j, a in enumerate(f.agents):
                stem = "   " if last_farm else "│  "
                branch = "└─ " if j == len(f.agents) - 1 else "├─ "
                name = a.entity.removeprefix("agent:")
                pnl = Decimal(a.realized_pnl) + Decimal(a.unrealized_pnl) - Decimal(a.fees)
                qty = f.positions.get(name, "0")
                rows.append(
                    (stem + branch + name, money(a.cash), money(a.equity), money(pnl), "" if qty == "0" else qty, f"{a.trades}")
                )
        head = ("wallet", "cash", "equity", "net P&L", "position", "trades")
        width = max(len(r[0]) for r in [head, *rows]) + 2
        fmt = "{:<%d}{:>16}{:>16}{:>14}{:>14}{:>8}" % width  # noqa: UP031
        lines = [self.status(p), "", fmt.format(*head), *(fmt.format(*r) for r in rows)]
        if p.goals:
            lines.append("")
            for g in p.goals:
                collected = Decimal(g["collected"])
                lines.append(
                    f"goal {g['name']:<24} {g['status']:<10} {Decimal(g['progress']):>6.2f} %"
                    + (f"  collected {money(collected)} {self.currency}" if collected else "")
                )
        return lines

    def _draw(self, lines: list[str]) -> None:
        if self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the first line, clear below
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self._drawn = len(lines)

    def finish(self) -> None:
        """Draw the last state (so a non-terminal log ends with the full tree)."""
        if self.latest is None:
            return
        if self.tty:
            self._draw(self.lines(self.latest))
        else:
            print("\n".join(self.lines(self.latest)), file=self.out, flush=True)


def summary_lines(report: dict[str, Any], audit: Any, seconds: float | None, start_seconds: float | None) -> list[str]:
    """The end-of-session summary: per agent trades and P&L, the books, the audit (times
    None: a report rebuilt from the store)."""
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
    ]
    for farm in report["farms"]:
        for a in farm["agents"]:
            pos = ", ".join(f"{p['qty']} {p['symbol']} (cost {money(p['cost'])}, value {money(p['value'])})" for p in a["positions"])
            lines.append(
                f"  {farm['name']}/{a['name']}: {a['trade_count']} trades, realised {money(a['realized_pnl'])}, "
                f"fees {money(a['fees'])}, equity {money(a['equity'])} {cur}" + (f"; open: {pos}" if pos else "; flat")
            )
    for g in report.get("goals", []):
        when = f" at {g['completed_at']}" if g["completed_at"] else ""
        lines.append(
            f"  goal {g['name']}: {g['status']}{when}, progress {g['progress']} %, collected {money(g['collected'])} {cur}"
        )
    entities = [report["master"]] + [f for f in report["farms"]]
    for entity in entities:
        for h in entity.get("halts", []):
            verb = "resumed" if h.get("resumed") else "halted"
            lines.append(f"  {entity['name']} {verb} at {h['at']}: {h['reason']}")
    ledger = report["ledger"]
    lines += [
        f"Total equity {money(ledger['total_equity'])} {cur} from deposits of {money(ledger['deposits'])} "
        f"(realised {money(ledger['realized_pnl'])}, unrealised {money(ledger['unrealized_pnl'])}, fees {money(ledger['fees'])}).",
        str(audit),
    ]
    return lines


__all__ = ["LiveTree", "money", "summary_lines"]
