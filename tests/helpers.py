"""Helpers shared by several test modules (fixtures live in conftest.py; no test module
imports another): running the CLI bounded or in process, the configs several modules
run (recovery, rebalancing), comparing reports, and the processes, sockets and
environment of a session running in a subprocess (read with psutil)."""

from __future__ import annotations

import contextlib
import copy
import io
import ipaddress
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from cival.actors.farm_ports import AgentMessages
from cival.config import config_from_dict, parse_yaml
from cival.events import RedisBus, StoredEvent, parse_event, run_stream_key
from tests.conftest import ROOT

SRC = ROOT / "src"

GiB = 1 << 30


def run_cival(
    *args: str, cwd: Path, timeout: float = 60, memory: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m cival ARGS`` with the checkout's src first on PYTHONPATH, in ``cwd``.

    ``timeout`` (seconds) and ``memory`` (bytes of address space, RLIMIT_AS) bound the
    process, so that input that makes it run away fails the test instead of holding the
    suite: subprocess.TimeoutExpired, or a MemoryError in its output.
    """
    environment = dict(os.environ if env is None else env)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(SRC)] + ([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])
    )
    environment.pop("PYTHONSTARTUP", None)

    def limit() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-m", "cival", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,  # noqa: PLW1509 - only sets a resource limit
    )


def cival_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``cival ARGS`` as :func:`run_cival` runs it, but in this process (``cival.cli.main``
    in ``cwd``), for the tests of what a command prints and returns: the same entry point
    without a new interpreter's imports. Its exit code is what ``main`` returns, or the
    code of the ``SystemExit`` that argparse raises for usage errors and ``--help``; any
    other exception propagates (a traceback fails the test)."""
    from cival.cli import main

    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # as the interpreter ends on it
                code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
                if not isinstance(exit_.code, int | None):
                    print(exit_.code, file=err)
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["cival", *args], code, out.getvalue(), err.getvalue())


def recovery_config():
    """A cluster that carries state across calls in every way a session can: rebalancing by
    performance within a farm, selling to rebalance, the master's rebalancing, goals that
    collect, a risk limit, an inline farm (see tests/test_recovery.py)."""
    return config_from_dict(recovery_raw())


