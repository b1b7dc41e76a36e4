"""Sending from one hot address on anvil: gapless persisted nonces under concurrency and
failures, record-before-send with idempotent rebroadcast, nonce re-sync, fee bump."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from eth_account import Account

from adapters.chains.ethereum.broadcaster import EvmBroadcaster
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.signer import InMemorySigner
from adapters.keys.hd import BipDeriver
from adapters.keys.openbao import OpenBaoKeyWrapper
from adapters.keys.store import SqlKeyStore
from sagas.errors import DependencyUnavailable, KeyAccessDenied
from sagas.keys.wallets import create_wallet
from services.settings import PlatformSettings
from services.signer.signer import CustodyEvmSigner, Signer

ETH = 10**18


def _funded(node: Web3EthereumNode) -> InMemorySigner:
    signer = InMemorySigner.generate()
    DevChainFaucet(node.web3).fund_eth(signer.address, 10 * ETH)
    return signer


class _FailingSigner:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    @property
    def address(self) -> str:
        return str(self._inner.address)

    def sign_transaction(self, tx: dict[str, object]) -> bytes:
        raise KeyAccessDenied("injected: the signer refuses")


def mined(broadcaster: EvmBroadcaster, op: str, timeout: float = 30) -> Any:
    """The operation's status once its transaction is mined (anvil mines each arrival,
    not always before the next call returns)."""
    deadline = time.monotonic() + timeout
    while True:
        status = broadcaster.status(op)
        if status.receipt is not None or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_20_concurrent_withdrawals_from_one_hot_address_use_nonces_0_to_19(
    stack_settings: PlatformSettings,
    fresh_postgres_url: str,
    node: Web3EthereumNode,
    broadcaster: EvmBroadcaster,
) -> None:
    store = SqlKeyStore(fresh_postgres_url)
    deriver = BipDeriver(stack_settings.btc_network)
    wallet = create_wallet(
        f"hot-{uuid.uuid4().hex[:8]}",
        deriver,
        OpenBaoKeyWrapper(
            stack_settings.openbao_addr,
            *stack_settings.approle("custody-worker"),
            stack_settings.openbao_kek,
        ),
        store,
    )
    signer = Signer(
        OpenBaoKeyWrapper(
            stack_settings.openbao_addr,
            *stack_settings.approle("custody-signer"),
            stack_settings.openbao_kek,
        ),
        store,
        deriver,
    )
    hot = signer.evm_address(wallet.wallet_id, 0)
    DevChainFaucet(node.web3).fund_eth(hot, 10 * ETH)
    receiver = Account.create().address
    results: dict[str, Any] = {}
    start = threading.Barrier(21)

    def withdraw(n: int) -> None:
        op = f"wd-{n}"
        key: Any = CustodyEvmSigner(signer, wallet.wallet_id, 0, op)
        if n == 7:
            key = _FailingSigner(key)  # a failure before submission
        start.wait()
        try:
            results[op] = broadcaster.send(op, key, node.eth_transfer(receiver, 1000 + n))
        except KeyAccessDenied as exc:
            results[op] = exc

    threads = [threading.Thread(target=withdraw, args=(n,)) for n in range(21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert isinstance(results.pop("wd-7"), KeyAccessDenied)
    assert sorted(sent.nonce for sent in results.values()) == list(range(20))
    for op in results:
        status = mined(broadcaster, op)
        assert status.receipt is not None and status.receipt.succeeded, op
    assert node.pending_nonce(hot) == 20  # the chain agrees: no gap, nothing stuck
    assert node.balance(receiver) == sum(1000 + n for n in range(21) if n != 7)


def test_sending_an_operation_again_is_harmless(
    node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    key = _funded(node)
    call = node.eth_transfer(Account.create().address, 5)
    first = broadcaster.send("op-once", key, call)
    again = broadcaster.send("op-once", key, call)
    assert again == first
    confirmed = mined(broadcaster, "op-once")
    assert confirmed.receipt is not None and confirmed.confirmations == 1
    for _ in range(3):
        node.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert broadcaster.status("op-once").confirmations == 4
    assert node.pending_nonce(key.address) == 1


def test_a_crash_between_record_and_send_is_resent_on_restart(
    fresh_postgres_url: str,
    node: Web3EthereumNode,
    broadcaster: EvmBroadcaster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = _funded(node)
    receiver = Account.create().address

    def down(_raw: bytes) -> str:
        raise DependencyUnavailable("injected: node unreachable")

    with monkeypatch.context() as m:
        m.setattr(node, "broadcast", down)
        with pytest.raises(DependencyUnavailable):
            broadcaster.send("op-crash", key, node.eth_transfer(receiver, 77))
    assert node.pending_nonce(key.address) == 0  # nothing reached the chain
    restarted = EvmBroadcaster(fresh_postgres_url, node)
    assert restarted.rebroadcast_unsent() == 1
    status = mined(restarted, "op-crash")
    assert status.receipt is not None and status.nonce == 0
    assert node.balance(receiver) == 77
    second = restarted.send("op-next", key, node.eth_transfer(receiver, 1))
    assert second.nonce == 1


def test_a_nonce_taken_outside_the_platform_is_recovered(
    node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    key = _funded(node)
    broadcaster.send("op-a", key, node.eth_transfer(Account.create().address, 1))  # nonce 0
    # Someone with the same key sends nonce 1 behind the platform's back.
    node.wait_receipt(node.send_eth(key, Account.create().address, 1), 30)
    sent = broadcaster.send("op-b", key, node.eth_transfer(Account.create().address, 1))
    assert sent.nonce == 2 and sent.attempt == 1
    assert mined(broadcaster, "op-b").receipt is not None


def test_a_stuck_transaction_is_replaced_by_a_fee_bump(
    node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    key = _funded(node)
    receiver = Account.create().address
    call = node.eth_transfer(receiver, 123)
    node.web3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        stuck = broadcaster.send("op-stuck", key, call)
        bumped = broadcaster.bump("op-stuck", key, call, percent=150)
        assert (bumped.nonce, bumped.attempt) == (stuck.nonce, 1)
        assert bumped.tx_hash != stuck.tx_hash
        node.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        node.web3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    status = broadcaster.status("op-stuck")
    assert status.tx_hash == bumped.tx_hash and status.receipt is not None
    assert node.receipt(stuck.tx_hash) is None
    assert node.balance(receiver) == 123
    with pytest.raises(ValueError):
        broadcaster.bump("op-stuck", key, call, percent=105)
