"""An agent: one strategy on one instrument, trading through the paper broker.

A plain class. The Ray agent actor wraps it unchanged, and a farm hosting its agents
inline (scale mode) holds it directly, so both modes run the same code. Each bar goes:

1. the bar opens: the broker fills a stop or the order due (the fill model's rules);
2. the bar closes: the strategy's live form computes the bar's signals (the same row
   the vectorised form gives), and the broker is told what they want at the next open.

A batch of bars runs the strategy's compiled loop once over the batch (step 2 for every
bar, which needs nothing from step 1), then the broker bar by bar: the same rows and the
same fills as one bar at a time.

Fills leave as :class:`~cival.core.messages.Fill` messages with exact decimals: ``qty``
is the whole number of quantity steps times the step; ``price`` is the fill model's float
read exactly (``Decimal(repr(x))``), which is this module's float boundary; ``notional``
(quantity x price on the money grid) and ``fee`` are the fill model's grid amounts, read
as the exact multiples of 1e-8 they stand for. Sizing uses the broker's cash, exactly as
the backtester does, so paper trading and ``cival backtest`` produce the same trades from
the same bars.

With books (a :class:`~cival.core.wallets.WalletTree` holding the agent's wallet), every
fill is booked there under the fill's id: exactly its notional and its fee, so the books'
cash after it is the broker's, to the last 1e-8 (the broker's cash is reset to the books'
after every allocation or collection). Were the float engine ever to lose that exactness
(amounts beyond about 3e7, where a double no longer resolves 1e-8), the books prevail:
the broker is reset to them and the agent logs it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import numpy as np
from pydantic import BaseModel

from cival.actors.books import send_up
from cival.actors.performance import PerformanceTracker
from cival.actors.state import AgentState
from cival.core.bar import Bar, BarBatch, timestamp_of
from cival.core.codec import StateError, apply, capture
from cival.core.errors import CivalError
from cival.core.events import EventDraft, EventLog, HaltPayload, OrderRejectedPayload
from cival.core.fmt import iso_utc, plain_decimal
from cival.core.ledger import TxType
from cival.core.messages import (
    Allocate,
    Collect,
    Fill,
    Halt,
    OrderIntent,
    PerformanceReport,
    Transfer,
)
from cival.core.wallets import EntityKind, WalletTree, agent_ref, farm_ref
from cival.execution.broker import PaperBroker
from cival.execution.fills import Execution, FillModel, grid_decimal, step_decimals
from cival.goals import ClosedTrade
from cival.strategies import get_strategy

log = logging.getLogger("cival.agent")


class AgentError(CivalError):
    """An agent was asked something it cannot do (a message not addressed to it, bad bars)."""


@dataclass
class AgentUpdate:
    """What an agent reports after a batch of bars."""

    name: str
    fills: int
    """Fills booked in the batch (the messages stay with the agent: ``Agent.fills``)."""
    intents: int
    equity: np.ndarray
    """Equity (broker cash + position at the close) at each bar of the batch, float."""
    report: PerformanceReport
    position_qty: Decimal = Decimal(0)
    last_close: float = float("nan")
    booked_ns: list[int] = field(default_factory=list)
    """``time.monotonic_ns()`` when each fill was booked (latency measurement)."""
    trades: list[ClosedTrade] = field(default_factory=list)
    """Trades closed in the batch (for goals)."""


class Agent:
    """Runs ``strategy`` with ``params`` on ``symbol`` bars, filling through a PaperBroker.

    ``books`` holds the agent's wallet (it is added below ``farm`` when missing); None
    gives the agent books of its own, as an agent actor has. ``standalone=True`` runs
    without books at all, on the fill model's cash (research use, tests).
    """

    def __init__(
        self,
        name: str,
        strategy: str,
        params: BaseModel | Mapping[str, Any] | None,
        model: FillModel,
        symbol: str,
        farm: str = "",
        books: WalletTree | None = None,
        standalone: bool | None = None,
    ) -> None:
        self.name = name
        self.ref = agent_ref(name)
        self.farm = farm
        self.symbol = symbol
        self.strategy = get_strategy(strategy)
        self.signals = self.strategy.live(params)
        self.model = model
        self.broker = PaperBroker(model)
        self.step = Decimal(repr(model.qty_step))
        self._decimals = step_decimals(model.qty_step)
        self.fills: list[Fill] = []
        self.executions: list[tuple[int, Execution]] = []
        """(bar time in ns, execution) of every fill, for the trades table."""
        self.performance = PerformanceTracker()
        self.principal = Decimal(0)
        self.halted: str | None = None
        """Why the agent is halted (None when it trades)."""
        self.halts: list[dict[str, Any]] = []
        """Money allocated to the agent, less what was collected from it other than profit."""
        self._cash_key = f"{self.ref}/cash"
        self.last_close = float("nan")
        self.last_ns = 0
        self.events = EventLog()
        """What happened that the books do not say (halts), for the journal to take."""
        self.orders: list[OrderIntent] | None = None
        """The order intents not yet journaled; None (the default) keeps none."""
        self.order_status: list[tuple[str, str]] = []
        """(intent id, "filled" | "lapsed") of intents closed since the journal last took them."""
        self._pending_intent: str | None = None
        """The intent recorded at the last bar's close, which the next open answers."""
        self._rejected: str | None = None
        """Why a buy the signals asked for could not be placed, said once (in an event) until
        a buy is placed, a fill happens or money moves in or out."""
        self._halt_ids: set[str] = set()
        """Halt messages already applied (a redelivered one changes nothing)."""
        if standalone is None:
            standalone = books is None and not farm
        self.standalone = standalone
        if standalone:
            self.books: WalletTree | None = None
            self.performance.start(self.broker.cash)
        else:
            if books is None:
                books = WalletTree.rooted(
                    EntityKind.AGENT,
                    name,
                    parent=farm_ref(farm or "unassigned"),
                    qty_step=self.step,
                )
            elif self.ref not in {e.ref for e in books.entities()}:
                books.add_agent(farm, name)
            self.books = books
            self.broker.cash = 0.0

    @property
    def params(self) -> BaseModel:
        return self.signals.params

    # -- journal ----------------------------------------------------------------------

    def state(self) -> AgentState:
        """Everything the agent knows but its books and fills, so that :meth:`restore` on a
        new agent of the same spec carries on where this one is. Fills are journaled as
        rows (see :meth:`restore_fills`)."""
        return capture(self, AgentState, broker=self.broker.state.tolist(), fills=len(self.fills))

    def restore(self, state: AgentState) -> None:
        """Take up a :meth:`state` (after :meth:`restore_fills` and the books' restore)."""
        if state.fills != len(self.fills):
            raise AgentError(
                f"{self.ref}: the journal holds {len(self.fills)} fills but the state counts {state.fills}; "
                "the store is inconsistent for this agent"
            )
        if len(state.broker) != self.broker.state.shape[0]:
            raise StateError(f"{self.ref}: the stored broker state has {len(state.broker)} values, not {self.broker.state.shape[0]}")
        apply(self, state, self.ref, skip=("broker", "fills"))
        self.broker.state[:] = np.array(state.broker, dtype=np.float64)

    def restore_fills(self, rows: Iterable[tuple[Fill, int, Execution]]) -> None:
        """Take back the journaled fills: (fill, bar time in ns, execution), in order."""
        for fill, ts_ns, execution in rows:
            self.fills.append(fill)
            self.executions.append((ts_ns, execution))

    # -- money ----------------------------------------------------------------------

    def on_allocate(self, msg: Allocate) -> None:
        """Book an allocation from the farm (agent actors; an inline farm books it itself)."""
        books = self._books()
        if msg.target != self.ref:
            raise AgentError(f"{self.ref} received an allocation for {msg.target}")
        books.receive(
            self.ref,
            msg.source,
            msg.amount,
            key=msg.id,
            at=msg.at,
            type=TxType.ALLOCATION,
        )
        if books.ledger.posted(msg.id):
            self.principal += msg.amount
            self.performance.flow(float(msg.amount))
        self.sync_cash()

    def on_collect(self, msg: Collect) -> Transfer:
        """Send cash up to the farm (see :class:`~cival.core.messages.Collect` for what);
        returns the Transfer the farm must book. A duplicate Collect returns the same
        Transfer and moves nothing."""
        books = self._books()
        if msg.source != self.ref:
            raise AgentError(f"{self.ref} received a collection for {msg.source}")
        parent = books.root.parent or farm_ref(self.farm)
        replay = books.ledger.find(f"{msg.id}:transfer") is not None
        if msg.effective_basis == "profit" and not replay:
            msg = msg.model_copy(update={"amount": self.collectable_profit(), "basis": "amount"})
        transfer = send_up(books, self.ref, parent, msg)
        if not replay:
            self.collected(transfer.amount, msg.effective_basis)
        self.sync_cash()
        return transfer

    def on_halt(self, msg: Halt) -> None:
        """Halt (exit at the next open, no new entries) or resume; recorded with the reason.
        A message applied before (same id) changes nothing."""
        if msg.id in self._halt_ids:
            return
        self._halt_ids.add(msg.id)
        if msg.resume:
            if self.halted is not None and (msg.only is None or msg.only == self.halted):
                self.halted = None
                self.halts.append({"reason": msg.reason, "at": iso_utc(msg.at), "resumed": True})
                self._halt_event(msg)
            return
        if self.halted is None:
            self.halted = msg.reason
            self.halts.append({"reason": msg.reason, "at": iso_utc(msg.at), "resumed": False})
            self.broker.submit(False, self.broker.in_position)
            self._halt_event(msg)

    def _halt_event(self, msg: Halt) -> None:
        self.events.record(
            EventDraft(f"halt:{msg.id}>{self.ref}", self.ref, msg.at, HaltPayload(reason=msg.reason, resume=msg.resume))
        )

    def collectable_profit(self) -> Decimal:
        """Cash + positions at cost above the principal, as far as the cash covers it."""
        from cival.goals import collectable

        books = self._books()
        cost = sum((p.cost for p in books.positions(self.ref)), Decimal(0))
        amount = collectable("collect_profit", self.principal, books.cash(self.ref).amount, cost)
        assert amount is not None
        return amount

    def funded(self, amount: Decimal) -> None:
        """Money arrived from the farm (an inline farm books it and tells the agent)."""
        self.principal += amount
        self.performance.flow(float(amount))
        self.sync_cash()

    def collected(self, amount: Decimal, basis: str) -> None:
        """Money left for the farm: profit leaves the principal as it was."""
        self.performance.flow(-float(amount))
        if basis != "profit":
            self.principal = max(Decimal(0), self.principal - amount)

    def sync_cash(self) -> None:
        """Set the broker's cash to the books' (after money moved in or out)."""
        books = self._books()
        cash = books.cash(self.ref).amount
        self.broker.cash = float(cash)
        self._rejected = None
        if self.performance.bars == 0:
            self.performance.start_equity = float("nan")
            self.performance.start(float(cash))

    # -- bars -----------------------------------------------------------------------

    def on_batch(self, batch: BarBatch, with_equity: bool = True) -> AgentUpdate:
        """Process consecutive bars; returns the fills, the intents and the figures after them."""
        closed_before = len(self.executions) // 2
        fills, intents, equity, booked = self._run(batch)
        return AgentUpdate(
            name=self.name,
            fills=len(fills),
            intents=len(intents),
            equity=equity if with_equity else np.empty(0),
            report=self.report(),
            position_qty=Decimal(int(self.broker.units)) * self.step,
            last_close=self.last_close,
            booked_ns=booked,
            trades=self.closed_trades(closed_before),
        )

    def _run(self, batch: BarBatch) -> tuple[list[Fill], list[OrderIntent], np.ndarray, list[int]]:
        n = len(batch)
        rows = self.signals.update_many(batch.open, batch.high, batch.low, batch.close, batch.ts)
        cols = self.strategy.columns
        entries = rows[:, cols.index("entry")] != 0.0
        exits = rows[:, cols.index("exit")] != 0.0
        if self.halted is not None:
            # No new entries: a position left is sold at the first open, a buy due is dropped.
            entries[:] = False
            self.broker.submit(False, self.broker.in_position)
        # The broker's compiled loop over the batch: fills at each open, the signals known.
        run = self.broker.run(batch.open, batch.high, batch.low, batch.close, entries, exits)
        first = self.signals.bars_seen - n + 1  # the batch's first bar, counted from 1 (intent ids carry it)
        # An intent at each close whose signal the next open will act on; a buy only when the
        # cash at that close buys at least one unit at the close (one that cannot be placed is
        # not: why is said once, in an event). The broker acts on the signals whatever is
        # recorded, so trading is the backtest's.
        wants = (entries & ~exits & ~run.held) | (exits & run.held)
        placed: dict[int, str] = {}
        intents: list[OrderIntent] = []
        for i in np.flatnonzero(wants).tolist():
            at = timestamp_of(int(batch.ts[i]))
            side = "sell" if exits[i] else "buy"
            if side == "buy":
                why = self._cannot_buy(float(run.equity[i]), float(batch.close[i]))  # flat: equity is cash
                if why is not None:
                    if self._rejected is None:  # once, until a buy is placed or money moves
                        self._rejected = why
                        self.events.record(EventDraft(
                            f"rejected:{self.name}:{first + i}", self.ref, at,
                            OrderRejectedPayload(agent=self.name, symbol=self.symbol, side=side, reason=why, signal_at=iso_utc(at)),
                        ))
                    continue
                self._rejected = None
            placed[i] = f"{self.name}:intent:{first + i}"
            # Built from checked values by this code: constructed without re-validation.
            intents.append(OrderIntent.model_construct(id=placed[i], agent=self.name, symbol=self.symbol, side=side, signal_at=at, at=at))
        fills: list[Fill] = []
        booked: list[int] = []
        filled_at: set[int] = set()
        for i, reason, execution in run.executions():
            order = None
            if reason == "signal":  # a signal's fill at an open answers the intent of the close before
                filled_at.add(i)
                order = placed.get(i - 1) if i else self._pending_intent
                if order is None:  # placed after all (the open was lower than the close it was judged at)
                    order = f"{self.name}:intent:{first + i - 1}"
                    at = timestamp_of(int(batch.ts[i - 1])) if i else timestamp_of(self.last_ns)
                    side = "buy" if execution.side > 0 else "sell"
                    intents.append(OrderIntent.model_construct(id=order, agent=self.name, symbol=self.symbol, side=side, signal_at=at, at=at))
                self.order_status.append((order, "filled"))
                self._rejected = None
            fills.append(self._filled(execution, int(batch.ts[i]), reason, order))
            booked.append(time.monotonic_ns())
        # Intents the next open did not fill (a stop took the position, the cash no longer
        # bought a unit at that open, the agent was halted) lapsed: they are closed.
        if self._pending_intent is not None and n and 0 not in filled_at:
            self.order_status.append((self._pending_intent, "lapsed"))
        for i, order in placed.items():
            if i + 1 < n and i + 1 not in filled_at:
                self.order_status.append((order, "lapsed"))
        self._pending_intent = placed.get(n - 1) if n else self._pending_intent
        if self.orders is not None:
            self.orders.extend(intents)
        else:
            self.order_status.clear()
        if n:
            self.last_close = float(batch.close[-1])
            self.last_ns = int(batch.ts[-1])
            self.performance.update(batch.ts, run.equity)
        return fills, intents, run.equity, booked

    def _cannot_buy(self, cash: float, close: float) -> str | None:
        """Why a buy at ``close`` cannot be placed with ``cash`` (None when it can): the sizing
        rule gives less than one unit."""
        m = self.model
        unit = close * m.qty_step * (1 + m.slippage)
        if cash > 0 and unit > 0 and cash * m.fraction / (1 + m.fee_rate) >= unit:
            return None
        return (
            f"not enough cash to buy one unit ({plain_decimal(m.qty_step)} {self.symbol}): {plain_decimal(grid_decimal(max(cash, 0.0)))} available, "
            f"about {unit * (1 + m.fee_rate) / m.fraction:.2f} needed at {plain_decimal(close)}"
        )

    def on_bar(self, bar: Bar) -> list[Fill | OrderIntent]:
        """Process one bar; returns the fill at its open (if any) and the intent for the next."""
        fills, intents, _, _ = self._run(BarBatch.from_bars([bar]))
        return [*fills, *intents]

    def on_bars(self, bars: Iterable[Bar]) -> list[Fill | OrderIntent]:
        """Bars one by one, in order; the same messages as :meth:`on_bar` for each."""
        out: list[Fill | OrderIntent] = []
        for bar in bars:
            out.extend(self.on_bar(bar))
        return out

    def equity(self, close: float) -> float:
        """The broker's cash plus the position at ``close`` (floats, as the backtest)."""
        return self.broker.equity(close)

    # -- fills ----------------------------------------------------------------------

    def _filled(self, execution: Execution, ts_ns: int, reason: str, order_id: str | None = None) -> Fill:
        self.executions.append((ts_ns, execution))
        buy = execution.side > 0
        fill_id = f"{self.name}:{self.symbol}:{len(self.fills) + 1}"
        notional = grid_decimal(execution.notional)
        fee = grid_decimal(execution.fee)
        fill = Fill(
            id=fill_id,
            at=timestamp_of(ts_ns),
            agent=self.name,
            symbol=self.symbol,
            side="buy" if buy else "sell",
            qty=Decimal(int(execution.units)) * self.step,
            price=Decimal(repr(execution.unit_price / self.model.qty_step)),
            fee=fee,
            reason=reason,  # type: ignore[arg-type]
            notional=notional,
            order_id=order_id,
        )
        self.book(fill)
        self.fills.append(fill)
        if self.books is not None:
            cash = self.books.cash(self.ref).amount
            if cash != grid_decimal(execution.cash_after):
                # Beyond what a double resolves to 1e-8: the exact books prevail.
                log.warning("%s: the broker's cash %r after fill %s differs from the books' %s; reset to the books",
                            self.ref, execution.cash_after, fill_id, cash)
                self.broker.cash = float(cash)
        return fill

    def book(self, fill: Fill) -> None:
        """Book a fill in the agent's books (a fill booked before changes nothing)."""
        if self.books is None:
            return
        book = self.books.buy if fill.side == "buy" else self.books.sell
        book(
            self.ref,
            fill.symbol,
            fill.qty,
            fill.price,
            fill.fee,
            key=fill.id,
            at=fill.at,
            notional=fill.notional,
        )

    # -- reporting ------------------------------------------------------------------

    def trades(self) -> list[dict[str, Any]]:
        """Closed trades, with the backtest's trade columns (the same float arithmetic).
        A closed trade never changes: each is formatted once (the rows are kept for the
        next call while the executions only grow)."""
        ex = self.executions
        kept = getattr(self, "_trade_rows", None)
        if kept is None or kept[0] is not ex or kept[1] > len(ex) // 2:
            kept = (ex, 0, [])
        _, done, rows = kept
        rows = rows + self._trade_rows_from(2 * done)
        self._trade_rows = (ex, len(ex) // 2, rows)
        return list(rows)

    def _trade_rows_from(self, start: int) -> list[dict[str, Any]]:
        out = []
        step = self.model.qty_step
        ex = self.executions
        for b in range(start, len(ex) - 1, 2):
            (t_in, buy), (t_out, sell) = ex[b], ex[b + 1]
            n_in, n_out = buy.notional, sell.notional
            pnl = (n_out - n_in) - buy.fee - sell.fee
            out.append(
                {
                    "entry_time": iso_utc(timestamp_of(t_in)),
                    "entry_price": plain_decimal(buy.unit_price / step),
                    "exit_time": iso_utc(timestamp_of(t_out)),
                    "exit_price": plain_decimal(sell.unit_price / step),
                    "qty": plain_decimal(float(np.round(buy.units * step, self._decimals))),
                    "fees": plain_decimal(buy.fee + sell.fee),
                    "pnl": plain_decimal(pnl),
                    "return": plain_decimal(pnl / (n_in + buy.fee)),
                }
            )
        return out

    def closed_trades(self, since: int = 0) -> list[ClosedTrade]:
        """Closed trades from the ``since``-th on, as goals see them (net P&L, exact)."""
        out = []
        ex = self.executions
        for k in range(since, len(ex) // 2):
            (_, buy), (t_out, sell) = ex[2 * k], ex[2 * k + 1]
            pnl = (grid_decimal(sell.notional) - grid_decimal(buy.notional)) - grid_decimal(buy.fee) - grid_decimal(sell.fee)
            out.append(ClosedTrade(f"{self.name}:trade:{k + 1}", self.name, timestamp_of(t_out), pnl))
        return out

    def figures(self) -> dict[str, Decimal]:
        """Exact figures from the books, positions marked at the last close."""
        books = self._books()
        mark = self._mark()
        cash = books.cash(self.ref).amount
        value = cost = Decimal(0)
        for pos in books.positions(self.ref):
            cost += pos.cost
            value += self._value(pos.quantity, mark) if mark is not None else pos.cost
        return {
            "cash": cash,
            "equity": cash + value,
            "realized_pnl": books.realized_pnl(self.ref).amount,
            "unrealized_pnl": value - cost,
            "fees": books.fees(self.ref).amount,
        }

    def report(self) -> PerformanceReport:
        at = timestamp_of(self.last_ns) if self.last_ns else None
        # The id says whose report of which bar it is: the same report, however often made.
        extra: dict[str, Any] = {"id": f"{self.ref}:report:{self.performance.bars}"}
        if at is not None:
            extra["at"] = at
        if self.books is None:
            return PerformanceReport(
                entity=self.ref,
                equity=Decimal(
                    repr(
                        self.equity(
                            self.last_close
                            if self.last_close == self.last_close
                            else 0.0
                        )
                    )
                ),
                trades=len(self.executions) // 2,
                in_position=self.broker.in_position,
                bars=self.performance.bars,
                **extra,
            )
        fig = self.figures()
        return PerformanceReport(
            entity=self.ref,
            equity=fig["equity"],
            cash=fig["cash"],
            realized_pnl=fig["realized_pnl"],
            unrealized_pnl=fig["unrealized_pnl"],
            fees=fig["fees"],
            trades=len(self.executions) // 2,
            in_position=self.broker.in_position,
            max_drawdown=self.performance.max_drawdown
            if self.performance.bars
            else None,
            sharpe=self.performance.sharpe,
            bars=self.performance.bars,
            **extra,
        )

    def snapshot(self) -> dict[str, Any]:
        """The agent's part of a session report (amounts as decimal strings)."""
        books = self._books()
        fig = self.figures()
        mark = self._mark()
        positions = [
            {
                "symbol": p.symbol,
                "qty": plain_decimal(p.quantity),
                "cost": plain_decimal(p.cost),
                "mark": plain_decimal(mark) if mark is not None else None,
                "value": plain_decimal(self._value(p.quantity, mark))
                if mark is not None
                else None,
            }
            for p in books.positions(self.ref)
        ]
        return {
            "name": self.name,
            "strategy": self.strategy.name,
            "params": self.params.model_dump(),
            "symbol": self.symbol,
            **{k: plain_decimal(v) for k, v in fig.items()},
            "positions": positions,
            "trades": self.trades(),
            "trade_count": len(self.executions) // 2,
            "bars": self.performance.bars,
            **self.performance.figures(),  # max_drawdown, sharpe, total_return, cagr, sortino, calmar
            "halts": list(self.halts),
            "halted": self.halted,
        }

    def _mark(self) -> Decimal | None:
        """The last close, read exactly (None before the first bar)."""
        return (
            Decimal(repr(self.last_close))
            if self.last_close == self.last_close
            else None
        )

    def _value(self, qty: Decimal, mark: Decimal) -> Decimal:
        """A position's value at ``mark``, to the ledger's scale (half even): a valuation,
        never booked."""
        assert self.books is not None
        return (qty * mark).quantize(self.books.ledger.quantum, ROUND_HALF_EVEN)

    def _books(self) -> WalletTree:
        if self.books is None:
            raise AgentError(
                f"{self.ref} runs without books (standalone); it holds no wallet"
            )
        return self.books


def warm_up(strategy: str, model: FillModel) -> None:
    """Load (or compile) the compiled code an agent runs, on three throwaway bars, so that a
    new process pays for it while the cluster starts rather than on its first bars."""
    prices = np.array([100.0, 101.0, 99.0])
    ts = np.array([0, 60_000_000_000, 120_000_000_000], dtype=np.int64)
    batch = BarBatch(ts, prices, prices + 1.0, prices - 1.0, prices)
    agent = Agent("warm-up", strategy, None, model, "X", standalone=True)
    agent._run(batch)


__all__ = ["Agent", "AgentError", "AgentUpdate", "warm_up"]