def recovery_raw():
    """The raw config of :func:`recovery_config` (a fresh dict each time)."""
    return (
        {
            "name": "recovery",
            "master": {
                "initial_deposit": "100000",
                "allocation": {"policy": "performance", "metric": "return", "lookback_bars": 96, "min_share": 0.2, "reserve_pct": 10},
                "rebalance": {"every_bars": 96},
            },
            "farms": [
                {
                    "name": "trend",
                    "type": "trend_following",
                    "allocation": {"policy": "performance", "lookback_bars": 48, "reserve_pct": 5},
                    "rebalance": {"every_bars": 48},
                    "agents": [
                        {"name": "gator-a", "strategy": "alligator"},
                        {"name": "gator-b", "strategy": "alligator", "params": {"jaw_period": 21, "teeth_period": 13}},
                    ],
                },
                {
                    "name": "breakout",
                    "type": "breakout",
                    "allocation": {"policy": "equal", "reserve_pct": 5},
                    "rebalance": {"every_bars": 72, "liquidate": True},
                    "agents": [
                        {"name": "darvas-a", "strategy": "darvas"},
                        {"name": "darvas-b", "strategy": "darvas", "params": {"lookback": 40}},
                    ],
                },
                {
                    "name": "waves",
                    "type": "price_action",
                    "runtime": {"agents": "inline"},
                    "agents": [{"name": "elliott-a", "strategy": "elliott", "params": {"zigzag_pct": 3}}],
                },
            ],
            "goals": [
                {"name": "gator-profit", "type": "profit_target", "target": {"profit": "200"}, "assign": [{"agent": "gator-a"}]},
                {"name": "breakout-busy", "type": "trade_volume", "target": {"trades": 40}, "assign": [{"farm": "breakout"}],
                 "on_complete": "collect_all"},
                {"name": "waves-quality", "type": "strategy_performance", "target": {"min_win_rate": 0.9, "min_trades": 5},
                 "assign": [{"farm": "waves"}], "deadline": {"bars": 3000}},
            ],
            "risk": {"farm_max_drawdown_pct": 40},
            "checkpoint": {"every_bars": 24},
            "data": {"source": "file", "path": str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")},
        }
    )


def comparable(report):
    """The figures that must not depend on where agents run."""
    out = copy.deepcopy(report)
    for key in ("generated_at", "mode"):
        out.pop(key)
    for farm in out["farms"]:
        farm.pop("agents_mode")
    for key in ("ledgers", "transactions"):
        out["ledger"].pop(key)
    return out

def rebalance_config(policy, inline=False, every=200):
    """One farm of three alligator agents rebalanced by ``policy`` every ``every`` bars."""
    raw = {
        "name": "rebal",
        "master": {"initial_deposit": "30000"},
        "farms": [
            {
                "name": "trend",
                "type": "trend_following",
                "allocation": policy,
                "rebalance": {"every_bars": every},
                "runtime": {"agents": "inline" if inline else "actors"},
                "agents": [
                    {"name": "fast", "strategy": "alligator", "params": {"jaw_period": 8, "jaw_shift": 5, "teeth_period": 5, "teeth_shift": 3, "lips_period": 3, "lips_shift": 2}},
                    {"name": "mid", "strategy": "alligator"},
                    {"name": "slow", "strategy": "alligator", "params": {"jaw_period": 34, "teeth_period": 21, "lips_period": 13}},
                ],
            }
        ],
        "checkpoint": {"every_bars": 100},
        "data": {"source": "file", "path": str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz"), "symbol": "BTCUSDT"},
    }
    return config_from_dict(raw)

def master_rebalance_config(policy=None, inline=False):
    """The demo without goals or risk limits, its master rebalancing the farms every 240 bars."""
    raw = parse_yaml((ROOT / "configs" / "demo.yaml").read_text(), "demo")
    raw["data"]["path"] = str(ROOT / "configs" / "data" / "BTCUSDT-1h.csv.gz")
    raw["risk"] = {}
    raw["goals"] = []
    raw["checkpoint"] = {"every_bars": 120}
    raw["master"]["rebalance"] = {"every_bars": 240}
    if policy is not None:
        raw["master"]["allocation"] = policy
    if inline:
        for farm in raw["farms"]:
            farm["runtime"] = {"agents": "inline"}
    return config_from_dict(raw)


def session_processes(pid: int) -> list[psutil.Process]:
    """A session's driver and every process under it (Ray's GCS, raylet, agents, workers)."""
    driver = psutil.Process(pid)
    return [driver, *driver.children(recursive=True)]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until_gone(processes: list[psutil.Process], timeout: float = 30.0) -> list[psutil.Process]:
    """Poll until none of ``processes`` runs (bounded by ``timeout``); returns those still running."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    return [p for p in processes if alive(p)]


def listening(process: psutil.Process) -> list[tuple[str, int]]:
    """The (address, port) of every TCP socket ``process`` listens on."""
    try:
        connections = process.net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []
    return [(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]


def is_loopback(address: str) -> bool:
    """127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6 (``::ffff:127.0.0.1``)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped is not None and mapped.is_loopback)


def gcs_server(pid: int, timeout: float = 60.0) -> psutil.Process:
    """The GCS of the session whose driver is ``pid``, once it listens (bounded poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in session_processes(pid)[1:]:
            try:
                if p.name() == "gcs_server" and listening(p):
                    return p
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no gcs_server listening under process {pid}")


def gcs_port(gcs: psutil.Process) -> int:
    ports = {port for _, port in listening(gcs)}
    assert len(ports) == 1, f"the GCS listens on {sorted(ports)}"
    return ports.pop()


def environment_value(process: psutil.Process, name: str) -> str | None:
    """A variable of the environment ``process`` was started with (what a driver sets in
    its own os.environ shows in the processes it starts, not in /proc of the driver)."""
    return process.environ().get(name)


def processes_holding(name: str, value: str) -> list[int]:
    """The pids of every process on this machine whose environment has ``name=value``
    (a per-cluster token marks every process of that cluster, wherever it was reparented)."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(name) == value and alive(p):
                found.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


# -- sample events (test_events_*.py) ----------------------------------------------------

RUN = "run-7f3a"
T0 = datetime(2024, 10, 30, 16, 0, tzinfo=UTC)

# (entity, source, data) per type: what the runtime's nodes record (cival.actors.nodes).
SAMPLES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "run_started": ("run", "run", {
        "cluster": "demo", "mode": "local", "symbol": "BTCUSDT", "data": "data/btcusdt_1h.parquet",
        "store": "sqlite", "streams": "redis", "currency": "USD",
        "wallets": [
            {"ref": "master", "kind": "master", "parent": None},
            {"ref": "farm:trend", "kind": "farm", "parent": "master"},
            {"ref": "agent:gator-13-8-5", "kind": "agent", "parent": "farm:trend"},
        ],
        "config": {"name": "demo", "master": {"capital": "100000"}, "checkpoint": {"every_bars": 100}},
    }),
    "farm_created": ("farm:trend", "master", {
        "farm": "trend", "farm_type": "trend_following", "agents_mode": "inline",
        "allocation": {"policy": "equal"}, "agents": ["gator-13-8-5"],
    }),
    "agent_farm_assignment": ("agent:gator-13-8-5", "farm:trend", {
        "agent": "gator-13-8-5", "farm": "trend", "strategy": "alligator",
        "params": {"jaw_period": 13, "teeth_period": 8, "lips_period": 5}, "symbol": "BTCUSDT",
    }),
    "goal_created": ("goal:first-profit", "master", {
        "goal": "first-profit", "goal_type": "profit_target", "target": {"amount": "500"},
        "on_complete": "collect_profit", "deadline": {"bars": 2000},
    }),
    "goal_assignment": ("goal:first-profit", "master", {
        "goal": "first-profit", "farm": "trend", "agent": None, "weight": "1",
    }),
    "wallet_transaction": ("agent:gator-13-8-5", "agent:gator-13-8-5", {
        "ledger": "agent:gator-13-8-5", "tx_seq": 17, "tx_type": "trade_buy", "key": "fill:gator:412",
        "postings": [
            {"account": "agent:gator-13-8-5/cash", "amount": "-35617.25", "quantity": "0"},
            {"account": "agent:gator-13-8-5/position/BTCUSDT", "amount": "35617.25", "quantity": "0.5"},
        ],
        "memo": "buy 0.5 BTCUSDT @ 71234.5",
    }),
    "wallet_balance_update": ("agent:gator-13-8-5", "agent:gator-13-8-5", {
        "wallet": "agent:gator-13-8-5", "cash": "14347.15000000", "currency": "USD",
        "positions": [{"symbol": "BTCUSDT", "qty": "0.5", "cost": "35617.25"}],
    }),
    "fund_allocation": ("farm:trend", "master", {
        "source": "master", "target": "farm:trend", "amount": "60000.00", "key": "fund:master>farm:trend",
        "kind": "allocation",
    }),
    "fund_collection": ("farm:trend", "farm:trend", {
        "source": "farm:trend", "target": "master", "amount": "512.34", "key": "goal:first-profit:collect",
    }),
    "farm_performance_update": ("farm:trend", "farm:trend", {
        "farm": "trend", "equity": "60512.34", "cash": "24895.09", "realized_pnl": "498.7",
        "unrealized_pnl": "13.64", "fees": "71.2", "trades": 4, "in_position": True, "max_drawdown": 0.0213,
        "sharpe": 1.37, "bars": 412,
    }),
    "farm_rebalance": ("master", "master", {
        "wallet": "master", "bars": 400, "moves": {"trend": "250.5", "breakout": "-250.5"},
    }),
    "goal_progress_update": ("goal:first-profit", "master", {
        "goal": "first-profit", "status": "active", "progress": "45.5", "collected": "0", "bars": 400,
    }),
    "goal_completed": ("goal:first-profit", "master", {
        "goal": "first-profit", "completed_at": "2024-10-30T16:00:00Z", "completing_trade": "gator-13-8-5:3",
        "on_complete": "collect_profit",
    }),
    "order_submitted": ("agent:gator-13-8-5", "agent:gator-13-8-5", {
        "order_id": "gator-13-8-5:411", "agent": "gator-13-8-5", "symbol": "BTCUSDT", "side": "buy",
        "signal_at": "2024-10-30T15:00:00Z",
    }),
    "order_rejected": ("agent:gator-13-8-5", "agent:gator-13-8-5", {
        "agent": "gator-13-8-5", "symbol": "BTCUSDT", "side": "buy", "signal_at": "2024-10-30T15:00:00Z",
        "reason": "not enough cash to buy one unit (0.00000001 BTCUSDT): 0 available, about 0.0007 needed at 71234.5",
    }),
    "order_filled": ("agent:gator-13-8-5", "agent:gator-13-8-5", {
        "fill_id": "gator-13-8-5:412", "order_id": "gator-13-8-5:411", "agent": "gator-13-8-5",
        "symbol": "BTCUSDT", "side": "buy", "qty": "0.5", "price": "71234.5", "fee": "35.6",
        "notional": "35617.25", "reason": "signal",
    }),
    "halt": ("agent:gator-13-8-5", "farm:trend", {"reason": "drawdown", "resume": False}),
    "operator_action": ("run", "session", {
        "n": 3, "command": "allocate", "target": "trend", "by": "alice@127.0.0.1", "status": "applied",
        "result": {"command": "allocate", "n": 3, "source": "master", "target": "farm:trend", "amount": "1500.5",
                   "at": "2024-10-30T20:00:00Z", "key": "command:3"},
    }),
    "run_finished": ("run", "run", {
        "status": "finished", "bars": 720, "start": "2024-10-01T00:00:00Z", "end": "2024-10-30T23:00:00Z",
        "total_equity": "100512.34", "audit_ok": True,
    }),
}


