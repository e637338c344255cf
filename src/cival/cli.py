"""The ``cival`` command.

Exit codes: 0 success; 1 a problem with the user's input (bad config, refused
operation), printed as a message without a traceback; 2 a usage error; 130 a session
stopped by Ctrl-C, 143 by SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from cival import __version__
from cival.core.costs import (
    DEFAULT_CASH,
    DEFAULT_FEE_BPS,
    DEFAULT_FRACTION,
    DEFAULT_SLIPPAGE_BPS,
)
from cival.core.errors import CivalError, Terminated
from cival.core.fmt import ISO_SECONDS


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
    """``cival paper`` on the bundled demo config and its bundled data."""
    path = Path(args.config) if args.config else demo_config_path()
    args.config_path = str(path)
    args.strategy = None
    args.data = getattr(args, "data", None)
    from cival.config import load_config

    load_config(path)  # a bad config is reported before anything is printed
    if not args.json and not args.quiet:
        print(f"Cival demo: the cluster in {path}, paper trading its bundled bars.")
    return cmd_paper(args)


def cmd_paper(args: argparse.Namespace) -> int:
    from cival.config import load_config
    from cival.data.feeds import parse_speed
    from cival.runtime import single_agent_config
    from cival.session import Session, SessionConfig

    parse_speed(args.speed)
    if args.strategy and args.config_path:
        print("error: give a CONFIG file or --strategy, not both", file=sys.stderr)
        return 2
    if args.strategy:
        if not args.data:
            print("error: --strategy needs --data FILE (the bars to trade)", file=sys.stderr)
            return 2
        config = single_agent_config(
            args.strategy,
            parse_param_args(args.param),
            data=args.data,
            cash=cash_arg(args.cash),
            fee_bps=args.fee_bps if args.fee_bps is not None else DEFAULT_FEE_BPS,
            slippage_bps=args.slippage_bps if args.slippage_bps is not None else DEFAULT_SLIPPAGE_BPS,
            fraction=args.fraction if args.fraction is not None else DEFAULT_FRACTION,
        )
        data = None  # the config's own data is the file
    elif args.config_path:
        if args.param or any(getattr(args, k) is not None for k in ("cash", "fee_bps", "slippage_bps", "fraction")):
            print("error: --param and the cost options go with --strategy; a config sets them itself", file=sys.stderr)
            return 2
        config = load_config(args.config_path)
        data = args.data
    else:
        print("error: give a CONFIG file, or --strategy NAME --data FILE", file=sys.stderr)
        return 2
    symbol = None
    if args.data and not args.strategy:
        symbol = Path(args.data).name.split(".")[0]
    options = SessionConfig(
        speed=args.speed,
        batch_size=args.batch,
        local=args.local,
        inline=True if args.inline else None,
        address=args.address,
        data=data,
        max_bars=args.bars,
        max_move=getattr(args, "max_move", "config"),
        source=str(args.data or config.data_path() or "synthetic"),
        symbol=symbol,
        migrate=False if args.no_migrate else None,
    )
    session = Session(config, options, on_start=_started(args))
    return _drive(args, session)


def cmd_resume(args: argparse.Namespace) -> int:
    """``cival resume RUN_ID``: carry on a run whose driver died, from its last bar."""
    from cival.session import Session, SessionConfig
    from cival.store.base import locate

    options = {"local": True} if args.local else {}
    if args.address:
        options["address"] = args.address
    where = locate(args.url, args.path)
    session = Session.resume(args.run_id, SessionConfig(**options), store=where, on_start=_started(args))
    done = session.resumed_from or 0
    total = f" of {session.total:,}" if session.total is not None else ""
    print(f"resuming run {session.run_id} at bar {done:,}{total}", file=sys.stderr if args.json else sys.stdout, flush=True)
    return _drive(args, session)


def cmd_serve(args: argparse.Namespace) -> int:
    """``cival serve [CONFIG ...]``: host sessions behind the operator API until stopped."""
    import logging
    import os
    import signal

    import uvicorn

    from cival.config import load_config
    from cival.server import ServeError, loopback, server_token
    from cival.server.accounts import Accounts, signing_secret
    from cival.server.app import API, create_app
    from cival.server.host import SessionHost
    from cival.session import SessionConfig
    from cival.store.base import locate

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ServeError("give both --tls-cert and --tls-key (the certificate chain and its private key, PEM files)")
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path and not Path(path).is_file():
            raise ServeError(f"{flag} {path}: no such file")
    configs = [load_config(path) for path in args.configs]  # every config checked before anything starts
    where = locate(args.url, args.path)
    if not loopback(args.host):
        # Reachable from other machines: only with accounts to sign in to, over TLS.
        from cival.store.base import NoStore

        try:
            users = Accounts(where, "").users()  # read-only: a refusal leaves nothing behind
        except NoStore:
            users = []
        if not users:
            raise ServeError(
                f"--host {args.host}: the API would be reachable from other machines, and this store has no user "
                "accounts; add one first (cival users add NAME --role admin), or keep the default 127.0.0.1"
            )
        if not args.tls_cert:
            raise ServeError(
                f"--host {args.host}: the API would be reachable from other machines over plain HTTP, which shows "
                "passwords and tokens to the network; give --tls-cert and --tls-key, or keep 127.0.0.1 behind a TLS proxy"
            )
    with where.open() as store:
        store.migrate()
    token, kept = server_token()
    options = {"local": True} if args.local else {}
    if args.address:
        options["address"] = args.address
    ray_session = None
    if not args.local:
        # The server holds Ray for all its sessions, from its main thread: a session that
        # started Ray would shut it down when it ends, under the others still running.
        from cival.rayconnect import connect

        print("starting Ray for the sessions (--local runs them in this process instead)", flush=True)
        ray_session = connect(args.address, num_cpus=os.cpu_count(), logging_level=logging.WARNING)
    host = SessionHost(where, SessionConfig(**options))
    try:
        for run_id in host.take_up():
            print(f"resumed run {run_id}", flush=True)
        for path, config in zip(args.configs, configs, strict=True):
            print(f"started run {host.start(config, by='serve')} of {path}", flush=True)
        scheme = "https" if args.tls_cert else "http"
        print(f"serving the operator API on {scheme}://{args.host}:{args.port}{API} ({where.kind} store: {where}); "
              f"token: {kept}", flush=True)
        # uvicorn stops serving on SIGINT/SIGTERM, then raises the signal again: with this
        # handler in place, that ends here (sessions stopped cleanly), not the process.
        signal.signal(signal.SIGTERM, _terminate)
        # A stream client that left is noticed at the next message; the writes to its closed
        # socket meanwhile are not worth a line each in the log.
        logging.getLogger("asyncio").setLevel(logging.ERROR)
        accounts = Accounts(where, signing_secret())
        try:
            uvicorn.run(
                create_app(host, token, accounts), host=args.host, port=args.port, log_level="warning", access_log=False,
                ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key,
                timeout_graceful_shutdown=3,  # open streams do not hold a stop: their clients reconnect elsewhere
            )
        except KeyboardInterrupt:  # the signal uvicorn raised again: a clean stop
            pass
    finally:
        print("stopping: every session ends at its next batch boundary, recorded as interrupted", flush=True)
        host.close()
        if ray_session is not None:
            ray_session.close()
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    """``cival users add|list|remove``: the accounts of the operator API."""
    import getpass
    import os

    from cival.server.accounts import Accounts, signing_secret
    from cival.store.base import locate

    where = locate(args.url, args.path)
    accounts = Accounts(where, signing_secret())
    if args.action == "add":
        if not args.name or not args.role:
            raise CivalError("cival users add NAME --role viewer|operator|admin")
        password = os.environ.get("CIVAL_PASSWORD")
        if password is None:
            if not sys.stdin.isatty():
                raise CivalError("give the password in CIVAL_PASSWORD, or run this on a terminal to be asked for it")
            password = getpass.getpass(f"password for {args.name}: ")
            if getpass.getpass("again: ") != password:
                raise CivalError("the two passwords differ; nothing was changed")
        with where.open() as store:
            store.migrate()
        accounts.add_user(args.name, args.role, password, by=f"cli:{getpass.getuser()}")
        print(f"user {args.name} ({args.role}) added")
    elif args.action == "remove":
        if not args.name:
            raise CivalError("cival users remove NAME")
        accounts.remove_user(args.name)
        print(f"user {args.name} removed; their API keys are revoked")
    else:
        users = accounts.users()
        if args.json:
            print(json.dumps(users, indent=2, default=str))
        elif not users:
            print("no users yet: `cival users add NAME --role admin` makes the first")
        for u in users if not args.json else []:
            print(f"{u['name']:<24} {u['role']:<9} added {u['created_at']:%Y-%m-%d %H:%M} by {u['created_by']}")
    return 0


def _client(args: argparse.Namespace) -> Any:
    """A Client of --server (else CIVAL_SERVER), with CIVAL_TOKEN or the tokens `cival login` kept."""
    import os

    from cival.client import Client
    from cival.store.base import data_dir

    kept = data_dir() / "client.json"
    saved = json.loads(kept.read_text(encoding="utf-8")) if kept.is_file() else {}
    server = args.server or os.environ.get("CIVAL_SERVER") or saved.get("server")
    client = Client(server, os.environ.get("CIVAL_TOKEN") or saved.get("access_token"))
    client.refresh_token = saved.get("refresh_token")
    return client


def _keep_login(client: Any) -> None:
    from cival.server import write_owner_only
    from cival.store.base import data_dir

    tokens = {"server": client.url, "access_token": client.token, "refresh_token": client.refresh_token}
    write_owner_only(data_dir() / "client.json", json.dumps(tokens))


def _with_refresh(client: Any, call: Any) -> Any:
    """``call()``, signing in again with the kept refresh token once if the access token expired."""
    from cival.client import ClientError

    try:
        return call()
    except ClientError as exc:
        if exc.status != 401 or client.refresh_token is None or "expired" not in str(exc):
            raise
    client.refresh()
    _keep_login(client)
    return call()


def cmd_login(args: argparse.Namespace) -> int:
    """``cival login NAME``: sign in to a server; the tokens are kept owner-only for the client commands."""
    import getpass
    import os

    client = _client(args)
    password = os.environ.get("CIVAL_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise CivalError("give the password in CIVAL_PASSWORD, or run this on a terminal to be asked for it")
        password = getpass.getpass(f"password for {args.name}: ")
    signed = client.login(args.name, password)
    _keep_login(client)
    print(f"signed in to {client.url} as {signed['name']}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """``cival status [RUN]``: a server's runs, or one run's wallet tree."""
    client = _client(args)
    if args.run_id is None:
        runs = _with_refresh(client, lambda: client._call("GET", "/runs"))
        if args.json:
            print(json.dumps(runs, indent=2))
            return 0
        for r in runs:
            hosted = r.get("hosted") or {}
            fed = f"{hosted.get('bars_fed', 0):,}/{hosted.get('bars_total') or 0:,} bars" if hosted else ""
            print(f"{r['id']:<26} {r['name'][:16]:<16} {r['status']:<12} {fed}")
        if not runs:
            print("no runs on this server yet")
        return 0
    rows = _with_refresh(client, lambda: client._call("GET", f"/runs/{args.run_id}/wallets"))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from cival.core.fmt import money

    for r in rows:
        indent = {"master": "", "farm": "  ", "agent": "    "}[r["kind"]]
        print(f"{indent + r['name']:<28} cash {money(r['cash']):>14}  equity {money(r['equity']):>14}  "
              f"net P&L {money(r['net_pnl'], signed=True):>12}" + (f"  HALTED: {r['halted']}" if r["halted"] else ""))
    return 0


def cmd_command(args: argparse.Namespace) -> int:
    """``cival command RUN KIND [TARGET] [AMOUNT]``: an operator command to a served run."""
    client = _client(args)
    target, amount = args.target or "master", args.amount
    if args.kind == "deposit" and amount is None:  # cival command RUN deposit 1000
        target, amount = "master", args.target
    done = _with_refresh(client, lambda: client.command(args.run_id, args.kind, target, amount, args.reason or ""))
    print(json.dumps(done, indent=2))
    return 0


def cmd_operate(args: argparse.Namespace) -> int:
    """``cival allocate|collect|halt|release|kill RUN ...``: one operator command to a served run."""
    client = _client(args)
    kind = {"release": "resume"}.get(args.command, args.command)
    target = getattr(args, "target", None) or "master"
    amount = getattr(args, "amount", None)
    done = _with_refresh(client, lambda: client.command(args.run_id, kind, target, amount, args.reason or ""))
    print(json.dumps(done, indent=2))
    return 0


def cmd_goals(args: argparse.Namespace) -> int:
    """``cival goals list|add|assign|cancel RUN ...``: the goals of a served run."""
    client = _client(args)
    if args.action == "list":
        rows = _with_refresh(client, lambda: client._call("GET", f"/runs/{args.run_id}/goals"))
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for g in rows:
            assigned = ", ".join(f"{'farm ' + a['farm'] if 'farm' in a else 'agent ' + a['agent']} x{a['weight']}" for a in g["assign"])
            print(f"{g['name'][:24]:<24} {g['goal_type']:<21} {g['status']:<10} {g['progress']:>6} %  collected {g['collected']}  ({assigned})")
        if not rows:
            print("no goals in this run")
        return 0
    if args.action == "add":
        if args.name is None:
            raise CivalError("cival goals add RUN FILE: give a YAML or JSON file holding one goal, as in a config's goals (- for standard input)")
        from cival.config import parse_yaml

        source = "standard input" if args.name == "-" else args.name
        try:
            text = sys.stdin.read() if args.name == "-" else Path(args.name).read_text(encoding="utf-8")
        except OSError as exc:
            raise CivalError(f"cannot read the goal file {args.name}: {exc.strerror}") from None
        goal = parse_yaml(text, source)
        done = _with_refresh(client, lambda: client._call("POST", f"/runs/{args.run_id}/goals", goal))
    else:
        if args.name is None:
            raise CivalError(f"cival goals {args.action} RUN NAME: name the goal")
        if args.action == "assign":
            assign = [{"farm": f, "weight": args.weight} for f in args.farm or []] + [{"agent": a, "weight": args.weight} for a in args.agent or []]
            if not assign:
                raise CivalError("cival goals assign RUN NAME: give --farm FARM or --agent AGENT (each may repeat)")
            done = _with_refresh(client, lambda: client.assign_goal(args.run_id, args.name, assign, args.reason or ""))
        else:
            done = _with_refresh(client, lambda: client.cancel_goal(args.run_id, args.name, args.reason or ""))
    print(json.dumps(done, indent=2))
    return 0


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def _started(args: argparse.Namespace) -> Any:
    def started(run_id: str, where: Any) -> None:
        # With --json, stdout carries the report alone.
        print(f"run {run_id} ({where.kind} store: {where})", file=sys.stderr if args.json else sys.stdout, flush=True)

    return started


def _drive(args: argparse.Namespace, session: Any) -> int:
    """Run ``session`` to its end with the live tree (unless --json/--quiet) and print the
    summary or the JSON report; the exit code says how it ended."""
    from cival.console import LiveTree, summary_lines
    from cival.startup import StartupNotes

    config = session.config
    quiet = args.json or args.quiet
    live = None if quiet else LiveTree(config.name, config.master.base_currency, master=config.master.name)
    notes = StartupNotes(tty=False if quiet else None)  # on a terminal only

    def progress(p: Any) -> None:
        notes.end()
        if live is not None:
            live(p)

    announce = session.on_start

    def started(run_id: str, where: Any) -> None:
        notes.break_line()
        if announce is not None:
            announce(run_id, where)

    session.on_stage = notes
    session.on_start = started
    session.on_progress = progress

    def warn(text: str) -> None:
        if live is not None and live.tty:
            live.note(f"warning: {text}")  # above the tree, which redraws below it
        else:
            print(f"warning: {text}", file=sys.stderr, flush=True)

    session.on_warning = warn
    try:
        result = session.run()
    finally:
        notes.end()
    if live is not None:
        live.finish()
    if result.rebuilt:
        print(
            "Ray's processes were stopped with the session: the report below is rebuilt from the store.",
            file=sys.stderr if args.json else sys.stdout,
        )
    if args.report:
        Path(args.report).write_text(json.dumps(result.report, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result.report, indent=2))
    else:
        for line in summary_lines(result.report, result.audit, result.seconds, result.start_seconds):
            print(line)
        if result.pace is not None:
            print(f"Paced replay: fed {result.pace.describe()}.")
        if args.report:
            print(f"Report written to {args.report}")
        if result.run_id:
            print(f"Run {result.run_id} is stored; `cival report {result.run_id}` shows this report again.")
    stats = result.events
    if stats is not None and stats.bus.dropped:
        print(
            f"warning: {stats.bus.dropped:,} of {stats.relayed:,} events could not be streamed "
            f"({stats.bus.last_error}); every event is in the store: `cival watch {result.run_id} --from-store`",
            file=sys.stderr,
        )
    if result.interrupted:
        if result.run_id and not result.terminated:
            print(f"Run {result.run_id} stopped early; `cival resume {result.run_id}` carries it on.", file=sys.stderr)
        return 143 if result.terminated else 130
    return 0 if result.audit.ok else 1


def cmd_db(args: argparse.Namespace) -> int:
    """``cival db upgrade|status``: the store's schema versions (``status`` reads the store
    as it is: it creates and changes nothing)."""
    from cival.store import NoStore, open_store
    from cival.store.schema import MIGRATIONS

    if args.action == "status":
        try:
            store = _reading(args)
        except NoStore as exc:  # every version pending: there is nothing yet
            if args.json:
                print(json.dumps([{"version": m.version, "name": m.name, "applied_at": None} for m in MIGRATIONS], indent=2))
                return 0
            print(f"{exc}; every version is pending:")
            for m in MIGRATIONS:
                print(f"  v{m.version} {m.name}: pending")
            return 0
    else:
        store = open_store(args.url, args.path)
    with store:
        where = f"{store.kind} store" + (f" at {store.path}" if getattr(store, "path", None) else "")
        if args.action == "upgrade":
            applied = store.migrate()
            print(f"{where}: applied {', '.join(f'v{v}' for v in applied)}" if applied else f"{where}: up to date")
        rows = store.status()
        if args.action == "status" or args.json:
            if args.json:
                print(json.dumps([{"version": m.version, "name": m.name, "applied_at": m.applied_at.isoformat() if m.applied_at else None} for m in rows], indent=2))
            else:
                print(where)
                for m in rows:
                    print(f"  v{m.version} {m.name}: " + (f"applied {m.applied_at:%Y-%m-%d %H:%M:%S %Z}" if m.applied_at else "pending"))
        return 0


def _reading(args: argparse.Namespace) -> Any:
    """The store of ``--url``/``--path`` (else DATABASE_URL, else the default file), opened
    to read: a reading command creates and changes nothing. NoStore if its file is not there."""
    from cival.store.base import locate

    return locate(args.url, args.path).open(read_only=True)


_KIND_NAMES = {"paper": "paper runs", "backtest": "saved backtests", "sweep": "saved sweeps"}


def cmd_runs(args: argparse.Namespace) -> int:
    """``cival runs``: the paper runs and saved results in the store, newest first."""
    from cival.runs import KINDS, list_runs
    from cival.store import NoStore

    kinds = tuple(dict.fromkeys(args.kind)) if args.kind else KINDS
    try:
        store = _reading(args)
    except NoStore as exc:  # nothing has run there: an empty list, and why
        if args.json:
            print("[]")
        print(exc, file=sys.stderr if args.json else sys.stdout)
        return 0
    with store:
        rows = list_runs(store, kinds, args.limit)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            if kinds == KINDS:
                print(
                    f"no runs yet in the {store.kind} store ({store.location}): `cival demo` starts a paper run; "
                    "`cival backtest ... --save` and `cival sweep ... --save` keep their results"
                )
            else:
                print(f"no {' or '.join(_KIND_NAMES[k] for k in kinds)} yet in the {store.kind} store ({store.location})")
            return 0
        print(f"{'kind':<8} {'id':<28} {'name':<16} {'mode':<6} {'status':<12} {'started (UTC)':<19} {'bars':>8}  details")
        for r in rows:
            started = r["started_at"][:19].replace("T", " ")
            bars = f"{r['bars']:,}" if r.get("bars") is not None else "-"
            print(
                f"{r['kind']:<8} {r['id']:<28} {r['name'][:16]:<16} {r.get('mode') or '-':<6} {r['status']:<12} {started:<19} "
                f"{bars:>8}  {_details(r)}"
            )
        return 0


def _details(row: dict[str, Any]) -> str:
    """The last column of ``cival runs``: what a run or a saved result came to."""
    if row["kind"] == "paper":
        return f"{row['events']:,} events"
    if row["kind"] == "backtest":
        ret = row.get("total_return")
        from cival.backtest.metrics import format_metric

        return f"{row['trades']:,} trades, return {format_metric('total_return', ret)}, {Path(str(row['data'])).name}"
    best = " ".join(f"{k}={v}" for k, v in (row.get("best") or {}).items())
    return f"{row['combinations']:,} combinations by {row['metric']}, best {best or '-'}, {Path(str(row['data'])).name}"


def cmd_report(args: argparse.Namespace) -> int:
    """``cival report ID``: a run's report rebuilt from the store alone, or a saved
    backtest's or sweep's result as its command printed it."""
    from cival.console import summary_lines
    from cival.runs import result_kind, saved_result
    from cival.session import rebuild_report

    with _reading(args) as store:
        if result_kind(args.run_id):
            kind, record = saved_result(store, args.run_id)
        else:
            report, audit = rebuild_report(store, args.run_id)
            kind = "paper"
    if kind != "paper":
        if args.json:
            print(json.dumps(record, indent=2))
        elif kind == "backtest":
            summary = {**record["metrics"], "data": record["data"]}
            params = {k: record["params"][k] for k in _in_param_order(record["strategy"], record["params"])}
            _print_backtests(record["strategy"], params, record["costs"], [summary])
            print(f"\nsaved as {record['id']} at {record['created_at']}")
        else:
            _print_sweep(record)
        return 0
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if audit.ok else 1
    for line in summary_lines(report, audit, None, None):
        print(line)
    return 0 if audit.ok else 1


def cmd_watch(args: argparse.Namespace) -> int:
    """``cival watch [RUN_ID]``: a run's events, live from Redis or from the store."""
    import os

    from cival.core.events import EVENT_TYPES
    from cival.core.urls import redact
    from cival.events.watch import read_stream, tail_lines, tail_store

    types = set(args.type) if args.type else None
    unknown = sorted((types or set()) - set(EVENT_TYPES))
    if unknown:
        print(f"error: unknown event type(s) {', '.join(unknown)}; types: {', '.join(EVENT_TYPES)}", file=sys.stderr)
        return 2
    url = args.redis or os.environ.get("REDIS_URL") or None
    follow = not args.no_follow
    with _reading(args) as store:
        if args.run_id:
            run = store.run(args.run_id)
        else:
            runs = store.runs()
            if not runs:
                raise CivalError(f"no runs in the {store.kind} store ({store.location}); start one with `cival demo`")
            run = runs[0]
        from_redis = url is not None and not args.from_store and run.meta.get("streams") == "redis"
        where = f"Redis at {redact(url)}" if from_redis and url else f"the {store.kind} store"
        print(f"run {run.id} ({run.name}, {run.status}): events from {where}", file=sys.stderr, flush=True)
        try:
            if from_redis and url:
                lines = tail_lines(read_stream(url, run.id, follow=follow and run.status == "running"), types=types, entities=args.entity)
            else:
                lines = tail_store(store, run.id, follow=follow, types=types, entities=args.entity)
            for line in lines:
                print(line, flush=True)
        except KeyboardInterrupt:
            return 130
    return 0


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
    bars = load_bars(args.data, drop_bad_rows=args.drop_bad_rows, max_move=_move(args))
    signals = strategy.signals(bars, params)

    out = signals.copy()
    for column in strategy.bool_columns:
        out[column] = out[column].astype("int8")
    out.index = bars.index.strftime(ISO_SECONDS)
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
    ("bars", "bars"),
    ("start", "start"),
    ("end", "end"),
    ("trades", "closed trades"),
    ("total_return", "total return"),
    ("cagr", "CAGR"),
    ("sharpe", "Sharpe"),
    ("sortino", "Sortino"),
    ("calmar", "Calmar"),
    ("max_drawdown", "max drawdown"),
    ("win_rate", "win rate"),
    ("profit_factor", "profit factor"),
    ("exposure", "exposure"),
    ("fees_paid", "fees paid"),
    ("final_equity", "final equity"),
]
"""The rows of ``cival backtest``'s table: metric, label (values by
:func:`cival.backtest.metrics.format_metric`)."""

