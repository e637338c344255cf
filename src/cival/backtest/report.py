"""Figures and the self-contained HTML report of a backtest.

The report shows the price with the strategy's indicator lines and the fills, the equity
curve, the drawdown, the metrics and the closed trades (with why each one exited). It
opens anywhere with no network: plotly.js is embedded, gzip-compressed and base64-encoded
(1.9 MB instead of 4.8 MB), and the browser unpacks it with ``DecompressionStream``
(every current browser has it; one that does not says so in place of the chart).

Which bars the charts draw (:func:`kept_bars`): a series of at most ``2 * buckets`` bars
(``buckets`` defaults to :data:`DEFAULT_BUCKETS`, 2,000) is drawn bar for bar. A longer one
is cut into ``buckets`` runs of consecutive bars of (nearly) equal length, and from each
run the charts keep the bars of its lowest and highest close, of its lowest and highest
equity and of its deepest drawdown (min-max decimation: on a chart up to ``buckets``
pixels wide, each column of pixels still reaches the lowest and highest close of its
bars). Whatever the length, these bars are always kept:

* the first and the last bar;
* every bar with a fill (each entry and exit, so every trade marker sits on the line);
* the bars of the highest and lowest close, of the highest high and of the lowest low;
* the peak and the trough of the maximum drawdown.

Every panel (price, indicator lines, equity, drawdown) is drawn at the same kept bars, with
the values those bars have: nothing is averaged or invented. Fill markers are all drawn,
and so are indicator columns drawn as markers (a column with values on fewer than 5 % of
the bars, such as ZigZag pivots). Zooming in shows the kept bars, not every bar;
``buckets=None`` draws every bar. For 119,784 five-minute bars and 2,557 trades the page
is 3.6 MB and written in 0.2 s; every bar: 11.7 MB; every bar as before this rule (dates
as strings, plotly.js uncompressed): 34.5 MB in 14 s (``python bench/report.py``).
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cival.backtest.metrics import format_costs, format_metric, format_open_position, format_trades

if TYPE_CHECKING:  # pragma: no cover
    from cival.backtest.api import BacktestResult
    from cival.backtest.sweep import SweepResult

NOT_PRICE_LEVELS = {"pivot_kind"}
"""Indicator columns that are not prices, so are not drawn over the price."""

DEFAULT_BUCKETS = 2_000
"""Runs of bars a long series is cut into for the charts (see the module docstring)."""

SPARSE = 0.05
"""An indicator column with values on fewer than this share of bars is drawn as markers."""


def source_name(result: BacktestResult) -> str:
    """The data file's name without its directory (``bars`` for a frame with no source)."""
    return Path(str(result.source)).name if result.source else "bars"


def params_text(params: dict[str, Any]) -> str:
    """``name=value, ...``: how ``--param NAME=VALUE`` spells them."""
    return ", ".join(f"{k}={v}" for k, v in params.items())


def kept_bars(result: BacktestResult, buckets: int | None = DEFAULT_BUCKETS) -> np.ndarray:
    """Positions (sorted, unique) of the bars the charts draw, by the rule of this module's
    docstring. ``buckets=None`` keeps every bar."""
    n = len(result.bars)
    if buckets is not None and (not isinstance(buckets, int) or isinstance(buckets, bool) or buckets < 1):
        from cival.backtest.errors import BacktestError

        raise BacktestError(f"buckets must be a whole number >= 1 (or None for every bar), not {buckets!r}")
    if buckets is None or n <= 2 * buckets:
        return np.arange(n)
    close = result.bars["close"].to_numpy(dtype=float)
    equity = result.equity.to_numpy(dtype=float)
    drawdown = _drawdown(result)
    trough = int(np.argmin(drawdown))
    keep = [
        np.array([0, n - 1, int(np.argmax(close)), int(np.argmin(close)), trough, int(np.argmax(equity[: trough + 1]))]),
        np.array([int(np.argmax(result.bars["high"].to_numpy())), int(np.argmin(result.bars["low"].to_numpy()))]),
        fill_bars(result),
    ]
    edges = np.linspace(0, n, buckets + 1).round().astype(np.int64)
    for values in (close, equity):
        keep.extend(_bucket_extremes(values, edges))  # each run's lowest and highest
    keep.append(_bucket_extremes(drawdown, edges)[0])  # each run's deepest drawdown
    return np.unique(np.concatenate(keep))