def stored(event_type: str, seq: int = 1, *, data: dict[str, Any] | None = None, entity: str | None = None,
           at: datetime | None = None, run_id: str = RUN, event_id: str | None = None) -> StoredEvent:
    """A stored row of ``event_type`` from SAMPLES (``data``/``entity`` override the sample's)."""
    sample_entity, source, sample_data = SAMPLES[event_type]
    return StoredEvent(
        run_id=run_id, seq=seq, id=event_id or f"{event_type}:{seq}", source=source, type=event_type,
        entity=entity or sample_entity, at=at or T0 + timedelta(hours=seq),
        data=json.loads(json.dumps(sample_data if data is None else data)),
    )


def with_(event_type: str, **changes: Any) -> dict[str, Any]:
    """The sample's data with some keys changed (a value of ``...`` removes the key)."""
    data = json.loads(json.dumps(SAMPLES[event_type][2]))
    for key, value in changes.items():
        if value is ...:
            data.pop(key)
        else:
            data[key] = value
    return data


def apply(state: Any, ops: list[dict[str, Any]]) -> Any:
    """A minimal RFC 6902 applier (add/replace/remove on objects), written independently of
    the encoder's: the test's own reading of the standard."""
    state = copy.deepcopy(state)
    for op in ops:
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in op["path"].split("/")[1:]]
        if not tokens:
            assert op["op"] in ("add", "replace")
            state = copy.deepcopy(op["value"])
            continue
        parent = state
        for token in tokens[:-1]:
            parent = parent[token]  # RFC 6902: the parent must exist
        key = tokens[-1]
        if op["op"] == "add":
            parent[key] = copy.deepcopy(op["value"])
        elif op["op"] == "replace":
            assert key in parent, f"replace of a missing member {op['path']}"
            parent[key] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[key]
        else:
            raise AssertionError(f"unexpected op {op}")
    return state