def _cost_model(args: argparse.Namespace) -> Any:
    from cival.backtest import fill_model

    return fill_model(
        # The fill model is research code on floats: the exact amount becomes one here.
        cash=float(cash_arg(args.cash)),
        fee_bps=args.fee_bps,
        slippage_bps=args.slippage_bps,
        fraction=args.fraction,
        stop_loss_pct=args.stop_loss_pct,
        take_profit_pct=args.take_profit_pct,
    )


def cmd_backtest(args: argparse.Namespace) -> int:
    from cival.backtest import backtest
    from cival.runs import save_backtest
    from cival.strategies import get_strategy

    strategy = get_strategy(args.strategy)
    params = strategy.parse_params(parse_param_args(args.param))
    model = _cost_model(args)
    results = [
        backtest(strategy, path, params, model, engine=args.engine, drop_bad_rows=args.drop_bad_rows, max_move=_move(args))
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
                trades[column] = trades[column].dt.strftime(ISO_SECONDS)
            if len(results) > 1:
                trades.insert(0, "data", result.source)
            frames.append(trades)
        try:
            import pandas as pd

            pd.concat(frames, ignore_index=True).to_csv(args.trades_out, index=False)
        except OSError as exc:
            raise CivalError(f"cannot write {args.trades_out}: {exc.strerror or exc}") from None

    saved = _save(args, lambda store: [save_backtest(store, r) for r in results])
    summaries = [r.summary() for r in results]
    combined = _combined(summaries, model.cash) if len(results) > 1 else None
    if args.json:
        payload: Any = summaries[0] if combined is None else {"results": summaries, "combined": combined}
        print(json.dumps(payload, indent=2))
        if saved:
            print(saved, file=sys.stderr)
        return 0

    _print_backtests(strategy.name, params.model_dump(), model.model_dump(), summaries)
    if combined:
        from cival.core.fmt import money, percent

        print(
            f"\ncombined over {combined['files']} files: {combined['trades']:,} trades, "
            f"mean total return {percent(combined['mean_total_return'], signed=True)}, "
            f"final equity {money(combined['final_equity'])} of {money(combined['initial_cash'])}"
        )
    if args.trades_out:
        print(f"\ntrades written to {args.trades_out}")
    if args.report:
        print(f"report written to {args.report}" if len(results) == 1 else f"reports written next to {args.report}")
    if saved:
        print(saved)
    return 0


def _print_backtests(strategy: str, params: dict[str, Any], costs: dict[str, Any], summaries: list[dict[str, Any]]) -> None:
    """A backtest's result as ``cival backtest`` prints it (and ``cival report`` a saved
    one): the strategy, the costs, a column of metrics per data file, open positions."""
    from cival.backtest.metrics import format_metric, format_open_position
    from cival.core.fmt import money

    print(f"{strategy} {params}")
    print(
        f"costs: cash {money(costs['cash'])}, fees {costs['fee_bps']:g} bps, slippage {costs['slippage_bps']:g} bps, "
        f"fraction {costs['fraction']:g}"
        + (f", stop-loss {costs['stop_loss_pct']:g} %" if costs.get("stop_loss_pct") is not None else "")
        + (f", take-profit {costs['take_profit_pct']:g} %" if costs.get("take_profit_pct") is not None else "")
        + "; fills at the next bar's open\n"
    )
    names = [Path(str(s["data"])).name for s in summaries]
    width = max(16, *(len(n) + 2 for n in names))
    print(f"{'':<16}" + "".join(f"{n:>{width}}" for n in names))
    for key, label in SUMMARY_ROWS:
        cells = "".join(f"{format_metric(key, s.get(key)):>{width}}" for s in summaries)
        print(f"{label:<16}{cells}")
    for s, name in zip(summaries, names, strict=True):
        if s.get("open_position"):
            print(f"{name}: position still open: {format_open_position(s['open_position'])}")


def _in_param_order(strategy: str, names: Any) -> list[str]:
    """``names`` in the order of the strategy's parameters, as its commands print them (a
    store may keep a JSON object's keys in an order of its own: PostgreSQL's jsonb does)."""
    from cival.strategies import get_strategy

    try:
        fields = list(get_strategy(strategy).params_model.model_fields)
    except CivalError:  # a strategy this version does not know: as stored
        return list(names)
    return sorted(names, key=lambda n: fields.index(n) if n in fields else len(fields))


def _sweep_columns(params: Sequence[str], metric: str) -> list[str]:
    """The columns ``cival sweep`` prints: the parameters, the metric, then the usual few."""
    return [*params, *dict.fromkeys([metric, "trades", "total_return", "sharpe", "max_drawdown"])]


def _print_sweep(record: dict[str, Any], top: int = 10) -> None:
    """A saved sweep as ``cival report`` shows it: what was swept, and its best combinations."""
    import pandas as pd

    ranked = pd.DataFrame(record["results"])
    grid = {k: record["grid"][k] for k in _in_param_order(record["strategy"], record["grid"])}
    print(f"{record['strategy']}: {record['combinations']:,} combinations on {record['data']}, saved as {record['id']} at {record['created_at']}")
    print("grid: " + "; ".join(f"{name} {', '.join(map(str, values))}" for name, values in grid.items()))
    from cival.backtest.metrics import format_table

    shown = [c for c in _sweep_columns(list(grid), record["metric"]) if c in ranked.columns]
    print(f"top {min(top, len(ranked))} by {record['metric']}:")
    print(format_table(ranked.head(top)[shown]).to_string(index=False))


def _save(args: argparse.Namespace, write: Any) -> str | None:
    """With --save: write to the store (--url/--path, else DATABASE_URL, else the default
    file); returns the line saying where and how to see it again (None without --save)."""
    if not getattr(args, "save", False):
        return None
    from cival.store import open_store

    with open_store(args.url, args.path) as store:
        store.migrate()
        ids = write(store)
        where = ""  # how to name this store again, when it is not the default one
        if args.url:  # the URL itself, unless it holds a password (never printed)
            where = f" --url {args.url}" if str(store.location) == args.url else " --url URL"
        elif args.path and store.kind == "sqlite":
            where = f" --path {args.path}"
        return (
            f"saved as {', '.join(ids)} in the {store.kind} store ({store.location}); "
            f"`cival report {ids[0]}{where}` shows it again, `cival runs{where}` lists it"
        )


def cmd_sweep(args: argparse.Namespace) -> int:
    from cival.backtest import sweep
    from cival.runs import save_sweep

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
        max_move=_move(args),
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
    saved = _save(args, lambda store: [save_sweep(store, result)])
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
            "backend_reason": result.backend_reason,
            "seconds": round(result.seconds, 3),
            "costs": result.costs,
            "best": result.best(),
            "top": json.loads(top.to_json(orient="records")),
        }
        print(json.dumps(payload, indent=2))
        if saved:
            print(saved, file=sys.stderr)
        return 0
    print(
        f"{result.strategy}: {len(result.table)} combinations on {result.bars:,} bars of {result.source} "
        f"in {result.seconds:.1f} s"
        + (f"; {result.skipped} skipped (they break a rule across parameters)" if result.skipped else "")
    )
    where = "on Ray" if result.backend == "ray" else "in this process"
    print(f"ran {where}: {result.backend_reason}" if result.backend_reason else f"ran {where}")
    from cival.backtest.metrics import format_table

    shown = _sweep_columns(result.params, result.metric)
    print(f"top {len(top)} by {result.metric}:")
    print(format_table(top[shown]).to_string(index=False))
    if args.out:
        print(f"all results written to {args.out}")
    if saved:
        print(saved)
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
        max_move=_move(args),
    )
    windows = result.windows.copy()
    for column in ("train_start", "train_end", "test_start", "test_end"):
        windows[column] = windows[column].dt.strftime(ISO_SECONDS)
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
    from cival.backtest.metrics import format_metric, format_table

    print(f"{result.strategy}: {len(windows)} windows, train {result.train} bars, test {result.test} bars, by {m}")
    print(format_table(shown).to_string(index=False))
    oos = result.metrics
    print(
        f"\nstitched out of sample: {oos['trades']:,} trades, total return {format_metric('total_return', oos['total_return'])}, "
        f"Sharpe {format_metric('sharpe', oos['sharpe'])}, max drawdown {format_metric('max_drawdown', oos['max_drawdown'])}; "
        f"mean in-sample {m} {format_metric(m, windows[f'is_{m}'].mean())} "
        f"vs out of sample {format_metric(m, windows[f'oos_{m}'].mean())}"
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


# -- parser -----------------------------------------------------------------------------



def cash_arg(value: Decimal | None, flag: str = "--cash") -> Decimal:
    """The starting cash given on the command line (DEFAULT_CASH if not), checked against
    the books: positive, below their capacity, at most 8 decimal places. CivalError naming
    ``flag`` otherwise."""
    from cival.core.fmt import plain_number
    from cival.core.money import check_amount

    if value is None:
        return DEFAULT_CASH
    if value <= 0:
        raise CivalError(f"{flag}: must be more than 0, got {plain_number(value)}")
    return check_amount(value, what=flag)


def _decimal(text: str) -> Decimal:
    """An exact number from the command line (argparse type): money is never read as a float."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _max_move(text: str) -> float | None:
    """--max-move: a factor above 1, or ``off`` (argparse type)."""
    if text.strip().lower() in ("off", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 1 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text[:40]!r}: give a factor above 1 (e.g. 10) or 'off'")
    return value


def _add_move_argument(p: argparse.ArgumentParser, from_config: bool = False) -> None:
    # Not given, the attribute is absent: the command then uses the config's limit or
    # cival.data.bars.DEFAULT_MAX_MOVE (10, named in the help; not imported here, which
    # would load pandas for every command).
    where = "the config's data.max_move, else " if from_config else ""
    p.add_argument(
        "--max-move", type=_max_move, default=argparse.SUPPRESS, metavar="N|off",
        help=f"refuse a bar whose prices move more than N times the previous close, up or down "
        f"(default: {where}10; 'off' turns the check off)",
    )


def _move(args: argparse.Namespace) -> float | None:
    """--max-move as given, else the default limit for files."""
    from cival.data.bars import DEFAULT_MAX_MOVE

    return getattr(args, "max_move", DEFAULT_MAX_MOVE)  # type: ignore[no-any-return]


def _data_file(text: str) -> str:
    """A --data argument: a bars file's path, or a file shipped with Cival (``cival:data/NAME``)."""
    from cival.config import BUNDLED, resolve_data_path

    if not text.startswith(BUNDLED):
        return text
    try:
        return str(resolve_data_path(text, None))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    """A whole number >= 1 (argparse type)."""
    try:
        value = int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {value}")
    return value


def _add_cost_arguments(p: argparse.ArgumentParser) -> None:
    """The fill model's costs, shared by backtest, sweep and walkforward."""
    p.add_argument("--cash", type=_decimal, default=None, metavar="N", help=f"starting cash, exact (default {DEFAULT_CASH})")
    p.add_argument("--fee-bps", type=float, default=None, metavar="N", help=f"fee per side, basis points (default {DEFAULT_FEE_BPS:g})")
    p.add_argument("--slippage-bps", type=float, default=None, metavar="N", help=f"adverse slippage, basis points (default {DEFAULT_SLIPPAGE_BPS:g})")
    p.add_argument("--fraction", type=float, default=None, metavar="F", help=f"share of cash per entry (default {DEFAULT_FRACTION})")
    p.add_argument("--stop-loss-pct", type=float, default=None, metavar="P", help="stop-loss below the entry price, percent (off by default)")
    p.add_argument("--take-profit-pct", type=float, default=None, metavar="P", help="take-profit above the entry price, percent (off by default)")


def _add_ray_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--local", action="store_true", help="run in this process, without Ray")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")


