"""The example scripts run and their books add up."""

import subprocess
import sys
from pathlib import Path

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
