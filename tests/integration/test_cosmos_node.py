"""CosmosNode against the stack's simd: transactions built by tx.py, signed in the test by
a cosmpy PrivateKey standing in for the signer, broadcast and read back to the uatom:
funding, delegate, rewards and their claim, undelegate, redelegate, and the refusals."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cosmpy.aerial.wallet import LocalWallet
from cosmpy.crypto.keypairs import PrivateKey

from adapters.chains.cosmos.node import (
    CosmosNode,
    CosmosTxResult,
    SequenceMismatch,
    TxRejected,
    UnknownValidator,
)
from adapters.chains.cosmos.tx import (
    UnsignedCosmosTx,
    address_of,
    assemble,
    build,
    msg_delegate,
    msg_redelegate,
    msg_send,
    msg_undelegate,
    msg_withdraw_rewards,
    sign_doc,
    tx_hash,
)
from infra.services.cosmos import SimdA
from infra.settings import StackSettings
from sagas.errors import ChainRejected, DependencyUnavailable

DENOM = "uatom"
FEE = 2000  # the nodes' minimum gas price is 0uatom; the platform still pays one fee coin
GAS = 200_000  # a send uses ~91k, a delegate ~142k, a claim ~124k
STAKING_GAS = 400_000  # an undelegate uses ~195k and a redelegate ~242k
FUNDING = 50_000_000
BLOCK_WAIT = 20.0  # seconds for a broadcast transaction to be in a block (1 s blocks)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cosmos() -> dict[str, str]:
    node = SimdA(StackSettings())
    if node.pid() is None:
        pytest.fail("the Cosmos chain is not up: run `custody stack up simd simd-b`")
    return node.bootstrap(lambda _msg: None)


@pytest.fixture(scope="module")
def cosmos_node(cosmos: dict[str, str]) -> Iterator[CosmosNode]:
    node = CosmosNode(cosmos["CUSTODY_COSMOS_GRPC_URL"], denom=DENOM)
    yield node
    node.close()


class Key:
    """A test key standing in for the platform's signer: signs sign-docs, nothing else."""

    def __init__(self, private: PrivateKey) -> None:
        self._private = private
        self.public_key: bytes = private.public_key.public_key_bytes
        self.address = address_of(self.public_key)

    def sign(self, u: UnsignedCosmosTx) -> bytes:
        return assemble(u, self._private.sign(sign_doc(u), deterministic=True, canonicalise=True))


def _unsigned(
    node: CosmosNode, key: Key, messages: Sequence[Any], gas: int, sequence: int | None = None
) -> UnsignedCosmosTx:
    account = node.account(key.address)
    assert account is not None, f"{key.address} has no account"
    number, next_sequence = account
    seq = next_sequence if sequence is None else sequence
    return build(messages, key.public_key, seq, number, "custody-pos-1", FEE, DENOM, gas)


def _send(node: CosmosNode, key: Key, messages: Sequence[Any], gas: int = GAS) -> CosmosTxResult:
    """Build, sign, broadcast; the result once in a block (asserted to have succeeded)."""
    for _ in range(5):  # the faucet is shared: another test may take its sequence first
        raw = key.sign(_unsigned(node, key, messages, gas))
        try:
            name = node.broadcast(raw)
        except SequenceMismatch:
            time.sleep(0.5)
            continue
        assert name == tx_hash(raw)
        result = node.wait_tx(name, BLOCK_WAIT)
        assert result.tx_hash == name
        assert result.succeeded, result.raw_log
        return result
    pytest.fail(f"{key.address}: sequence taken five times")


def _coin(amount: str) -> int:
    assert amount.endswith(DENOM) and amount[: -len(DENOM)].isdigit(), amount
    return int(amount[: -len(DENOM)])


def _rewards_paid(result: CosmosTxResult, delegator: str) -> int:
    return sum(
        _coin(e.get("amount") or f"0{DENOM}")
        for e in result.events_of("withdraw_rewards")
        if e.get("delegator") == delegator
    )


