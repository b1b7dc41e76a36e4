"""Slashing in seconds: the StakingWatch workflow and its activities over fakes, on the
time-skipping test server. A position the chain holds less of than the books is booked
once (staked -> omnibus), shared across its stakes in proportion (rounded down, the
remainder to the largest), each stake `slashed` with its step and event, one critical
alert; a position with an unstake in flight is left for a later run; a jailed validator
is reported once per jailing; a run again books nothing twice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from temporalio.client import Client

from sagas import accounts
from sagas.ledger import Account, AccountKind, Transfer
from sagas.operations import OperationRecord
from sagas.staking.events import JAILED_ALERT, SLASHED_ALERT
from sagas.staking.slashing import (
    StakingWatchWorkflow,
    WatchActivities,
    WatchInput,
    WatchResult,
    share_loss,
    slash_id,
)
from tests.sagas.conftest import QUEUE, SagaServer
from tests.sagas.staking_world import FUNDED, V1, V2, available, delegator, staked, world

WATCH = WatchInput(asset="ATOM")


def test_a_loss_is_shared_in_proportion_in_integers() -> None:
    assert share_loss(800_000, [5_000_000, 3_000_000]) == [500_000, 300_000]
    assert share_loss(2, [1, 1, 1]) == [1, 1, 0]  # the remainder to the largest, earliest
    assert share_loss(7, [2, 10]) == [1, 6]
    assert share_loss(0, [5, 5]) == [0, 0]
    assert share_loss(9, [3, 4]) == [5, 4]  # holdings below the loss: the first takes it
    assert sum(share_loss(999_999, [333, 1_000_001, 7])) == 999_999
    with pytest.raises(ValueError):
        share_loss(-1, [5])


def test_the_watch_books_a_slash_once_and_waits_for_positions_in_flight(
    test_server: SagaServer,
) -> None:
    ledger, ops, chain = world()
    first = staked(ledger, ops, "acme", V1, 5_000_000, 1, chain)
    second = staked(ledger, ops, "acme", V1, 3_000_000, 2, chain)
    other = staked(ledger, ops, "acme", V2, 4_000_000, 3, chain)
    beta = staked(ledger, ops, "beta", V1, 2_000_000, 4, chain)
    # beta has an unstake of 1 ATOM broadcast but not settled: the chain already holds
    # less than the books by its amount, which is no slash.
    now = datetime.now(UTC)
    unstake = f"uns:{beta}:k1"
    ops.create(
        OperationRecord(
            id=unstake, kind="unstake", client_id="beta", asset="ATOM", chain="cosmos",
            amount=1_000_000, destination=V1, request_hash=unstake, requested_by="beta",
            state="requested", created_at=now, updated_at=now,
        ),
        [],
        {"stake_id": beta},
    )  # fmt: skip
    ops.advance(unstake, "broadcast", state="broadcast")
    chain.undelegate(unstake, delegator("beta"), V1, 1_000_000, 2000)
    # V1 is slashed 10 % and jailed.
    chain.cut = {(delegator("acme"), V1): 800_000, (delegator("beta"), V1): 100_000}
    chain.jailed = {V1: 150}
    acts = WatchActivities(ledger, ops, chain)
    results: list[WatchResult] = []

    async def scenario(client: Client) -> None:
        for run in ("sw:look-1", "sw:look-2"):
            results.append(
                await client.execute_workflow(
                    StakingWatchWorkflow.run, WATCH, id=run, task_queue=QUEUE
                )
            )

    test_server.run([StakingWatchWorkflow], acts.all(), scenario)

    one, two = results
    acme_slash = slash_id("acme", V1, "sw:look-1")
    assert one.booked == [acme_slash] and one.jailed == [V1]
    assert two.booked == [] and two.jailed == []  # nothing twice
    # The books: acme's V1 position equals the chain; V2 untouched; beta left alone.
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 7_200_000
    assert chain.delegation(delegator("acme"), V1) == 7_200_000
    assert ledger.balance(accounts.staked("acme", V2, "ATOM")).total == 4_000_000
    assert ledger.balance(accounts.staked("beta", V1, "ATOM")).total == 2_000_000
    assert available(ledger, "acme") == FUNDED - 12_000_000
    debits, credits = ledger.totals("ATOM")
    assert debits == credits
    # Each of acme's V1 stakes carries its share, and is slashed; the V2 one is not.
    shares = {}
    for stake in (first, second):
        record = ops.get(stake)
        assert record is not None and record.state == "slashed"
        steps = [s for s in ops.timeline(stake) if s.step.startswith("slashed:")]
        assert [s.step for s in steps] == [f"slashed:{acme_slash}"]
        shares[stake] = steps[0].detail["loss"]
    assert shares == {first: "500000", second: "300000"}
    assert ops.get(other).state == "active"  # type: ignore[union-attr]
    slashed = [e for _t, e in ops.outbox if e.type == "custody.stake.slashed.v1"]
    assert sorted(str(e.data["loss"]) for e in slashed) == ["300000", "500000"]
    alerts = [e for _t, e in ops.outbox if e.type == SLASHED_ALERT]
    assert [(a.data["client_id"], a.data["position_loss"]) for a in alerts] == [("acme", "800000")]
    jailed = [e for _t, e in ops.outbox if e.type == JAILED_ALERT]
    assert [(j.subject, j.data["unbonding_height"]) for j in jailed] == [(V1, 150)]

    # Booking the same slash again (a retried activity) changes nothing.
    again = WatchActivities(ledger, ops, chain)
    scan = again.scan(WATCH, "sw:look-3")
    assert scan.slashes == []

    # beta's unstake settles (staked -> unbonding posted): the next look finds its loss,
    # and booking it twice (a retried activity) books it once.
    ledger.open_account(
        Account(id=accounts.unbonding("beta", V1, "ATOM"), asset="ATOM",
                kind=AccountKind.STAKING_LOCKED, owner="beta")
    )  # fmt: skip
    ledger.submit(
        [
            Transfer(
                id=f"{unstake}:post",
                debit_account=accounts.staked("beta", V1, "ATOM"),
                credit_account=accounts.unbonding("beta", V1, "ATOM"),
                asset="ATOM",
                amount=1_000_000,
            )
        ]
    )
    ops.advance(unstake, "unbonding", state="unbonding")
    (found,) = again.scan(WATCH, "sw:look-4").slashes
    assert (found.client_id, found.booked, found.on_chain) == ("beta", 1_000_000, 900_000)
    # beta's one stake held 2 ATOM of which 1 is unstaking: its share is the whole loss.
    assert [(sh.stake_id, sh.left, sh.loss) for sh in found.shares] == [(beta, 1_000_000, 100_000)]
    assert again.book(found) == "booked" and again.book(found) == "booked"
    assert ledger.balance(accounts.staked("beta", V1, "ATOM")).total == 900_000
    alerts = [e for _t, e in ops.outbox if e.type == SLASHED_ALERT]
    assert [a.data["client_id"] for a in alerts] == ["acme", "beta"]
