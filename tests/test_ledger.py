"""Scenario tests for the ledger: each transaction type with exact Decimal expectations."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest

from cival.core.ledger import (
    EXTERNAL,
    AccountKind,
    IdempotencyConflictError,
    InsufficientFundsError,
    Ledger,
    LedgerError,
    Posting,
    TxDraft,
    TxType,
)

T0 = datetime(2025, 1, 2, 9, 30, tzinfo=UTC)


@pytest.fixture
def ledger() -> Ledger:
    lg = Ledger("USD")
    lg.open_account("m/cash", AccountKind.CASH, "m")
    lg.open_account("a/cash", AccountKind.CASH, "a")
    lg.open_account("a/pos/BTC", AccountKind.POSITION, "a", "BTC")
    lg.open_account("a/fees", AccountKind.FEES, "a")
    lg.open_account("a/pnl", AccountKind.REALIZED_PNL, "a")
    return lg


def deposit(lg: Ledger, amount: str, key: str = "dep") -> None:
    lg.post(TxType.DEPOSIT, [Posting("m/cash", D(amount)), Posting(EXTERNAL, -D(amount))], key, T0)


def balances(lg: Ledger) -> dict[str, tuple[D, D]]:
    return {a.key: (lg.balance(a.key), lg.quantity(a.key)) for a in lg.accounts()}


def test_deposit_and_withdrawal(ledger):
    deposit(ledger, "1000.50")
    tx = ledger.post(TxType.WITHDRAWAL, [Posting("m/cash", D("-200.25")), Posting(EXTERNAL, D("200.25"))], "wd", T0)
    assert tx.seq == 2 and tx.type is TxType.WITHDRAWAL
    assert ledger.balance("m/cash") == D("800.25")
    assert ledger.balance(EXTERNAL) == D("-800.25")
    report = ledger.audit()
    assert report.ok, report.problems
    assert (report.deposits, report.withdrawals, report.residual) == (D("1000.50"), D("200.25"), 0)


def test_allocation_collection_and_rebalance_move_cash_only(ledger):
    deposit(ledger, "500")
    ledger.post(TxType.ALLOCATION, [Posting("m/cash", D(-300)), Posting("a/cash", D(300))], "alloc", T0)
    ledger.post(TxType.COLLECTION, [Posting("a/cash", D(-120)), Posting("m/cash", D(120))], "coll", T0)
    ledger.post(TxType.REBALANCE, [Posting("m/cash", D(-20)), Posting("a/cash", D(20))], "reb", T0)
    assert (ledger.balance("m/cash"), ledger.balance("a/cash")) == (D(300), D(200))
    assert ledger.audit().ok


def test_buy_sell_and_fee_book_cost_pnl_and_fees(ledger):
    deposit(ledger, "10000")
    ledger.post(TxType.ALLOCATION, [Posting("m/cash", D(-10000)), Posting("a/cash", D(10000))], "alloc", T0)
    # Buy 0.1 BTC for 4321.05, fee 4.32105.
    ledger.post(
        TxType.TRADE_BUY, [Posting("a/cash", D("-4321.05")), Posting("a/pos/BTC", D("4321.05"), D("0.1"))], "b", T0
    )
    ledger.post(TxType.FEE, [Posting("a/cash", D("-4.32105")), Posting("a/fees", D("4.32105"))], "bf", T0)
    # Sell it for 4500.00: realised P&L 178.95 (gross of fees).
    ledger.post(
        TxType.TRADE_SELL,
        [Posting("a/cash", D("4500")), Posting("a/pos/BTC", D("-4321.05"), D("-0.1")), Posting("a/pnl", D("-178.95"))],
        "s",
        T0,
    )
    ledger.post(TxType.FEE, [Posting("a/cash", D("-4.5")), Posting("a/fees", D("4.5"))], "sf", T0)
    assert ledger.balance("a/cash") == D("10170.12895")
    assert ledger.quantity("a/pos/BTC") == 0 and ledger.balance("a/pos/BTC") == 0
    assert ledger.realized_pnl() == D("178.95") and ledger.realized_pnl("a") == D("178.95")
    assert ledger.fees() == D("8.82105")
    report = ledger.audit()
    assert report.ok, report.problems
    assert report.cash + report.positions_at_cost == D(10000) + D("178.95") - D("8.82105")


def test_replaying_a_key_returns_the_original_and_changes_nothing(ledger):
    deposit(ledger, "100")
    first = ledger.find("dep")
    before = balances(ledger)
    deposit(ledger, "100")  # same key, same content: a retried message
    assert ledger.find("dep") is first
    assert len(ledger) == 1 and balances(ledger) == before


def test_reusing_a_key_for_different_content_is_a_conflict(ledger):
    deposit(ledger, "100")
    before = balances(ledger)
    with pytest.raises(IdempotencyConflictError, match="'dep'.*different postings"):
        deposit(ledger, "101")
    with pytest.raises(IdempotencyConflictError):
        ledger.post(TxType.WITHDRAWAL, [Posting("m/cash", D(-100)), Posting(EXTERNAL, D(100))], "dep", T0)
    assert balances(ledger) == before and len(ledger) == 1


def test_replay_matches_on_amount_value_not_representation(ledger):
    deposit(ledger, "100")
    # 100.00 and 100 are the same amount; a retry that formats differently is still a retry.
    ledger.post(TxType.DEPOSIT, [Posting("m/cash", D("100.00")), Posting(EXTERNAL, D("-100.00"))], "dep", T0)
    assert len(ledger) == 1


def test_overdraft_is_refused_with_the_available_amount(ledger):
    deposit(ledger, "250.75")
    before = balances(ledger)
    with pytest.raises(InsufficientFundsError) as info:
        ledger.post(TxType.ALLOCATION, [Posting("m/cash", D(-300)), Posting("a/cash", D(300))], "alloc", T0)
    assert "m/cash has 250.75 USD available but needs 300.00 USD" in str(info.value)
    assert info.value.available == D("250.75") and info.value.needed == D(300)
    assert balances(ledger) == before and len(ledger) == 1 and ledger.find("alloc") is None


def test_selling_more_units_than_held_is_refused(ledger):
    deposit(ledger, "100")
    ledger.post(TxType.ALLOCATION, [Posting("m/cash", D(-100)), Posting("a/cash", D(100))], "alloc", T0)
    ledger.post(TxType.TRADE_BUY, [Posting("a/cash", D(-50)), Posting("a/pos/BTC", D(50), D(1))], "b", T0)
    before = balances(ledger)
    with pytest.raises(LedgerError, match="holds 1 units; cannot remove 2"):
        ledger.post(
            TxType.TRADE_SELL,
            [Posting("a/cash", D(60)), Posting("a/pos/BTC", D(-50), D(-2)), Posting("a/pnl", D(-10))],
            "s",
            T0,
        )
    with pytest.raises(LedgerError, match="no units but a cost"):
        ledger.post(
            TxType.TRADE_SELL,
            [Posting("a/cash", D(60)), Posting("a/pos/BTC", D(-40), D(-1)), Posting("a/pnl", D(-20))],
            "s2",
            T0,
        )
    assert balances(ledger) == before


@pytest.mark.parametrize(
    "tx_type, postings, message",
    [
        (TxType.DEPOSIT, [Posting("m/cash", D(10)), Posting(EXTERNAL, D(-9))], "sum to zero"),
        (TxType.DEPOSIT, [Posting("m/cash", D(10))], "at least two postings"),
        (TxType.DEPOSIT, [Posting("m/cash", D("0.000000001")), Posting(EXTERNAL, D("-0.000000001"))], "8 decimal"),
        (TxType.ALLOCATION, [Posting("m/cash", D(10)), Posting(EXTERNAL, D(-10))], "may not touch external"),
        (TxType.FEE, [Posting("a/cash", D(-1)), Posting("a/pnl", D(1))], "may not touch realized_pnl"),
        (TxType.DEPOSIT, [Posting("m/cash", D(10)), Posting("nope", D(-10))], "unknown account"),
        (TxType.DEPOSIT, [Posting("m/cash", D(10), D(1)), Posting(EXTERNAL, D(-10))], "only position accounts"),
        (TxType.DEPOSIT, [Posting("m/cash", 10.0), Posting(EXTERNAL, -10.0)], "float"),  # type: ignore[arg-type]
    ],
)
def test_malformed_transactions_are_refused_and_change_nothing(ledger, tx_type, postings, message):
    deposit(ledger, "100")
    before = balances(ledger)
    with pytest.raises(Exception, match=message):
        ledger.post(tx_type, postings, "bad", T0)
    assert balances(ledger) == before and ledger.find("bad") is None and len(ledger) == 1


def test_naive_timestamps_are_refused_and_others_become_utc(ledger):
    with pytest.raises(LedgerError, match="no time zone"):
        deposit_at = datetime(2025, 1, 1, 12, 0)
        ledger.post(TxType.DEPOSIT, [Posting("m/cash", D(1)), Posting(EXTERNAL, D(-1))], "d", deposit_at)
    ny = timezone(timedelta(hours=-5))
    tx = ledger.post(TxType.DEPOSIT, [Posting("m/cash", D(1)), Posting(EXTERNAL, D(-1))], "d", datetime(2025, 1, 1, 7, tzinfo=ny))
    assert tx.at == datetime(2025, 1, 1, 12, tzinfo=UTC) and tx.at.tzinfo is UTC


def test_post_all_is_atomic(ledger):
    deposit(ledger, "100")
    before = balances(ledger)
    drafts = [
        TxDraft(TxType.ALLOCATION, "ok", (Posting("m/cash", D(-60)), Posting("a/cash", D(60))), T0),
        TxDraft(TxType.ALLOCATION, "too-much", (Posting("m/cash", D(-60)), Posting("a/cash", D(60))), T0),
    ]
    with pytest.raises(InsufficientFundsError, match="has 100.00 USD available but needs 120.00"):
        ledger.post_all(drafts)
    assert balances(ledger) == before and ledger.find("ok") is None
    with pytest.raises(IdempotencyConflictError, match="twice in one batch"):
        ledger.post_all([drafts[0], drafts[0]])
    assert balances(ledger) == before


def test_accounts_cannot_be_redefined(ledger):
    assert ledger.open_account("a/cash", AccountKind.CASH, "a").kind is AccountKind.CASH  # same: fine
    with pytest.raises(LedgerError, match="already exists"):
        ledger.open_account("a/cash", AccountKind.FEES, "a")


def test_audit_detects_a_tampered_journal(ledger):
    """The audit replays the journal; it must notice books that no longer add up."""
    deposit(ledger, "100")
    ledger.post(TxType.ALLOCATION, [Posting("m/cash", D(-40)), Posting("a/cash", D(40))], "alloc", T0)
    assert ledger.audit().ok

    # An unbalanced entry slipped into the journal (as a corrupt store might return).
    journal = ledger._journal
    journal[1] = replace(journal[1], postings=(Posting("m/cash", D(-40)), Posting("a/cash", D(45))))
    report = ledger.audit()
    assert not report.ok
    assert report.residual == D(5)
    assert any("do not sum to zero" in p for p in report.problems)
    assert any("a/cash: kept balance 40" in p for p in report.problems)


def test_audit_detects_money_created_outside_deposits(ledger):
    deposit(ledger, "100")
    journal = ledger._journal
    # A rebalance that draws from `external` would create money from nothing.
    journal[0] = replace(journal[0], type=TxType.REBALANCE)
    report = ledger.audit()
    assert not report.ok
    assert report.residual == D(100)
    assert any("touches external account" in p for p in report.problems)


def test_audit_detects_duplicate_keys_and_negative_cash(ledger):
    deposit(ledger, "10")
    ledger.post(TxType.ALLOCATION, [Posting("m/cash", D(-10)), Posting("a/cash", D(10))], "alloc", T0)
    journal = ledger._journal
    journal[0] = replace(journal[0], postings=(Posting("m/cash", D(5)), Posting(EXTERNAL, D(-5))))
    journal[1] = replace(journal[1], idempotency_key="dep")
    report = ledger.audit()
    assert any("used twice" in p for p in report.problems)
    assert any("m/cash goes negative (-5)" in p for p in report.problems)


def test_the_ledger_says_whether_the_latest_post_booked_a_key_for_the_first_time(ledger):
    assert not ledger.posted("dep")
    deposit(ledger, "100")
    assert ledger.posted("dep")
    deposit(ledger, "100")  # the same message again: nothing booked, nothing to act on
    assert not ledger.posted("dep") and ledger.balance("m/cash") == D("100")
    move = [Posting("m/cash", D("-40")), Posting("a/cash", D("40"))]
    ledger.post_all([TxDraft(TxType.DEPOSIT, "dep", (Posting("m/cash", D("100")), Posting(EXTERNAL, D("-100"))), T0),
                     TxDraft(TxType.ALLOCATION, "a1", tuple(move), T0)])
    assert ledger.posted("a1") and not ledger.posted("dep")
    with pytest.raises(LedgerError):
        ledger.post(TxType.ALLOCATION, [Posting("m/cash", D("-1000")), Posting("a/cash", D("1000"))], "a2", T0)
    assert not ledger.posted("a2") and not ledger.posted("a1"), "a refused post booked nothing"