def _add_store_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="PostgreSQL URL of the store (default: DATABASE_URL); keep passwords in the environment")
    p.add_argument("--path", help="embedded store file, when no URL is set (default: cival.sqlite3 in CIVAL_DATA_DIR)")


def _add_session_arguments(p: argparse.ArgumentParser, batch: int) -> None:
    p.add_argument("--data", type=_data_file, metavar="FILE", help="bars to replay (CSV or Parquet, or cival:data/NAME; default: the config's data)")
    p.add_argument("--speed", default="max", metavar="max|N", help="max (default: as fast as possible) or N x the bars' pace")
    _add_move_argument(p, from_config=True)
    p.add_argument("--bars", type=_positive_int, default=None, metavar="N", help="replay only the first N bars")
    p.add_argument("--report", metavar="FILE.json", help="write the session report as JSON")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the tree")
    p.add_argument("--quiet", action="store_true", help="no live tree, only the summary")
    p.add_argument("--batch", type=_positive_int, default=batch, metavar="N", help=f"bars per batch at --speed max (default {batch})")
    p.add_argument("--inline", action="store_true", help="run every farm's agents inside the farm's process")
    p.add_argument(
        "--no-migrate", action="store_true",
        help="do not apply pending schema versions to the store first (fail instead, naming them)",
    )
    _add_ray_arguments(p)


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
        help="paper-trade the demo cluster on bundled bars, with a live wallet tree",
        description=(
            "Run the bundled demo cluster (three farms: Alligator, Darvas, Elliott) as Ray actors, "
            "paper trading the bundled BTC/USDT hourly bars: the master wallet funds the farms, the "
            "farms fund their agents, every fill is booked, and the terminal shows the wallet tree "
            "as it changes. Ends with a summary and the ledger audit. Same options as `cival paper`."
        ),
    )
    p.add_argument("--config", dest="config", metavar="FILE", help="a cluster config instead of the bundled demo.yaml")
    _add_session_arguments(p, batch=100)
    p.set_defaults(func=cmd_demo, param=None, cash=None, fee_bps=None, slippage_bps=None, fraction=None)

    p = sub.add_parser(
        "paper",
        help="run a paper-trading session: a cluster config, or one strategy on a data file",
        description=(
            "Paper trading: build the cluster of CONFIG (master wallet, farm and agent actors on Ray; "
            "RAY_ADDRESS or --address joins an existing cluster) and replay bars through it, or, with "
            "--strategy, a one-farm, one-agent cluster on --data with the backtest's defaults. Fills "
            "follow the backtest's fill model, so the trades equal `cival backtest`'s on the same bars. "
            "Ctrl-C stops cleanly: open positions are reported and the ledger audited."
        ),
    )
    p.add_argument("config_path", nargs="?", metavar="CONFIG", help="cluster config (YAML)")
    p.add_argument("--strategy", metavar="NAME", help="instead of a config: alligator, darvas or elliott")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a strategy parameter (repeatable; with --strategy)")
    p.add_argument("--cash", type=_decimal, default=None, metavar="N", help=f"with --strategy: starting cash, exact (default {DEFAULT_CASH})")
    p.add_argument("--fee-bps", type=float, default=None, metavar="N", help=f"with --strategy: fee per side, basis points (default {DEFAULT_FEE_BPS:g})")
    p.add_argument(
        "--slippage-bps", type=float, default=None, metavar="N", help=f"with --strategy: adverse slippage, basis points (default {DEFAULT_SLIPPAGE_BPS:g})"
    )
    p.add_argument("--fraction", type=float, default=None, metavar="F", help=f"with --strategy: share of cash per entry (default {DEFAULT_FRACTION})")
    _add_session_arguments(p, batch=10_000)
    p.set_defaults(func=cmd_paper)

    p = sub.add_parser(
        "db",
        help="the store's schema: apply pending versions (upgrade) or list them (status)",
        description=(
            "The store keeps runs and their books: PostgreSQL when DATABASE_URL (or --url) is set, "
            "else an embedded SQLite file (--path, default in the user's data directory). "
            "`upgrade` applies the pending schema versions; `status` lists every version."
        ),
    )
    p.add_argument("action", choices=("upgrade", "status"))
    _add_store_arguments(p)
    p.add_argument("--json", action="store_true", help="print the versions as JSON")
    p.set_defaults(func=cmd_db)

    p = sub.add_parser(
        "runs",
        help="list the runs in the store, newest first (paper sessions, saved backtests and sweeps)",
        description=(
            "List the runs in the store (PostgreSQL when DATABASE_URL or --url is set, else the embedded "
            "SQLite file), newest first: kind (paper, backtest, sweep), id, name, mode, status, start, bars "
            "and what it came to. Backtests and sweeps are those kept by --save. Reads the store as it is: "
            "it creates and changes nothing."
        ),
    )
    _add_store_arguments(p)
    p.add_argument(
        "--kind", action="append", choices=("paper", "backtest", "sweep"),
        help="only runs of this kind (repeatable): paper sessions, or backtests and sweeps kept by --save (default: all)",
    )
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="at most N runs (default 50)")
    p.add_argument("--json", action="store_true", help="print the runs as JSON")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser(
        "resume",
        help="carry on a run whose driver died (or that was stopped), from its last bar",
        description=(
            "Resume a run left running by a process that died (killed, out of memory, a lost machine) "
            "or stopped early: every node is rebuilt from the store, the feed takes up at the first bar "
            "not yet handled, and the run ends as it would have without the interruption. A run whose "
            "driver is still alive is refused. The store is the run's: --url or DATABASE_URL, else --path."
        ),
    )
    p.add_argument("run_id", metavar="RUN_ID", help="the run (a unique prefix of its id is enough)")
    _add_store_arguments(p)
    p.add_argument("--report", metavar="FILE.json", help="write the session report as JSON")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of the tree")
    p.add_argument("--quiet", action="store_true", help="no live tree, only the summary")
    _add_ray_arguments(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "serve",
        help="host paper-trading sessions behind the operator API",
        description=(
            "Start the given configs as sessions and serve the operator API (under /api/v1; OpenAPI at "
            "/api/v1/openapi.json) until stopped: runs, their reports and wallet trees, pause, resume, stop, "
            "and operator commands. The API needs the server's token (CIVAL_SERVER_TOKEN, else one kept in the "
            "data directory, owner-only). Runs the server was driving when it stopped are resumed at start."
        ),
    )
    p.add_argument("configs", nargs="*", metavar="CONFIG", help="cluster configs to start")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; another needs user accounts and TLS)")
    p.add_argument("--port", type=_positive_int, default=8000, help="port (default 8000)")
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate chain (PEM)")
    p.add_argument("--tls-key", metavar="FILE", help="the certificate's private key (PEM)")
    _add_store_arguments(p)
    _add_ray_arguments(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("login", help="sign in to a cival serve (the client commands use it)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--server", metavar="URL", help="the server (default: CIVAL_SERVER, else http://127.0.0.1:8000)")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("status", help="a served run's wallet tree, or the server's runs")
    p.add_argument("run_id", nargs="?", metavar="RUN")
    p.add_argument("--server", metavar="URL", help="the server (default: CIVAL_SERVER, else the one signed in to)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser(
        "command", help="give an operator command to a served run",
        description="KIND: deposit AMOUNT, allocate FARM AMOUNT, collect FARM [AMOUNT], halt NAME, resume NAME, kill.",
    )
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("kind", choices=["deposit", "allocate", "collect", "halt", "resume", "kill"])
    p.add_argument("target", nargs="?", metavar="TARGET", help="a farm or agent (the master for deposit and kill)")
    p.add_argument("amount", nargs="?", metavar="AMOUNT", help="an exact amount, e.g. 1000.50")
    p.add_argument("--reason", help="why (shown with the halt)")
    p.add_argument("--server", metavar="URL")
    p.set_defaults(func=cmd_command)

    for name, text in (
        ("allocate", "allocate an amount of the master's free cash to a farm of a served run"),
        ("collect", "bring a farm's money (an amount, or everything) back to the master of a served run"),
        ("halt", "halt a farm or an agent of a served run: it exits at the next open and enters nothing more"),
        ("release", "let a halted farm or agent of a served run trade again"),
        ("kill", "the kill switch of a served run: every farm halted, every position sold at the next open"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("run_id", metavar="RUN")
        if name in ("allocate", "collect"):
            p.add_argument("target", metavar="FARM")
            p.add_argument("amount", nargs=None if name == "allocate" else "?", metavar="AMOUNT",
                           help="an exact amount, e.g. 1000.50" + (" (default: everything)" if name == "collect" else ""))
        elif name in ("halt", "release"):
            p.add_argument("target", metavar="NAME", help="a farm or an agent (farm:NAME or agent:NAME when both exist)")
        p.add_argument("--reason", help="why (kept in the audit trail)")
        p.add_argument("--server", metavar="URL")
        p.set_defaults(func=cmd_operate)

    p = sub.add_parser(
        "goals", help="list, add, assign or cancel the goals of a served run",
        description=(
            "list RUN; add RUN FILE (a YAML or JSON file of one goal, as in a config's goals; - for standard input); "
            "assign RUN NAME --farm FARM / --agent AGENT [--weight W]; cancel RUN NAME."
        ),
    )
    p.add_argument("action", choices=["list", "add", "assign", "cancel"])
    p.add_argument("run_id", metavar="RUN")
    p.add_argument("name", nargs="?", metavar="NAME|FILE", help="the goal (assign, cancel) or the goal's file (add)")
    p.add_argument("--farm", action="append", help="assign: a farm whose agents' trades count (may repeat)")
    p.add_argument("--agent", action="append", help="assign: an agent whose trades count (may repeat)")
    p.add_argument("--weight", default="1", help="assign: each trade counts this much (default 1)")
    p.add_argument("--reason", help="why (kept in the audit trail)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--server", metavar="URL")
    p.set_defaults(func=cmd_goals)

    p = sub.add_parser(
        "users",
        help="the accounts of the operator API (cival serve)",
        description=(
            "Add, list or remove the users who may sign in to the operator API, each with a role: viewer "
            "(reads), operator (also commands), admin (also starts and stops runs). The password comes from "
            "CIVAL_PASSWORD or a prompt, never from an argument; only its argon2 hash is kept."
        ),
    )
    p.add_argument("action", choices=["add", "list", "remove"])
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("--role", choices=["viewer", "operator", "admin"])
    p.add_argument("--json", action="store_true", help="list as JSON")
    _add_store_arguments(p)
    p.set_defaults(func=cmd_users)

    p = sub.add_parser(
        "report",
        help="rebuild a run's report from the store, or show a saved backtest or sweep",
        description=(
            "Rebuild a run's report from the store alone: every node's books, fills and state are restored "
            "and the report made from them. --json prints the same JSON the live run's --report wrote. "
            "For a backtest or sweep kept by --save (bt-..., sw-...): its result as the command printed it; "
            "--json prints the saved record."
        ),
    )
    p.add_argument("run_id", metavar="ID", help="the run's or saved result's id (a unique prefix is enough)")
    _add_store_arguments(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "watch",
        help="tail a run's events (live from Redis, or from the store)",
        description=(
            "Print a run's events, one line each: live from its Redis stream while it runs (REDIS_URL or "
            "--redis, for runs that stream there), else from the store, which also serves finished runs. "
            "Without RUN_ID, the newest run. Follows a running run until it finishes (Ctrl-C stops)."
        ),
    )
    p.add_argument("run_id", nargs="?", metavar="RUN_ID", help="the run's id or a unique prefix (default: the newest run)")
    p.add_argument("--type", action="append", metavar="TYPE", help="only events of this type (repeatable), e.g. order_filled")
    p.add_argument("--entity", action="append", metavar="GLOB", help="only events about this entity (repeatable; globs: 'agent:gator*')")
    p.add_argument("--no-follow", action="store_true", help="print what is there and stop")
    p.add_argument("--from-store", action="store_true", help="read from the store even when Redis is configured")
    p.add_argument("--redis", metavar="URL", help="Redis URL (default: REDIS_URL)")
    _add_store_arguments(p)
    p.set_defaults(func=cmd_watch)

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
    p.add_argument("--data", required=True, type=_data_file, metavar="FILE", help="bars: CSV or Parquet with a timestamp and OHLC(V), or cival:data/NAME")
    p.add_argument(
        "--param", action="append", metavar="NAME=VALUE", help="a strategy parameter (repeatable), e.g. jaw_period=21"
    )
    p.add_argument("--drop-bad-rows", action="store_true", help="drop invalid rows instead of refusing the file")
    _add_move_argument(p)
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
    p.add_argument("--data", required=True, action="append", type=_data_file, metavar="FILE", help="bars file, or cival:data/NAME (repeatable)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="a strategy parameter (repeatable)")
    _add_cost_arguments(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--trades-out", metavar="FILE.csv", help="write the closed trades as CSV")
    p.add_argument(
        "--report", metavar="FILE.html",
        help="write a self-contained HTML report (with several files: one per file, named FILE-<data>.html)",
    )
    p.add_argument("--drop-bad-rows", action="store_true", help="drop invalid rows instead of refusing the file")
    _add_move_argument(p)
    p.add_argument(
        "--save", action="store_true",
        help="keep the result in the store (--url, DATABASE_URL, else --path or the embedded file); `cival runs` lists it",
    )
    _add_store_arguments(p)
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
    p.add_argument("--data", required=True, type=_data_file, metavar="FILE", help="bars file, or cival:data/NAME")
    p.add_argument(
        "--grid", required=True, action="append", metavar="NAME=START:STOP:STEP|V1,V2,...",
        help="values of one parameter (repeatable; stop included)",
    )
    p.add_argument("--metric", default="sharpe", help="ranking metric (default sharpe)")
    p.add_argument("--top", type=_positive_int, default=10, metavar="N", help="how many to print (default 10)")
    p.add_argument("--json", action="store_true", help="print the best and the top N as JSON")
    p.add_argument("--out", metavar="FILE", help="write every combination's metrics (.parquet or .csv)")
    _add_cost_arguments(p)
    p.add_argument("--chunk", type=_positive_int, default=10, metavar="N", help="combinations per vectorbt call (default 10)")
    p.add_argument("--save", action="store_true", help="keep every combination's result in the store; `cival runs` lists it")
    _add_store_arguments(p)
    _add_ray_arguments(p)
    p.add_argument("--drop-bad-rows", action="store_true", help="drop invalid rows instead of refusing the file")
    _add_move_argument(p)
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
    p.add_argument("--data", required=True, type=_data_file, metavar="FILE", help="bars file, or cival:data/NAME")
    p.add_argument("--grid", required=True, action="append", metavar="NAME=START:STOP:STEP|V1,V2,...")
    p.add_argument("--train", required=True, type=_positive_int, metavar="N", help="bars per train window")
    p.add_argument("--test", required=True, type=_positive_int, metavar="M", help="bars per test window (also the step)")
    p.add_argument("--metric", default="sharpe", help="selection metric (default sharpe)")
    p.add_argument("--json", action="store_true", help="print windows and out-of-sample metrics as JSON")
    _add_cost_arguments(p)
    _add_ray_arguments(p)
    p.add_argument("--drop-bad-rows", action="store_true", help="drop invalid rows instead of refusing the file")
    _add_move_argument(p)
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
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM during a session (Terminated)
        print("interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:  # the reader went away (`cival watch | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
