"""Figures and the self-contained HTML report of a backtest.

The report embeds plotly.js, so the file opens anywhere with no network. It shows the
price with the strategy's indicator lines and the fills, the equity curve, the drawdown
and the metrics table.
"""

from __future__ import annotations

import html
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from cival.backtest.metrics import format_costs, format_metric, format_trades

if TYPE_CHECKING:  # pragma: no cover
    from cival.backtest.api import BacktestResult
    from cival.backtest.sweep import SweepResult

NOT_PRICE_LEVELS = {"pivot_kind"}
"""Indicator columns that are not prices, so are not drawn over the price."""


def backtest_figure(result: BacktestResult) -> Any:
    """Price with indicators and fills, equity, and drawdown, as one plotly figure."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    bars, signals, sim = result.bars, result.signals, result.simulation
    x = bars.index
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.55, 0.25, 0.20],
        subplot_titles=("price, indicators and fills", "equity", "drawdown"),
    )
    fig.add_trace(go.Scattergl(x=x, y=bars["close"], name="close", line={"width": 1, "color": "#444"}), row=1, col=1)
    for column in signals.columns:
        if column in result.signals.columns and column not in ("entry", "exit") and column not in NOT_PRICE_LEVELS:
            values = signals[column]
            if values.notna().any():
                mode = "markers" if values.notna().mean() < 0.05 else "lines"
                fig.add_trace(go.Scattergl(x=x, y=values, name=column, mode=mode, line={"width": 1}), row=1, col=1)
    fills = sim.fills
    for side, name, symbol, color in ((1, "buy", "triangle-up", "#2a9d3f"), (-1, "sell", "triangle-down", "#d1342f")):
        chosen = fills[fills["side"] == side]
        if len(chosen):
            fig.add_trace(
                go.Scattergl(
                    x=chosen["time"], y=chosen["price"], mode="markers", name=name,
                    marker={"symbol": symbol, "size": 9, "color": color},
                ),
                row=1, col=1,
            )
    equity = sim.equity
    fig.add_trace(go.Scattergl(x=x, y=equity, name="equity", line={"color": "#1f5fbf"}), row=2, col=1)
    peak = np.maximum.accumulate(np.concatenate(([result.model.cash], equity.to_numpy())))[1:]
    drawdown = equity.to_numpy() / peak - 1.0
    fig.add_trace(
        go.Scattergl(x=x, y=drawdown, name="drawdown", fill="tozeroy", line={"color": "#d1342f", "width": 1}),
        row=3, col=1,
    )
    fig.update_yaxes(tickformat=".0%", row=3, col=1)
    fig.update_layout(
        height=900, hovermode="x unified", legend={"orientation": "h", "y": 1.09},
        title=f"{result.strategy} {result.params.model_dump()}", margin={"t": 130, "l": 60, "r": 30, "b": 40},
    )
    return fig


def sweep_heatmap(result: SweepResult, x: str, y: str, metric: str | None = None) -> Any:
    """A heatmap of ``metric`` over two swept parameters (other parameters: their best value)."""
    import plotly.graph_objects as go

    metric = metric or result.metric
    table = result.table
    for p in (x, y):
        if p not in result.params:
            from cival.backtest.errors import SweepError

            raise SweepError(f"heatmap axis {p!r} is not a swept parameter; choose from {', '.join(result.params)}")
    others = {p: v for p, v in result.best().items() if p not in (x, y)}
    subset = table
    for p, v in others.items():
        subset = subset[subset[p] == v]
    grid = subset.pivot_table(index=y, columns=x, values=metric, aggfunc="first")
    fig = go.Figure(
        go.Heatmap(z=grid.to_numpy(), x=[str(c) for c in grid.columns], y=[str(i) for i in grid.index],
                   colorbar={"title": metric})
    )
    fixed = ", ".join(f"{p}={v}" for p, v in others.items())
    fig.update_layout(title=f"{result.strategy}: {metric} by {x} and {y}" + (f" ({fixed})" if fixed else ""),
                      xaxis_title=x, yaxis_title=y)
    return fig


def write_report(result: BacktestResult, path: str | os.PathLike[str]) -> None:
    """Write a self-contained HTML report (plotly.js embedded; no network needed)."""
    fig = backtest_figure(result)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(format_metric(k, v))}</td></tr>" for k, v in result.metrics.items()
    )
    costs = format_costs(result.model.model_dump())
    trades = format_trades(result.trades)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(result.strategy)} backtest</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
th {{ background: #f5f5f5; text-align: left; }}
</style></head><body>
<h1>{html.escape(result.strategy)} on {html.escape(str(result.source or "bars"))}</h1>
<p>parameters {html.escape(str(result.params.model_dump()))}; costs: {html.escape(costs)}.
A signal at a bar's close fills at the next bar's open.</p>
<h2>metrics</h2><table>{rows}</table>
{fig.to_html(full_html=False, include_plotlyjs=True)}
<h2>closed trades ({len(trades)})</h2>
{trades.to_html(index=False, border=0)}
</body></html>"""
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(page)
    except OSError as exc:
        from cival.core.errors import CivalError

        raise CivalError(f"cannot write the report {path}: {exc.strerror or exc}") from None


__all__ = ["backtest_figure", "sweep_heatmap", "write_report"]
