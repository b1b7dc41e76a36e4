"""The stake and unstake sagas in seconds: their real workflows and activities over fakes,
on the time-skipping test server. A stake reserves, is decided by the client's policy,
waits for a quorum's signatures above the threshold, delegates once, and books the
amount to the client's staked account and the fee to the network; a failure on chain
books only the fee; a refusal, a denial or an expired approval window books nothing.
An unstake waits out a 21-day unbonding on one durable timer and books what the chain
gives back, a slash in between included."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.client import Client, WorkflowHandle

from sagas import accounts
from sagas.errors import ApprovalExpired, InsufficientFunds, KeyAccessDenied, PolicyDenied
from sagas.governance import StaticGovernance
from sagas.intents import RegisteredKey, sign_intent
from sagas.ledger import ATOM, Transfer
from sagas.policy import PolicyRules
from sagas.staking import (
    RedelegateInput,
    RedelegateResult,
    StakeInput,
    StakeResult,
    UnstakeInput,
    UnstakeResult,
)
from sagas.staking.activities import StakingActivities
from sagas.staking.positions import reduced_by
from sagas.staking.workflows import RedelegateWorkflow, StakeWorkflow, UnstakeWorkflow
from tests.fakes import FakeIntentStore, FakeOperationStore, FakePolicyStore, InMemoryLedger
from tests.fakes_chains import FakeDelegations
from tests.sagas.conftest import QUEUE, SagaServer, books, requested, until

CLIENT = "acme"
FUNDED = 100_000_000  # uatom
FEE = 2_000
VALIDATOR = "cosmosvaloper1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqlxklzq"
OTHER = "cosmosvaloper1zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3yx7rls"
DELEGATOR = "cosmos1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnrql8a"
OPERATORS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol")}


@dataclass
class World:
    ledger: InMemoryLedger
    ops: FakeOperationStore
    intents: FakeIntentStore
    chain: FakeDelegations
    client: Client

    def balance(self, account: str) -> int:
        return self.ledger.balance(account).total

    def available(self) -> int:
        return self.ledger.balance(accounts.client(CLIENT, "ATOM")).available

    def staked(self, validator: str = VALIDATOR) -> int:
        return self.balance(accounts.staked(CLIENT, validator, "ATOM"))

    def unbonding(self, validator: str = VALIDATOR) -> int:
        return self.balance(accounts.unbonding(CLIENT, validator, "ATOM"))

    async def stake(self, amount: int) -> WorkflowHandle[Any, StakeResult]:
        op_id = f"stk:{CLIENT}:{uuid.uuid4().hex[:8]}"
        req = StakeInput(
            operation_id=op_id,
            client_id=CLIENT,
            asset="ATOM",
            amount=amount,
            validator=VALIDATOR,
            delegator=DELEGATOR,
            requested_by="carol",
            requested_at=datetime.now(UTC),
            fee=FEE,
        )
        requested(self.ops, op_id, "stake", CLIENT, "ATOM", "cosmos", amount, "carol", VALIDATOR)
        return await self.client.start_workflow(StakeWorkflow.run, req, id=op_id, task_queue=QUEUE)

    async def unstake(
        self, stake_id: str, amount: int, validator: str = VALIDATOR
    ) -> WorkflowHandle[Any, UnstakeResult]:
        op_id = f"uns:{stake_id}:{uuid.uuid4().hex[:8]}"
        req = UnstakeInput(
            operation_id=op_id,
            stake_id=stake_id,
            client_id=CLIENT,
            asset="ATOM",
            amount=amount,
            validator=validator,
            delegator=DELEGATOR,
            requested_by="carol",
            requested_at=datetime.now(UTC),
            fee=FEE,
        )
        requested(self.ops, op_id, "unstake", CLIENT, "ATOM", "cosmos", amount, "carol", validator)
        return await self.client.start_workflow(
            UnstakeWorkflow.run, req, id=op_id, task_queue=QUEUE
        )

    async def redelegate(
        self, position: str, amount: int, source: str = VALIDATOR, to: str = OTHER
    ) -> WorkflowHandle[Any, RedelegateResult]:
        op_id = f"red:{position}:{uuid.uuid4().hex[:8]}"
        req = RedelegateInput(
            operation_id=op_id,
            stake_id=position,
            client_id=CLIENT,
            asset="ATOM",
            amount=amount,
            source=source,
            validator=to,
            delegator=DELEGATOR,
            requested_by="carol",
            requested_at=datetime.now(UTC),
            fee=FEE,
        )
        requested(self.ops, op_id, "redelegation", CLIENT, "ATOM", "cosmos", amount, "carol", to)
        return await self.client.start_workflow(
            RedelegateWorkflow.run, req, id=op_id, task_queue=QUEUE
        )

    def approve(self, operation_id: str, operator: str) -> None:
        stored = self.intents.intent(operation_id, "stake")
        assert stored is not None, "no intent to sign yet"
        self.intents.add_approval(sign_intent(stored[0], OPERATORS[operator]), operator)


def run_world(
    test_server: SagaServer,
    scenario: Callable[[World], Awaitable[None]],
    chain: FakeDelegations | None = None,
    **rules: Any,
) -> World:
    bps = rules.pop("commission_bps", 0)
    ledger = books(ATOM, CLIENT)
    funding = Transfer(
        id="funding",
        debit_account=accounts.omnibus("ATOM"),
        credit_account=accounts.client(CLIENT, "ATOM"),
        asset="ATOM",
        amount=FUNDED,
    )
    ledger.submit([funding])
    policies = FakePolicyStore()
    if rules.pop("policy", True):
        policies.put(PolicyRules(client_id=CLIENT, asset="ATOM", **rules), "genesis")
    registered = [RegisteredKey.of(n, k) for n, k in OPERATORS.items()]
    governance = StaticGovernance(operator_keys={k.key_id: k for k in registered})
    ops, intents, chain = FakeOperationStore(), FakeIntentStore(), chain or FakeDelegations()
    acts = StakingActivities(
        ledger, ops, policies, intents, governance, chain, lambda _a: 10**5, commission_bps=bps
    )
    world: list[World] = []

    async def go(client: Client) -> None:
        world.append(World(ledger, ops, intents, chain, client))
        await scenario(world[0])

    test_server.run([StakeWorkflow, UnstakeWorkflow, RedelegateWorkflow], acts.all(), go)
    return world[0]


def steps(world: World, operation_id: str) -> list[str]:
    return [s.step for s in world.ops.timeline(operation_id)]


def test_a_stake_delegates_once_and_books_staked_and_fee(test_server: SagaServer) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        handle = await w.stake(30_000_000)
        seen["result"], seen["op"] = await handle.result(), handle.id

    world = run_world(test_server, scenario, FakeDelegations(in_block_after=3))
    result, op = seen["result"], seen["op"]
    assert (result.state, result.fee) == ("active", FEE)
    assert world.chain.calls == {op: 1} and world.chain.txs[op].amount == 30_000_000
    assert world.available() == FUNDED - 30_000_000 - FEE
    assert world.staked() == 30_000_000
    # The fee left the platform's holdings with the client's money: omnibus down by it.
    assert world.balance(accounts.omnibus("ATOM")) == -(FUNDED - FEE)
    assert steps(world, op) == [
        "requested", "reserved", "policy_decided", "intent", "approved", "broadcast", "active",
    ]  # fmt: skip
    assert world.ops.get(op).state == "active"  # type: ignore[union-attr]


def test_a_stake_above_the_balance_is_rejected_and_nothing_delegates(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        seen["result"] = await (await w.stake(FUNDED)).result()  # the fee does not fit

    world = run_world(test_server, scenario)
    assert (seen["result"].state, seen["result"].error_code) == ("rejected", InsufficientFunds.code)
    assert world.chain.calls == {} and world.available() == FUNDED and world.staked() == 0


def test_a_stake_above_the_limit_is_denied_and_released(test_server: SagaServer) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        seen["result"] = await (await w.stake(30_000_000)).result()

    world = run_world(test_server, scenario, per_transaction_limit=10_000_000)
    assert (seen["result"].state, seen["result"].error_code) == ("rejected", PolicyDenied.code)
    assert world.chain.calls == {} and world.available() == FUNDED
    assert world.ledger.balance(accounts.client(CLIENT, "ATOM")).debits_pending == 0


def test_a_large_stake_waits_for_two_operators_and_expires_without(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        approved, lapsed = await w.stake(30_000_000), await w.stake(20_000_000)
        await until(lambda: w.intents.intent(approved.id, "stake") is not None)
        w.approve(approved.id, "carol")  # the requester: never counted
        w.approve(approved.id, "alice")
        await approved.signal(StakeWorkflow.approvals_changed)
        assert await approved.query(StakeWorkflow.stage) == "awaiting_approval"
        w.approve(approved.id, "bob")
        await approved.signal(StakeWorkflow.approvals_changed)
        seen["approved"], seen["lapsed"] = await approved.result(), await lapsed.result()

    world = run_world(test_server, scenario, approval_threshold=10_000_000, approval_quorum=2)
    assert seen["approved"].state == "active"
    assert (seen["lapsed"].state, seen["lapsed"].error_code) == ("expired", ApprovalExpired.code)
    assert world.staked() == 30_000_000
    assert world.available() == FUNDED - 30_000_000 - FEE


def test_a_refused_or_failed_delegation(test_server: SagaServer) -> None:
    seen: dict[str, Any] = {}
    chain = FakeDelegations()
    chain.refuse.add("*")  # the signer refuses it

    async def scenario(w: World) -> None:
        seen["refused"] = await (await w.stake(10_000_000)).result()

    world = run_world(test_server, scenario, chain)
    assert (seen["refused"].state, seen["refused"].error_code) == ("failed", "CUS-4031")
    assert world.available() == FUNDED and world.staked() == 0  # both reservations voided

    failed: dict[str, Any] = {}
    chain = FakeDelegations()

    async def on_chain(w: World) -> None:
        handle = await w.stake(10_000_000)
        chain.fail.add(handle.id)
        failed["result"] = await handle.result()

    world = run_world(test_server, on_chain, chain)
    assert (failed["result"].state, failed["result"].fee) == ("failed", FEE)
    assert world.available() == FUNDED - FEE and world.staked() == 0  # the fee was paid


def test_an_unstake_waits_out_unbonding_and_books_what_the_chain_returns(
    test_server: SagaServer,
) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        stake = await w.stake(30_000_000)
        await stake.result()
        began = datetime.now(UTC)
        unstake = await w.unstake(stake.id, 12_000_000)
        await until(lambda: w.unbonding() == 12_000_000)
        seen["staked_while"] = w.staked()
        seen["result"] = await unstake.result()  # 21 days, skipped
        seen["wall"] = (datetime.now(UTC) - began).total_seconds()

    chain = FakeDelegations(release_after=1, rewards=4_321)
    world = run_world(test_server, scenario, chain, commission_bps=1000)
    result = seen["result"]
    assert (result.state, result.released) == ("completed", 12_000_000)
    assert seen["staked_while"] == 18_000_000 and seen["wall"] < 30
    assert world.staked() == 18_000_000 and world.unbonding() == 0
    # The rewards the undelegation withdrew into the client's address are the client's,
    # less the platform's commission at the claims' rate (10 %, rounded down: 432).
    assert world.available() == FUNDED - 30_000_000 - 2 * FEE + 12_000_000 + 4_321 - 432
    assert world.balance(accounts.staking_commission("ATOM")) == 432
    assert world.balance(accounts.omnibus("ATOM")) == -(FUNDED - 2 * FEE + 4_321)
    (unbonding,) = [s for s in world.ops.timeline(result.operation_id) if s.step == "unbonding"]
    assert (unbonding.detail["rewards"], unbonding.detail["commission"]) == ("4321", "432")


def test_a_slash_while_unbonding_is_booked_as_the_chain_cut_it(test_server: SagaServer) -> None:
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        stake = await w.stake(30_000_000)
        await stake.result()
        seen["result"] = await (await w.unstake(stake.id, 10_000_000)).result()

    world = run_world(test_server, scenario, FakeDelegations(slash_percent=10))
    assert (seen["result"].state, seen["result"].released) == ("completed", 9_000_000)
    assert world.unbonding() == 0 and world.staked() == 20_000_000
    assert world.available() == FUNDED - 30_000_000 - 2 * FEE + 9_000_000
    # The million the chain cut left the books with the chain's holdings.
    assert world.balance(accounts.omnibus("ATOM")) == -(FUNDED - 2 * FEE - 1_000_000)


def test_a_position_the_intent_cannot_name_ends_rejected_with_its_reservations_released(
    test_server: SagaServer,
) -> None:
    """An unstake and a redelegation of a position with no intent on record (the signer
    could not walk to a stake): the intent step refuses them (KeyAccessDenied). The saga
    ends rejected with that code and voids both reservations; before, it failed with them
    pending, holding the client's stake and fee for ever."""
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        stake = await w.stake(30_000_000)
        await stake.result()
        unstake = await w.unstake("stk:acme:nowhere", 5_000_000)
        seen["unstake"] = await unstake.result()
        moved = await w.redelegate("stk:acme:nowhere", 5_000_000)
        seen["moved"], seen["op"] = await moved.result(), moved.id

    world = run_world(test_server, scenario, FakeDelegations())
    for ended in (seen["unstake"], seen["moved"]):
        assert (ended.state, ended.error_code) == ("rejected", KeyAccessDenied.code), ended
    assert steps(world, seen["op"])[-1] == "rejected"
    # Nothing held: the whole stake is with the validator, the available balance less the
    # stake's own fee only; no pending reservation left.
    assert world.ledger.balance(accounts.staked(CLIENT, VALIDATOR, "ATOM")).available == 30_000_000
    assert world.available() == FUNDED - 30_000_000 - FEE
    assert not world.chain.calls.get(seen["op"])


