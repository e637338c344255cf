"""Scenario tests for the wallet hierarchy over the ledger, with exact Decimal expectations."""

from decimal import Decimal as D

import pytest

from cival.core.ledger import IdempotencyConflictError, InsufficientFundsError, TxType
from cival.core.money import CurrencyMismatchError, Money
from cival.core.wallets import EntityKind, WalletError, WalletTree


@pytest.fixture
def tree() -> WalletTree:
    t = WalletTree("main", "USD")
    t.add_farm("trend")
    t.add_farm("breakout")
    t.add_agent("trend", "gator")
    t.add_agent("breakout", "box")
    t.deposit("100000", "dep")
    t.allocate("farm:trend", "60000", "f1")
    t.allocate("agent:gator", "50000", "a1")
    return t


def snapshot(t: WalletTree):
    return [(r.ref, r.cash, r.positions_at_cost, r.realized_pnl, r.fees) for r in t.tree()]


def test_funding_moves_cash_down_and_records_allocations(tree):
    assert tree.cash("master") == Money("40000", "USD")
    assert tree.cash("farm:trend") == Money("10000", "USD")
    assert tree.cash("agent:gator") == Money("50000", "USD")
    first, second = tree.allocations
    assert (first.source, first.target_type, first.target, first.amount) == (
        "master", EntityKind.FARM, "trend", Money("60000", "USD")
    )
    assert first.percentage_of_parent == D("60.0000")
    assert (second.source, second.target_type, second.target) == ("farm:trend", EntityKind.AGENT, "gator")
    assert second.percentage_of_parent == D("83.3333")  # 50,000 of the farm's 60,000
    assert tree.total_equity("master") == Money("100000", "USD")


def test_allocation_goes_only_from_parent_to_child(tree):
    with pytest.raises(WalletError, match="no parent"):
        tree.allocate("master", "1", "x")
    # box belongs to breakout, which has no cash: the farm is the payer and is refused.
    with pytest.raises(InsufficientFundsError, match="farm:breakout/cash has 0.00 USD available"):
        tree.allocate("agent:box", "1", "x")
    with pytest.raises(WalletError, match="unknown wallet 'farm:nope'"):
        tree.allocate("farm:nope", "1", "x")


@pytest.mark.parametrize("amount", ["0", "-5", "0.000000001"])
def test_non_positive_or_too_precise_amounts_are_refused(tree, amount):
    before = snapshot(tree)
    with pytest.raises(WalletError):
        tree.allocate("farm:breakout", amount, "bad")
    assert snapshot(tree) == before


def test_foreign_currency_is_refused(tree):
    with pytest.raises(CurrencyMismatchError):
        tree.deposit(Money("5", "EUR"), "eur")


def test_collect_some_and_all(tree):
    tree.collect("agent:gator", "1000.25", "c1")
    assert tree.cash("farm:trend").amount == D("11000.25")
    tx = tree.collect("farm:trend", None, "c2")
    assert tx is not None and tx.type is TxType.COLLECTION
    assert tree.cash("farm:trend").amount == 0
    assert tree.cash("master").amount == D("51000.25")
    empty = tree.collect("farm:trend", None, "c3")  # nothing to collect: a zero collection is booked
    assert empty.amount_of("farm:trend/cash") == 0 and tree.ledger.find("c3") is empty
    assert tree.collect("farm:trend", None, "c2") is tx  # replay of "all" is recognised by key
    tree.allocate("farm:trend", "5", "a2")
    assert tree.collect("farm:trend", None, "c3") is empty  # a late replay moves nothing
    assert tree.cash("farm:trend").amount == D(5)
    with pytest.raises(WalletError, match="no parent"):
        tree.collect("master", None, "c4")


def test_transfer_between_farms_is_a_rebalance(tree):
    tx = tree.transfer("farm:trend", "farm:breakout", "2500", "r1")
    assert tx.type is TxType.REBALANCE
    assert (tree.cash("farm:trend").amount, tree.cash("farm:breakout").amount) == (D(7500), D(2500))
    with pytest.raises(WalletError, match="itself"):
        tree.transfer("farm:trend", "farm:trend", "1", "r2")
    with pytest.raises(WalletError, match="not trade_buy"):
        tree.transfer("farm:trend", "master", "1", "r3", type=TxType.TRADE_BUY)


