"""The withdrawal saga in seconds: its real workflow and activities over fakes, on the
time-skipping test server. Paid once when allowed; rejected at the reservation; voided
when the policy denies it or when the approval window (a day) closes; paid only once
two registered operators other than the requester signed its intent; alerted when the
chain keeps it pending past the stuck deadline (an hour)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from sagas import accounts
from sagas.errors import ApprovalExpired, DependencyUnavailable, InsufficientFunds, PolicyDenied
from sagas.governance import StaticGovernance
from sagas.intents import RegisteredKey, sign_intent
from sagas.ledger import ETH, Transfer
from sagas.policy import PolicyRules
from sagas.withdrawal import ChainStatus, FinalityWait, WithdrawalInput, WithdrawalResult
from sagas.withdrawal.activities import WithdrawalActivities
from sagas.withdrawal.workflows import WithdrawalWorkflow
from tests.fakes import (
    FakeIntentStore,
    FakeOperationStore,
    FakePolicyStore,
    InMemoryLedger,
)
from tests.fakes_chains import FakePayouts
from tests.sagas.conftest import QUEUE, SagaServer, books, requested, until

CLIENT = "acme"
FUNDED = 10 * 10**18  # wei
OPERATORS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol")}


class NoHits:
    def sources(self, chain: str, tx_hash: str) -> list[str]:
        return []

    def check(self, chain: str, addresses: Any) -> str | None:
        return None


@dataclass
class World:
    ledger: InMemoryLedger
    ops: FakeOperationStore
    intents: FakeIntentStore
    payouts: FakePayouts
    client: Client

    def available(self) -> int:
        return self.ledger.balance(accounts.client(CLIENT, "ETH")).available

    async def start(
        self, amount: int, requested_by: str = "carol", **extra: Any
    ) -> WorkflowHandle[Any, WithdrawalResult]:
        op_id = f"wd:{CLIENT}:{uuid.uuid4().hex[:8]}"
        req = WithdrawalInput(
            operation_id=op_id,
            client_id=CLIENT,
            asset="ETH",
            chain="ethereum",
            amount=amount,
            destination="0x52908400098527886E0F7030069857D2E4169EE7",
            requested_by=requested_by,
            requested_at=datetime.now(UTC),
            **extra,
        )
        requested(
            self.ops, op_id, "withdrawal", CLIENT, "ETH", "ethereum", amount, requested_by,
            req.destination,
        )  # fmt: skip
        return await self.client.start_workflow(
            WithdrawalWorkflow.run, req, id=op_id, task_queue=QUEUE
        )

    def approve(self, operation_id: str, operator: str) -> None:
        stored = self.intents.intent(operation_id)
        assert stored is not None, "no intent to sign yet"
        self.intents.add_approval(sign_intent(stored[0], OPERATORS[operator]), operator)


def run_world(
    test_server: SagaServer,
    scenario: Callable[[World], Awaitable[None]],
    payouts: FakePayouts | None = None,
    **rules: Any,
) -> World:
    """Run `scenario` against a worker with the saga's real activities over fakes."""
    ledger = books(ETH, CLIENT)
    ledger.submit(
        [
            Transfer(
                id="funding",
                debit_account=accounts.omnibus("ETH"),
                credit_account=accounts.client(CLIENT, "ETH"),
                asset="ETH",
                amount=FUNDED,
            )
        ]
    )
    policies = FakePolicyStore()
    if rules.pop("policy", True):
        policies.put(PolicyRules(client_id=CLIENT, asset="ETH", **rules), "genesis")
    registered = [RegisteredKey.of(n, k) for n, k in OPERATORS.items()]
    governance = StaticGovernance(operator_keys={k.key_id: k for k in registered})
    ops, intents, payouts = FakeOperationStore(), FakeIntentStore(), payouts or FakePayouts()
    acts = WithdrawalActivities(
        ledger, ops, policies, payouts, intents, governance, lambda _a: 10**16, NoHits()
    )

    world: list[World] = []

    async def go(client: Client) -> None:
        world.append(World(ledger, ops, intents, payouts, client))
        await scenario(world[0])

    test_server.run([WithdrawalWorkflow], acts.all(), go)
    return world[0]


def steps(world: World, operation_id: str) -> list[str]:
    return [s.step for s in world.ops.timeline(operation_id)]


