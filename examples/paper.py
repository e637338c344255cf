"""Paper trading from Python: a two-farm cluster built in code, run, then half its profit
collected back to the master wallet, with the books audited at every step.

    python examples/paper.py            # the nodes in this process (quick)
    python examples/paper.py --ray      # the same on Ray actors: master, farms, agents

Uses the bars bundled with Cival (configs/data/BTCUSDT-1h.csv.gz), the first 3,000 hours.
"""

from __future__ import annotations

import argparse
from decimal import Decimal
from pathlib import Path

from cival.actors.books import combine
from cival.actors.nodes import cluster_spec
from cival.config import config_from_dict
from cival.core.bar import BarBatch
from cival.runtime import LocalCluster, RayCluster
from cival.session import replay_batches, session_bars

DATA = Path(__file__).resolve().parents[1] / "configs" / "data" / "BTCUSDT-1h.csv.gz"

CONFIG = {
    "name": "example",
    "master": {"initial_deposit": "50000", "allocation": {"policy": "fixed", "weights": {"trend": 2, "breakout": 1}, "reserve_pct": 20}},
    "farms": [
        {
            "name": "trend",
            "type": "trend_following",
            "allocation": {"policy": "equal"},
            "runtime": {"agents": "inline"},  # both agents inside the farm's process
            "agents": [
                {"name": "gator-fast", "strategy": "alligator"},
                {"name": "gator-slow", "strategy": "alligator", "params": {"jaw_period": 34, "teeth_period": 21, "lips_period": 13}},
            ],
        },
        {
            "name": "breakout",
            "type": "breakout",
            "agents": [{"name": "darvas-50", "strategy": "darvas", "params": {"lookback": 50}}],  # its own actor
        },
    ],
    "costs": {"fee_bps": 7.5, "slippage_bps": 2},
    "data": {"source": "file", "path": str(DATA), "symbol": "BTCUSDT"},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ray", action="store_true", help="run the nodes as Ray actors")
    args = parser.parse_args()

    config = config_from_dict(CONFIG)
    spec = cluster_spec(config)
    cluster = RayCluster(spec) if args.ray else LocalCluster(spec)
    cluster.start()
    try:
        cluster.fund()
        funded = combine(cluster.summaries())
        print(f"funded: {funded.cash:,.2f} USD across {funded.ledgers} ledgers")
        for batch in replay_batches(session_bars(config, max_bars=3000), "max", 500):
            assert isinstance(batch, BarBatch)
            cluster.wait(cluster.submit(batch))
        for farm in cluster.farm_snapshots():
            for agent in farm["agents"]:
                print(
                    f"{farm['name']:>8}/{agent['name']:<10} trades {agent['trade_count']:>3}  "
                    f"realised {Decimal(agent['realized_pnl']):>10,.2f}  fees {Decimal(agent['fees']):>8,.2f}  "
                    f"equity {Decimal(agent['equity']):>10,.2f}"
                )
        # Take everything the breakout farm holds (its agent's cash, then its own) back up.
        transfer = cluster.collect("breakout", None, reason="example")
        print(f"collected {transfer.amount:,.2f} USD from the breakout farm; master now holds "
              f"{Decimal(cluster.master_snapshot()['cash']):,.2f} USD")
        print(combine(cluster.summaries()))
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
