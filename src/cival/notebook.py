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

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from cival.actors.books import ClusterAudit, combine
from cival.actors.nodes import FarmUpdate, cluster_spec
from cival.config import ClusterConfig, load_config
from cival.core.bar import BarBatch, timestamp_of
from cival.core.errors import CivalError
from cival.core.messages import Transfer
from cival.runtime import (
    DEFAULT_BATCH,
    Checkpoints,
    LocalCluster,
    RayCluster,
    needs_checkpoints,
    replay_batches,
    session_bars,
    session_report,
)


class Cluster:
    """A funded cluster and the bars it has yet to see."""

    def __init__(
        self,
        config: ClusterConfig,
        bars: pd.DataFrame | None = None,
        ray: bool = False,
        store: Any = None,
        persist: bool = True,
        events: Any = None,
    ) -> None:
        from cival.events.bus import RedisBus, open_bus
        from cival.events.relay import Relay
        from cival.runs import start_run, store_location
        from cival.store.base import Store, new_run_id

        self.config = config
        self.spec = cluster_spec(config)
        self.run_id: str | None = None
        """The run this session is in the store (None with ``persist=False``)."""
        self.events: Any = None
        """The bus the run's events go to (an InProcessBus by default: ``.subscribe(fn)``)."""
        self._store: Store | None = None
        self._own_store = False
        self._relay: Relay | None = None
        where = None
        if persist:
            where = store_location(config, store)
            self._store = store if isinstance(store, Store) else where.open()
            self._own_store = self._store is not store
            self._store.migrate() if config.storage.migrate else self._store.check_schema()
            self.run_id = new_run_id()
            self.events = events if events is not None else open_bus(config.streams.url, self.run_id, buffer=config.streams.buffer)
            streams = "redis" if isinstance(self.events, RedisBus) else "in-process"
            start_run(self._store, config, self.spec, mode="ray" if ray else "local", source=None, streams=streams, inline=None,
                      run_id=self.run_id)
            self._relay = Relay(where, self.run_id, self.events)
        self._cluster: LocalCluster | RayCluster = (
            RayCluster(self.spec, where=where, run_id=self.run_id) if ray else LocalCluster(self.spec, self._store, self.run_id)
        )
        self._cluster.start()
        self._cluster.fund()
        self.bars = bars if bars is not None else session_bars(config)
        self._every = config.checkpoint.every_bars if needs_checkpoints(config) else None
        self._checkpoints = Checkpoints(self._every)
        self._batches: Iterator[BarBatch] = replay_batches(self.bars, "max", self._every or DEFAULT_BATCH)
        self._buffer: BarBatch | None = None
        self.seen = 0
        self.last: pd.Timestamp | None = None
        self.first: pd.Timestamp | None = None
        self.latest: list[FarmUpdate] = []

    @classmethod
    def from_config(cls, path: str | Path, bars: pd.DataFrame | None = None, ray: bool = False, **kw: Any) -> Cluster:
        """``kw``: ``store``, ``persist`` and ``events``, as for :func:`cival.runtime.run_paper`."""
        return cls(load_config(path), bars=bars, ray=ray, **kw)

    # -- running ----------------------------------------------------------------------

    def step(self, n: int = 1) -> Cluster:
        """Feed the next ``n`` bars (fewer at the end of the data)."""
        if n < 1:
            raise CivalError(f"step needs at least 1 bar, got {n}")
        left = n
        while left > 0:
            batch = self._next(left)
            if batch is None:
                break
            self._feed(batch)
            left -= len(batch)
        return self

    def run(self) -> Cluster:
        """Feed every bar left."""
        while (batch := self._next(None)) is not None:
            self._feed(batch)
        return self

    @property
    def done(self) -> bool:
        return self.seen >= len(self.bars)

    def _next(self, most: int | None) -> BarBatch | None:
        batch = self._buffer if self._buffer is not None else next(self._batches, None)
        self._buffer = None
        if batch is None:
            return None
        if most is not None and len(batch) > most:  # keep the rest for later: checkpoints stay aligned
            batch, self._buffer = batch.slice(0, most), batch.slice(most, len(batch))
        return batch

    def _feed(self, batch: BarBatch) -> None:
        updates = self._cluster.wait(self._cluster.submit(batch))
        self.latest = updates
        self.seen += len(batch)
        if self.first is None:
            self.first = pd.Timestamp(int(batch.ts[0]), tz="UTC")
        self.last = pd.Timestamp(int(batch.ts[-1]), tz="UTC")
        self._checkpoints.after_batch(self._cluster, updates, self.seen, timestamp_of(int(batch.ts[-1])), self.done)
        if self._relay is not None:
            self._relay.nudge()

    # -- acting -----------------------------------------------------------------------

    def halt(self, entity: str, reason: str = "halted by hand") -> None:
        """Halt ``farm:<name>`` or ``agent:<name>`` (exit at the next open, no new entries)."""
        self._cluster.halt(_ref(entity, self.spec), reason)

    def resume(self, entity: str, reason: str = "resumed by hand") -> None:
        self._cluster.halt(_ref(entity, self.spec), reason, resume=True)

    def allocate(self, farm: str, amount: Decimal | str) -> None:
        """Allocate ``amount`` of the master's cash to ``farm``; the farm splits it across its
        agents by its policy. The same checks as any allocation: no overdraft, no negative."""
        value = Decimal(amount)
        if not value > 0:
            raise CivalError(f"an allocation must be positive, got {amount}")
        if farm not in {f.name for f in self.spec.farms}:
            raise CivalError(f"no farm named {farm!r}; farms: {', '.join(f.name for f in self.spec.farms)}")
        self._cluster.allocate(farm, value)

    def set_policy(self, farm: str, policy: dict[str, Any]) -> None:
        """Give ``farm`` another allocation policy (as in a config), from now on: it applies
        to new allocations and to its scheduled rebalancing."""
        self._cluster.set_policy(farm, policy)

    def collect(self, farm: str, amount: Decimal | str | None = None, reason: str = "by hand") -> Transfer:
        """Bring a farm's money back to the master: ``amount`` of its own cash, or (None)
        all its agents' cash and its own."""
        return self._cluster.collect(farm, Decimal(amount) if amount is not None else None, reason)

    # -- looking ----------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """The session report so far (the same JSON as ``cival paper --report``)."""
        report, _ = session_report(self._cluster, self.config, self.spec, None, self.seen, self.first, self.last, False)
        return report

    def audit(self) -> ClusterAudit:
        return combine(self._cluster.summaries(), self.spec.currency)

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
        goals = self._cluster.goal_states()
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
        from cival.runs import finish_run

        if self._store is None and self._relay is None:
            self._cluster.close()
            return  # closed before (or never persisted)
        try:
            if self._store is not None and self.run_id is not None:
                finish_run(self._store, self.run_id, self.report(), "finished" if self.done else "interrupted")
        finally:
            self._cluster.close()
            if self._relay is not None:
                self._relay.close()
                self._relay = None
            if self._store is not None and self._own_store:
                self._store.close()
            self._store = None

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Cluster {self.config.name!r}: {self.seen:,}/{len(self.bars):,} bars, {self._cluster.mode}>"


def _ref(entity: str, spec: Any) -> str:
    if ":" in entity:
        return entity
    farms = {f.name for f in spec.farms}
    agents = {a.name for a in spec.agents}
    if entity in farms:
        return f"farm:{entity}"
    if entity in agents:
        return f"agent:{entity}"
    raise CivalError(f"no farm or agent named {entity!r}; farms: {', '.join(sorted(farms))}; agents: {', '.join(sorted(agents))}")


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
