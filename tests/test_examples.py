"""The example scripts run and their books add up."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wallets_example_collects_the_profit_and_audits_ok():
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "wallets.py")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "realised P&L +375.00" in out and "realised P&L -240.00" in out
    # 135 realised - 44.735 fees = 90.265 profit, all collected back to the master.
    assert "audit OK: 13 transactions" in out
    assert "+ realised P&L - fees     90.265 USD" in out
    assert "gator    cash    20,000.00" in out


@pytest.mark.slow
def test_paper_example_trades_collects_and_audits_ok():
    import re
    from decimal import Decimal

    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "paper.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "funded: 50,000.00 USD across 4 ledgers" in out
    trades = [int(n) for n in re.findall(r"trades\s+(\d+)", out)]
    assert len(trades) == 3 and all(n > 0 for n in trades)
    collected, master = (Decimal(x.replace(",", "")) for x in re.search(
        r"collected ([\d,.]+) USD from the breakout farm; master now holds ([\d,.]+) USD", out).groups())
    # The master kept its 20 % reserve of 50,000 and received the breakout farm's cash.
    assert master == Decimal("10000.00") + collected
    assert "audit OK: 4 ledgers" in out and re.search(r"residual\s+0 USD", out)
