"""Books for a small cluster by hand: fund it, trade, collect the profit, audit.

Run: python examples/wallets.py
"""

from decimal import ROUND_UP, Decimal

from cival.core import WalletTree

FEE_BPS = Decimal(10)  # 0.10 % of notional, each side


def fee(qty: Decimal, price: Decimal) -> Decimal:
    return (qty * price * FEE_BPS / 10_000).quantize(Decimal("1e-8"), ROUND_UP)


def main() -> None:
    tree = WalletTree("master", "USD")
    tree.add_farm("trend")
    tree.add_agent("trend", "gator")

    tree.deposit("50000", key="deposit-1")
    tree.allocate("farm:trend", "20000", key="fund-trend")
    tree.allocate("agent:gator", "20000", key="fund-gator")

    # Two round trips in BTC; each fill books the trade and its fee.
    trades = [(Decimal("0.25"), Decimal("40000"), Decimal("41500")), (Decimal("0.3"), Decimal("41000"), Decimal("40200"))]
    for i, (qty, entry, exit_) in enumerate(trades, start=1):
        tree.buy("gator", "BTC", qty, entry, fee(qty, entry), key=f"trade-{i}-buy")
        booking = tree.sell("gator", "BTC", qty, exit_, fee(qty, exit_), key=f"trade-{i}-sell")
        print(f"trade {i}: {qty} BTC {entry} -> {exit_}, realised P&L {booking.realized_pnl:+.2f}")

    # Send what the agent earned above its 20,000 principal back to the master.
    profit = tree.cash("agent:gator").amount - Decimal(20000)
    if profit > 0:
        tree.collect("agent:gator", profit, key="collect-gator")
        tree.collect("farm:trend", None, key="collect-trend")

    for row in tree.tree():
        print(f"{'  ' * row.depth}{row.name:<8} cash {row.cash:>12,.2f}  fees {row.fees:>7,.2f}  realised {row.realized_pnl:>+9,.2f}")
    print(tree.ledger.audit())


if __name__ == "__main__":
    main()