# A whole little run, in seq order: (type, data overrides, entity override).
SEQUENCE: list[tuple[str, dict[str, Any] | None, str | None]] = [
    ("run_started", None, None),
    ("farm_created", None, None),
    ("agent_farm_assignment", None, None),
    ("goal_created", None, None),
    ("goal_assignment", None, None),
    ("fund_allocation", None, None),
    ("wallet_balance_update", with_("wallet_balance_update", wallet="farm:trend", cash="60000", positions=[]),
     "farm:trend"),
    ("fund_allocation", with_("fund_allocation", source="farm:trend", target="agent:gator-13-8-5",
                              amount="50000", key="fund:farm:trend>agent:gator-13-8-5"), "agent:gator-13-8-5"),
    ("order_submitted", None, None),
    ("order_filled", None, None),
    ("wallet_transaction", None, None),
    ("wallet_balance_update", None, None),
    ("farm_performance_update", None, None),
    ("goal_progress_update", None, None),
    ("farm_rebalance", None, None),
    ("goal_progress_update", with_("goal_progress_update", status="completed", progress="100",
                                   collected="512.34", bars=412), None),
    ("goal_completed", None, None),
    ("fund_collection", None, None),
    ("halt", None, None),
    ("run_finished", None, None),
]


class Keys:
    """A private run id and key prefix; every key under the prefix is deleted afterwards."""

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.run = f"run-{uuid.uuid4().hex[:10]}"
        self.prefix = f"cival-test-{uuid.uuid4().hex[:10]}"
        self.client = redis.Redis.from_url(url, socket_timeout=5)

    @property
    def stream(self) -> str:
        return run_stream_key(self.run, self.prefix)

    @property
    def global_stream(self) -> str:
        return f"{self.prefix}:events"

    def bus(self, url: str | None = None, **kw: Any) -> RedisBus:
        return RedisBus(url or self.url, self.run, prefix=self.prefix, **kw)

    def cleanup(self) -> None:
        keys = list(self.client.scan_iter(f"{self.prefix}:*"))
        if keys:
            self.client.delete(*keys)
        self.client.close()


