"""The sessions a server hosts: each runs in a thread of its own, and is reached by run id.

:class:`SessionHost` starts a session of a config (or takes up a run its previous process
was driving), answers for the runs it drives (their live report, wallet tree, pause,
stop, operator commands through :meth:`cival.session.Session.command`), and reads the
others from the store. Commands are applied by the session at its next batch boundary,
journaled and attributed like any other.

Runs are marked with the host's name in their lease (``SessionConfig.host``); when the
server starts again after a crash, :meth:`SessionHost.take_up` resumes every run it was
driving whose driver is gone (``kill -9`` included), as ``cival resume`` would.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from cival.config import ClusterConfig
from cival.core.errors import CivalError
from cival.core.fmt import iso_utc, plain_decimal
from cival.runs import run_summary
from cival.session import (
    Command,
    Session,
    SessionConfig,
    SessionError,
    driver_alive,
    hosted_by,
    rebuild_report,
)
from cival.store.base import StoreLocation

HOST = "serve"
"""The name the server writes into the leases of the runs it drives."""

TAKE_UP = "take_up"
"""The run meta naming the server that stopped the run and takes it up when it starts."""

PUBLISH_EVERY = 0.1
"""Seconds between two publications of a live run's wallet tree and trades (see
:meth:`SessionHost.publish`)."""


class NotFound(CivalError):
    """No run by that id (or not one this server drives, for what only a live run does)."""


@dataclass
class Hosted:
    """A session this server drives, and its thread."""

    session: Session
    thread: threading.Thread | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    """Why the session ended with an error (None while it runs, or when it ended well)."""
    done: bool = False
    stopped: bool = False
    """Stopped by an operator (not taken up when the server starts again)."""
    views: dict[str, tuple[Any, bytes]] = field(default_factory=dict)
    """What the reads of the live run answer, encoded once: view name -> (the state of the
    run it was taken at, its JSON)."""
    view_lock: threading.Lock = field(default_factory=threading.Lock)
    published: float = 0.0
    """When the wallet tree and trades were last published (time.monotonic)."""


class SessionHost:
    """The sessions of one server (see the module docstring)."""

    def __init__(self, where: StoreLocation, options: SessionConfig | None = None) -> None:
        self.where = where
        self.options = (options or SessionConfig()).model_copy(update={"host": HOST, "persist": True})
        self.runs: dict[str, Hosted] = {}
        self._lock = threading.Lock()

    # -- starting ---------------------------------------------------------------------

    def start(self, config: ClusterConfig, options: dict[str, Any] | None = None, by: str | None = None) -> str:
        """Start a session of ``config`` (``options``: :class:`SessionConfig` fields over the
        server's); returns its run id once the run is recorded. The cluster starts and the
        bars flow in the session's thread."""
        fields = {**(options or {}), "host": HOST, "persist": True}
        if by is not None:
            fields["by"] = by
        opts = SessionConfig.model_validate({**self.options.model_dump(exclude_unset=True), **fields})
        recorded = threading.Event()
        session = Session(config, opts, store=self.where, on_start=lambda run_id, where: recorded.set())
        return self._launch(Hosted(session), recorded)

    def take_up(self) -> list[str]:
        """Resume the runs this server was driving when it stopped: those it stopped itself
        (a clean stop marks them, see :meth:`close`), and those whose driver died with it
        (its lease on them, its process gone: ``kill -9``); returns their ids. A run an
        operator stopped stays stopped; a run that cannot be resumed is left as it is."""
        db = self.where.open()
        try:
            if not db.readable():
                return []
            orphans = [
                r for r in db.runs()
                if (r.status == "running" and hosted_by(r, HOST) and not driver_alive(r))
                or (r.status == "interrupted" and r.meta.get(TAKE_UP) == HOST)
            ]
            for record in orphans:
                db.update_run(record.id, meta={TAKE_UP: None})  # taken up once
        finally:
            db.close()
        resumed = []
        for record in orphans:
            try:
                session = Session.resume(record.id, self.options, store=self.where)
            except CivalError:
                continue
            self._launch(Hosted(session), None)
            resumed.append(record.id)
        return resumed

    def _launch(self, hosted: Hosted, recorded: threading.Event | None) -> str:
        """Run the session in a thread of its own (opening it there, when it is not yet:
        ``recorded`` is set once its run is in the store)."""
        session = hosted.session
        session.on_progress = lambda progress: self._boundary(hosted)

        def drive() -> None:
            try:
                session.run(hosted.stop)
            except BaseException as exc:  # noqa: BLE001 - kept for the API to show
                hosted.error = str(exc) or type(exc).__name__
            finally:
                hosted.done = True
                if recorded is not None:
                    recorded.set()

        hosted.thread = threading.Thread(target=drive, name="cival-session", daemon=True)
        hosted.thread.start()
        if recorded is not None:
            recorded.wait()
        if session.run_id is None:
            raise SessionError(hosted.error or "the session ended before its run was recorded")
        with self._lock:
            self.runs[session.run_id] = hosted
        return session.run_id

    # -- looking ----------------------------------------------------------------------

    def hosted(self, run_id: str) -> Hosted:
        hosted = self.runs.get(run_id)
        if hosted is None:
            raise NotFound(f"run {run_id!r} is not driven by this server")
        return hosted

    def live(self, run_id: str, wait: float = 120.0) -> Session:
        """The session of a run this server drives and that still runs (waiting, at most
        ``wait`` seconds, for one that is starting: its cluster, its funding)."""
        hosted = self.hosted(run_id)
        deadline = time.monotonic() + wait
        while not hosted.session.ready.wait(0.05) and not hosted.done:
            if time.monotonic() > deadline:
                raise SessionError(f"run {run_id} is still starting; try again in a moment")
        if hosted.done:
            raise SessionError(f"run {run_id} has ended" + (f" ({hosted.error})" if hosted.error else ""))
        return hosted.session

    def summaries(self) -> list[dict[str, Any]]:
        db = self.where.open()
        try:
            records = db.runs() if db.readable() else []
        finally:
            db.close()
        return [self._summary(run_summary(r)) for r in records]

    def summary(self, run_id: str) -> dict[str, Any]:
        db = self.where.open()
        try:
            try:
                record = db.run(run_id)
            except CivalError:
                raise NotFound(f"no run {run_id!r} in the store") from None
        finally:
            db.close()
        return self._summary(run_summary(record))

    def _summary(self, row: dict[str, Any]) -> dict[str, Any]:
        hosted = self.runs.get(row["id"])
        if hosted is not None:
            session = hosted.session
            row["hosted"] = {
                "bars_fed": session.seen, "bars_total": session.total, "paused": session.paused,
                "done": hosted.done, "error": hosted.error,
            }
        else:
            row["hosted"] = None
        return row

    def report(self, run_id: str) -> dict[str, Any]:
        """The run's report: live for a session that runs, else rebuilt from the store."""
        hosted = self.runs.get(run_id)
        if hosted is not None and not hosted.done:
            try:
                return self.live(run_id).report()  # once it is open (funded)
            except SessionError:  # it ended meanwhile: the store has it all
                pass
        self.summary(run_id)  # NotFound for an unknown id
        db = self.where.open()
        try:
            report, _ = rebuild_report(db, run_id)
        finally:
            db.close()
        return report

    def wallets(self, run_id: str) -> list[dict[str, Any]]:
        """The wallet tree: the master, then each farm and its agents."""
        return wallet_rows(self.report(run_id))

    def view(self, run_id: str, name: str) -> bytes:
        """The JSON of a read: ``report`` (taken once per state of a live run: its bar count
        and its commands), ``wallets`` or ``trades`` (what the run last published: see
        :meth:`publish`); for a run that is not live, built from the store each time."""
        build = {"report": self.report, "wallets": self.wallets, "trades": self.trades}[name]
        hosted = self.runs.get(run_id)
        if hosted is None or hosted.done:
            return _json(build(run_id))
        if name != "report":
            if name not in hosted.views:
                self.live(run_id)  # waits for a run that is starting
                self.publish(hosted)
            return hosted.views[name][1]
        session = hosted.session
        state = (session.seen, session._command_n, session.ready.is_set())
        kept = hosted.views.get(name)
        if kept is not None and kept[0] == state:
            return kept[1]
        with hosted.view_lock:  # one reader builds it; the others wait for it, then share it
            kept = hosted.views.get(name)
            if kept is not None and kept[0] == state:
                return kept[1]
            encoded = _json(self.report(run_id))
            hosted.views[name] = (state, encoded)
            return encoded

    def published(self, run_id: str, name: str) -> bytes | None:
        """What a live run last published for ``name`` (``wallets``, ``trades``), or None."""
        hosted = self.runs.get(run_id)
        if hosted is None or hosted.done or name == "report":
            return None
        kept = hosted.views.get(name)
        return kept[1] if kept is not None else None

    def publish(self, hosted: Hosted) -> None:
        """Take a live run's wallet tree and trades for its readers, from the nodes'
        snapshots (no ledger audit), encoded once: the reads of ``wallets`` and ``trades``
        answer these bytes without touching the session. The session publishes at batch
        boundaries, at most every :data:`PUBLISH_EVERY` seconds, and at once after a
        command or a pause: a read is at most that far behind the feed, and never behind
        a command it follows."""
        with hosted.view_lock:
            session = hosted.session
            state = (session.seen, session._command_n)
            data = session.wallet_snapshot()
            trades = trade_rows(data)
            shown = hosted.views.get("trades")
            # Closed trades only ever grow: as many, the same list.
            encoded = shown[1] if shown is not None and shown[0][2] == len(trades) else _json(trades)
            hosted.views["wallets"] = (state, _json(wallet_rows(data)))
            hosted.views["trades"] = ((*state, len(trades)), encoded)
            hosted.published = time.monotonic()

    def _boundary(self, hosted: Hosted) -> None:
        """After each batch (on the session's thread): publish when it is time."""
        if time.monotonic() - hosted.published >= PUBLISH_EVERY:
            try:
                self.publish(hosted)
            except CivalError:  # the session is closing: the store has it all
                pass

    def table(
        self, run_id: str, table: str, where: dict[str, Any] | None = None, columns: list[str] | None = None,
        offset: int = 0, limit: int = 100,
    ) -> dict[str, Any]:
        """A page of one of the run's tables: ``{"total", "offset", "items"}``, values as
        JSON (exact decimal strings, ISO times)."""
        run_id = self.summary(run_id)["id"]
        with self.where.open(read_only=True) as store:
            rows = store.rows(table, run_id, where={k: v for k, v in (where or {}).items() if v is not None}, columns=columns)
        return {"total": len(rows), "offset": offset, "items": [plain_row(r) for r in rows[offset : offset + limit]]}

    def transactions(
        self, run_id: str, wallet: str | None = None, kind: str | None = None, offset: int = 0, limit: int = 100
    ) -> dict[str, Any]:
        """A page of the run's ledger transactions, every node's ledger, oldest first;
        ``wallet``: only those that move that wallet's accounts (``farm:trend``...);
        ``kind``: only that type (``allocation``, ``buy``...)."""
        run_id = self.summary(run_id)["id"]
        with self.where.open(read_only=True) as store:
            ledgers = store.node_sources(run_id)
            found = []
            for ledger in ledgers:
                for tx in store.transactions(run_id, ledger):
                    if kind is not None and tx.type.value != kind:
                        continue
                    if wallet is not None and not any(p.account.startswith(f"{wallet}/") for p in tx.postings):
                        continue
                    found.append((tx.at, ledger, tx))
        found.sort(key=lambda item: (item[0], item[1], item[2].seq))
        items = [
            {"ledger": ledger, "seq": tx.seq, "type": tx.type.value, "key": tx.idempotency_key, "at": iso_utc(tx.at),
             "memo": tx.memo, "currency": tx.currency,
             "postings": [{"account": p.account, "amount": plain_decimal(p.amount), "quantity": plain_decimal(p.quantity)}
                          for p in tx.postings]}
            for _, ledger, tx in found[offset : offset + limit]
        ]
        return {"total": len(found), "offset": offset, "items": items}

    def events(self, run_id: str, after: int = 0, limit: int = 100, kind: str | None = None) -> dict[str, Any]:
        """The run's stored events after sequence number ``after`` (of one type, with ``kind``)."""
        run_id = self.summary(run_id)["id"]
        with self.where.open(read_only=True) as store:
            rows = store.events(run_id, after, None if kind else limit)
        if kind is not None:
            rows = [r for r in rows if r.type == kind][:limit]
        items = [{"seq": r.seq, "id": r.id, "type": r.type, "entity": r.entity, "source": r.source,
                  "at": iso_utc(r.at), "data": r.data} for r in rows]
        return {"after": after, "items": items}

    def goals(self, run_id: str) -> list[dict[str, Any]]:
        """Every goal of the run as the store has it (kept current at each of the master's
        commits), with its assignments."""
        run_id = self.summary(run_id)["id"]
        with self.where.open(read_only=True) as store:
            goals = store.rows("goals", run_id)
            assigned = store.rows("farm_goal_assignments", run_id)
        out = []
        for goal in goals:
            row = plain_row(goal)
            row["assign"] = [
                {k: v for k, v in plain_row(a).items() if k in ("farm", "agent", "weight") and v is not None}
                for a in assigned if a["goal"] == goal["name"]
            ]
            out.append(row)
        return out

    def trades(self, run_id: str) -> list[dict[str, Any]]:
        """Every agent's closed trades, with its farm and name, oldest exit first."""
        return trade_rows(self.report(run_id))

    # -- acting -----------------------------------------------------------------------

    def command(self, run_id: str, command: Command) -> Any:
        try:
            return self.live(run_id).command(command, timeout=60)
        finally:
            self._republish(run_id)

    def _republish(self, run_id: str) -> None:
        """Publish at once (after a command, a pause): a read that follows sees it."""
        hosted = self.runs.get(run_id)
        if hosted is not None and not hosted.done:
            try:
                self.publish(hosted)
            except CivalError:
                pass

    def pause(self, run_id: str, wait: float = 60.0) -> None:
        """Hold the feed at its next batch boundary; returns once it holds there (or the
        run ended), so that the bars fed no longer move."""
        hosted = self.hosted(run_id)
        session = self.live(run_id)
        session.pause()
        deadline = time.monotonic() + wait
        while not session.holding.wait(0.05) and not hosted.done:
            if time.monotonic() > deadline:
                raise SessionError(f"run {run_id} did not reach a batch boundary within {wait:.0f} s; it will hold there")
        self._republish(run_id)

    def unpause(self, run_id: str) -> None:
        self.live(run_id).unpause()

    def stop(self, run_id: str, wait: float = 60.0) -> None:
        """Stop the run at its next batch boundary (recorded as interrupted; the server does
        not take it up again when it starts)."""
        hosted = self.hosted(run_id)
        hosted.stopped = True
        hosted.stop.set()
        hosted.session.unpause()
        if hosted.thread is not None:
            hosted.thread.join(wait)

    def close(self) -> None:
        """Stop every session (each ends at a batch boundary, recorded as interrupted,
        resumable) and wait for their threads; the runs stopped so are marked for
        :meth:`take_up` when the server starts again."""
        stopping = [(run_id, h) for run_id, h in self.runs.items() if not h.done]
        for _, hosted in stopping:
            hosted.stop.set()
            hosted.session.unpause()
        for hosted in list(self.runs.values()):
            if hosted.thread is not None:
                hosted.thread.join(120)
        marked = [run_id for run_id, h in stopping if not h.stopped and h.session.interrupted]
        if marked:
            with self.where.open() as db:
                for run_id in marked:
                    db.update_run(run_id, meta={TAKE_UP: HOST})


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def trade_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every agent's closed trades in a session report, with its farm and name, oldest exit first."""
    out = [{"farm": f["name"], "agent": a["name"], **t} for f in report["farms"] for a in f["agents"] for t in a["trades"]]
    return sorted(out, key=lambda t: (t["exit_time"], t["farm"], t["agent"]))


def wallet_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per wallet of a session report: kind, name, parent, cash, equity, net P&L
    (realised + unrealised - fees), fees (exact decimal strings), open positions, trades,
    halted; an agent's strategy; and the figures of :mod:`cival.backtest.metrics`, as
    floats, None while undefined: of the closed trades (a farm's: its agents'), the win
    rate and the profit factor (winning pnl / |losing pnl|, summed exactly; None with no
    losing trade); of the wallet's equity curve, as its node tracks it, the total return
    (time-weighted: allocations and collections are not returns), CAGR, Sharpe, Sortino
    and Calmar ratios and the maximum drawdown (the master tracks no curve: None)."""

    def row(kind: str, entity: dict[str, Any], parent: str | None, equity: str) -> dict[str, Any]:
        net = Decimal(entity["realized_pnl"]) + Decimal(entity["unrealized_pnl"]) - Decimal(entity["fees"])
        closed = entity.get("trades") or []
        if kind == "farm":
            closed = [t for a in entity.get("agents", []) for t in a.get("trades", [])]
        pnl = [Decimal(t["pnl"]) for t in closed]
        wins = [p for p in pnl if p > 0]
        lost = -sum((p for p in pnl if p < 0), Decimal(0))
        return {
            "kind": kind, "name": entity["name"], "parent": parent, "cash": entity["cash"], "equity": equity,
            "net_pnl": str(net), "fees": entity["fees"], "positions": entity.get("positions", []),
            "trades": entity.get("trade_count"), "halted": entity.get("halted"), "strategy": entity.get("strategy"),
            "win_rate": len(wins) / len(closed) if closed else None,
            "profit_factor": float(sum(wins, Decimal(0)) / lost) if lost > 0 else None,
            "total_return": entity.get("total_return"), "cagr": entity.get("cagr"), "sharpe": entity.get("sharpe"),
            "sortino": entity.get("sortino"), "calmar": entity.get("calmar"), "max_drawdown": entity.get("max_drawdown"),
        }

    master = report["master"]
    rows = [row("master", master, None, report["ledger"]["total_equity"])]
    for farm in report["farms"]:
        rows.append(row("farm", farm, master["name"], farm["total_equity"]))
        rows += [row("agent", agent, farm["name"], agent["equity"]) for agent in farm["agents"]]
    return rows


__all__ = ["HOST", "PUBLISH_EVERY", "Hosted", "NotFound", "SessionHost", "trade_rows", "wallet_rows"]


def plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """A store row as JSON: Decimals as exact strings, times in ISO 8601 UTC."""
    out = {}
    for key, value in row.items():
        if key == "run_id":
            continue
        if isinstance(value, Decimal):
            value = plain_decimal(value)
        elif isinstance(value, datetime):
            value = iso_utc(value)
        out[key] = value
    return out