def test_an_allowed_withdrawal_is_paid_once_and_booked(test_server: SagaServer) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        handle = await w.start(10**18)
        seen["result"] = await handle.result()
        seen["op"] = handle.id

    world = run_world(test_server, scenario, payouts=FakePayouts(final_after=3))
    result, op_id = seen["result"], seen["op"]
    assert (result.state, result.fee) == ("completed", 21_000)
    assert world.payouts.sends == {op_id: 1}
    assert world.available() == FUNDED - 10**18
    assert world.ledger.balance(accounts.network_fees("ETH")).debits_posted == 21_000
    assert steps(world, op_id) == [
        "requested", "reserved", "policy_decided", "screened", "intent", "approved", "broadcast",
        "completed",
    ]  # fmt: skip


def test_a_withdrawal_above_the_balance_is_rejected_and_nothing_is_sent(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        handle = await w.start(FUNDED + 1)
        seen["result"], seen["op"] = await handle.result(), handle.id

    world = run_world(test_server, scenario)
    assert (seen["result"].state, seen["result"].error_code) == ("rejected", InsufficientFunds.code)
    assert world.payouts.sends == {}
    assert world.available() == FUNDED


def test_no_policy_is_a_denial_and_the_reservation_is_released(test_server: SagaServer) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        handle = await w.start(10**18)
        seen["result"], seen["op"] = await handle.result(), handle.id

    world = run_world(test_server, scenario, policy=False)
    assert (seen["result"].state, seen["result"].error_code) == ("rejected", PolicyDenied.code)
    assert world.payouts.sends == {}
    assert world.available() == FUNDED  # voided: nothing held
    assert world.ledger.balance(accounts.client(CLIENT, "ETH")).debits_pending == 0


def test_nobody_approves_within_the_day_and_it_expires(test_server: SagaServer) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        handle = await w.start(2 * 10**18)
        began = datetime.now(UTC)
        seen["result"], seen["op"] = await handle.result(), handle.id  # a day, skipped
        seen["wall"] = datetime.now(UTC) - began

    world = run_world(test_server, scenario, approval_threshold=10**18, approval_quorum=2)
    assert (seen["result"].state, seen["result"].error_code) == ("expired", ApprovalExpired.code)
    assert seen["wall"] < timedelta(seconds=30)  # the 24 h window passed in moments
    assert world.payouts.sends == {}
    assert world.available() == FUNDED
    assert "awaiting_approval" not in steps(world, seen["op"])  # a state, not a step
    assert steps(world, seen["op"])[-1] == "expired"


def test_two_operators_other_than_the_requester_release_it(test_server: SagaServer) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        handle = await w.start(2 * 10**18, requested_by="alice")
        await until(lambda: w.intents.intent(handle.id) is not None)
        # The requester's own signature and one other: not yet a quorum.
        w.approve(handle.id, "alice")
        w.approve(handle.id, "bob")
        await handle.signal(WithdrawalWorkflow.approvals_changed)
        await until(lambda: "approval:bob" in steps(w, handle.id))  # counted
        for _ in range(200):  # and the saga has the count
            seen["tally"] = await handle.query(WithdrawalWorkflow.tally)
            if seen["tally"] is not None and seen["tally"].approvers:
                break
            await asyncio.sleep(0.05)
        seen["sent_early"] = dict(w.payouts.sends)
        w.approve(handle.id, "carol")
        await handle.signal(WithdrawalWorkflow.approvals_changed)
        seen["result"], seen["op"] = await handle.result(), handle.id

    world = run_world(test_server, scenario, approval_threshold=10**18, approval_quorum=2)
    assert seen["tally"] is not None and seen["tally"].approvers == ["bob"], seen["tally"]
    assert seen["sent_early"] == {}
    assert seen["result"].state == "completed"
    assert world.payouts.sends == {seen["op"]: 1}
    assert {"approval:bob", "approval:carol"} <= set(steps(world, seen["op"]))
    assert "approval:alice" not in steps(world, seen["op"])


def test_a_transaction_pending_past_the_hour_alerts_once_and_is_rebroadcast(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        handle = await w.start(10**18, poll_seconds=60, stuck_after_seconds=3600)
        seen["result"], seen["op"] = await handle.result(), handle.id

    # About 90 polls a minute apart: pending for an hour and a half of skipped time.
    world = run_world(test_server, scenario, payouts=FakePayouts(final_after=90))
    assert seen["result"].state == "completed"
    alerts = [e for topic, e in world.ops.outbox if topic == "custody.alerts.v1"]
    assert [a.type for a in alerts] == ["custody.alert.withdrawal_stuck.v1"]
    assert world.payouts.rebroadcasts >= 1
    assert world.payouts.sends == {seen["op"]: 1}


def test_a_payment_pending_for_days_waits_on_in_new_runs_and_is_booked_once(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        handle = await w.start(
            10**18, poll_seconds=3600, stuck_after_seconds=7200, history_limit=60
        )
        seen["result"], seen["op"] = await handle.result(), handle.id
        first = w.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        seen["first"] = (await first.describe()).status
        seen["last"] = (await w.client.get_workflow_handle(handle.id).describe()).run_id
        seen["first_run"] = handle.first_execution_run_id

    # Three days of hourly polls: about 6 events each, far past 60 in one run.
    world = run_world(test_server, scenario, payouts=FakePayouts(final_after=72))
    assert seen["first"] == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert seen["last"] != seen["first_run"]
    assert seen["result"].state == "completed"
    op_id = seen["op"]
    assert world.payouts.sends == {op_id: 1}
    assert world.available() == FUNDED - 10**18
    assert world.ledger.balance(accounts.network_fees("ETH")).debits_posted == 21_000
    alerts = [e for topic, e in world.ops.outbox if topic == "custody.alerts.v1"]
    assert [a.type for a in alerts] == ["custody.alert.withdrawal_stuck.v1"]
    assert world.payouts.rebroadcasts == 1  # at the alert, not again in each new run
    assert steps(world, op_id)[-3:] == ["broadcast", "stuck_alert", "completed"]


@dataclass
class FlakyPayouts(FakePayouts):
    """The node is down for as long as the saga asks as a local activity (about 15 s of
    real time), and for its first `remote_failures` remote attempts after that."""

    remote_failures: int = 2
    local_failures: int = 0

    def status(self, operation_id: str, asset: str) -> ChainStatus:
        if activity.info().is_local:
            self.local_failures += 1
            raise DependencyUnavailable("the node is down")
        if self.remote_failures > 0:
            self.remote_failures -= 1
            raise DependencyUnavailable("the node is still down")
        return super().status(operation_id, asset)


def test_a_fast_step_that_keeps_failing_goes_on_as_a_remote_activity(
    test_server: SagaServer,
) -> None:
    """A local step retries inside the workflow task (and its heartbeats fill the
    history): past its time as a local activity it runs as a remote one, and the saga
    completes once the node is back, instead of failing or growing without bound."""
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        handle = await w.start(10**18)
        seen["result"] = await handle.result()
        history = await handle.fetch_history()
        seen["remote"] = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history.events
            if e.HasField("activity_task_scheduled_event_attributes")
        ]

    flaky = FlakyPayouts(final_after=1)
    run_world(test_server, scenario, payouts=flaky)
    assert seen["result"].state == "completed"
    assert flaky.local_failures == 5 and flaky.remote_failures == 0  # every attempt failed
    assert "withdrawal.chain_status" in seen["remote"]  # fell back to a remote activity
    assert "withdrawal.reserve" not in seen["remote"]  # the others stayed local


def test_a_start_that_claims_to_resume_a_finality_wait_begins_at_the_beginning(
    test_server: SagaServer,
) -> None:
    """Anyone who can reach Temporal can start the saga with any input. One that claims to
    be a new run of a payment already mined (`resume`) is not a run the saga continued
    itself: it reserves, asks the policy and waits for approvals like any withdrawal; it
    books nothing and sends nothing before they come (on the code before the check, it
    went straight to the wait for finality and its booking)."""
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        forged = FinalityWait(started_at=datetime.now(UTC), alerted=True, mined=True)
        handle = await w.start(2 * 10**18, requested_by="alice", resume=forged)
        await until(lambda: w.intents.intent(handle.id) is not None)
        for _ in range(200):
            seen["stage"] = await handle.query(WithdrawalWorkflow.stage)
            if seen["stage"] == "awaiting_approval":
                break
            await asyncio.sleep(0.05)
        seen["op"], seen["sends"] = handle.id, dict(w.payouts.sends)
        seen["available"] = w.available()
        await handle.terminate("the test is over")

    world = run_world(test_server, scenario, approval_threshold=10**18, approval_quorum=2)
    op_id = seen["op"]
    assert seen["stage"] == "awaiting_approval"
    assert seen["sends"] == {} and world.payouts.sends == {}
    assert seen["available"] == FUNDED - 2 * 10**18  # reserved, not posted
    assert world.ledger.balance(accounts.network_fees("ETH")).debits_posted == 0
    assert steps(world, op_id) == ["requested", "reserved", "policy_decided", "screened", "intent"]
