"""EthereumNode on the stack's anvil: the only implementation, Web3EthereumNode
(adapters/chains/ethereum/node.py); there is no fake.

chain_id is the stack's; balances are exact, in wei and in the token's base unit, for
the stack's test token (its decimals as the settings name them); send_eth and
send_token build an EIP-1559 transaction for the signer's address, have the signer
sign it (a throwaway key, tests only) and broadcast it: the receipt names it, and the
balances move by exactly the amount and the fee it reports. A transfer the node
refuses (no funds for it; signed for another chain) is ChainRejected and nothing is
sent; a transaction not mined in time, and a node that cannot be reached, are the
transient DependencyUnavailable."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from sagas.errors import ChainRejected, DependencyUnavailable
from sagas.ports import EthereumNode, TransactionSigner
from services.settings import PlatformSettings

pytestmark = pytest.mark.stack
ETH = 10**18


class ThrowawayKey:
    """A TransactionSigner over a throwaway key in memory (never a platform key)."""

    def __init__(self, chain_id: int | None = None) -> None:
        self._account: LocalAccount = Account.create()
        self._chain_id = chain_id  # sign for this chain instead of the transaction's

    @property
    def address(self) -> str:
        return str(self._account.address)

    def sign_transaction(self, tx: dict[str, object]) -> bytes:
        fields = tx if self._chain_id is None else {**tx, "chainId": self._chain_id}
        return bytes(self._account.sign_transaction(cast(Any, fields)).raw_transaction)


@dataclass
class Rig:
    node: EthereumNode
    fund: Callable[[str, int], object]
    mint: Callable[[str, str, int], object]
    tx: Callable[[str], Any]  # a transaction as the chain has it
    nonce: Callable[[str], int]  # an address's transaction count, pending included
    down: EthereumNode  # the same implementation, at an address nothing listens on


@pytest.fixture(params=["web3-anvil"])
def rig(stack_settings: PlatformSettings) -> Rig:
    node = Web3EthereumNode(stack_settings.eth_rpc_url)
    w3, faucet = node.web3, DevChainFaucet(node.web3)
    return Rig(
        node,
        faucet.fund_eth,
        faucet.mint_token,
        lambda h: w3.eth.get_transaction(cast(Any, h)),
        lambda a: int(w3.eth.get_transaction_count(cast(Any, a), "pending")),
        Web3EthereumNode("http://127.0.0.1:9", timeout=2),
    )


@pytest.fixture
def token(stack_settings: PlatformSettings) -> str:
    if not stack_settings.eth_token_address:
        pytest.skip("the stack's settings name no test token")
    return stack_settings.eth_token_address


def test_is_the_port(rig: Rig) -> None:
    assert isinstance(rig.node, EthereumNode) and isinstance(ThrowawayKey(), TransactionSigner)


def test_the_chain_and_balances_are_the_nodes(rig: Rig, stack_settings: PlatformSettings) -> None:
    assert rig.node.chain_id() == stack_settings.eth_chain_id
    holder = ThrowawayKey().address
    assert rig.node.balance(holder) == 0
    rig.fund(holder, 3 * ETH + 7)
    assert rig.node.balance(holder) == rig.node.balance(holder.lower()) == 3 * ETH + 7


def test_token_balances_are_in_its_base_unit(
    rig: Rig, token: str, stack_settings: PlatformSettings
) -> None:
    assert rig.node.token_decimals(token) == stack_settings.eth_token_decimals
    holder = ThrowawayKey().address
    assert rig.node.token_balance(token, holder) == 0
    rig.mint(token, holder, 1_234_567)
    assert rig.node.token_balance(token, holder) == 1_234_567
    assert rig.node.balance(holder) == 0


def test_send_eth_pays_exactly_the_amount_and_the_reported_fee(rig: Rig) -> None:
    sender, to = ThrowawayKey(), ThrowawayKey().address
    rig.fund(sender.address, ETH)
    tx_hash = rig.node.send_eth(sender, to, 12_345)
    receipt = rig.node.wait_receipt(tx_hash, 30)
    assert receipt.tx_hash == tx_hash and receipt.succeeded and receipt.gas_used == 21_000
    mined = rig.tx(tx_hash)
    assert (mined["type"], mined["from"], mined["blockNumber"]) == (
        2,
        sender.address,
        receipt.block_number,
    )
    assert rig.node.balance(to) == 12_345
    fee = receipt.gas_used * receipt.effective_gas_price
    assert fee > 0 and rig.node.balance(sender.address) == ETH - 12_345 - fee


def test_send_token_moves_exactly_the_amount(rig: Rig, token: str) -> None:
    sender, to = ThrowawayKey(), ThrowawayKey().address
    rig.fund(sender.address, ETH)
    rig.mint(token, sender.address, 5_000_000)
    receipt = rig.node.wait_receipt(rig.node.send_token(sender, token, to, 1_250_000), 30)
    assert receipt.succeeded and rig.tx(receipt.tx_hash)["to"] == token
    assert rig.node.token_balance(token, to) == 1_250_000
    assert rig.node.token_balance(token, sender.address) == 3_750_000
    fee = receipt.gas_used * receipt.effective_gas_price
    assert rig.node.balance(sender.address) == ETH - fee and rig.node.balance(to) == 0


def test_a_transfer_the_node_refuses_is_chain_rejected_and_not_sent(rig: Rig) -> None:
    broke, to = ThrowawayKey(), ThrowawayKey().address
    with pytest.raises(ChainRejected):  # no ether for the value and the gas
        rig.node.send_eth(broke, to, 10**15)
    other_chain = ThrowawayKey(chain_id=1)
    rig.fund(other_chain.address, ETH)
    with pytest.raises(ChainRejected):  # signed for mainnet
        rig.node.send_eth(other_chain, to, 10**15)
    assert rig.nonce(broke.address) == rig.nonce(other_chain.address) == 0
    assert rig.node.balance(to) == 0 and rig.node.balance(other_chain.address) == ETH


def test_not_mined_in_time_and_unreachable_are_transient(rig: Rig) -> None:
    never_sent = "0x" + "ab" * 32
    started = time.monotonic()
    with pytest.raises(DependencyUnavailable):
        rig.node.wait_receipt(never_sent, 0.5)
    assert 0.5 <= time.monotonic() - started < 10  # it waited, and gave up
    with pytest.raises(DependencyUnavailable):
        rig.down.chain_id()
