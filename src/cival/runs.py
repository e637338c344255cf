"""Runs in the store: where a session persists, what it records when it starts and ends,
and rebuilding its report from the store alone.

A paper session is a *run*: its id (UTC start time and a random suffix) is printed when
it starts. The run's row keeps its config and what the report needs besides the books
(``meta``: symbol, data, bars, first and last bar, ...). When it starts the session
writes the registry (the seed's ``master_wallets``, ``farms``, ``agent_configs``,
``goals``, ``agent_farm_assignments``, ``farm_goal_assignments``) and the events that
announce it; every node then journals itself (:mod:`cival.actors.journal`).

:func:`rebuild_report` restores every node of a run from the store, in this process,
with the same code an actor restarted after a crash uses, and makes the session report
from them: key for key and value for value what the live run wrote.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from cival.actors.agent import dec, iso
from cival.config import ClusterConfig, FileData, config_from_dict
from cival.core.events import (
    AgentFarmAssignmentPayload,
    EventDraft,
    FarmCreatedPayload,
    GoalAssignmentPayload,
    GoalCreatedPayload,
    RunFinishedPayload,
    RunStartedPayload,
)
from cival.core.urls import redact
from cival.core.wallets import MASTER, agent_ref, farm_ref
from cival.store.base import JournalBatch, Store, StoreLocation, locate, new_run_id


def store_location(config: ClusterConfig, store: Store | StoreLocation | str | None = None) -> StoreLocation:
    """Where a session of ``config`` persists: ``store`` if given (a Store, a location, or a
    PostgreSQL URL), else ``storage.url``, else ``DATABASE_URL``, else the embedded file
    (``storage.path``, else in the user's data directory)."""
    if isinstance(store, StoreLocation):
        return store
    if isinstance(store, Store):
        return store.location
    if isinstance(store, str):
        return locate(url=store)
    path = config.storage_path()
    return locate(config.storage.url, path)


def config_record(config: ClusterConfig) -> dict[str, Any]:
    """The config as stored with a run and sent in its ``run_started`` event: the data path
    made absolute, and the service URLs redacted (:func:`cival.core.urls.redact`). A
    validated config holds no secret in them; one built around validation must not leak
    it either."""
    raw = config.model_dump(mode="json")
    if isinstance(config.data, FileData):
        raw["data"]["path"] = str(config.data_path())
    if raw.get("storage", {}).get("path") and config.storage_path() is not None:
        raw["storage"]["path"] = str(config.storage_path())
    for section in ("storage", "streams"):
        url = raw.get(section, {}).get("url")
        if url:
            raw[section]["url"] = redact(url)
    return raw


def start_run(
    store: Store,
    config: ClusterConfig,
    spec: Any,
    *,
    mode: str,
    source: str | None,
    streams: str,
    inline: bool | None,
    run_id: str | None = None,
) -> str:
    """Record a new run with its registry and its opening events; returns its id."""
    run_id = run_id or new_run_id()
    raw = config_record(config)
    store.create_run(config.name, mode, raw, run_id=run_id)
    meta = {"symbol": spec.symbol, "data": source, "inline": inline, "mode": mode, "store": store.kind, "streams": streams}
    store.update_run(run_id, meta=meta)
    now = datetime.now(UTC)
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in (
        "master_wallets", "farms", "agent_configs", "goals", "agent_farm_assignments", "farm_goal_assignments")}
    events: list[EventDraft] = []
    wallets = [{"ref": MASTER, "kind": "master", "parent": None}]
    master = config.master
    rows["master_wallets"].append(
        {"run_id": run_id, "name": master.name, "currency": master.base_currency, "initial_deposit": master.initial_deposit, "cash": Decimal(0)}
    )
    goals_of: dict[str, list[str]] = {}
    for goal in config.goals:
        for a in goal.assign:
            members = [x.name for f in config.farms if f.name == a.farm for x in f.agents] if a.farm else [a.agent]
            for name in members:
                goals_of.setdefault(name, []).append(goal.name)
    for farm_spec in spec.farms:
        farm = farm_spec.config
        mode_of = "inline" if farm_spec.inline else "actors"
        allocation = farm.allocation.model_dump(mode="json")
        rows["farms"].append(
            {"run_id": run_id, "name": farm.name, "farm_type": farm.type, "agents_mode": mode_of, "allocation": allocation, "status": "active"}
        )
        wallets.append({"ref": farm_ref(farm.name), "kind": "farm", "parent": MASTER})
        data = FarmCreatedPayload(farm=farm.name, farm_type=farm.type, agents_mode=mode_of, allocation=allocation, agents=[a.name for a in farm_spec.agents])
        events.append(EventDraft(f"farm:{farm.name}:created", farm_ref(farm.name), now, data))
        for agent in farm_spec.agents:
            params = json.loads(json.dumps(agent.params, default=str))
            rows["agent_configs"].append({
                "run_id": run_id, "name": agent.name, "farm": farm.name, "strategy": agent.strategy, "params": params,
                "symbol": agent.symbol, "wallet": agent_ref(agent.name), "allocated_funds": Decimal(0),
                "assigned_goals": goals_of.get(agent.name, []), "status": "active",
            })
            rows["agent_farm_assignments"].append({"run_id": run_id, "agent": agent.name, "farm": farm.name})
            wallets.append({"ref": agent_ref(agent.name), "kind": "agent", "parent": farm_ref(farm.name)})
            data = AgentFarmAssignmentPayload(agent=agent.name, farm=farm.name, strategy=agent.strategy, params=params, symbol=agent.symbol)
            events.append(EventDraft(f"agent:{agent.name}:assigned", agent_ref(agent.name), now, data))
    for goal in config.goals:
        raw_goal = goal.model_dump(mode="json")
        rows["goals"].append({
            "run_id": run_id, "name": goal.name, "goal_type": goal.type, "target": raw_goal["target"], "on_complete": goal.on_complete,
            "deadline": raw_goal.get("deadline"), "status": "active", "progress": Decimal(0), "collected": Decimal(0),
        })
        entity = f"goal:{goal.name}"
        data = GoalCreatedPayload(goal=goal.name, goal_type=goal.type, target=raw_goal["target"], on_complete=goal.on_complete,
                                  deadline=raw_goal.get("deadline"))
        events.append(EventDraft(f"goal:{goal.name}:created", entity, now, data))
        for i, a in enumerate(goal.assign):
            weight = Decimal(str(a.weight))
            rows["farm_goal_assignments"].append({"run_id": run_id, "goal": goal.name, "farm": a.farm, "agent": a.agent, "weight": weight})
            data = GoalAssignmentPayload(goal=goal.name, farm=a.farm, agent=a.agent, weight=weight)
            events.append(EventDraft(f"goal:{goal.name}:assigned:{i}", entity, now, data))
    started = RunStartedPayload(
        cluster=config.name, mode=mode, symbol=spec.symbol, data=source, store=store.kind, streams=streams,
        currency=master.base_currency, wallets=wallets, config=raw,
    )
    events.insert(0, EventDraft("run:started", "run", now, started))
    store.commit(run_id, JournalBatch(source="run", version=1, rows=rows, events=events))
    return run_id