def fill_bars(result: BacktestResult) -> np.ndarray:
    """Positions of the bars with a fill."""
    positions = result.bars.index.get_indexer(pd.DatetimeIndex(result.simulation.fills["time"]))
    if (positions < 0).any():  # pragma: no cover - fills are made at the bars' own times
        raise AssertionError("a fill's time is not one of the bars'")
    return positions.astype(np.int64)


def _bucket_extremes(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the lowest and highest value in each run ``edges[i]:edges[i + 1]``
    (the first such bar on a tie)."""
    starts, lengths = edges[:-1], np.diff(edges)
    # The runs as rows of a (buckets, longest run) table, a short run padded with its own
    # first bar (which argmin/argmax, taking the first on a tie, then report as itself).
    columns = np.arange(int(lengths.max()))
    index = np.where(columns[None, :] < lengths[:, None], starts[:, None] + columns[None, :], starts[:, None])
    table = values[index]
    rows = np.arange(len(starts))
    lows, highs = index[rows, np.argmin(table, axis=1)], index[rows, np.argmax(table, axis=1)]
    return lows, highs


def _drawdown(result: BacktestResult) -> np.ndarray:
    """Equity over its running peak (the starting cash included), less 1, at every bar."""
    equity = result.equity.to_numpy(dtype=float)
    peak = np.maximum.accumulate(np.concatenate(([result.model.cash], equity)))[1:]
    return equity / peak - 1.0


def _ms(times: Any) -> np.ndarray:
    """Milliseconds since 1970-01-01 UTC (what a plotly date axis takes; far smaller in
    the page than date strings)."""
    index = pd.DatetimeIndex(times)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("ms").asi8.astype(np.float64)


def backtest_figure(result: BacktestResult, buckets: int | None = DEFAULT_BUCKETS) -> Any:
    """Price with indicators and fills, equity, and drawdown, as one plotly figure, drawn
    at the bars :func:`kept_bars` keeps (``buckets=None``: every bar)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    bars, signals, sim = result.bars, result.signals, result.simulation
    kept = kept_bars(result, buckets)
    every = len(kept) == len(bars)
    x_all = _ms(bars.index)
    x = x_all[kept]
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.55, 0.25, 0.20],
        subplot_titles=(
            "price, indicators and fills" + ("" if every else f" ({len(kept):,} of {len(bars):,} bars drawn)"),
            "equity", "drawdown",
        ),
    )
    close = bars["close"].to_numpy(dtype=float)
    fig.add_trace(go.Scattergl(x=x, y=close[kept], name="close", line={"width": 1, "color": "#444"}), row=1, col=1)
    for column in signals.columns:
        if column in ("entry", "exit") or column in NOT_PRICE_LEVELS:
            continue
        values = signals[column].to_numpy(dtype=float)
        present = ~np.isnan(values)
        if present.any():
            if present.mean() < SPARSE:  # sparse levels: every one of them, as markers
                fig.add_trace(go.Scattergl(x=x_all[present], y=values[present], name=column, mode="markers"), row=1, col=1)
            else:
                fig.add_trace(go.Scattergl(x=x, y=values[kept], name=column, mode="lines", line={"width": 1}), row=1, col=1)
    fills = sim.fills
    reasons = result.trades["exit_reason"].to_numpy(dtype=object)
    for side, name, symbol, color in ((1, "buy", "triangle-up", "#2a9d3f"), (-1, "sell", "triangle-down", "#d1342f")):
        chosen = fills[fills["side"] == side]
        if len(chosen):
            why = {} if side > 0 else {"text": reasons, "hovertemplate": "%{y:,.6g} (%{text})"}
            fig.add_trace(
                go.Scattergl(
                    x=_ms(chosen["time"]), y=chosen["price"].to_numpy(dtype=float), mode="markers", name=name,
                    marker={"symbol": symbol, "size": 9, "color": color}, **why,
                ),
                row=1, col=1,
            )
    equity = sim.equity.to_numpy(dtype=float)
    fig.add_trace(go.Scattergl(x=x, y=equity[kept], name="equity", line={"color": "#1f5fbf"}), row=2, col=1)
    fig.add_trace(
        go.Scattergl(x=x, y=_drawdown(result)[kept], name="drawdown", fill="tozeroy", line={"color": "#d1342f", "width": 1}),
        row=3, col=1,
    )
    fig.update_xaxes(type="date", hoverformat="%Y-%m-%d %H:%M")
    fig.update_yaxes(tickformat=".0%", row=3, col=1)
    fig.update_layout(
        height=900, hovermode="x unified", legend={"orientation": "h", "y": 1.09},
        title=f"{result.strategy} ({params_text(result.params.model_dump())}) on {source_name(result)}",
        margin={"t": 130, "l": 60, "r": 30, "b": 40},
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


def _figure_json(fig: Any) -> str:
    """The figure as JSON for the page, its line traces' shared dates stored once (as
    ``kept_x``; the loader puts them back), and no ``<`` that could end the script."""
    figure = json.loads(fig.to_json())
    shared = figure["data"][0]["x"]  # the close line's: every line trace is drawn at the kept bars
    for trace in figure["data"]:
        if trace.get("x") == shared:
            trace["x"] = "kept_x"
    figure["kept_x"] = shared
    return json.dumps(figure, separators=(",", ":")).replace("<", "\\u003c")


@functools.lru_cache(maxsize=1)
def _packed_plotlyjs() -> str:
    """plotly.js, gzip-compressed (fixed timestamp: the same bytes every time), in base64."""
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")


# Unpacks plotly.js, runs it, then draws the figure; says why in place of the chart if it cannot.
_LOADER = """(async () => {
  const chart = document.getElementById("chart");
  try {
    if (typeof DecompressionStream === "undefined") {
      throw new Error("this browser cannot unpack the embedded plotly.js (no DecompressionStream); open the report in a current browser");
    }
    const packed = atob(document.getElementById("plotlyjs-gzip").textContent.trim());
    const bytes = new Uint8Array(packed.length);
    for (let i = 0; i < packed.length; i++) bytes[i] = packed.charCodeAt(i);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const code = document.createElement("script");
    code.textContent = await new Response(stream).text();
    document.head.appendChild(code);
    const figure = JSON.parse(document.getElementById("figure").textContent);
    for (const trace of figure.data) if (trace.x === "kept_x") trace.x = figure.kept_x;
    chart.textContent = "";
    await Plotly.newPlot(chart, figure.data, figure.layout, {responsive: true});
  } catch (error) {
    chart.textContent = "The chart could not be drawn: " + error.message;
  }
})();"""


def write_report(result: BacktestResult, path: str | os.PathLike[str], buckets: int | None = DEFAULT_BUCKETS) -> None:
    """Write a self-contained HTML report (plotly.js embedded; no network needed). The
    charts draw the bars :func:`kept_bars` keeps (``buckets=None``: every bar); the
    tables are complete."""
    figure_json = _figure_json(backtest_figure(result, buckets))
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(format_metric(k, v))}</td></tr>" for k, v in result.metrics.items()
    )
    costs = format_costs(result.model.model_dump())
    trades = format_trades(result.trades)
    held = result.simulation.open_position
    still_open = ""
    if held is not None:
        still_open = f"<p>Open at the end of the data (not a trade): {html.escape(format_open_position(held))}.</p>"
    name = html.escape(source_name(result))
    strategy = html.escape(result.strategy)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{strategy} on {name}: backtest</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
