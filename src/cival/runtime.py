"""Building a cluster's books from a config.

:func:`build_wallets` lays out the master wallet, farms and agents of a
:class:`~cival.config.ClusterConfig`; :func:`fund` deposits the initial capital and
passes it down through each level's allocation policy, every step a ledger
transaction under a deterministic idempotency key (so funding twice moves nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cival.allocation import AllocationPlan, plan_for
from cival.config import ClusterConfig
from cival.core.wallets import AllocationRecord, WalletTree, agent_ref, farm_ref


@dataclass(frozen=True, slots=True)
class FundingReport:
    """What :func:`fund` did: the master's plan, each farm's plan and the allocations booked."""

    master_plan: AllocationPlan
    farm_plans: dict[str, AllocationPlan]
    allocations: list[AllocationRecord]


def build_wallets(config: ClusterConfig) -> WalletTree:
    """An empty wallet tree with the config's master, farms and agents."""
    tree = WalletTree(master_name=config.master.name, currency=config.master.base_currency)
    for farm in config.farms:
        tree.add_farm(farm.name)
        for agent in farm.agents:
            tree.add_agent(farm.name, agent.name)
    return tree


def fund(tree: WalletTree, config: ClusterConfig, at: datetime | None = None) -> FundingReport:
    """Deposit ``master.initial_deposit`` and allocate it down the hierarchy.

    The master splits its cash across the farms by ``master.allocation``; each farm
    splits what it received across its agents by its own ``allocation``. Reserves stay
    with the parent. Idempotency keys are ``deposit:initial`` and ``fund:<wallet>``.
    """
    tree.deposit(config.master.initial_deposit, key="deposit:initial", at=at)
    # Plans are made from the configured amounts, not from current balances, so that
    # delivering the funding again reproduces the same movements (and books none).
    master_plan = plan_for(
        config.master.allocation,
        config.master.initial_deposit,
        [f.name for f in config.farms],
        tree.ledger.quantum,
    )
    records: list[AllocationRecord] = []
    for farm, amount in master_plan.shares.items():
        if amount > 0:
            records.append(tree.allocate(farm_ref(farm), amount, key=f"fund:{farm_ref(farm)}", at=at))
    farm_plans: dict[str, AllocationPlan] = {}
    for farm in config.farms:
        plan = plan_for(
            farm.allocation,
            master_plan.shares[farm.name],
            [a.name for a in farm.agents],
            tree.ledger.quantum,
        )
        farm_plans[farm.name] = plan
        for agent, amount in plan.shares.items():
            if amount > 0:
                records.append(tree.allocate(agent_ref(agent), amount, key=f"fund:{agent_ref(agent)}", at=at))
    return FundingReport(master_plan=master_plan, farm_plans=farm_plans, allocations=records)


__all__ = ["FundingReport", "build_wallets", "fund"]
