"""``Cluster``: a cluster to drive by hand, from a notebook or a script.

::

    from cival import Cluster

    cluster = Cluster("configs/demo.yaml")     # a path, a ClusterConfig or a mapping
    cluster.step(500)                          # the next 500 bars
    cluster.wallet_tree()                      # a DataFrame (floats; exact=True: Decimals)
    cluster.halt("farm:trend", "too volatile")
    cluster.collect("breakout", "500")         # what was booked: a Booked record
    cluster.deposit("10000"); cluster.allocate("trend", "10000")
    cluster.run()                              # the rest of the bars
    cluster.report()["ledger"]

It is the same cluster as ``cival paper`` runs (the nodes in this process by default,
``ray=True`` for Ray actors), fed the same bars in the same batches: goals and risk
limits act at the config's checkpoints, and everything is booked and audited alike.

Tables (``wallet_tree``, ``trades``) hold floats, to plot and compute with; the books are
exact, and ``exact=True`` gives their Decimal values.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any, Self

import pandas as pd

from cival.actors.books import ClusterAudit
from cival.actors.nodes import FarmUpdate
from cival.core.errors import CivalError
from cival.session import Booked, ConfigSource, Session, SessionConfig, as_config


class Cluster:
    """A funded cluster and the bars it has yet to see: a :class:`~cival.session.Session`
    driven by hand."""

    def __init__(
        self,
        config: ConfigSource,
        bars: pd.DataFrame | None = None,
        ray: bool = False,
        store: Any = None,
        persist: bool = True,
        events: Any = None,
    ) -> None:
        self.config = config = as_config(config)
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
        return cls(path, bars=bars, ray=ray, **kw)

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

    def deposit(self, amount: Decimal | str | int) -> Booked:
        """Deposit ``amount`` into the master's cash; returns what was booked."""
        return self.session.deposit(amount)

    def allocate(self, farm: str, amount: Decimal | str | int) -> Booked:
        """Allocate ``amount`` of the master's free cash to ``farm``; the farm splits it
        across its agents by its policy. Returns what was booked. More than the master's
        cash is refused, with the ways to free some (:meth:`collect`, :meth:`deposit`)."""
        return self.session.allocate(farm, amount)

    def set_policy(self, farm: str, policy: dict[str, Any]) -> None:
        """Give ``farm`` another allocation policy (as in a config), from now on: it applies
        to new allocations and to its scheduled rebalancing."""
        self.session.set_policy(farm, policy)

    def collect(self, farm: str, amount: Decimal | str | int | None = None, reason: str = "by hand") -> Booked:
        """Bring a farm's money back to the master: ``amount`` of its free cash (its own
        first, then its trading agents' in proportion to their cash), or (None) all its
        cash and its agents' (positions stay open). Returns what was booked."""
        return self.session.collect(farm, amount, reason)

    # -- looking ----------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The session report so far (the same JSON as ``cival paper --report``)."""
        return self.session.report()

    def audit(self) -> ClusterAudit:
        return self.session.audit()

    def wallet_tree(self, exact: bool = False) -> pd.DataFrame:
        """One row per wallet: kind, parent, cash, equity, net P&L (realised + unrealised -
        fees), fees, trades, halted. Money in floats (``exact=True``: Decimals)."""
        report = self.report()
        m = report["master"]
        rows = [_row("master", m["name"], None, m, total=report["ledger"]["total_equity"])]
        for f in report["farms"]:
            rows.append(_row("farm", f["name"], m["name"], f, total=f["total_equity"], halted=f.get("halted")))
            for a in f["agents"]:
                rows.append(_row("agent", a["name"], f["name"], a, total=a["equity"], halted=a.get("halted"), trades=a["trade_count"]))
        tree = pd.DataFrame(rows).set_index("name")
        tree["trades"] = tree["trades"].astype("Int64")  # none for the master and the farms
        return tree if exact else tree.astype(dict.fromkeys(_MONEY, "float64"))

    def goals(self) -> pd.DataFrame:
        goals = self.session.goal_states()
        columns = ["name", "type", "status", "progress", "completed_at", "collected", "on_complete"]
        return pd.DataFrame([{k: g[k] for k in columns} for g in goals], columns=columns).set_index("name")

    def trades(self, exact: bool = False) -> pd.DataFrame:
        """Every agent's closed trades (the backtest's columns, plus farm and agent), oldest
        exit first. Numbers in floats (``exact=True``: Decimals)."""
        frames = []
        for f in self.report()["farms"]:
            for a in f["agents"]:
                if a["trades"]:
                    frame = pd.DataFrame(a["trades"])
                    frame.insert(0, "agent", a["name"])
                    frame.insert(0, "farm", f["name"])
                    frames.append(frame)
        columns = ["farm", "agent", "entry_time", "entry_price", "exit_time", "exit_price", "qty", "fees", "pnl", "return"]
        out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({c: [] for c in columns})
        for column in ("entry_time", "exit_time"):
            out[column] = pd.to_datetime(out[column], utc=True)
        for column in _TRADE_NUMBERS:
            out[column] = out[column].map(Decimal) if exact else out[column].astype("float64")
        out = out.astype({"farm": "object", "agent": "object"})
        return out[columns].sort_values(["exit_time", "farm", "agent"], ignore_index=True)

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


_MONEY = ("cash", "equity", "net_pnl", "fees")
_TRADE_NUMBERS = ("entry_price", "exit_price", "qty", "fees", "pnl", "return")


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