th {{ background: #f5f5f5; text-align: left; }}
#chart {{ min-height: 900px; }}
</style></head><body>
<h1>{strategy} on {name}</h1>
<p>parameters: {html.escape(params_text(result.params.model_dump()))}; costs: {html.escape(costs)}.
A signal at a bar's close fills at the next bar's open.</p>
<h2>metrics</h2><table>{rows}</table>
<div id="chart">Drawing the chart&hellip;</div>
<script type="application/json" id="figure">{figure_json}</script>
<script type="text/plain" id="plotlyjs-gzip">{_packed_plotlyjs()}</script>
<script>window.PlotlyConfig = {{MathJaxConfig: "local"}};
{_LOADER}</script>
<h2>closed trades ({len(trades)})</h2>
<p>exit_reason: <b>signal</b> (the strategy's exit signal, filled at the next open),
<b>stop-loss</b> or <b>take-profit</b> (the stop's level was reached).</p>
{still_open}
{trades.to_html(index=False, border=0)}
</body></html>"""
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(page)
    except OSError as exc:
        from cival.core.errors import CivalError

        raise CivalError(f"cannot write the report {path}: {exc.strerror or exc}") from None


__all__ = ["DEFAULT_BUCKETS", "backtest_figure", "fill_bars", "kept_bars", "sweep_heatmap", "write_report"]
