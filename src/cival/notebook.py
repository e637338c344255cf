"""``Cluster``: a cluster to drive by hand, from a notebook or a script.

::

    from cival import Cluster

    cluster = Cluster.from_config("configs/demo.yaml")   # nodes in this process
    cluster.step(500)                                     # the next 500 bars
    cluster.wallet_tree()                                 # a DataFrame
    cluster.halt("farm:trend", "too volatile")
    cluster.run()                                         # the rest of the bars
    cluster.report()["ledger"]

It is the same cluster as ``cival paper`` runs (the nodes in this process by default,
``ray=True`` for Ray actors), fed the same bars in the same batches: goals and risk
limits act at the config's checkpoints, and everything is booked and audited alike.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import pandas as pd

from cival.actors.books import ClusterAudit
from cival.actors.nodes import FarmUpdate
from cival.config import ClusterConfig, load_config
from cival.core.errors import CivalError
from cival.core.messages import Transfer
from cival.session import Session, SessionConfig


class Cluster:
    """A funded cluster and the bars it has yet to see: a :class:`~cival.session.Session`
    driven by hand."""

    def __init__(
        self,
        config: ClusterConfig,
        bars: pd.DataFrame | None = None,
        ray: bool = False,
        store: Any = None,
        persist: bool = True,
        events: Any = None,
    ) -> None:
        self.config = config
        self.session = Session(config, SessionConfig(local=not ray, persist=persist), bars=bars, store=store, events=events).open()
        self.spec = self.session.spec
        self.bars = self.session.frame
        self.run_id: str | None = self.session.run_id
        """The run this session is in the store (None with ``persist=False``)."""
        self.events: Any = self.session.bus
        """The bus the run's events go to (an InProcessBus by default: ``.subscribe(fn)``)."""

    @classmethod
    def from_config(cls, path: str | Path, bars: pd.DataFrame | None = None, ray: bool = False, **kw: Any) -> Cluster:
        """``kw``: ``store``, ``persist`` and ``events``, as for :class:`cival.session.Session`."""
        return cls(load_config(path), bars=bars, ray=ray, **kw)

    # -- running ----------------------------------------------------------------------

    def step(self, n: int = 1) -> Cluster:
        """Feed the next ``n`` bars (fewer at the end of the data)."""
        if n < 1:
            raise CivalError(f"step needs at least 1 bar, got {n}")
        self.session.step(n)
        return self

    def run(self) -> Cluster:
        """Feed every bar left."""
        self.session.step(None)
        return self

    @property
    def done(self) -> bool:
        return self.session.done

    @property
    def seen(self) -> int:
        return self.session.seen

    @property
    def first(self) -> pd.Timestamp | None:
        """The first bar fed (None before any)."""
        return self.session.first

    @property
    def last(self) -> pd.Timestamp | None:
        """The last bar fed (None before any)."""
        return self.session.last

    @property
    def latest(self) -> list[FarmUpdate]:
        return self.session.latest

    # -- acting -----------------------------------------------------------------------

    def halt(self, entity: str, reason: str = "halted by hand") -> None:
        """Halt ``farm:<name>`` or ``agent:<name>`` (exit at the next open, no new entries)."""
        self.session.halt(entity, reason)

    def resume(self, entity: str, reason: str = "resumed by hand") -> None:
        self.session.release(entity, reason)

    def allocate(self, farm: str, amount: Decimal | str) -> None:
        """Allocate ``amount`` of the master's cash to ``farm``; the farm splits it across its
        agents by its policy. The same checks as any allocation: no overdraft, no negative."""
        self.session.allocate(farm, amount)

    def set_policy(self, farm: str, policy: dict[str, Any]) -> None:
        """Give ``farm`` another allocation policy (as in a config), from now on: it applies
        to new allocations and to its scheduled rebalancing."""
        self.session.set_policy(farm, policy)

    def collect(self, farm: str, amount: Decimal | str | None = None, reason: str = "by hand") -> Transfer:
        """Bring a farm's money back to the master: ``amount`` of its own cash, or (None)
        all its agents' cash and its own."""
        return self.session.collect(farm, amount, reason)

    # -- looking ----------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The session report so far (the same JSON as ``cival paper --report``)."""
        return self.session.report()

    def audit(self) -> ClusterAudit:
        return self.session.audit()

    def wallet_tree(self) -> pd.DataFrame:
        """One row per wallet: kind, parent, cash, equity, P&L, fees, trades, halted."""
        report = self.report()
        m = report["master"]
        rows = [_row("master", m["name"], None, m, total=report["ledger"]["total_equity"])]
        for f in report["farms"]:
            rows.append(_row("farm", f["name"], m["name"], f, total=f["total_equity"], halted=f.get("halted")))
            for a in f["agents"]:
                rows.append(_row("agent", a["name"], f["name"], a, total=a["equity"], halted=a.get("halted"), trades=a["trade_count"]))
        return pd.DataFrame(rows).set_index("name")

    def goals(self) -> pd.DataFrame:
        goals = self.session.goal_states()
        columns = ["name", "type", "status", "progress", "completed_at", "collected", "on_complete"]
        return pd.DataFrame([{k: g[k] for k in columns} for g in goals], columns=columns).set_index("name")

    def trades(self) -> pd.DataFrame:
        """Every agent's closed trades (the backtest's columns, plus farm and agent)."""
        frames = []
        for f in self.report()["farms"]:
            for a in f["agents"]:
                if a["trades"]:
                    frame = pd.DataFrame(a["trades"])
                    frame.insert(0, "agent", a["name"])
                    frame.insert(0, "farm", f["name"])
                    frames.append(frame)
        if not frames:
            return pd.DataFrame(columns=["farm", "agent", "entry_time", "entry_price", "exit_time", "exit_price", "qty", "fees", "pnl", "return"])
        out = pd.concat(frames, ignore_index=True)
        for column in ("entry_time", "exit_time"):
            out[column] = pd.to_datetime(out[column], utc=True)
        for column in ("entry_price", "exit_price", "qty", "fees", "pnl", "return"):
            out[column] = out[column].map(Decimal)
        return out.sort_values(["exit_time", "farm", "agent"], ignore_index=True)

    def close(self) -> None:
        """Record the run as finished (or interrupted, with bars left), publish its last
        events and stop the cluster."""
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        total = len(self.bars) if self.bars is not None else 0
        return f"<Cluster {self.config.name!r}: {self.seen:,}/{total:,} bars, {self.session.options.mode}>"


def _row(kind: str, name: str, parent: str | None, entity: dict[str, Any], total: str, halted: str | None = None, trades: int | None = None) -> dict[str, Any]:
    pnl = Decimal(entity["realized_pnl"]) + Decimal(entity["unrealized_pnl"]) - Decimal(entity["fees"])
    return {
        "name": name,
        "kind": kind,
        "parent": parent,
        "cash": Decimal(entity["cash"]),
        "equity": Decimal(total),
        "net_pnl": pnl,
        "fees": Decimal(entity["fees"]),
        "trades": trades,
        "halted": halted,
    }


__all__ = ["Cluster"]