def test_a_redelegation_from_a_slashed_source_books_what_the_chain_moved(
    test_server: SagaServer,
) -> None:
    """A source slashed by a tenth before (its rate 0.9): moving 10_000_001 unbonds that
    many tokens' shares and the chain delegates what they are worth, truncated: 10_000_000.
    The books post that at the destination (equal to the chain's delegation there) and
    take the unit the chain kept from the source's stake to the omnibus, in the settlement
    itself (without this, the destination's books held a unit the chain never delegated)."""
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        stake = await w.stake(30_000_000)
        await stake.result()
        w.chain.slash(VALIDATOR, Fraction(1, 10))
        moved = await w.redelegate(stake.id, 10_000_001)
        seen["moved"], seen["op"] = await moved.result(), moved.id

    world = run_world(test_server, scenario, FakeDelegations())
    assert seen["moved"].state == "active"
    on_chain = world.chain.delegation(DELEGATOR, OTHER)
    assert on_chain is not None and on_chain.balance == 10_000_000
    assert world.staked(OTHER) == 10_000_000
    assert world.staked(VALIDATOR) == 30_000_000 - 10_000_001
    assert world.available() == FUNDED - 30_000_000 - 2 * FEE
    assert world.balance(accounts.omnibus("ATOM")) == -(FUNDED - 2 * FEE - 1)
    timeline = world.ops.timeline(seen["op"])
    active = next(s for s in timeline if s.step == "active").detail
    assert (active["moved"], active["held"]) == ("10000000", "10000000")
    # The position holds what reached the destination: all of it can be unstaked.
    red = world.ops.get(seen["op"])
    assert red is not None and red.amount - reduced_by(red, timeline) == 10_000_000


