"""Runs and results in the store, as the commands list them: a run's summary, and the
backtest and sweep results ``--save`` keeps. (A run's lifecycle, from its start to its
report rebuilt from the store, is :mod:`cival.session`'s.)

"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cival.core.fmt import iso_utc as iso
from cival.core.fmt import plain_decimal as dec
from cival.store.base import Store, new_run_id


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

__all__ = ["run_summary", "save_backtest", "save_sweep"]
