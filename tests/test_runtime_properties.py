"""Conservation across the actors' books, after every message, in random multi-farm runs.

The master, farms and agents are the nodes the Ray actors wrap, each with books of its
own. A random scheduler plays the transport: it delivers the messages in flight in any
order, delivers some twice, feeds bars, and asks for collections (some refused). After
every step the cluster's books must reconcile: every ledger audits clean, every receipt
matches a sending, the link balances equal exactly the money in the undelivered
messages, and cash + positions + in flight = deposits - withdrawals + realised - fees.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cival.actors.books import combine, summarize
from cival.actors.farm_ports import InlineAgents
from cival.actors.nodes import FarmNode, MasterNode, cluster_spec
from cival.config import config_from_dict
from cival.core.bar import BarBatch
from cival.core.errors import CivalError
from cival.core.messages import Allocate, Collect, Transfer
from cival.data.synthetic import synthetic_bars
from tests.helpers import Outbox

pytestmark = pytest.mark.slow  # every test here runs a session, a cluster or the command line of its own

BARS = BarBatch.from_frame(synthetic_bars(600, seed=3, timeframe="1h"))
STRATEGIES = [
    ("alligator", {"jaw_period": 8, "jaw_shift": 3, "teeth_period": 5, "teeth_shift": 2, "lips_period": 3, "lips_shift": 1}),
    ("darvas", {"lookback": 8, "confirm": 2}),
    ("elliott", {"zigzag_pct": 1.0}),
]


@st.composite
def clusters(draw):
    farms = []
    for i in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 3))
        names = [f"a{i}{j}" for j in range(n)]
        if draw(st.booleans()):
            policy = {"policy": "equal", "reserve_pct": draw(st.sampled_from([0, 5, 12.5]))}
        else:
            weights = {a: draw(st.sampled_from([1, 2, 3.5])) for a in names}
            policy = {"policy": "fixed", "weights": weights, "reserve_pct": draw(st.sampled_from([0, 10]))}
        agents = []
        for a in names:
            strategy, params = draw(st.sampled_from(STRATEGIES))
            agents.append({"name": a, "strategy": strategy, "params": params, "sizing": {"fraction": draw(st.sampled_from([1.0, 0.5]))}})
        farms.append(
            {
                "name": f"f{i}",
                "type": "breakout",
                "allocation": policy,
                "runtime": {"agents": draw(st.sampled_from(["actors", "inline"]))},
                "agents": agents,
            }
        )
    deposit = draw(st.decimals(min_value=Decimal("100"), max_value=Decimal("1000000"), places=2))
    raw = {
        "name": "prop",
        "master": {"initial_deposit": str(deposit), "allocation": {"policy": "equal", "reserve_pct": draw(st.sampled_from([0, 10]))}},
        "farms": farms,
        "data": {"source": "synthetic", "bars": 100},
        "costs": {"fee_bps": draw(st.sampled_from([0.0, 10.0])), "slippage_bps": 5.0},
    }
    return config_from_dict(raw)


class Transport:
    """Messages in flight between the nodes, delivered when the test says so."""

    def __init__(self, config):
        spec = cluster_spec(config)
        self.master = MasterNode(spec)
        self.farms = {f.name: FarmNode(f) for f in spec.farms}
        self.agents = {a.name: a.build() for f in spec.farms if not f.inline for a in f.agents}
        self.ports = {n: InlineAgents(f) if f.spec.inline else Outbox(f) for n, f in self.farms.items()}
        self.queue: list[Allocate | Collect | Transfer] = []
        self.delivered: list[Allocate | Collect | Transfer] = []
        self.bars_fed = 0

    def books(self):
        out = [self.master.books, *(f.books for f in self.farms.values())]
        return out + [a.books for a in self.agents.values()]

    def deliver(self, msg, again=False):
        out: list = []
        if isinstance(msg, Allocate):
            if msg.target.startswith("farm:"):
                out = self.farms[msg.target[5:]].on_allocate(msg, self.ports[msg.target[5:]])
                out = [m for m in out if m.target[6:] in self.agents]  # inline agents were funded
            else:
                self.agents[msg.target[6:]].on_allocate(msg)
        elif isinstance(msg, Collect):
            if msg.source.startswith("farm:"):
                out = [self.farms[msg.source[5:]].on_collect(msg)]
            else:
                out = [self.agents[msg.source[6:]].on_collect(msg)]
        else:
            (self.master.on_transfer if msg.target == "master" else self.farms[msg.target[5:]].on_transfer)(msg)
        if not again:
            self.delivered.append(msg)
            self.queue.extend(out)
        return out

    def in_flight(self) -> Decimal:
        money = {m.id: m.amount for m in self.queue if isinstance(m, Allocate | Transfer)}
        return sum(money.values(), Decimal(0))

    def feed(self, n):
        batch = BARS.slice(self.bars_fed, self.bars_fed + n)
        if len(batch) == 0:
            return
        self.bars_fed += len(batch)
        for name, farm in self.farms.items():
            if farm.spec.inline:
                farm.run_batch(self.ports[name], batch)
            else:
                farm.on_updates(batch, [self.agents[a].on_batch(batch) for a in farm.agent_names])


def check(t: Transport):
    audit = combine([summarize(b) for b in t.books()])
    assert audit.ok, audit.problems
    assert audit.residual == 0
    assert audit.in_flight == t.in_flight()
    return audit


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(config=clusters(), data=st.data())
def test_books_reconcile_after_every_message(config, data):
    t = Transport(config)
    t.queue.extend(t.master.fund())
    deposit = config.master.initial_deposit
    check(t)
    for _ in range(data.draw(st.integers(5, 40))):
        action = data.draw(st.sampled_from(["deliver", "deliver", "deliver", "again", "bars", "collect", "collect_agent", "fund"]))
        if action == "deliver" and t.queue:
            msg = t.queue.pop(data.draw(st.integers(0, len(t.queue) - 1)))
            before = [summarize(b) for b in t.books()]
            try:
                t.deliver(msg)
            except CivalError:  # a collection of more than the cash: refused, nothing booked
                assert isinstance(msg, Collect)
                assert [summarize(b) for b in t.books()] == before
        elif action == "again" and t.delivered:
            msg = data.draw(st.sampled_from(t.delivered))
            before = [summarize(b) for b in t.books()]
            t.deliver(msg, again=True)
            assert [summarize(b) for b in t.books()] == before, f"delivering {msg.kind} {msg.id} twice changed the books"
        elif action == "bars":
            t.feed(data.draw(st.sampled_from([1, 13, 120])))
        elif action == "fund":
            # Funding again (a restarted driver) must send nothing new.
            before = summarize(t.master.books)
            t.master.fund()
            assert summarize(t.master.books) == before
        elif action == "collect":
            farm = data.draw(st.sampled_from(sorted(t.farms)))
            amount = data.draw(st.sampled_from([None, Decimal("0.01"), Decimal("1000000000")]))
            t.queue.append(t.master.collect(farm, amount, reason="test"))
        elif action == "collect_agent" and t.agents:
            name = data.draw(st.sampled_from(sorted(t.agents)))
            amount = data.draw(st.sampled_from([None, Decimal("0.01")]))
            farm = t.agents[name].farm
            t.queue.append(Collect(source=f"agent:{name}", amount=amount, reason=f"by farm {farm}"))
        check(t)
    # Refused movements (more than the cash) leave everything as it was.
    for msg in [m for m in t.queue if isinstance(m, Collect)]:
        before = [summarize(b) for b in t.books()]
        try:
            t.queue.remove(msg)
            t.deliver(msg)
        except CivalError:
            assert [summarize(b) for b in t.books()] == before
        check(t)
    # Deliver everything left: nothing in flight, and the money is all still there.
    while t.queue:
        t.deliver(t.queue.pop(0))
    audit = check(t)
    assert audit.in_flight == 0 and audit.deposits == deposit
    assert audit.cash + audit.positions_at_cost == deposit + audit.realized_pnl - audit.fees
