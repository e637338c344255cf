"""The ``cival`` command from a foreign cwd: through ``cival.cli.main`` in the test's process
(``cival_cli``), and as ``python -m cival`` in a subprocess (``cival_subprocess``) for each
family of commands, and wherever signals, exit codes or Ray processes are the point."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import cival
from tests.helpers import run_cival

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
DEMO = REPO / "configs" / "demo.yaml"
DEMO_TEXT = DEMO.read_text(encoding="utf-8")

DEMO_WALLETS = ["master", "trend", "breakout", "price-action", "gator-13-8-5", "darvas-20-3", "elliott-5pct"]


@pytest.fixture
def cival_cli(tmp_path):
    """Run ``cival ARGS`` in this process (``cival.cli.main``) with cwd=tmp_path: what a
    command prints and returns, without a new interpreter per call. The tests that use
    ``cival_subprocess`` run the real ``python -m cival`` for each family of commands."""
    from tests.helpers import cival_in_process

    return lambda *args: cival_in_process(*args, cwd=tmp_path)


@pytest.fixture
def cival_subprocess(tmp_path):
    """Run ``python -m cival ARGS`` with the checkout's src on PYTHONPATH and cwd=tmp_path."""
    return lambda *args: run_cival(*args, cwd=tmp_path)


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout
    assert "Traceback" not in result.stderr


def bad_config_text() -> str:
    text = DEMO_TEXT.replace("    agents:\n", "    agnets:\n", 1)
    text = text.replace('initial_deposit: "100000.00"', 'initial_deposit: "-5"')
    assert "agnets" in text and '"-5"' in text
    return text


# -- version and help ---------------------------------------------------------------------