def _poll(what: str, condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def faucet(cosmos: dict[str, str]) -> Key:
    secret = json.loads(Path(cosmos["CUSTODY_COSMOS_FAUCET"]).read_text())
    key = Key(LocalWallet.from_mnemonic(secret["mnemonic"], prefix="cosmos").signer())
    assert key.address == secret["address"]
    return key


@pytest.fixture(scope="module")
def funded(cosmos_node: CosmosNode, faucet: Key) -> list[Key]:
    """Three fresh keys, FUNDING uatom each, from one faucet transaction of three sends."""
    keys = [Key(PrivateKey()) for _ in range(3)]
    for key in keys:
        assert cosmos_node.account(key.address) is None
    sends = [msg_send(faucet.address, k.address, FUNDING, DENOM) for k in keys]
    result = _send(cosmos_node, faucet, sends)
    assert result.height > 0 and result.gas_used <= result.gas_wanted == GAS
    return keys


def test_an_address_the_chain_never_saw(cosmos_node: CosmosNode, cosmos: dict[str, str]) -> None:
    stranger = Key(PrivateKey()).address
    assert cosmos_node.account(stranger) is None
    assert cosmos_node.balance(stranger) == 0
    validator = cosmos["CUSTODY_COSMOS_VALIDATOR"]
    assert cosmos_node.delegation(stranger, validator) == 0
    assert cosmos_node.rewards(stranger, validator) == 0
    assert cosmos_node.unbonding(stranger, validator) == []
    assert cosmos_node.tx("00" * 32) is None


def test_a_node_that_does_not_answer_is_transient() -> None:
    node = CosmosNode("grpc+http://127.0.0.1:1", timeout=2)
    with pytest.raises(DependencyUnavailable) as unavailable:
        node.height()
    assert unavailable.value.transient
    with pytest.raises(DependencyUnavailable):
        node.broadcast(b"\x0a\x00")


def test_chain_and_validators(cosmos_node: CosmosNode, cosmos: dict[str, str]) -> None:
    assert cosmos_node.chain_id() == "custody-pos-1"
    start = cosmos_node.height()
    _poll("a new block", lambda: cosmos_node.height() > start)
    a = cosmos_node.validator(cosmos["CUSTODY_COSMOS_VALIDATOR"])
    assert (a.operator, a.status, a.jailed) == (
        cosmos["CUSTODY_COSMOS_VALIDATOR"],
        "BOND_STATUS_BONDED",
        False,
    )
    assert a.tokens >= 90 * 10**6
    whole, fraction = a.delegator_shares.split(".")
    assert whole.isdigit() and len(fraction) == 18 and fraction.isdigit()
    # A was never slashed: one share per token, exactly.
    assert a.delegator_shares == f"{a.tokens}.{'0' * 18}"
    b = cosmos_node.validator(cosmos["CUSTODY_COSMOS_VALIDATOR_B"])
    assert b.tokens > 0 and b.status.startswith("BOND_STATUS_")
    with pytest.raises(UnknownValidator):
        cosmos_node.validator(address_of(b"no such validator", "cosmosvaloper"))


def test_funding_is_exact_and_the_first_transaction_pays_exactly_its_fee(
    cosmos_node: CosmosNode, funded: list[Key], cosmos: dict[str, str]
) -> None:
    key = funded[0]
    assert cosmos_node.balance(key.address) == FUNDING
    account = cosmos_node.account(key.address)
    assert account is not None and account[1] == 0

    validator, amount = cosmos["CUSTODY_COSMOS_VALIDATOR"], 1_234_567
    unsigned = _unsigned(
        cosmos_node, key, [msg_delegate(key.address, validator, amount, DENOM)], GAS
    )
    simulated = cosmos_node.simulate(unsigned)
    result = _send(cosmos_node, key, [msg_delegate(key.address, validator, amount, DENOM)])
    # Simulation is an estimate: SDK 0.46 undercounts staking messages by a few thousand.
    assert 0.9 * result.gas_used <= simulated <= result.gas_used
    assert cosmos_node.delegation(key.address, validator) == amount
    assert cosmos_node.balance(key.address) == FUNDING - amount - FEE
    assert cosmos_node.account(key.address) == (account[0], 1)


def test_delegate_claim_undelegate_redelegate(
    cosmos_node: CosmosNode, funded: list[Key], cosmos: dict[str, str]
) -> None:
    node, key = cosmos_node, funded[1]
    me, a, b = key.address, cosmos["CUSTODY_COSMOS_VALIDATOR"], cosmos["CUSTODY_COSMOS_VALIDATOR_B"]

    delegated = 10_000_000
    result = _send(node, key, [msg_delegate(me, a, delegated, DENOM)])
    assert node.delegation(me, a) == delegated
    assert node.balance(me) == FUNDING - delegated - FEE
    # The same signed bytes again, after their block: the node's cache knows them, the
    # broadcast is idempotent and nothing is delegated twice.
    raw = key.sign(_unsigned(node, key, [msg_delegate(me, a, delegated, DENOM)], GAS, 0))
    assert tx_hash(raw) == result.tx_hash
    assert node.broadcast(raw) == result.tx_hash
    assert node.delegation(me, a) == delegated

    # Rewards accrue every block (whole uatom: the query's 10**-18 decimals truncated).
    _poll("a reward of at least 1 uatom", lambda: node.rewards(me, a) > 0)
    before, pending = node.balance(me), node.rewards(me, a)
    claim = _send(node, key, [msg_withdraw_rewards(me, a)])
    claimed = _rewards_paid(claim, me)
    assert claimed >= pending > 0  # the claim's block adds its own reward
    assert node.balance(me) == before + claimed - FEE

    # Undelegating also pays out the rewards accrued since (the SDK withdraws them first).
    before, undelegated = node.balance(me), 3_000_000
    leave = _send(node, key, [msg_undelegate(me, a, undelegated, DENOM)], STAKING_GAS)
    assert node.delegation(me, a) == delegated - undelegated
    assert node.balance(me) == before + _rewards_paid(leave, me) - FEE
    [entry] = node.unbonding(me, a)
    assert entry.creation_height == leave.height
    assert entry.initial_balance == entry.balance == undelegated
    assert leave.timestamp is not None  # the block's time, to the second
    assert timedelta(seconds=30) <= entry.completion_time - leave.timestamp < timedelta(seconds=31)

    # Little to B: the chain persists across runs, and B must stay far below a third of
    # the power (stopping it must never halt the chain).
    before, moved = node.balance(me), 10_000
    b_before = node.delegation(me, b)
    move = _send(node, key, [msg_redelegate(me, a, b, moved, DENOM)], STAKING_GAS)
    assert [e.get("amount") for e in move.events_of("redelegate")] == [f"{moved}{DENOM}"]
    assert node.delegation(me, a) == delegated - undelegated - moved
    # B may have been slashed by another test: its tokens per share can be below one.
    assert moved - 1 <= node.delegation(me, b) - b_before <= moved
    assert node.balance(me) == before + _rewards_paid(move, me) - FEE
    assert len(node.unbonding(me, a)) == 1  # a redelegation is not an unbonding
    # Its entry, read at its height, says what reached B: all of it from A (rate 1);
    # until the entry completes the chain refuses a redelegation from B (transitive).
    [entry] = node.redelegation_entries(me, a, b, move.height)
    assert (entry[0], entry[2]) == (move.height, moved)
    assert node.redelegation_entries(me, a, b, move.height - 1) == []
    assert move.timestamp is not None
    ends = node.redelegations_into(me, b)
    assert any(timedelta(seconds=30) <= e - move.timestamp < timedelta(seconds=31) for e in ends)
    assert node.redelegations_into(me, a) == []


def test_a_stale_or_future_sequence_is_a_sequence_mismatch(
    cosmos_node: CosmosNode, funded: list[Key], cosmos: dict[str, str]
) -> None:
    key = funded[2]
    to = Key(PrivateKey()).address
    _send(cosmos_node, key, [msg_send(key.address, to, 1_000, DENOM)])
    balance = cosmos_node.balance(key.address)
    for sequence in (0, 5):  # 0 was used above; 1 is the next
        unsigned = _unsigned(cosmos_node, key, [msg_send(key.address, to, 7, DENOM)], GAS, sequence)
        with pytest.raises(SequenceMismatch) as refused:
            cosmos_node.broadcast(key.sign(unsigned))
        assert refused.value.abci_code == 32 and refused.value.codespace == "sdk"
        assert isinstance(refused.value, ChainRejected)
        with pytest.raises(SequenceMismatch):
            cosmos_node.simulate(unsigned)
    assert cosmos_node.balance(key.address) == balance  # CheckTx refusals cost nothing
    assert cosmos_node.account(to) is not None and cosmos_node.balance(to) == 1_000


def test_sending_more_than_the_balance_fails_in_its_block_and_pays_the_fee(
    cosmos_node: CosmosNode, funded: list[Key], faucet: Key
) -> None:
    key = funded[2]
    balance = cosmos_node.balance(key.address)
    too_much = [msg_send(key.address, faucet.address, balance - FEE + 1, DENOM)]
    unsigned = _unsigned(cosmos_node, key, too_much, GAS)
    with pytest.raises(ChainRejected, match="insufficient funds"):
        cosmos_node.simulate(unsigned)
    # CheckTx runs only the ante handler (the fee is there): the message fails in the block.
    name = cosmos_node.broadcast(key.sign(unsigned))
    result = cosmos_node.wait_tx(name, BLOCK_WAIT)
    assert (result.code, result.codespace) == (5, "sdk")  # ErrInsufficientFunds
    assert "insufficient funds" in result.raw_log
    assert cosmos_node.balance(key.address) == balance - FEE


def test_a_bad_signature_is_refused_at_checktx(cosmos_node: CosmosNode, funded: list[Key]) -> None:
    key, impostor = funded[0], PrivateKey()
    unsigned = _unsigned(cosmos_node, key, [msg_send(key.address, key.address, 1, DENOM)], GAS)
    forged = assemble(unsigned, impostor.sign(sign_doc(unsigned), canonicalise=True))
    with pytest.raises(TxRejected) as refused:
        cosmos_node.broadcast(forged)
    assert (refused.value.abci_code, refused.value.codespace) == (4, "sdk")  # unauthorized
    assert cosmos_node.tx(tx_hash(forged)) is None
