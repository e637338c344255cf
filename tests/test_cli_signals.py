"""`cival signals` end to end on real and written files: through ``cival.cli.main`` in the
test's process, and as a real subprocess for what a shell sees (output to stdout, exit code)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cival.data import load_bars
from cival.strategies import get_strategy
from tests.helpers import cival_in_process

SRC = Path(__file__).resolve().parents[1] / "src"


def cival(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``cival ARGS`` in this process (``cival.cli.main``): what the command writes and returns."""
    return cival_in_process(*args, cwd=cwd)


def cival_subprocess(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m cival ARGS``, a real process: its exit code and its streams as a shell sees them."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "cival", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


def no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("name, params", [("alligator", ["jaw_period=21"]), ("darvas", []), ("elliott", ["zigzag_pct=2.5"])])
def test_signals_csv_matches_the_strategy(shared_data, tmp_path, name, params):
    data = shared_data / "intraday_crypto" / "backtestingpy_SOLUSDT_1h.csv"
    out = tmp_path / "signals.csv"
    result = cival("signals", name, "--data", str(data), *sum((["--param", p] for p in params), []), "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "1000 bars" in result.stdout and str(out) in result.stdout

    written = pd.read_csv(out)
    strategy = get_strategy(name)
    expected = strategy.signals(load_bars(data), dict(p.split("=") for p in params))
    assert list(written.columns) == ["timestamp", *strategy.columns]
    assert written["timestamp"].iloc[0] == "2024-09-20T15:00:00Z"
    assert written["timestamp"].iloc[-1] == "2024-11-01T06:00:00Z"
    for column in strategy.columns:
        if column in strategy.bool_columns:
            assert set(written[column].unique()) <= {0, 1}
            assert (written[column].to_numpy() == expected[column].to_numpy().astype(int)).all()
        else:
            np.testing.assert_array_equal(written[column].to_numpy(), expected[column].to_numpy())


@pytest.mark.slow  # a subprocess
def test_signals_to_stdout(shared_data, tmp_path):
    data = shared_data / "daily_other" / "backtrader_2006-day-001.csv"
    result = cival_subprocess("signals", "darvas", "--data", str(data), "--out", "-", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "timestamp,box_top,box_bottom,entry,exit"
    assert len(lines) == 1 + 255
    assert "255 bars" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["alligator", "--param", "jaw_period=0"], "jaw_period: input should be greater than 0 (got 0); must be > 0"),
        (["alligator", "--param", "jaw_perod=5"], "unknown parameter 'jaw_perod'"),
        (["alligator", "--param", "jaw_period"], "write it as NAME=VALUE"),
        (["elliot"], "unknown strategy 'elliot'; known strategies: alligator, darvas, elliott"),
        (["elliott", "--param", "zigzag_pct=200"], "zigzag_pct: input should be less than 100"),
    ],
)
def test_bad_arguments_exit_1_with_a_clear_message(tmp_path, args, message):
    data = tmp_path / "bars.csv"
    data.write_text("timestamp,open,high,low,close\n2024-01-01T00:00:00Z,1,2,0.5,1.5\n2024-01-01T01:00:00Z,1.5,2,1,1.8\n")
    result = cival("signals", *args, "--data", str(data), "--out", str(tmp_path / "o.csv"), cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    no_traceback(result)
    assert not (tmp_path / "o.csv").exists()


def test_dirty_file_is_refused_then_loads_with_drop_bad_rows(shared_data, tmp_path):
    data = shared_data / "daily_us_equities" / "djia_BA.csv"
    refused = cival("signals", "darvas", "--data", str(data), "--out", str(tmp_path / "o.csv"), cwd=tmp_path)
    assert refused.returncode == 1
    assert "djia_BA.csv" in refused.stderr and "row" in refused.stderr and "--drop-bad-rows" in refused.stderr
    no_traceback(refused)

    kept = cival("signals", "darvas", "--data", str(data), "--drop-bad-rows", "--out", str(tmp_path / "o.csv"), cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    dropped = load_bars(data, drop_bad_rows=True).attrs["dropped_rows"]
    assert dropped > 0 and f"({dropped} bad rows dropped)" in kept.stdout


@pytest.mark.slow  # a subprocess
def test_missing_data_file(tmp_path):
    result = cival_subprocess("signals", "darvas", "--data", "nope.csv", "--out", "o.csv", cwd=tmp_path)
    assert result.returncode == 1 and "nope.csv" in result.stderr
    no_traceback(result)
