"""Property tests: random sequences of movements never create, lose or double-move money.

A hypothesis state machine drives a WalletTree (master -> 2 farms -> 3 agents) with
deposits, withdrawals, allocations, collections, transfers, buys, sells (with fees)
and replays of earlier operations. A shadow model, written from the rules rather
than from the code, predicts every cash balance and position; after every step:

* the ledger audit passes with a zero residual;
* every wallet's cash and every position equal the shadow's;
* an operation the rules forbid is refused, and then nothing has changed;
* replaying an earlier operation under its key changes nothing.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP
from decimal import Decimal as D

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cival.core.errors import CivalError
from cival.core.wallets import WalletTree

Q = D("1e-8")
FARMS = {"farm:f0": "f0", "farm:f1": "f1"}
AGENTS = {"agent:a0": "farm:f0", "agent:a1": "farm:f0", "agent:a2": "farm:f1"}
PARENT = {**{f: "master" for f in FARMS}, **AGENTS}
WALLETS = ["master", *FARMS, *AGENTS]
SYMBOLS = ["X", "Y"]

amounts = st.integers(min_value=1, max_value=5 * 10**12).map(lambda n: D(n) * Q)  # up to 50,000
prices = st.integers(min_value=1, max_value=10**6).map(lambda n: D(n) / 100)  # 0.01 .. 10,000
quantities = st.integers(min_value=1, max_value=10**9).map(lambda n: D(n) * Q)  # up to 10 units
fees = st.integers(min_value=0, max_value=10**6).map(lambda n: D(n) / 10**7)  # 0 .. 0.1, sub-quantum digits


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tree = WalletTree("m", "USD")
        for name in FARMS.values():
            self.tree.add_farm(name)
        for ref, farm in AGENTS.items():
            self.tree.add_agent(farm, ref.split(":")[1])
        self.cash = {w: D(0) for w in WALLETS}
        self.qty = {(a, s): D(0) for a in AGENTS for s in SYMBOLS}
        self.done: list[tuple[str, tuple]] = []  # successful operations, for replays
        self.counter = 0

    # -- helpers ----------------------------------------------------------------------

    def key(self) -> str:
        self.counter += 1
        return f"k{self.counter}"

    def snapshot(self):
        return (
            len(self.tree.ledger),
            [(r.ref, r.cash, r.positions_at_cost, r.realized_pnl, r.fees) for r in self.tree.tree()],
        )

    def refused(self, call, *args) -> None:
        before = self.snapshot()
        try:
            call(*args)
        except CivalError:
            pass
        else:
            raise AssertionError(f"{call.__name__}{args} should have been refused")
        assert self.snapshot() == before, "a refused operation changed the books"

    def record(self, name: str, args: tuple) -> None:
        self.done.append((name, args))

    # -- rules ------------------------------------------------------------------------

    @rule(amount=amounts)
    def deposit(self, amount):
        args = (amount, self.key())
        self.tree.deposit(*args)
        self.cash["master"] += amount
        self.record("deposit", args)

    @rule(amount=amounts)
    def withdraw(self, amount):
        args = (amount, self.key())
        if amount > self.cash["master"]:
            return self.refused(self.tree.withdraw, *args)
        self.tree.withdraw(*args)
        self.cash["master"] -= amount
        self.record("withdraw", args)

    @rule(child=st.sampled_from([*FARMS, *AGENTS]), amount=amounts, share=st.booleans())
    def allocate(self, child, amount, share):
        parent = PARENT[child]
        if share and self.cash[parent] > 0:  # often move a part of what is there, to keep funds flowing
            amount = max(Q, (self.cash[parent] / 3).quantize(Q, ROUND_DOWN))
        args = (child, amount, self.key())
        if amount > self.cash[parent]:
            return self.refused(self.tree.allocate, *args)
        self.tree.allocate(*args)
        self.cash[parent] -= amount
        self.cash[child] += amount
        self.record("allocate", args)

    @rule(source=st.sampled_from([*FARMS, *AGENTS]), amount=st.one_of(st.none(), amounts))
    def collect(self, source, amount):
        args = (source, amount, self.key())
        if amount is not None and amount > self.cash[source]:
            return self.refused(self.tree.collect, *args)
        moved = self.cash[source] if amount is None else amount
        tx = self.tree.collect(*args)
        assert tx.amount_of(f"{PARENT[source]}/cash") == moved
        self.cash[source] -= moved
        self.cash[PARENT[source]] += moved
        self.record("collect", args)

    @rule(source=st.sampled_from(WALLETS), dest=st.sampled_from(WALLETS), amount=amounts)
    def transfer(self, source, dest, amount):
        args = (source, dest, amount, self.key())
        if source == dest or amount > self.cash[source]:
            return self.refused(self.tree.transfer, *args)
        self.tree.transfer(*args)
        self.cash[source] -= amount
        self.cash[dest] += amount
        self.record("transfer", args)

    @rule(agent=st.sampled_from(list(AGENTS)), symbol=st.sampled_from(SYMBOLS), qty=quantities, price=prices, fee=fees)
    def buy(self, agent, symbol, qty, price, fee):
        args = (agent, symbol, qty, price, fee, self.key())
        cost = (qty * price).quantize(Q, ROUND_UP) + fee.quantize(Q, ROUND_UP)
        if cost > self.cash[agent]:
            return self.refused(self.tree.buy, *args)
        self.tree.buy(*args)
        self.cash[agent] -= cost
        self.qty[(agent, symbol)] += qty
        self.record("buy", args)

    @rule(
        agent=st.sampled_from(list(AGENTS)),
        symbol=st.sampled_from(SYMBOLS),
        part=st.sampled_from(["all", "some", "too much"]),
        price=prices,
        fee=fees,
    )
    def sell(self, agent, symbol, part, price, fee):
        held = self.qty[(agent, symbol)]
        qty = {"all": held, "some": (held / 2).quantize(Q, ROUND_DOWN), "too much": held + Q}[part]
        if qty <= 0:
            return
        args = (agent, symbol, qty, price, fee, self.key())
        net = (qty * price).quantize(Q, ROUND_DOWN) - fee.quantize(Q, ROUND_UP)
        if part == "too much" or self.cash[agent] + net < 0:
            return self.refused(self.tree.sell, *args)
        booking = self.tree.sell(*args)
        self.cash[agent] += net
        self.qty[(agent, symbol)] -= qty
        assert booking.realized_pnl == booking.trade.amount_of(f"{agent}/cash") - (
            -booking.trade.amount_of(f"{agent}/position/{symbol}")
        )
        self.record("sell", args)

    @precondition(lambda self: self.done)
    @rule(data=st.data())
    def replay(self, data):
        name, args = data.draw(st.sampled_from(self.done))
        before = self.snapshot()
        getattr(self.tree, name)(*args)
        assert self.snapshot() == before, f"replaying {name}{args} changed the books"

    @rule(amount=st.integers(min_value=1, max_value=9).map(lambda n: D(n) / 10**9))
    def too_precise(self, amount):
        self.refused(self.tree.deposit, amount, self.key())

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def books_balance(self):
        audit = self.tree.ledger.audit()
        assert audit.ok, audit.problems
        assert audit.residual == 0

    @invariant()
    def balances_match_the_shadow(self):
        for wallet in WALLETS:
            assert self.tree.cash(wallet).amount == self.cash[wallet], wallet
            assert self.cash[wallet] >= 0
        held = {(a, p.symbol): p.quantity for a in AGENTS for p in self.tree.positions(a)}
        assert held == {k: v for k, v in self.qty.items() if v != 0}


LedgerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLedgerProperties = LedgerMachine.TestCase