def finish_run(store: Store, run_id: str, report: dict[str, Any], status: str) -> None:
    """Record how a run ended: its report's own figures in ``meta`` and a ``run_finished`` event."""
    meta = {k: report[k] for k in ("bars", "start", "end", "interrupted", "generated_at", "mode", "symbol", "data")}
    data = RunFinishedPayload(
        status=status,
        bars=report["bars"],
        start=report["start"],
        end=report["end"],
        total_equity=report["ledger"]["total_equity"],
        audit_ok=report["ledger"]["audit_ok"],
    )
    at = datetime.now(UTC)
    store.commit(run_id, JournalBatch(source="run", version=2, events=[EventDraft("run:finished", "run", at, data)]))
    store.update_run(run_id, status=status, meta=meta, finished=True)


def rebuild_report(store: Store, run_id: str) -> tuple[dict[str, Any], Any]:
    """The session report of a run and its cluster audit, from the store alone (see the
    module docstring). Books altered in the store (a broken hash chain, rows removed, fills
    that disagree with the books) do not stop it: its audit fails and lists them."""
    from cival.actors.nodes import cluster_spec
    from cival.runtime import LocalCluster, session_report

    record = store.run(run_id)
    meta = record.meta
    # Where the run was stored and streamed plays no part in its report; a URL it recorded
    # may be redacted (or, from before URLs were checked, hold a secret): leave them out.
    stored = {k: v for k, v in record.config.items() if k not in ("storage", "streams")}
    config = config_from_dict(stored, source=f"run {record.id}")
    spec = cluster_spec(config, symbol=meta.get("symbol"), inline=meta.get("inline"))
    cluster = LocalCluster(spec, store=store, run_id=record.id)
    missing = []
    tampered: list[str] = []
    for journal in cluster.journals.values():
        if store.node_state(record.id, journal.source) is None:
            missing.append(journal.source)
            continue
        journal.restore(strict=False)
        tampered += journal.problems
    if missing and len(missing) == len(cluster.journals):
        from cival.store.base import StoreError

        raise StoreError(f"run {record.id} has no journaled state (it stopped before its cluster was funded)")
    cluster.mode = meta.get("mode", record.mode)
    first = pd.Timestamp(meta["start"]) if meta.get("start") else None
    last = pd.Timestamp(meta["end"]) if meta.get("end") else None
    report, audit = session_report(
        cluster, config, spec, meta.get("data"), int(meta.get("bars", 0)), first, last, bool(meta.get("interrupted", record.status == "interrupted"))
    )
    if meta.get("generated_at"):
        report["generated_at"] = meta["generated_at"]
    if tampered:
        from dataclasses import replace

        audit = replace(audit, ok=False, problems=(*audit.problems, *tampered))
        report["ledger"]["audit_ok"] = False
        report["ledger"]["problems"] = list(audit.problems)
    return report, audit


