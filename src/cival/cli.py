"""The ``cival`` command.

Exit codes: 0 success; 1 a problem with the user's input (bad config, refused
operation), printed as a message without a traceback; 2 a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from cival import __version__
from cival.core.errors import CivalError


def demo_config_path() -> Path:
    """The demo config: the copy inside the installed package, else the source checkout's."""
    packaged = resources.files("cival").joinpath("configs", "demo.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
    if checkout.is_file():
        return checkout
    raise CivalError("the demo config is missing from this installation; reinstall cival or pass --config FILE")


# -- commands ---------------------------------------------------------------------------


def cmd_version(args: argparse.Namespace) -> int:
    print(f"cival {__version__}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from cival.config import ConfigError, load_config

    failed = 0
    for path in args.configs:
        try:
            config = load_config(path)
        except ConfigError as exc:
            failed += 1
            print(str(exc), file=sys.stderr)
            continue
        agents = len(config.agents())
        print(
            f"{path}: OK (cluster {config.name!r}: {len(config.farms)} farms, {agents} agents, "
            f"{len(config.goals)} goals)"
        )
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cival.config import load_config
    from cival.runtime import build_wallets, fund

    path = Path(args.config) if args.config else demo_config_path()
    config = load_config(path)
    tree = build_wallets(config)
    report = fund(tree, config)
    posted = len(tree.ledger)
    # Deliver every funding message a second time, as a retrying network would:
    # the idempotency keys must make this a no-op.
    fund(tree, config)
    replayed_new = len(tree.ledger) - posted
    audit = tree.ledger.audit()

    strategies = {a.name: a.strategy for _, a in config.agents()}
    farm_types = {f.name: f.type for f in config.farms}
    shares = {(r.target_type.value, r.target): r.percentage_of_parent for r in report.allocations}
    rows = tree.tree()

    if args.json:
        out: dict[str, Any] = {
            "cluster": config.name,
            "config": str(path),
            "currency": tree.currency,
            "wallets": [
                {
                    "ref": r.ref,
                    "kind": r.kind.value,
                    "name": r.name,
                    "depth": r.depth,
                    "cash": str(r.cash),
                    "total_equity": str(r.total_equity),
                    "percentage_of_parent": _opt_str(shares.get((r.kind.value, r.name))),
                }
                for r in rows
            ],
            "transactions": posted,
            "replayed_new_transactions": replayed_new,
            "audit": {"ok": audit.ok, "residual": str(audit.residual), "problems": list(audit.problems)},
        }
        print(json.dumps(out, indent=2))
        return 0 if audit.ok else 1

    cur = tree.currency
    print(f"Cival demo: cluster {config.name!r} from {path}")
    print(
        f"Deposited {_fmt(config.master.initial_deposit)} {cur} into {config.master.name!r}, "
        f"then allocated down the tree by each level's policy.\n"
    )
    width = max(len(_label(r, rows, i)) for i, r in enumerate(rows)) + 2
    header = f"{'wallet':<{width}}{'cash':>16}{'subtree equity':>18}{'of parent':>11}  role"
    print(header)
    print("-" * len(header))
    for i, r in enumerate(rows):
        share = shares.get((r.kind.value, r.name))
        role = {
            "master": f"master wallet ({config.master.allocation.policy}, reserve {_fmt_pct(config.master.allocation.reserve_pct)})",
            "farm": f"{farm_types.get(r.name, '')} farm",
            "agent": f"agent: {strategies.get(r.name, '')}",
        }[r.kind.value]
        if r.kind.value == "farm":
            farm_cfg = next(f for f in config.farms if f.name == r.name)
            role += f" ({farm_cfg.allocation.policy}, reserve {_fmt_pct(farm_cfg.allocation.reserve_pct)})"
        print(
            f"{_label(r, rows, i):<{width}}{_fmt(r.cash):>16}{_fmt(r.total_equity):>18}"
            f"{(_fmt_pct(share) if share is not None else ''):>11}  {role}"
        )
    print()
    print(f"Ledger: {posted} transactions ({', '.join(_count_types(tree))}).")
    print(f"Delivered every funding message twice: {replayed_new} new transactions, balances unchanged.")
    print(f"Audit {'OK' if audit.ok else 'FAILED'}: cash + positions at cost {_fmt(audit.cash + audit.positions_at_cost)} {cur}"
          f" = deposits - withdrawals + realised P&L - fees; residual {audit.residual.normalize():f}.")
    for problem in audit.problems:
        print(f"  problem: {problem}")
    return 0 if audit.ok else 1


def parse_param_args(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``["jaw_period=21", "zigzag_pct=2.5"]`` -> ``{"jaw_period": 21, "zigzag_pct": 2.5}``."""
    import yaml

    params: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise CivalError(f"--param {pair!r}: write it as NAME=VALUE, e.g. --param jaw_period=21")
        try:
            value = yaml.safe_load(raw) if raw.strip() else raw
        except yaml.YAMLError:
            value = raw
        params[key.strip()] = value
    return params


def cmd_signals(args: argparse.Namespace) -> int:
    from cival.data import load_bars
    from cival.strategies import get_strategy

    strategy = get_strategy(args.strategy)
    params = strategy.parse_params(parse_param_args(args.param))
    bars = load_bars(args.data, drop_bad_rows=args.drop_bad_rows)
    signals = strategy.signals(bars, params)

    out = signals.copy()
    for column in strategy.bool_columns:
        out[column] = out[column].astype("int8")
    out.index = bars.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.index.name = "timestamp"
    if args.out == "-":
        out.to_csv(sys.stdout)
    else:
        try:
            out.to_csv(args.out)
        except OSError as exc:
            raise CivalError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    dropped = bars.attrs.get("dropped_rows", 0)
    summary = (
        f"{strategy.name} {dict(params.model_dump())} on {args.data}: {len(bars)} bars"
        + (f" ({dropped} bad rows dropped)" if dropped else "")
        + f", {int(signals['entry'].sum())} entry and {int(signals['exit'].sum())} exit signals"
        + ("" if args.out == "-" else f" -> {args.out}")
    )
    print(summary, file=sys.stderr if args.out == "-" else sys.stdout)
    return 0


SUMMARY_ROWS = [
    ("bars", "bars", "{:,}"),
    ("start", "start", "{}"),
    ("end", "end", "{}"),
    ("trades", "closed trades", "{:,}"),
    ("total_return", "total return", "{:+.2%}"),
    ("cagr", "CAGR", "{:+.2%}"),
    ("sharpe", "Sharpe", "{:.3f}"),
    ("sortino", "Sortino", "{:.3f}"),
    ("calmar", "Calmar", "{:.3f}"),
    ("max_drawdown", "max drawdown", "{:.2%}"),
    ("win_rate", "win rate", "{:.2%}"),
    ("profit_factor", "profit factor", "{:.3f}"),
    ("exposure", "exposure", "{:.2%}"),
    ("fees_paid", "fees paid", "{:,.2f}"),
    ("final_equity", "final equity", "{:,.2f}"),
]


def _cost_model(args: argparse.Namespace) -> Any:
    from cival.backtest import fill_model

    return fill_model(
        cash=args.cash,
        fee_bps=args.fee_bps,
        slippage_bps=args.slippage_bps,
        fraction=args.fraction,
        stop_loss_pct=args.stop_loss_pct,
        take_profit_pct=args.take_profit_pct,
    )


def cmd_backtest(args: argparse.Namespace) -> int:
    from cival.backtest import backtest
    from cival.strategies import get_strategy

    strategy = get_strategy(args.strategy)
    params = strategy.parse_params(parse_param_args(args.param))
    model = _cost_model(args)
    results = [
        backtest(strategy, path, params, model, engine=args.engine, drop_bad_rows=args.drop_bad_rows)
        for path in args.data
    ]
    if args.report:
        if len(results) == 1:
            results[0].write_report(args.report)
        else:  # one report per file: REPORT stem + data file stem
            base = Path(args.report)
            for result in results:
                result.write_report(base.with_name(f"{base.stem}-{Path(str(result.source)).stem}{base.suffix or '.html'}"))
    if args.trades_out:
        frames = []
        for result in results:
            trades = result.trades.copy()
            for column in ("entry_time", "exit_time"):
                trades[column] = trades[column].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            if len(results) > 1:
                trades.insert(0, "data", result.source)
            frames.append(trades)
        try:
            import pandas as pd

            pd.concat(frames, ignore_index=True).to_csv(args.trades_out, index=False)
        except OSError as exc:
            raise CivalError(f"cannot write {args.trades_out}: {exc.strerror or exc}") from None

    summaries = [r.summary() for r in results]
    combined = _combined(summaries, model.cash) if len(results) > 1 else None
    if args.json:
        payload: Any = summaries[0] if combined is None else {"results": summaries, "combined": combined}
        print(json.dumps(payload, indent=2))
        return 0

    print(f"{strategy.name} {params.model_dump()}")
    print(
        f"costs: cash {model.cash:,.2f}, fees {model.fee_bps:g} bps, slippage {model.slippage_bps:g} bps, "
        f"fraction {model.fraction:g}"
        + (f", stop-loss {model.stop_loss_pct:g} %" if model.stop_loss_pct is not None else "")
        + (f", take-profit {model.take_profit_pct:g} %" if model.take_profit_pct is not None else "")
        + "; fills at the next bar's open\n"
    )
    names = [Path(s["data"]).name for s in summaries]
    width = max(16, *(len(n) + 2 for n in names))
    print(f"{'':<16}" + "".join(f"{n:>{width}}" for n in names))
    for key, label, fmt in SUMMARY_ROWS:
        cells = "".join(f"{_cell(s.get(key), fmt):>{width}}" for s in summaries)
        print(f"{label:<16}{cells}")
    for s, name in zip(summaries, names, strict=True):
        if s["open_position"]:
            op = s["open_position"]
            print(
                f"{name}: position still open: {op['qty']:g} bought {op['entry_time']} at {op['entry_price']:,.6g}, "
                f"marked at {op['mark_price']:,.6g} (unrealised {op['unrealized_pnl']:+,.2f})"
            )
    if combined:
        print(
            f"\ncombined over {combined['files']} files: {combined['trades']:,} trades, "
            f"mean total return {combined['mean_total_return']:+.2%}, "
            f"final equity {combined['final_equity']:,.2f} of {combined['initial_cash']:,.2f}"
        )
    if args.trades_out:
        print(f"\ntrades written to {args.trades_out}")
    if args.report:
        print(f"report written to {args.report}" if len(results) == 1 else f"reports written next to {args.report}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from cival.backtest import sweep

    model = _cost_model(args)
    result = sweep(
        args.strategy,
        args.data,
        args.grid,
        model,
        metric=args.metric,
        chunk_size=args.chunk,
        backend="local" if args.local else "auto",
        address=args.address,
        progress=not args.json,
        drop_bad_rows=args.drop_bad_rows,
    )
    if args.out:
        out = Path(args.out)
        try:
            if out.suffix.lower() in (".parquet", ".pq"):
                result.ranked().to_parquet(out, index=False)
            else:
                result.ranked().to_csv(out, index=False)
        except OSError as exc:
            raise CivalError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    top = result.top(args.top)
    if args.json:
        payload = {
            "strategy": result.strategy,
            "data": result.source,
            "bars": result.bars,
            "combinations": len(result.table),
            "skipped": result.skipped,
            "metric": result.metric,
            "backend": result.backend,
            "seconds": round(result.seconds, 3),
            "costs": result.costs,
            "best": result.best(),
            "top": json.loads(top.to_json(orient="records")),
        }
        print(json.dumps(payload, indent=2))
        return 0
    print(
        f"{result.strategy}: {len(result.table)} combinations on {result.bars:,} bars of {result.source} "
        f"in {result.seconds:.1f} s ({result.backend})"
        + (f"; {result.skipped} skipped (they break a rule across parameters)" if result.skipped else "")
    )
    shown = [*result.params, *dict.fromkeys([result.metric, "trades", "total_return", "sharpe", "max_drawdown"])]
    print(f"top {len(top)} by {result.metric}:")
    print(top[shown].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.out:
        print(f"all results written to {args.out}")
    return 0


def cmd_walkforward(args: argparse.Namespace) -> int:
    from cival.backtest import walkforward

    model = _cost_model(args)
    result = walkforward(
        args.strategy,
        args.data,
        args.grid,
        model,
        train=args.train,
        test=args.test,
        metric=args.metric,
        backend="local" if args.local else "auto",
        address=args.address,
        progress=not args.json,
        drop_bad_rows=args.drop_bad_rows,
    )
    windows = result.windows.copy()
    for column in ("train_start", "train_end", "test_start", "test_end"):
        windows[column] = windows[column].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.json:
        payload = {
            "strategy": result.strategy,
            "metric": result.metric,
            "train": result.train,
            "test": result.test,
            "windows": json.loads(windows.to_json(orient="records")),
            "out_of_sample": result.metrics,
        }
        print(json.dumps(payload, indent=2))
        return 0
    m = result.metric
    params = [c for c in windows.columns if c not in ("window", "train_start", "train_end", "test_start", "test_end")
              and not c.startswith(("is_", "oos_"))]
    shown = windows[["window", "test_start", *params, f"is_{m}", f"oos_{m}", "oos_trades", "oos_total_return"]]
    print(f"{result.strategy}: {len(windows)} windows, train {result.train} bars, test {result.test} bars, by {m}")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    oos = result.metrics
    print(
        f"\nstitched out of sample: {oos['trades']} trades, total return {oos['total_return']:+.2%}, "
        f"Sharpe {_cell(oos['sharpe'], '{:.3f}')}, max drawdown {oos['max_drawdown']:.2%}; "
        f"mean in-sample {m} {windows[f'is_{m}'].mean():.3f} vs out of sample {windows[f'oos_{m}'].mean():.3f}"
    )
    return 0


def _combined(summaries: list[dict[str, Any]], cash: float) -> dict[str, Any]:
    return {
        "files": len(summaries),
        "trades": sum(s["trades"] for s in summaries),
        "mean_total_return": sum(s["total_return"] for s in summaries) / len(summaries),
        "initial_cash": cash * len(summaries),
        "final_equity": sum(s["final_equity"] for s in summaries),
        "fees_paid": sum(s["fees_paid"] for s in summaries),
    }


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


# -- formatting helpers -----------------------------------------------------------------


def _fmt(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def _fmt_pct(value: Decimal) -> str:
    return f"{value.normalize():f} %"


def _opt_str(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _label(row: Any, rows: Sequence[Any], index: int) -> str:
    """Tree-drawing prefix: '├─ ' for a middle child, '└─ ' for the last one."""
    if row.depth == 0:
        return row.name
    prefix = ""
    for depth in range(1, row.depth):
        prefix += "   " if _is_last_at(rows, index, depth) else "│  "
    return prefix + ("└─ " if _is_last_at(rows, index, row.depth) else "├─ ") + row.name


def _is_last_at(rows: Sequence[Any], index: int, depth: int) -> bool:
    """True when the ancestor of rows[index] at ``depth`` has no later sibling."""
    for later in rows[index + 1 :]:
        if later.depth < depth:
            return True
        if later.depth == depth:
            return False
    return True


def _count_types(tree: Any) -> list[str]:
    counts: dict[str, int] = {}
    for tx in tree.ledger.journal:
        counts[tx.type.value] = counts.get(tx.type.value, 0) + 1
    return [f"{n} {name}" for name, n in counts.items()]


# -- parser -----------------------------------------------------------------------------


def _add_cost_arguments(p: argparse.ArgumentParser) -> None:
    """The fill model's costs, shared by backtest, sweep and walkforward."""
    p.add_argument("--cash", type=float, default=None, metavar="N", help="starting cash (default 10000)")
    p.add_argument("--fee-bps", type=float, default=None, metavar="N", help="fee per side, basis points (default 10)")
    p.add_argument("--slippage-bps", type=float, default=None, metavar="N", help="adverse slippage, basis points (default 5)")
    p.add_argument("--fraction", type=float, default=None, metavar="F", help="share of cash per entry (default 1.0)")
    p.add_argument("--stop-loss-pct", type=float, default=None, metavar="P", help="stop-loss below the entry price, percent (off by default)")
    p.add_argument("--take-profit-pct", type=float, default=None, metavar="P", help="take-profit above the entry price, percent (off by default)")


def _add_ray_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local", action="store_true", help="run in this process, without Ray")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cival",
        description="Multi-agent paper trading and backtesting with exact books.",
    )
    parser.add_argument("--version", action="version", version=f"cival {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("version", help="print the installed version", description="Print the installed version.")
    p.set_defaults(func=cmd_version)

    p = sub.add_parser(
        "validate",
        help="check cluster config files",
        description="Check cluster config files. Prints every error with its path; exits 1 if any file is invalid.",
    )
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="YAML config file(s)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "demo",
        help="fund the demo cluster's wallets through the ledger and print the tree",
        description=(
            "Load the demo config (or --config), deposit the initial capital, allocate it to farms "
            "and agents by their policies through the double-entry ledger, and print the wallet tree "
            "with the ledger audit. Needs no database, message broker or data files."
        ),
    )
    p.add_argument("--config", metavar="FILE", help="a cluster config instead of the bundled demo.yaml")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "signals",
        help="compute a strategy's signals on a data file",
        description=(
            "Compute a strategy's indicator columns and entry/exit signals on a CSV or Parquet "
            "file of bars and write them as CSV: timestamp (ISO 8601, UTC), then the strategy's "
            "columns, booleans as 0/1. Strategies: alligator, darvas, elliott."
        ),
    )
    p.add_argument("strategy", metavar="STRATEGY", help="alligator, darvas or elliott")
    p.add_argument("--data", required=True, metavar="FILE", help="bars: CSV or Parquet with a timestamp and OHLC(V)")
    p.add_argument(
        "--param", action="append", metavar="NAME=VALUE", help="a strategy parameter (repeatable), e.g. jaw_period=21"
    )
    p.add_argument("--drop-bad-rows", action="store_true", help="drop invalid rows instead of refusing the file")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="where to write the signals ('-' for stdout)")
    p.set_defaults(func=cmd_signals)

    p = sub.add_parser(
        "backtest",
        help="backtest a strategy on one or more data files",
        description=(
            "Backtest a strategy under the fill model: a signal at a bar's close fills at the next "
            "bar's open, with adverse slippage and fees on both sides; entries invest a fraction of "
            "cash, rounded down to the quantity step. Prints a summary table, or JSON with --json "
            "(one object; with several --data files, {results, combined})."
        ),
    )
    p.add_argument("strategy", metavar="STRATEGY", help="alligator, darvas or elliott")
    p.add_argument("--data", required=True, action="append", metavar="FILE", help="bars file (repeatable)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a strategy parameter (repeatable)")
    _add_cost_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--trades-out", metavar="FILE.csv", help="write the closed trades as CSV")
    p.add_argument(
        "--report", metavar="FILE.html",
        help="write a self-contained HTML report (with several files: one per file, named FILE-<data>.html)",
    )
    p.add_argument("--drop-bad-rows", action="store_true", help="drop invalid rows instead of refusing the file")
    p.add_argument(
        "--engine", choices=("auto", "vectorbt", "reference"), default="auto",
        help="auto (default: the bar-by-bar engine, fastest for one run), vectorbt or reference; all give the same fills",
    )
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser(
        "sweep",
        help="backtest every combination of a parameter grid",
        description=(
            "Backtest every combination of a parameter grid under the fill model, in vectorised "
            "chunks spread over Ray workers (RAY_ADDRESS or --address joins an existing cluster; "
            "otherwise a local one is started). Prints the top combinations by a metric."
        ),
    )
    p.add_argument("strategy", metavar="STRATEGY", help="alligator, darvas or elliott")
    p.add_argument("--data", required=True, metavar="FILE", help="bars file")
    p.add_argument(
        "--grid", required=True, action="append", metavar="NAME=START:STOP:STEP|V1,V2,...",
        help="values of one parameter (repeatable; stop included)",
    )
    p.add_argument("--metric", default="sharpe", help="ranking metric (default sharpe)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="how many to print (default 10)")
    p.add_argument("--json", action="store_true", help="print the best and the top N as JSON")
    p.add_argument("--out", metavar="FILE", help="write every combination's metrics (.parquet or .csv)")
    _add_cost_arguments(p)
    p.add_argument("--chunk", type=int, default=10, metavar="N", help="combinations per vectorbt call (default 10)")
    _add_ray_arguments(p)
    p.add_argument("--drop-bad-rows", action="store_true", help="drop invalid rows instead of refusing the file")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "walkforward",
        help="choose parameters on rolling train windows and test them on the next window",
        description=(
            "Walk-forward validation: on each rolling train window, sweep the grid and keep the best "
            "parameters by the metric; apply them on the following test window. Reports in-sample "
            "versus out-of-sample metrics per window and the stitched out-of-sample result."
        ),
    )
    p.add_argument("strategy", metavar="STRATEGY", help="alligator, darvas or elliott")
    p.add_argument("--data", required=True, metavar="FILE", help="bars file")
    p.add_argument("--grid", required=True, action="append", metavar="NAME=START:STOP:STEP|V1,V2,...")
    p.add_argument("--train", required=True, type=int, metavar="N", help="bars per train window")
    p.add_argument("--test", required=True, type=int, metavar="M", help="bars per test window (also the step)")
    p.add_argument("--metric", default="sharpe", help="selection metric (default sharpe)")
    p.add_argument("--json", action="store_true", help="print windows and out-of-sample metrics as JSON")
    _add_cost_arguments(p)
    _add_ray_arguments(p)
    p.add_argument("--drop-bad-rows", action="store_true", help="drop invalid rows instead of refusing the file")
    p.set_defaults(func=cmd_walkforward)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except CivalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