def test_a_redelegation_moves_the_shares_at_once_and_is_a_position_of_its_own(
    test_server: SagaServer,
) -> None:
    """Stake 30 with A, move 10 of it to B: staked with A 20, with B 10, the fee paid once
    more; the chain moved exactly that from A to B under the stake's intent. The
    redelegation is then unstaked from B like a stake (its intent names it)."""
    seen: dict[str, Any] = {}

    async def scenario(w: World) -> None:
        stake = await w.stake(30_000_000)
        await stake.result()
        seen["stake"] = stake.id
        moved = await w.redelegate(stake.id, 10_000_000)
        seen["moved"], seen["op"] = await moved.result(), moved.id
        seen["too_much"] = await (
            await w.redelegate(moved.id, 10_000_001, OTHER, VALIDATOR)
        ).result()
        unstake = await w.unstake(moved.id, 4_000_000, OTHER)
        seen["unstaked"], seen["unstake"] = await unstake.result(), unstake.id

    world = run_world(test_server, scenario, FakeDelegations(release_after=1))
    moved, op = seen["moved"], seen["op"]
    assert (moved.state, moved.fee) == ("active", FEE) and moved.completion_time is not None
    tx = world.chain.txs[op]
    assert (tx.kind, tx.validator, tx.to, tx.amount) == ("redelegate", VALIDATOR, OTHER, 10_000_000)
    assert steps(world, op) == [
        "requested", "reserved", "policy_decided", "intent", "approved", "broadcast", "active",
    ]  # fmt: skip
    # The settlement recorded both positions for the slashing watch.
    active = next(s for s in world.ops.timeline(op) if s.step == "active").detail
    assert active["shares_height"] == active["source_position"]["shares_height"]
    assert active["source_position"]["shares"] == str(20_000_000 * 10**18)
    intent = world.intents.intent(op, "redelegate")
    assert intent is not None and intent[0].destination == OTHER
    assert intent[0].fee_cap == FEE  # the fee the books reserved, not the signer's cap
    assert intent[0].payload["stake"] == seen["stake"] and intent[0].asset == "ATOM"
    # More than the redelegation holds is refused by the books: nothing moves.
    assert (seen["too_much"].state, seen["too_much"].error_code) == (
        "rejected",
        InsufficientFunds.code,
    )
    # The redelegation's own unstake came back from B.
    assert (seen["unstaked"].state, seen["unstaked"].released) == ("completed", 4_000_000)
    unstake_intent = world.intents.intent(seen["unstake"], "unstake")
    assert unstake_intent is not None and unstake_intent[0].payload["stake"] == op
    assert world.staked(VALIDATOR) == 20_000_000 and world.staked(OTHER) == 6_000_000
    # Three fees: the stake's, the redelegation's, the unstake's (the refused one paid none).
    assert world.available() == FUNDED - 30_000_000 - 3 * FEE + 4_000_000