def test_buy_then_partial_and_full_sell_at_average_cost(tree):
    b1 = tree.buy("gator", "BTC", D("0.3"), D("40000"), D("12"), "f1", None)
    assert b1.trade.amount_of("agent:gator/cash") == D(-12000)
    assert b1.fee is not None and b1.fee.amount_of("agent:gator/fees") == D(12)
    tree.buy("gator", "BTC", D("0.2"), D("45000"), D("9"), "f2")
    (pos,) = tree.positions("agent:gator")
    assert (pos.symbol, pos.quantity, pos.cost) == ("BTC", D("0.5"), D(21000))  # average 42,000

    s1 = tree.sell("gator", "BTC", D("0.1"), D("50000"), D("5"), "f3")
    assert s1.realized_pnl == D(800)  # 5,000 - 0.1 x 42,000
    (pos,) = tree.positions("agent:gator")
    assert (pos.quantity, pos.cost) == (D("0.4"), D(16800))

    s2 = tree.sell("gator", "BTC", D("0.4"), D("41000"), D("16.4"), "f4")
    assert s2.realized_pnl == D(-400)  # 16,400 - 16,800
    assert tree.positions("agent:gator") == []
    assert tree.realized_pnl("agent:gator").amount == D(400)
    assert tree.fees("agent:gator").amount == D("42.4")
    assert tree.cash("agent:gator").amount == D(50000) + D(400) - D("42.4")
    audit = tree.ledger.audit()
    assert audit.ok and audit.residual == 0
    assert audit.realized_pnl == D(400) and audit.fees == D("42.4")


def test_amounts_round_against_the_holder(tree):
    # 0.33333333 x 3.33 = 1.1099999889: cost rounds up, proceeds round down, fees round up.
    b = tree.buy("gator", "X", D("0.33333333"), D("3.33"), D("0.0011099999889"), "f1")
    assert b.trade.amount_of("agent:gator/cash") == D("-1.10999999")
    assert b.fee.amount_of("agent:gator/fees") == D("0.00111000")
    s = tree.sell("gator", "X", D("0.33333333"), D("3.33"), D(0), "f2")
    assert s.trade.amount_of("agent:gator/cash") == D("1.10999998")
    assert s.fee is None
    assert s.realized_pnl == D("-0.00000001")
    assert tree.ledger.audit().ok


def test_partial_sale_relieves_rounded_average_cost_and_closing_relieves_the_rest(tree):
    tree.buy("gator", "X", D(3), D("1.00000001"), D(0), "b")  # cost 3.00000003 for 3 units
    s1 = tree.sell("gator", "X", D(1), D(2), D(0), "s1")
    assert s1.realized_pnl == D(2) - D("1.00000001")  # 1/3 of 3.00000003 = 1.00000001 exactly
    s2 = tree.sell("gator", "X", D("0.5"), D(2), D(0), "s2")  # 0.5/2 of 2.00000002 = 0.500000005 -> 0.50000000 (half-even)
    assert s2.realized_pnl == D(1) - D("0.50000000")
    s3 = tree.sell("gator", "X", D("1.5"), D(2), D(0), "s3")
    assert s3.realized_pnl == D(3) - D("1.50000002")  # closing relieves what is left
    assert tree.positions("agent:gator") == []
    assert tree.ledger.audit().ok


def test_a_fill_delivered_twice_is_booked_once(tree):
    tree.buy("gator", "BTC", D("0.5"), D(40000), D(20), "fill-1")
    first = tree.sell("gator", "BTC", D("0.5"), D(42000), D(21), "fill-2")
    before = snapshot(tree)
    again = tree.sell("gator", "BTC", D("0.5"), D(42000), D(21), "fill-2")
    tree.buy("gator", "BTC", D("0.5"), D(40000), D(20), "fill-1")
    assert snapshot(tree) == before
    assert again.trade is first.trade and again.realized_pnl == first.realized_pnl == D(1000)