def test_version_command(cival_subprocess):
    result = cival_subprocess("version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cival {cival.__version__}"
    assert re.fullmatch(r"cival \d+\.\d+\.\d+\S*", result.stdout.strip())


def test_version_flag(cival_subprocess):
    result = cival_subprocess("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"cival {cival.__version__}"


def test_help_lists_commands(cival_subprocess):
    result = cival_subprocess("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: cival")
    for command in ("version", "validate", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["version", "validate", "demo"])
def test_command_help(cival_subprocess, command):
    result = cival_subprocess(command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: cival {command}")


def test_demo_help_mentions_its_options(cival_cli):
    result = cival_cli("demo", "--help")
    assert "--config" in result.stdout and "--json" in result.stdout


def test_no_command_is_a_usage_error(cival_subprocess):
    result = cival_subprocess()
    assert result.returncode == 2
    assert "usage: cival" in result.stdout + result.stderr
    assert_no_traceback(result)


@pytest.mark.parametrize("args", [["frobnicate"], ["validate"], ["demo", "--bogus"]], ids=" ".join)
def test_bad_usage_exits_2(cival_subprocess, args):
    result = cival_subprocess(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr
    assert_no_traceback(result)


# -- validate -------------------------------------------------------------------------------


@pytest.mark.slow
def test_validate_demo_config(cival_subprocess):
    result = cival_subprocess("validate", str(DEMO))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout
    assert str(DEMO) in result.stdout
    assert "3 farms, 3 agents, 3 goals" in result.stdout
    assert result.stderr == ""


def test_validate_bad_config_lists_every_error(cival_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(bad_config_text(), encoding="utf-8")
    result = cival_cli("validate", str(bad))
    assert result.returncode == 1
    assert "master.initial_deposit" in result.stderr
    assert "must be > 0" in result.stderr
    assert "farms[0].agnets" in result.stderr
    assert "did you mean 'agents'" in result.stderr
    assert str(bad) in result.stderr
    assert "OK" not in result.stdout
    assert_no_traceback(result)


def test_validate_relative_path_from_cwd(cival_cli, tmp_path):
    # The data path is relative to the config's folder, not to the working directory.
    text = DEMO_TEXT.replace("path: cival:data/", "path: data/")
    assert text != DEMO_TEXT
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "data").mkdir()
    (tmp_path / "conf" / "data" / "BTCUSDT-1h.csv.gz").write_bytes((DEMO.parent / "data" / "BTCUSDT-1h.csv.gz").read_bytes())
    (tmp_path / "conf" / "mine.yaml").write_text(text, encoding="utf-8")
    result = cival_cli("validate", "conf/mine.yaml")
    assert result.returncode == 0, result.stderr
    assert "mine.yaml: OK" in result.stdout
    (tmp_path / "mine.yaml").write_text(text, encoding="utf-8")
    result = cival_cli("validate", "mine.yaml")
    assert result.returncode == 1
    assert "data.path: file not found" in result.stderr and "read from the config's folder" in result.stderr


def test_validate_good_and_bad_reports_both(cival_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(bad_config_text(), encoding="utf-8")
    result = cival_cli("validate", str(DEMO), str(bad))
    assert result.returncode == 1
    assert f"{DEMO}: OK" in result.stdout
    assert str(bad) in result.stderr
    assert "master.initial_deposit" in result.stderr
    assert_no_traceback(result)


def test_validate_bad_then_good_still_checks_the_good_one(cival_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(bad_config_text(), encoding="utf-8")
    result = cival_cli("validate", str(bad), str(DEMO))
    assert result.returncode == 1
    assert f"{DEMO}: OK" in result.stdout


def test_validate_missing_file(cival_cli, tmp_path):
    result = cival_cli("validate", "missing.yaml")
    assert result.returncode == 1
    assert "missing.yaml" in result.stderr
    assert "not found" in result.stderr
    assert_no_traceback(result)


def test_validate_yaml_error(cival_cli, tmp_path):
    (tmp_path / "dup.yaml").write_text("name: a\nname: b\n", encoding="utf-8")
    result = cival_cli("validate", "dup.yaml")
    assert result.returncode == 1
    assert "duplicate key 'name'" in result.stderr
    assert "line 2" in result.stderr
    assert_no_traceback(result)


# -- demo -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_text_output(cival_subprocess):
    result = cival_subprocess("demo", "--local", "--bars", "600")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in DEMO_WALLETS:
        assert name in out, name
    assert str(DEMO) in out  # found the demo config without relying on cwd
    assert "Session finished: 600 bars of BTCUSDT" in out
    assert re.search(r"^audit OK: 7 ledgers", out, re.MULTILINE)
    assert re.search(r"^\s+residual\s+0 USD$", out, re.MULTILINE)
    assert_no_traceback(result)


def run_json(cival_cli, *args: str, command: str = "demo") -> dict:
    result = cival_cli(command, "--json", "--local", *args)
    assert result.returncode == 0, result.stderr
    assert_no_traceback(result)
    return json.loads(result.stdout)


def _cash(report: dict) -> dict[str, Decimal]:
    cash = {report["master"]["name"]: Decimal(report["master"]["cash"])}
    for farm in report["farms"]:
        cash[farm["name"]] = Decimal(farm["cash"])
        for agent in farm["agents"]:
            cash[agent["name"]] = Decimal(agent["cash"])
    return cash


@pytest.mark.slow
def test_demo_json_funding_is_exact(cival_cli):
    # One bar: orders fill at the next open, so the books hold the funding alone.
    out = run_json(cival_cli, "--bars", "1")
    assert out["cluster"] == "demo" and out["symbol"] == "BTCUSDT"
    assert out["ledger"]["currency"] == "USD"
    cash = _cash(out)
    assert list(cash) == ["master", "trend", "gator-13-8-5", "breakout", "darvas-20-3", "price-action", "elliott-5pct"]
    assert sum(cash.values(), Decimal(0)) == Decimal("100000.00")
    assert Decimal(out["ledger"]["total_equity"]) == Decimal("100000.00")
    assert out["ledger"]["audit_ok"] is True and Decimal(out["ledger"]["residual"]) == 0
    # 1 deposit, then each of the 6 allocations booked twice: sent and received.
    assert out["ledger"]["transactions"] == 13 and out["ledger"]["ledgers"] == 7

    # Master keeps the 10 % reserve; the other 90 000 go 0.4/0.3/0.3 to the farms.
    assert cash["master"] == Decimal("10000")
    farm_share = {"trend": Decimal(36), "breakout": Decimal(27), "price-action": Decimal(27)}
    agent_of = {"trend": "gator-13-8-5", "breakout": "darvas-20-3", "price-action": "elliott-5pct"}
    farms = {f["name"]: f for f in out["farms"]}
    for farm, pct in farm_share.items():
        allocated = Decimal("100000") * pct / 100
        assert Decimal(farms[farm]["total_equity"]) == allocated
        # Each farm keeps 5 % and passes 95 % on to its only agent.
        assert cash[agent_of[farm]] == allocated * Decimal("0.95")
        assert cash[farm] == allocated * Decimal("0.05")
    assert cash["gator-13-8-5"] == Decimal("34200")
    assert cash["darvas-20-3"] == cash["elliott-5pct"] == Decimal("25650")


CUSTOM = """\
version: 1
name: custom
master:
  name: treasury
  base_currency: EUR
  initial_deposit: "1000.01"
  allocation: {policy: equal}
farms:
  - name: fa
    type: trend_following
    allocation: {policy: equal, reserve_pct: 5}
    agents:
      - {name: a1, strategy: alligator}
  - name: fb
    type: breakout
    allocation: {policy: equal}
    agents:
      - {name: b1, strategy: darvas}
      - {name: b2, strategy: darvas}
  - name: fc
    type: price_action
    allocation: {policy: fixed, reserve_pct: 10, weights: {c1: 1, c2: 2}}
    agents:
      - {name: c1, strategy: elliott}
      - {name: c2, strategy: elliott}
data: {source: synthetic}
"""


@pytest.mark.slow
def test_paper_with_custom_config_books_exact_amounts(cival_cli, tmp_path):
    (tmp_path / "custom.yaml").write_text(CUSTOM, encoding="utf-8")
    out = run_json(cival_cli, "custom.yaml", "--bars", "1", command="paper")
    assert out["cluster"] == "custom"
    assert out["ledger"]["currency"] == "EUR"
    cash = _cash(out)
    assert list(cash) == ["treasury", "fa", "a1", "fb", "b1", "b2", "fc", "c1", "c2"]

    # Ledger quantum is 1e-8, so 1000.01 is 100_001_000_000 units.
    # Master, equal, no reserve: 100_001_000_000 / 3 = 33_333_666_666 rest 2;
    # the two leftover units go to the first two farms (equal remainders: earlier first).
    fa = fb = Decimal("333.33666667")
    fc = Decimal("333.33666666")
    # fa: reserve 5 % of 333.33666667 = 16.6668333335, rounded up to 16.66683334.
    fa_reserve = Decimal("16.66683334")
    a1 = fa - fa_reserve  # 316.66983333
    # fb: 33_333_666_667 units / 2 = 16_666_833_333 rest 1 -> the first agent gets it.
    b1, b2 = Decimal("166.66833334"), Decimal("166.66833333")
    # fc: reserve 10 % of 333.33666666 = 33.333666666 -> 33.33366667; 300.00299999 left
    # = 30_000_299_999 units split 1:2 -> 10_000_099_999.67 and 20_000_199_999.33;
    # the leftover unit goes to the larger remainder (c1), not simply the first target.
    fc_reserve = Decimal("33.33366667")
    c1, c2 = Decimal("100.00100000"), Decimal("200.00199999")

    assert cash == {
        "treasury": Decimal(0),
        "fa": fa_reserve,
        "a1": Decimal("316.66983333"),
        "fb": Decimal(0),
        "b1": b1,
        "b2": b2,
        "fc": fc_reserve,
        "c1": c1,
        "c2": c2,
    }
    assert a1 == Decimal("316.66983333")
    assert fa_reserve + a1 == fa
    assert b1 + b2 == fb
    assert fc_reserve + c1 + c2 == fc
    assert sum(cash.values(), Decimal(0)) == Decimal("1000.01")

    equity = {f["name"]: Decimal(f["total_equity"]) for f in out["farms"]}
    assert (Decimal(out["ledger"]["total_equity"]), equity["fa"], equity["fb"], equity["fc"]) == (Decimal("1000.01"), fa, fb, fc)
    assert out["ledger"]["audit_ok"] is True
    assert Decimal(out["ledger"]["residual"]) == 0
    assert out["ledger"]["transactions"] == 1 + 2 * (3 + 5)


@pytest.mark.slow
def test_paper_with_custom_config_text_output(cival_cli, tmp_path):
    (tmp_path / "custom.yaml").write_text(CUSTOM, encoding="utf-8")
    result = cival_cli("paper", "custom.yaml", "--local", "--bars", "300")
    assert result.returncode == 0, result.stderr
    for name in ("treasury", "fa", "a1", "fb", "b1", "b2", "fc", "c1", "c2"):
        assert re.search(rf"(^|\s){re.escape(name)}\s", result.stdout, re.MULTILINE), name
    assert "from deposits of 1,000.01" in result.stdout
    assert "audit OK" in result.stdout


def test_demo_with_invalid_config(cival_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(bad_config_text(), encoding="utf-8")
    result = cival_cli("demo", "--config", str(bad))
    assert result.returncode == 1
    assert result.stderr.startswith("error: ")
    assert str(bad) in result.stderr
    assert "master.initial_deposit" in result.stderr
    assert result.stdout == ""
    assert_no_traceback(result)


def test_demo_with_missing_config(cival_cli):
    result = cival_cli("demo", "--config", "nope.yaml", "--json")
    assert result.returncode == 1
    assert "nope.yaml" in result.stderr
    assert result.stdout == ""
    assert_no_traceback(result)


def test_bug_validate_complex_yaml_key_has_no_traceback(cival_cli, tmp_path):
    (tmp_path / "complex.yaml").write_text("? [a, b]\n: 1\n", encoding="utf-8")
    result = cival_cli("validate", "complex.yaml")
    assert result.returncode == 1
    assert_no_traceback(result)


def stop_a_paper_session(tmp_path, shared_data, stop) -> tuple[str, dict, str]:
    """Run ``cival paper`` on 119,784 five-minute bars at 20,000x (in a session of its own,
    on a local Ray as Cival starts one), call ``stop(driver_pid, processes)`` once bars
    flow, and check what every clean stop gives: the batches sent finish, the books are
    audited and printed, the report is written and is the one the store rebuilds, the run
    is ``interrupted`` in the store, no traceback, and no Ray process left. Returns the
    exit code, the output and the report."""
    import signal

    from tests.helpers import (
        cival_in_process,
        gcs_server,
        processes_holding,
        session_processes,
        wait_until_gone,
    )

    report = tmp_path / "report.json"
    env = dict(os.environ, PYTHONPATH=str(SRC))
    data = shared_data / "intraday_crypto" / "binance_BTCUSDT_5m.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cival", "paper", "--strategy", "darvas", "--data", str(data), "--speed", "20000",
         "--report", str(report)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Not a terminal: a progress line every few seconds; the first means bars are flowing.
        announced = proc.stdout.readline()  # the run id comes first
        assert re.match(r"run \d{8}T\d{6}Z-[0-9a-f]{8} \(sqlite store: ", announced), announced
        first = proc.stdout.readline()
        assert re.match(r"paper-darvas: bar [\d,]+/119,784", first), first
        token = gcs_server(proc.pid).environ().get("RAY_AUTH_TOKEN")  # marks each of the cluster's processes
        processes = session_processes(proc.pid)
        stop(proc.pid, processes)
        out = first + proc.communicate(timeout=180)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert "Session interrupted" in out and "audit OK: 3 ledgers" in out, out[-3000:]
    assert_no_traceback(subprocess.CompletedProcess([], 0, out, ""))
    assert "SIGTERM received" not in out  # no stack dumps
    saved = json.loads(report.read_text())
    assert saved["interrupted"] is True and 0 < saved["bars"] < 119_784 and saved["ledger"]["audit_ok"] is True
    # The store has the run as interrupted, and rebuilds the very report the session wrote.
    run_id = announced.split()[1]
    rebuilt = cival_in_process("report", run_id, "--json", cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert json.loads(rebuilt.stdout) == saved
    listed = cival_in_process("runs", "--json", cwd=tmp_path)
    assert {r["id"]: r["status"] for r in json.loads(listed.stdout)}[run_id] == "interrupted"
    assert wait_until_gone(processes) == [], "Ray processes left running"
    if token is not None:  # also those Ray reparented, wherever they are
        assert processes_holding("RAY_AUTH_TOKEN", token) == [], "Ray processes left running"
    return proc.returncode, out, saved


@pytest.mark.slow
def test_ctrl_c_stops_a_paper_session_cleanly(tmp_path, shared_data):
    """Ctrl-C (SIGINT to the whole foreground group, as a terminal sends it) mid-session:
    a clean stop, exit code 130. Ray's processes block SIGINT, so the actors report."""
    import signal

    code, out, _ = stop_a_paper_session(tmp_path, shared_data, lambda pid, _: os.killpg(pid, signal.SIGINT))
    assert code == 130, out[-3000:]
    assert "rebuilt from the store" not in out


@pytest.mark.slow
def test_sigterm_to_the_driver_stops_a_paper_session_as_ctrl_c_does(tmp_path, shared_data):
    """SIGTERM to the driver alone (``kill PID``): the same clean stop as Ctrl-C, exit code
    143 (128 + SIGTERM), the report from the actors, which were not signalled."""
    import signal

    code, out, _ = stop_a_paper_session(tmp_path, shared_data, lambda pid, _: os.kill(pid, signal.SIGTERM))
    assert code == 143, out[-3000:]
    assert "rebuilt from the store" not in out


@pytest.mark.slow
def test_sigterm_to_every_process_of_a_session_stops_it_with_the_report_from_the_store(tmp_path, shared_data):
    """SIGTERM to every process of the session, as a service manager stopping it sends
    (systemd's KillMode=control-group; the process group alone would miss the workers, which
    Ray puts in groups of their own). Ray's processes do not block SIGTERM and die of it,
    actors included, so the session cannot ask them: it rebuilds the report from the store
    (every node journals before it replies), says so, and stops cleanly with 143."""
    import signal

    import psutil

    def terminate_all(pid: int, processes: list[psutil.Process]) -> None:
        os.killpg(pid, signal.SIGTERM)
        for p in processes[1:]:
            try:
                p.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass

    code, out, _ = stop_a_paper_session(tmp_path, shared_data, terminate_all)
    assert code == 143, out[-3000:]
    assert "Ray's processes were stopped with the session: the report below is rebuilt from the store." in out


@pytest.mark.slow
def test_paper_joins_an_existing_ray_cluster_given_by_ray_address(tmp_path):
    """RAY_ADDRESS (or --address): the session's actors go to that cluster, which is left
    running afterwards. The cluster requires a token, as a multi-node deployment should;
    cival is given the same one in its environment."""
    import secrets
    import signal
    import socket
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    import tempfile

    ray_cli = Path(sys.executable).parent / "ray"
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}, **auth}
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    head = subprocess.Popen(
        [str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--block",
         f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "ray start --head did not come up"
                time.sleep(0.5)
        env = dict(env, PYTHONPATH=str(SRC), RAY_ADDRESS=f"127.0.0.1:{port}")
        result = subprocess.run(
            [sys.executable, "-m", "cival", "demo", "--bars", "300", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["mode"] == "ray" and report["ledger"]["audit_ok"] is True and report["bars"] == 300
        assert head.poll() is None  # the cluster it joined is still up
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)


# -- amounts and counts on the command line --------------------------------------------------

BUNDLED = REPO / "configs" / "data" / "BTCUSDT-1h.csv.gz"
ON_BUNDLED = ("--strategy", "darvas", "--data", str(BUNDLED), "--local")
BEYOND = "is beyond what the books hold"
CASH_CASES = [
    # (id, cash, message after "error: --cash: ")
    ("1e20", "1e20", f"100000000000000000000 {BEYOND}"),
    ("17-digits", "12345678901234567.89", f"12345678901234567.89 {BEYOND}"),
    ("at-capacity", "1000000000000000", f"1000000000000000 {BEYOND}"),
    ("9-places", "0.123456789", "0.123456789 has more than 8 decimal places"),
    ("zero", "0", "must be more than 0, got 0"),
    ("negative", "-5", "must be more than 0, got -5"),
]
CASH_COMMANDS = {
    "paper": ("paper", *ON_BUNDLED),
    "backtest": ("backtest", "darvas", "--data", str(BUNDLED)),
    "sweep": ("sweep", "darvas", "--data", str(BUNDLED), "--grid", "lookback=10,20", "--local"),
    "walkforward": ("walkforward", "darvas", "--data", str(BUNDLED), "--grid", "lookback=10,20",
                    "--train", "500", "--test", "500", "--local"),
}


@pytest.mark.parametrize(
    ("command", "cash", "message"),
    # Every case on paper trading, where the cash reaches the books; one on each other command.
    [pytest.param("paper", c, m, id=f"paper-{i}") for i, c, m in CASH_CASES]
    + [pytest.param(command, *CASH_CASES[0][1:], id=f"{command}-1e20") for command in CASH_COMMANDS if command != "paper"],
)
def test_cash_the_books_cannot_hold_is_refused_naming_the_flag(cival_cli, command, cash, message):
    result = cival_cli(*CASH_COMMANDS[command], "--cash", cash)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: --cash: {message}"), result.stderr
    assert result.stdout == ""
    assert_no_traceback(result)


@pytest.mark.slow
def test_cash_is_read_exactly_not_through_a_float(cival_cli):
    # 20 significant digits: a float would keep 17 (123456789012.12346).
    out = run_json(cival_cli, *ON_BUNDLED, "--cash", "123456789012.12345678", "--bars", "2", command="paper")
    assert out["ledger"]["deposits"] == "123456789012.12345678"
    assert sum(_cash(out).values(), Decimal(0)) == Decimal("123456789012.12345678")


SWEEP = ("sweep", "darvas", "--data", str(BUNDLED), "--grid", "lookback=10,20")
USAGE = [
    # (command and arguments before the flag, flag, value, expected complaint)
    (("paper", *ON_BUNDLED), "--batch", "0", "must be a positive whole number, got 0"),
    (("paper", *ON_BUNDLED), "--bars", "0", "must be a positive whole number, got 0"),
    (("paper", *ON_BUNDLED), "--bars", "-3", "must be a positive whole number, got -3"),
    (("demo",), "--bars", "2.5", "'2.5' is not a whole number"),
    (("paper", *ON_BUNDLED), "--cash", "lots", "'lots' is not a number"),
    (("paper", *ON_BUNDLED), "--cash", "nan", "'nan' is not a finite number"),
    (SWEEP, "--chunk", "0", "must be a positive whole number, got 0"),
    (SWEEP, "--top", "-1", "must be a positive whole number, got -1"),
    ((*SWEEP[:-2], "--grid", "lookback=10,20", "--test", "5"), "--train", "0", "must be a positive whole number, got 0"),
    (("runs",), "--limit", "0", "must be a positive whole number, got 0"),
]


@pytest.mark.parametrize(
    ("args", "flag", "value", "complaint"),
    [pytest.param(*u, id=f"{u[0][0]} {u[1]} {u[2]}") for u in USAGE],
)
def test_counts_and_amounts_of_the_wrong_kind_are_usage_errors(cival_cli, args, flag, value, complaint):
    if args[0] == "sweep" and flag == "--train":
        args = ("walkforward", *args[1:])
    result = cival_cli(*args, flag, value)
    assert result.returncode == 2, result.stderr
    assert f"error: argument {flag}: {complaint}" in result.stderr
    assert_no_traceback(result)


@pytest.mark.parametrize("speed", ["fast", "0", "-2", "nan", "inf", "1e-300"])
def test_bad_speed_is_refused_with_a_message(cival_cli, speed):
    result = cival_cli("paper", *ON_BUNDLED, "--speed", speed)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("error: speed "), result.stderr
    assert "use 'max' or a positive number (times real time)" in result.stderr
    assert_no_traceback(result)


def test_validate_refuses_quantity_steps_and_bar_counts_beyond_the_books(cival_cli, tmp_path):
    text = DEMO_TEXT.replace("sizing: {fraction: 1.0}", "sizing: {fraction: 1.0, qty_step: 1.0e-30}", 1)
    assert "1.0e-30" in text
    text = text.replace('initial_deposit: "100000.00"', "initial_deposit: 1.0e+20")
    path = tmp_path / "steps.yaml"
    path.write_text(text, encoding="utf-8")
    result = cival_cli("validate", str(path))
    assert result.returncode == 1
    assert f"master.initial_deposit: 100000000000000000000 {BEYOND}" in result.stderr
    assert "farms[0].agents[0].sizing.qty_step: 0.000000000000000000000000000001 is smaller than the ledger's quantum" \
        in result.stderr
    assert "a quantity step must be at least 1e-8 and a whole multiple of it" in result.stderr
    assert_no_traceback(result)
    synthetic = tmp_path / "synthetic.yaml"
    synthetic.write_text(
        "name: s\nmaster: {initial_deposit: 1000}\ndata: {source: synthetic, bars: 1000000000000}\n"
        "farms: [{name: f, type: breakout, agents: [{name: a, strategy: darvas}]}]\n",
        encoding="utf-8",
    )
    result = cival_cli("validate", str(synthetic))
    assert result.returncode == 1
    assert "data.bars: 1,000,000,000,000 bars is more than 10,000,000: every bar is held in memory" in result.stderr


# -- implausible prices -----------------------------------------------------------------------


def test_a_price_spike_is_refused_and_the_limit_is_a_flag(cival_cli, tmp_path):
    lines = gzip.decompress(BUNDLED.read_bytes()).decode().splitlines()[:120]
    header, body = lines[0], lines[1:]
    stamp, *prices = body[59].split(",")[:5]
    body[59] = ",".join([stamp, *(str(float(p) * 1e6) for p in prices[:4]), *body[59].split(",")[5:]])
    path = tmp_path / "spiky.csv"
    path.write_text("\n".join([header, *body]) + "\n", encoding="utf-8")
    out = tmp_path / "signals.csv"

    result = cival_cli("signals", "darvas", "--data", str(path), "--out", str(out))
    assert result.returncode == 1
    assert f"row 60 (line 61, {stamp.replace(' ', 'T')}" in result.stderr
    assert "price moved beyond 10x the previous close (high " in result.stderr
    assert "--max-move off" in result.stderr
    assert not out.exists()
    assert_no_traceback(result)

    result = cival_cli("signals", "darvas", "--data", str(path), "--out", str(out), "--drop-bad-rows")
    assert result.returncode == 0, result.stderr
    assert "118 bars (1 bad rows dropped)" in result.stdout

    result = cival_cli("signals", "darvas", "--data", str(path), "--out", str(out), "--max-move", "off")
    assert result.returncode == 0, result.stderr
    assert "119 bars" in result.stdout

    result = cival_cli("signals", "darvas", "--data", str(path), "--out", str(out), "--max-move", "1")
    assert result.returncode == 2
    assert "argument --max-move: '1': give a factor above 1 (e.g. 10) or 'off'" in result.stderr


def test_data_flags_take_the_bundled_names_a_config_takes(cival_cli):
    by_name = cival_cli("backtest", "darvas", "--data", "cival:data/BTCUSDT-1h.csv.gz", "--json")
    by_path = cival_cli("backtest", "darvas", "--data", str(BUNDLED), "--json")
    assert by_name.returncode == by_path.returncode == 0, by_name.stderr
    assert json.loads(by_name.stdout) == json.loads(by_path.stdout)
    missing = cival_cli("backtest", "darvas", "--data", "cival:data/nope.csv")
    assert missing.returncode == 2 and "no bundled data named 'cival:data/nope.csv'; Cival ships cival:data/BTCUSDT-1h.csv.gz" in missing.stderr
    assert_no_traceback(missing)


def test_a_grid_value_that_is_not_a_value_is_refused_by_name(cival_cli):
    result = cival_cli("sweep", "alligator", "--data", str(BUNDLED), "--grid", "jaw_period=[1]", "--local")
    assert result.returncode == 1 and "grid for jaw_period: [1] is not a value" in result.stderr, result.stderr
    assert_no_traceback(result)