def run_events(run: str, extra_orders: int = 0) -> list:
    """The little run of SEQUENCE with ``extra_orders`` order events before its end."""
    rows = [(t, data, entity) for t, data, entity in SEQUENCE[:-1]]
    rows += [("order_submitted", with_("order_submitted", order_id=f"o{i}"), None) for i in range(extra_orders)]
    rows.append(SEQUENCE[-1])
    return [parse_event(stored(t, seq, data=data, entity=entity, run_id=run))
            for seq, (t, data, entity) in enumerate(rows, start=1)]


def orders(run: str, first: int, count: int) -> list:
    """``count`` order_submitted events (one stream entry each) from seq ``first``."""
    return [parse_event(stored("order_submitted", seq, run_id=run,
                               data=with_("order_submitted", order_id=f"o{seq}")))
            for seq in range(first, first + count)]


class Outbox(AgentMessages):
    """A farm's ports that book the farm's side of each movement and deliver nothing: the
    test holds the messages and delivers them itself (to agents with books of their own)."""

    def __init__(self, farm: Any) -> None:
        self._farm = farm

    @property
    def farm(self) -> Any:
        return self._farm

    def commit(self) -> None:
        pass


class Server:
    """``cival serve`` in a process of its own, on 127.0.0.1 and a free port, with a store
    in ``folder``; ``call()`` speaks to its API with its token (or another)."""

    TOKEN = "test-token-" + "x" * 24

    def __init__(
        self, folder: Path, *args: str, token: str | None = TOKEN, env: dict[str, str] | None = None, store_url: str | None = None,
        cafile: Path | None = None, local: bool = True,
    ) -> None:
        import socket
        import ssl

        self.tls = ssl.create_default_context(cafile=str(cafile)) if cafile is not None else None

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.folder = folder
        self.url = f"{'https' if cafile else 'http'}://127.0.0.1:{self.port}/api/v1"
        extra = env or {}
        env = dict(os.environ, PYTHONPATH=str(SRC), CIVAL_DATA_DIR=str(folder / "data"), **extra)
        env.pop("CIVAL_SERVER_TOKEN", None)
        if token is not None:
            env["CIVAL_SERVER_TOKEN"] = token
        self.token = token
        self.log = open(folder / f"serve-{self.port}.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cival", "serve", *(["--local"] if local else []), "--port", str(self.port),
             *(["--url", store_url] if store_url else ["--path", str(folder / "store.sqlite3")]), *args],
            cwd=folder, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                if self.call("GET", "/health", token=None)[0] == 200:
                    break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {self.output()}")
            time.sleep(0.1)

    def call(self, method: str, path: str, body: Any = None, token: str | None = "") -> tuple[int, Any]:
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json"}
        key = self.token if token == "" else token
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, method=method, data=data, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120, context=self.tls) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
            if exc.code == 429:  # the header and the body say the same wait
                assert exc.headers.get("Retry-After") == str(body["error"]["retry_after"])
            return exc.code, body

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return (self.folder / f"serve-{self.port}.log").read_text()

    def kill(self) -> None:
        """SIGKILL, as an out-of-memory killer or a lost machine would."""
        import signal

        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.log.close()

    def stop(self) -> int:
        """SIGTERM, as a service manager would; the exit code."""
        import signal

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(120)
        self.log.close()
        return self.process.returncode
