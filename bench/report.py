"""HTML report size and write time, before and after the charts keep only some bars.

For each data file, one backtest (alligator by default: the strategy with the most
trades, so the most fill markers), then three writers, each timed ``--repeat`` times
(median) in this one process:

* ``before``: the writer as it was, reproduced below: every bar of every series, dates
  as strings, plotly.js embedded as is (4.8 MB);
* ``after``: ``write_report`` as it is: the bars ``cival.backtest.report.kept_bars``
  keeps (every fill, the extremes, min-max per run of bars), plotly.js compressed;
* ``every bar``: ``write_report(..., buckets=None)``: the new page with every bar.

Prints the size (MB, 10^6 bytes) and the median write time of each. Data: the real
BTC/USDT bars in ../shared/data (1 hour: 12,556 bars; 5 minutes: 119,784 bars), or the
files given with --data.

Usage: python bench/report.py [--data FILE ...] [--strategy alligator] [--repeat 3]
"""

from __future__ import annotations

import argparse
import html
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "intraday_crypto"
DEFAULT_FILES = [DATA / "binance_BTCUSDT_1h.csv", DATA / "binance_BTCUSDT_5m.csv"]


# -- the writer before: every bar ------------------------------------------------------------


def before_figure(result: Any) -> Any:
    """The figure as it was: every bar of every series, dates as datetimes."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from cival.backtest.report import NOT_PRICE_LEVELS

    bars, signals, sim = result.bars, result.signals, result.simulation
    x = bars.index
    fig = make_subplots(
        rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.03, row_heights=[0.55, 0.25, 0.20],
        subplot_titles=("price, indicators and fills", "equity", "drawdown"),
    )
    fig.add_trace(go.Scattergl(x=x, y=bars["close"], name="close", line={"width": 1, "color": "#444"}), row=1, col=1)
    for column in signals.columns:
        if column not in ("entry", "exit") and column not in NOT_PRICE_LEVELS:
            values = signals[column]
            if values.notna().any():
                mode = "markers" if values.notna().mean() < 0.05 else "lines"
                fig.add_trace(go.Scattergl(x=x, y=values, name=column, mode=mode, line={"width": 1}), row=1, col=1)
    fills = sim.fills
    for side, name, symbol, color in ((1, "buy", "triangle-up", "#2a9d3f"), (-1, "sell", "triangle-down", "#d1342f")):
        chosen = fills[fills["side"] == side]
        if len(chosen):
            fig.add_trace(
                go.Scattergl(x=chosen["time"], y=chosen["price"], mode="markers", name=name,
                             marker={"symbol": symbol, "size": 9, "color": color}),
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


def before_write_report(result: Any, path: str) -> None:
    """The page as it was (plotly.js embedded uncompressed)."""
    from cival.backtest.report import _fmt

    fig = before_figure(result)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in result.metrics.items()
    )
    trades = result.trades.copy()
    for column in ("entry_time", "exit_time"):
        trades[column] = pd.to_datetime(trades[column]).dt.strftime("%Y-%m-%d %H:%M")
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(result.strategy)} backtest</title></head><body>
<h1>{html.escape(result.strategy)} on {html.escape(str(result.source or "bars"))}</h1>
<h2>metrics</h2><table>{rows}</table>
{fig.to_html(full_html=False, include_plotlyjs=True)}
<h2>closed trades ({len(trades)})</h2>
{trades.to_html(index=False, float_format=lambda v: f"{v:,.6g}", border=0)}
</body></html>"""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(page)


# -- the bench -------------------------------------------------------------------------------


def measure(write, result: Any, path: str, repeat: int) -> tuple[int, float]:
    """(size in bytes, median seconds) of ``repeat`` writes."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        write(result, path)
        times.append(time.perf_counter() - t0)
    return os.path.getsize(path), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", action="append", type=Path, help="a bars file (repeatable)")
    parser.add_argument("--strategy", default="alligator")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from cival.backtest import backtest
    from cival.backtest.report import kept_bars, write_report

    files = args.data or DEFAULT_FILES
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"no such data file: {', '.join(missing)} (the defaults are in ../shared/data; or pass --data FILE)")
    writers = {
        "before": before_write_report,
        "after": write_report,
        "every bar": lambda result, path: write_report(result, path, buckets=None),
    }
    print(f"{args.strategy}; write time: median of {args.repeat}; MB = 10^6 bytes")
    header = f"{'data':<26} {'bars':>8} {'trades':>7} {'drawn':>7}"
    header += "".join(f" {name + ' MB':>13} {name + ' s':>12}" for name in writers)
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for data in files:
            result = backtest(args.strategy, data)
            line = f"{data.name:<26} {len(result.bars):>8,} {len(result.trades):>7,} {len(kept_bars(result)):>7,}"
            for name, write in writers.items():
                size, seconds = measure(write, result, os.path.join(tmp, f"{name}.html"), args.repeat)
                line += f" {size / 1e6:>13.2f} {seconds:>12.2f}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
