"""Staking rewards on a schedule in seconds: the StakingRewards workflow and its
activities over fakes, on the time-skipping test server. Each run claims every client's
outstanding rewards from all its validators in one transaction (if worth a claim) and
books exactly what the chain paid: the gross reward in, the fee and the platform's
commission (rounded down) out; a run again books nothing twice; a claim failed on chain
books its fee only, with an alert; one the signer refuses books nothing."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from sagas import accounts
from sagas.staking.events import REWARDS_SKIPPED
from sagas.staking.rewards import (
    Booked,
    RewardsActivities,
    RewardsInput,
    RewardsResult,
    StakingRewardsWorkflow,
    claim_id,
    commission,
)
from tests.sagas.conftest import QUEUE, SagaServer
from tests.sagas.staking_world import FUNDED, V1, V2, available, delegator, staked, world

TERMS = RewardsInput(asset="ATOM", commission_bps=1000, claim_fee=2000, min_claim=10_000)


def test_commission_is_rounded_down_in_integers() -> None:
    assert commission(19_345, 1000) == 1_934
    assert commission(9, 1000) == 0
    assert commission(10, 1000) == 1
    assert commission(12_345, 0) == 0
    assert commission(12_345, 10_000) == 12_345
    with pytest.raises(ValueError):
        commission(1, 10_001)


def test_each_run_claims_and_books_what_the_chain_paid_once(test_server: SagaServer) -> None:
    ledger, ops, chain = world()
    first = staked(ledger, ops, "acme", V1, 5_000_000, 1)
    staked(ledger, ops, "acme", V2, 3_000_000, 2)
    staked(ledger, ops, "beta", V1, 1_000_000, 3)
    chain.accrued = {(delegator("acme"), V1): 12_345, (delegator("acme"), V2): 7_000,
                     (delegator("beta"), V1): 9_999}  # fmt: skip
    acts = RewardsActivities(ledger, ops, chain)
    results: list[RewardsResult] = []

    async def scenario(client: Client) -> None:
        for run in ("rw:sweep-1", "rw:sweep-2"):
            results.append(
                await client.execute_workflow(
                    StakingRewardsWorkflow.run, TERMS, id=run, task_queue=QUEUE
                )
            )
            chain.accrued[(delegator("acme"), V1)] = 20_000  # accrues again before the next

    test_server.run([StakingRewardsWorkflow], acts.all(), scenario)

    one, two = results
    by_client = {b.client_id: b for b in one.claims}
    # acme: one claim from both validators; 19,345 gross, 2,000 fee, 1,934 commission.
    assert by_client["acme"] == Booked(
        client_id="acme", claim_id=claim_id("acme", "rw:sweep-1"), gross=19_345, fee=2_000,
        commission=1_934, state="booked",
    )  # fmt: skip
    # beta: 9,999 outstanding is below the 10,000 worth a claim: no transaction at all.
    assert by_client["beta"].state == "skipped"
    assert claim_id("beta", "rw:sweep-1") not in chain.txs
    tx = chain.txs[claim_id("acme", "rw:sweep-1")]
    assert (tx.kind, tx.delegator, tx.validator) == ("withdraw_rewards", delegator("acme"),
                                                     f"{V1},{V2}")  # fmt: skip
    # The second run claimed what accrued since: 20,000 gross, 2,000 commission.
    acme_two = next(b for b in two.claims if b.client_id == "acme")
    assert (acme_two.gross, acme_two.fee, acme_two.commission) == (20_000, 2_000, 2_000)

    # The books: exactly what the chain paid, less the fee and the commission.
    gross, fees, cut = 19_345 + 20_000, 2 * 2_000, 1_934 + 2_000
    assert available(ledger, "acme") == FUNDED - 8_000_000 + gross - fees - cut
    assert ledger.balance(accounts.staking_commission("ATOM")).total == cut
    assert available(ledger, "beta") == FUNDED - 1_000_000
    debits, credits = ledger.totals("ATOM")
    assert debits == credits

    # Recorded on acme's oldest stake, with one event per claim.
    recorded = [s.step for s in ops.timeline(first) if s.step.startswith("rewards:")]
    assert recorded == [f"rewards:{claim_id('acme', r)}" for r in ("rw:sweep-1", "rw:sweep-2")]
    events = [e for _t, e in ops.outbox if e.type == "custody.stake.rewards.v1"]
    assert [(e.data["gross"], e.data["commission"], e.data["net"]) for e in events] == [
        ("19345", "1934", "15411"),
        ("20000", "2000", "16000"),
    ]

    # Booking the same claim again (a retried activity) changes nothing.
    before = available(ledger, "acme")
    position = next(p for p in acts.positions(TERMS) if p.client_id == "acme")
    outcome = chain.outcome(claim_id("acme", "rw:sweep-1"))
    acts.book(TERMS, position, claim_id("acme", "rw:sweep-1"), outcome)
    assert available(ledger, "acme") == before
    assert len([e for _t, e in ops.outbox if e.type == "custody.stake.rewards.v1"]) == 2


def test_a_claim_failed_on_chain_books_its_fee_and_a_refused_one_nothing(
    test_server: SagaServer,
) -> None:
    ledger, ops, chain = world()
    staked(ledger, ops, "acme", V1, 5_000_000, 1)
    staked(ledger, ops, "beta", V1, 5_000_000, 2)
    chain.accrued = {(delegator("acme"), V1): 50_000, (delegator("beta"), V1): 50_000}
    chain.fail.add(claim_id("acme", "rw:sweep-1"))
    chain.refuse.add(claim_id("beta", "rw:sweep-1"))
    acts = RewardsActivities(ledger, ops, chain)
    results: list[RewardsResult] = []

    async def scenario(client: Client) -> None:
        results.append(
            await client.execute_workflow(
                StakingRewardsWorkflow.run, TERMS, id="rw:sweep-1", task_queue=QUEUE
            )
        )

    test_server.run([StakingRewardsWorkflow], acts.all(), scenario)

    states = {b.client_id: (b.state, b.gross, b.fee) for b in results[0].claims}
    assert states == {"acme": ("failed", 0, 2_000), "beta": ("refused", 0, 0)}
    assert available(ledger, "acme") == FUNDED - 5_000_000 - 2_000
    assert available(ledger, "beta") == FUNDED - 5_000_000
    assert ledger.balance(accounts.staking_commission("ATOM")).total == 0
    alerts = [e for topic, e in ops.outbox if e.type == REWARDS_SKIPPED]
    assert [(a.subject, a.data["state"]) for a in alerts] == [
        (claim_id("acme", "rw:sweep-1"), "failed")
    ]