def test_a_fill_key_reused_for_another_fill_is_a_conflict(tree):
    tree.buy("gator", "BTC", D("0.5"), D(40000), D(20), "fill-1")
    before = snapshot(tree)
    with pytest.raises(IdempotencyConflictError, match="fill-1"):
        tree.buy("gator", "BTC", D("0.6"), D(40000), D(20), "fill-1")
    with pytest.raises(IdempotencyConflictError, match="fill-1"):
        tree.sell("gator", "BTC", D("0.5"), D(40000), D(20), "fill-1")
    assert snapshot(tree) == before


def test_buy_beyond_cash_is_refused_including_the_fee(tree):
    before = snapshot(tree)
    with pytest.raises(InsufficientFundsError, match="has 50,000.00 USD available but needs 50,000.01 USD"):
        tree.buy("gator", "BTC", D(1), D(50000), D("0.01"), "big")
    assert snapshot(tree) == before
    assert tree.ledger.find("big/trade") is None


def test_selling_more_than_held_is_refused(tree):
    tree.buy("gator", "BTC", D("0.1"), D(40000), D(0), "b")
    with pytest.raises(WalletError, match="holds 0.1 BTC, cannot sell 0.2"):
        tree.sell("gator", "BTC", D("0.2"), D(40000), D(0), "s")


@pytest.mark.parametrize(
    "args, message",
    [
        (("farm:trend", "BTC", D(1), D(1), D(0)), "only agents trade"),
        (("gator", "", D(1), D(1), D(0)), "symbol"),
        (("gator", "BTC", D(0), D(1), D(0)), "quantity must be positive"),
        (("gator", "BTC", D(1), D(-1), D(0)), "price must be positive"),
        (("gator", "BTC", D("0.000000001"), D(1), D(0)), "not a multiple of the quantity step 1E-8"),
        (("gator", "BTC", D(1), D(1), D(-1)), "fee must not be negative"),
    ],
)
def test_bad_fills_are_refused(tree, args, message):
    with pytest.raises(WalletError, match=message):
        tree.buy(*args, "k")


def test_equity_at_marks_and_the_tree(tree):
    tree.buy("gator", "BTC", D("0.5"), D(40000), D(20), "b")
    marks = {"BTC": D(44000)}
    assert tree.equity("agent:gator").amount == D(50000) - D(20)  # at cost
    assert tree.equity("agent:gator", marks).amount == D(30000) - D(20) + D(22000)
    rows = {r.ref: r for r in tree.tree(marks)}
    assert [r.ref for r in tree.tree()] == ["master", "farm:trend", "agent:gator", "farm:breakout", "agent:box"]
    assert rows["farm:trend"].equity == D(10000)
    assert rows["farm:trend"].total_equity == D(10000) + D(51980)
    assert rows["master"].total_equity == D(100000) - D(20) + D(2000)
    assert rows["master"].fees == D(20) and rows["agent:gator"].positions_at_cost == D(20000)


def test_quantity_step_is_per_tree():
    t = WalletTree(qty_step=D("0.001"))
    t.add_farm("f")
    t.add_agent("f", "a")
    t.deposit("100", "d")
    t.allocate("farm:f", "100", "af")
    t.allocate("agent:a", "100", "aa")
    t.buy("a", "ETH", D("0.015"), D(2000), D(0), "ok")
    with pytest.raises(WalletError, match="0.0155 is not a multiple of the quantity step 0.001"):
        t.buy("a", "ETH", D("0.0155"), D(2000), D(0), "off-step")
    with pytest.raises(WalletError, match="qty_step must be positive"):
        WalletTree(qty_step=D(0))


def test_names_are_checked_and_structure_is_stable():
    t = WalletTree()
    t.add_farm("f")
    with pytest.raises(WalletError, match="no spaces"):
        t.add_farm("bad name")
    with pytest.raises(WalletError, match="unknown wallet 'farm:nope'"):
        t.add_agent("nope", "a")
    t.add_agent("f", "a")
    with pytest.raises(WalletError, match="must belong to a farm, not to agent:a"):
        t.add_agent("agent:a", "b")
    assert t.add_agent("f", "a").parent == "farm:f"  # same again: no-op
    t.add_farm("g")
    with pytest.raises(WalletError, match="already exists"):
        t.add_agent("g", "a")
