"""Runs and results in the store, as the commands list them: a run's summary, and the
backtest and sweep results ``--save`` keeps. (A run's lifecycle, from its start to its
report rebuilt from the store, is :mod:`cival.session`'s.)

What ``cival runs`` lists is of three kinds (:data:`KINDS`): ``paper`` sessions (the
``runs`` table), and the ``backtest`` and ``sweep`` results kept by ``--save``
(``backtest_results``, ``sweep_results``; ids ``bt-...`` and ``sw-...``), newest first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cival.core.fmt import iso_utc as iso
from cival.core.fmt import plain_decimal as dec
from cival.store.base import Store, StoreError, new_run_id

KINDS = ("paper", "backtest", "sweep")
"""What ``cival runs`` lists: paper sessions, saved backtests, saved sweeps."""

_TABLES = {"backtest": "backtest_results", "sweep": "sweep_results"}
_PREFIXES = {"backtest": "bt-", "sweep": "sw-"}


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
    """A run as ``cival runs --json`` lists it: a run whose driver is gone (no live lease)
    is ``interrupted``, whatever it last recorded."""
    from cival.session import run_status

    meta = record.meta
    return {
        "kind": "paper",
        "id": record.id,
        "name": record.name,
        "mode": record.mode,
        "status": run_status(record),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at) if record.finished_at else None,
        "symbol": meta.get("symbol"),
        "bars": meta.get("bars"),
        "start": meta.get("start"),
        "end": meta.get("end"),
        "events": record.events,
    }


_LISTED = {
    # What a listing reads of a saved result (not a sweep's every combination).
    "backtest": ("id", "created_at", "strategy", "params", "data", "metrics", "trades"),
    "sweep": ("id", "created_at", "strategy", "data", "grid", "metric", "combinations", "best"),
}


def result_summary(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """A saved backtest or sweep as ``cival runs --json`` lists it: ``started_at`` is when
    it was saved; ``status`` is ``saved``."""
    out: dict[str, Any] = {
        "kind": kind,
        "id": row["id"],
        "name": row["strategy"],
        "status": "saved",
        "started_at": iso(row["created_at"]),
        "strategy": row["strategy"],
        "data": row["data"],
    }
    if kind == "backtest":
        metrics = row["metrics"]
        out.update(
            params=row["params"], bars=metrics.get("bars"), start=metrics.get("start"), end=metrics.get("end"),
            trades=row["trades"], total_return=metrics.get("total_return"), final_equity=metrics.get("final_equity"),
        )
    else:
        out.update(grid=row["grid"], metric=row["metric"], combinations=row["combinations"], best=row["best"])
    return out


def list_runs(store: Store, kinds: Any = KINDS, limit: int | None = None) -> list[dict[str, Any]]:
    """Paper runs and saved results of ``kinds``, newest first (at most ``limit``), as
    ``cival runs --json`` lists them; none in an empty store (see :meth:`Store.readable`)."""
    if not store.readable():
        return []
    listed = [run_summary(r) for r in store.runs()] if "paper" in kinds else []
    for kind, table in _TABLES.items():
        if kind in kinds:
            listed += [result_summary(kind, row) for row in store.rows(table, columns=_LISTED[kind])]
    listed.sort(key=lambda r: (datetime.fromisoformat(r["started_at"]), r["id"]), reverse=True)
    return listed[:limit]


def result_kind(result_id: str) -> str | None:
    """``backtest`` or ``sweep`` for the id (or a prefix of it) of a saved result (``bt-...``,
    ``sw-...``); None for a run's."""
    # A run's id starts with its start time (a digit): ``bt`` or ``sw`` alone names a saved result too.
    return next((kind for kind, prefix in _PREFIXES.items() if result_id.startswith(prefix[:2])), None)


def saved_result(store: Store, result_id: str) -> tuple[str, dict[str, Any]]:
    """(kind, record) of a saved backtest or sweep by id (a unique prefix is enough): the
    record as stored, JSON-ready. StoreError naming what to do if there is none, or more."""
    kind = result_kind(result_id)
    if kind is None:
        raise StoreError(f"{result_id!r} is not the id of a saved backtest (bt-...) or sweep (sw-...)")
    table = _TABLES[kind]
    ids = [r["id"] for r in store.rows(table, columns=["id"])] if store.readable() else []
    found = [i for i in ids if i == result_id] or [i for i in ids if i.startswith(result_id)]
    if not found:
        raise StoreError(f"no saved {kind} {result_id!r} in the {store.kind} store; `cival runs --kind {kind}` lists them")
    if len(found) > 1:
        raise StoreError(f"{result_id!r} matches {len(found)} saved {kind}s ({', '.join(found[:5])}); give more of the id")
    (row,) = store.rows(table, where={"id": found[0]})
    return kind, {"kind": kind, **_json_safe(row)}


__all__ = ["KINDS", "list_runs", "result_kind", "result_summary", "run_summary", "save_backtest", "save_sweep", "saved_result"]
