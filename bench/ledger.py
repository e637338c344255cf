"""How fast the books post and audit.

Measures, as medians over repeated runs in this one process:
  * raw ledger transactions per second (allocations between two cash accounts);
  * fills per second through WalletTree (a buy or a sell, each with its fee: two
    transactions), including average-cost relief on sales;
  * audit time per 10,000 transactions (a full replay of the journal).

There is no external baseline for these figures; they bound what the runtime can ask of
the books per bar. Usage: python bench/ledger.py [--n 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from decimal import Decimal

from cival.core.ledger import AccountKind, Ledger, Posting, TxType
from cival.core.wallets import WalletTree

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def bench_raw(n: int) -> float:
    ledger = Ledger("USD")
    ledger.open_account("a", AccountKind.CASH, "a")
    ledger.open_account("b", AccountKind.CASH, "b")
    ledger.post(TxType.DEPOSIT, [Posting("a", Decimal(10**9)), Posting("external", -Decimal(10**9))], "dep", T0)
    amount = Decimal("12.34567891")
    start = time.perf_counter()
    for i in range(n):
        src, dst = ("a", "b") if i % 2 == 0 else ("b", "a")
        ledger.post(TxType.REBALANCE, (Posting(src, -amount), Posting(dst, amount)), f"t{i}", T0)
    return n / (time.perf_counter() - start)


def fund_tree() -> WalletTree:
    tree = WalletTree("m", "USD")
    tree.add_farm("f")
    tree.add_agent("f", "a")
    tree.deposit("1000000", "dep", T0)
    tree.allocate("farm:f", "1000000", "f", T0)
    tree.allocate("agent:a", "1000000", "a", T0)
    return tree


def bench_fills(n: int) -> tuple[float, WalletTree]:
    tree = fund_tree()
    qty, fee = Decimal("0.12345678"), Decimal("5.33")
    start = time.perf_counter()
    for i in range(n // 2):
        price = Decimal(43000 + (i % 97))
        tree.buy("a", "BTC", qty, price, fee, f"b{i}", T0)
        tree.sell("a", "BTC", qty, price + 10, fee, f"s{i}", T0)
    elapsed = time.perf_counter() - start
    return (n // 2) * 2 / elapsed, tree


def bench_audit(tree: WalletTree) -> float:
    start = time.perf_counter()
    report = tree.ledger.audit()
    elapsed = time.perf_counter() - start
    assert report.ok, report.problems
    return elapsed / len(tree.ledger) * 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="transactions / fills per run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    raw, fills, audits = [], [], []
    for _ in range(args.repeat):
        raw.append(bench_raw(args.n))
        rate, tree = bench_fills(args.n)
        fills.append(rate)
        audits.append(bench_audit(tree))
    print(f"ledger transactions/s (raw post):       {statistics.median(raw):>10,.0f}")
    print(f"fills/s (WalletTree, 2 tx per fill):    {statistics.median(fills):>10,.0f}")
    print(f"audit, ms per 10,000 transactions:      {statistics.median(audits) * 1000:>10,.1f}")
    print(f"(medians of {args.repeat} runs of {args.n:,})")


if __name__ == "__main__":
    main()
