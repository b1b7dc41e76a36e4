"""Delegations (a client's stake on the proof-of-stake chain): the fake (tests/fakes_chains.py)
and the real CosmosDelegations on the stack's simd, a fresh PostgreSQL database and the
real signer in-process (holding each transaction to the client's signed intent).

One transaction per operation: a repeat returns the same hash; its outcome goes from
pending to succeeded with the fee offered; an undelegation's outcome names a completion
time after its block, its unbonding holds the amount until the chain releases it (then
None); the delegation's balance follows both. (The real adapter's edge cases:
tests/integration/test_cosmos_delegations.py.)"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.chains.cosmos.faucet import CosmosFaucet
from adapters.chains.cosmos.staking import CosmosDelegations
from adapters.ledger.migrate import upgrade
from sagas.ports import Delegations
from sagas.staking import TxOutcome
from services.platform import Platform
from services.settings import PlatformSettings
from services.signer.main import build_signer
from services.worker.bootstrap import COSMOS_GAS
from tests.fakes_chains import FakeDelegations
from tests.governed import Governed

pytestmark = pytest.mark.timeout(150)
FUNDED, AMOUNT, FEE = 10_000_000, 2_000_000, 2_000
GAS = COSMOS_GAS  # the worker's
FAKE_VALIDATOR = "cosmosvaloper1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqlxklzq"
FAKE_DELEGATOR = "cosmos1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnrql8a"

# The port, the delegator and validator, and what the signer must see first for each
# operation (the real one signs only what the client's intent says).
Subject = tuple[Delegations, str, str, Callable[..., Any]]
FAKE_OTHER = "cosmosvaloper1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzq2rqcn"


@pytest.fixture(params=["memory", "postgresql"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "memory":
        fake = FakeDelegations()
        fake_auth: Any = lambda *_args, **_kw: None  # noqa: E731
        fake_auth.other = FAKE_OTHER
        yield fake, FAKE_DELEGATOR, FAKE_VALIDATOR, fake_auth
        return
    request.node.add_marker(pytest.mark.stack)
    url = request.getfixturevalue("fresh_postgres_url")
    upgrade(url)
    governed = Governed(url)
    governed.defaults()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CUSTODY_GOVERNANCE_GENESIS_HASH", governed.genesis_hash)
        settings = PlatformSettings.load()
    platform = Platform(settings, url)
    platform.create_wallet()
    client = f"k{uuid.uuid4().hex[:6]}"
    delegator = platform.client_address(client, "ATOM").address
    assert settings.cosmos_faucet is not None
    CosmosFaucet(platform.cosmos, settings.cosmos_faucet).fund((delegator, FUNDED))
    validator = settings.allowed_validators()[0]
    real = CosmosDelegations(
        url,
        platform.cosmos,
        build_signer(settings, url),
        platform.keys,
        settings.platform_wallet,
        settings.cosmos_chain_id,
        settings.cosmos_denom,
        GAS,
        deriver=platform.deriver,
        migrate=False,
    )

    def authorise(kind: str, operation: str, amount: int, stake: Any, to: str = "") -> Any:
        if kind == "stake":
            return governed.stake(operation, client, amount, validator)
        if kind == "redelegate":
            return governed.redelegate(operation, stake, amount, to)
        return governed.unstake(operation, stake, amount)

    authorise.other = settings.allowed_validators()[1]  # type: ignore[attr-defined]
    yield real, delegator, validator, authorise


def _final(d: Delegations, operation: str, timeout: float = 30.0) -> TxOutcome:
    deadline = time.monotonic() + timeout
    while (outcome := d.outcome(operation)).state == "pending":
        assert time.monotonic() < deadline, f"{operation} still pending: {outcome.detail}"
        time.sleep(0.3)
    return outcome


def test_a_delegation_is_one_transaction_and_succeeds_with_its_fee(subject: Subject) -> None:
    d, delegator, validator, authorise = subject
    op = f"stk-{uuid.uuid4().hex[:8]}"
    assert d.delegation(delegator, validator) is None  # the chain has none yet
    authorise("stake", op, AMOUNT, None)
    first = d.delegate(op, delegator, validator, AMOUNT, FEE)
    assert d.delegate(op, delegator, validator, AMOUNT, FEE) == first
    outcome = _final(d, op)
    assert (outcome.state, outcome.tx_hash, outcome.fee) == ("succeeded", first, FEE)
    assert outcome.height is not None and outcome.completion_time is None
    assert outcome.rewards == 0  # a first delegation has no rewards to withdraw
    # The delegation's balance is what was delegated (the slashing watch compares it with
    # the books), read with its never-slashed validator's rate (1) at one height; the
    # validator is bonded and not jailed.
    view = d.delegation(delegator, validator)
    assert view is not None and view.height >= outcome.height
    assert (view.balance, view.rate) == (AMOUNT, 1)
    state = d.validator_state(validator)
    assert (state.operator, state.jailed, state.status) == (
        validator,
        False,
        "BOND_STATUS_BONDED",
    )


def test_an_undelegation_unbonds_until_the_chain_releases_it(subject: Subject) -> None:
    d, delegator, validator, authorise = subject
    stake_op, op = f"stk-{uuid.uuid4().hex[:8]}", f"uns-{uuid.uuid4().hex[:8]}"
    stake = authorise("stake", stake_op, AMOUNT, None)
    d.delegate(stake_op, delegator, validator, AMOUNT, FEE)
    staked = _final(d, stake_op)
    assert staked.state == "succeeded" and staked.height is not None
    authorise("unstake", op, AMOUNT // 2, stake)
    d.undelegate(op, delegator, validator, AMOUNT // 2, FEE)
    outcome = _final(d, op)
    assert outcome.state == "succeeded" and outcome.height is not None
    assert outcome.completion_time is not None and outcome.completion_time > datetime.now(UTC)
    assert d.unbonding_balance(delegator, validator, outcome.height) == AMOUNT // 2
    view = d.delegation(delegator, validator)
    assert view is not None and view.balance == AMOUNT - AMOUNT // 2
    # Read at the delegation's height, the chain answers as it was then (the watch's
    # reference is read so): the whole amount, half the shares more.
    then = d.delegation(delegator, validator, staked.height)
    assert then is not None and then.height == staked.height and then.balance == AMOUNT
    assert then.shares == 2 * view.shares
    deadline = time.monotonic() + 60
    while d.unbonding_balance(delegator, validator, outcome.height) is not None:
        assert time.monotonic() < deadline, "never released"
        time.sleep(1)


def test_a_redelegation_moves_the_delegation_at_once_and_names_when_its_entry_ends(
    subject: Subject,
) -> None:
    d, delegator, validator, authorise = subject
    other = authorise.other  # type: ignore[attr-defined]
    stake_op, op = f"stk-{uuid.uuid4().hex[:8]}", f"red-{uuid.uuid4().hex[:8]}"
    stake = authorise("stake", stake_op, AMOUNT, None)
    d.delegate(stake_op, delegator, validator, AMOUNT, FEE)
    assert _final(d, stake_op).state == "succeeded"
    authorise("redelegate", op, AMOUNT // 4, stake, to=other)
    first = d.redelegate(op, delegator, validator, other, AMOUNT // 4, FEE)
    assert d.redelegate(op, delegator, validator, other, AMOUNT // 4, FEE) == first
    outcome = _final(d, op)
    assert (outcome.state, outcome.tx_hash, outcome.fee) == ("succeeded", first, FEE)
    assert outcome.height is not None
    # The shares moved in its block; the chain keeps the entry until the unbonding time.
    assert outcome.completion_time is not None and outcome.completion_time > datetime.now(UTC)
    # What the chain delegated to the destination (its entry's): all of it at the source's
    # rate of 1 (a unit less below 1: tests/sagas books that).
    assert outcome.moved == AMOUNT // 4
    source, moved = d.delegation(delegator, validator), d.delegation(delegator, other)
    assert source is not None and source.balance == AMOUNT - AMOUNT // 4
    # (At a destination slashed before, its rate below 1, the moved tokens' shares read
    # back a unit short: the chain truncates.)
    assert moved is not None and AMOUNT // 4 - 1 <= moved.balance <= AMOUNT // 4
    # Read at the redelegation's own height, it is as after it (what the settlement
    # records for the slashing watch).
    at = d.delegation(delegator, other, outcome.height)
    assert at is not None and at.height == outcome.height
    assert (at.shares, at.balance) == (moved.shares, moved.balance)