def interrupted_report(
    store: Store, run_id: str, bars: int, first: pd.Timestamp | None, last: pd.Timestamp | None
) -> tuple[dict[str, Any], Any]:
    """The report of an interrupted run whose nodes can no longer answer (its Ray stopped
    with it): how far the session got (``bars``, ``first`` and ``last`` bar) recorded, then
    the report rebuilt from the store, as :func:`rebuild_report` does later."""
    store.update_run(run_id, meta={
        "bars": bars,
        "start": iso(first) if first is not None else None,
        "end": iso(last) if last is not None else None,
        "interrupted": True,
        "generated_at": iso(datetime.now(UTC)),
    })
    return rebuild_report(store, run_id)


def _json_safe(value: Any) -> Any:
    """JSON values for a JSON column: NaN and infinities become null, numpy scalars plain."""
    import math

    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, Decimal):
        return dec(value)
    return value


def save_backtest(store: Store, result: Any) -> str:
    """Keep a backtest's summary (parameters, costs, metrics) in ``backtest_results``; returns its id."""
    summary = result.summary()
    result_id = "bt-" + new_run_id()
    metrics = {k: v for k, v in summary.items() if k not in ("strategy", "params", "data", "costs")}
    store.save("backtest_results", [{
        "id": result_id, "created_at": datetime.now(UTC), "strategy": summary["strategy"],
        "params": _json_safe(summary["params"]), "data": str(summary["data"]), "costs": _json_safe(summary["costs"]),
        "metrics": _json_safe(metrics), "trades": int(metrics.get("trades", len(result.trades))),
    }])
    return result_id


def save_sweep(store: Store, result: Any) -> str:
    """Keep a sweep's every combination (ranked) in ``sweep_results``; returns its id."""
    result_id = "sw-" + new_run_id()
    ranked = result.ranked()
    grid = {p: sorted(_json_safe(ranked[p].unique().tolist())) for p in result.params}
    store.save("sweep_results", [{
        "id": result_id, "created_at": datetime.now(UTC), "strategy": result.strategy, "data": str(result.source),
        "grid": grid, "metric": result.metric, "combinations": len(ranked), "best": _json_safe(result.best()),
        "results": _json_safe(ranked.to_dict("records")),
    }])
    return result_id


def run_summary(record: Any) -> dict[str, Any]:
    """A run as ``cival runs --json`` lists it."""
    meta = record.meta
    return {
        "id": record.id,
        "name": record.name,
        "mode": record.mode,
        "status": record.status,
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at) if record.finished_at else None,
        "symbol": meta.get("symbol"),
        "bars": meta.get("bars"),
        "start": meta.get("start"),
        "end": meta.get("end"),
        "events": record.events,
    }

__all__ = ["config_record", "finish_run", "interrupted_report", "rebuild_report", "run_summary", "save_backtest", "save_sweep", "start_run", "store_location"]
