"""Sending from one hot address on anvil: gapless persisted nonces under concurrency and
failures, record-before-send with idempotent rebroadcast, nonce re-sync, fee bump."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
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
from adapters.sqldb import SqlDatabase
from sagas.errors import DependencyUnavailable, KeyAccessDenied
from sagas.keys.wallets import create_wallet
from services.settings import PlatformSettings
from services.signer.signer import CustodyEvmSigner, Signer

ETH = 10**18


@pytest.fixture
def node(stack_settings: PlatformSettings) -> Web3EthereumNode:
    return Web3EthereumNode(stack_settings.eth_rpc_url)


@pytest.fixture
def broadcaster(fresh_postgres_url: str, node: Web3EthereumNode) -> EvmBroadcaster:
    return EvmBroadcaster(fresh_postgres_url, node)


def _funded(node: Web3EthereumNode) -> InMemorySigner:
    signer = InMemorySigner.generate()
    DevChainFaucet(node.web3).fund_eth(signer.address, 10 * ETH)
    return signer


class _FailingSigner:
    def __init__(
        self,
        inner: Any,
        asked: threading.Event | None = None,
        refuse: threading.Event | None = None,
    ) -> None:
        self._inner = inner
        self._asked, self._refuse = asked, refuse

    @property
    def address(self) -> str:
        return str(self._inner.address)

    def sign_transaction(self, tx: dict[str, object]) -> bytes:
        if self._asked is not None and self._refuse is not None:
            self._asked.set()  # its nonce is reserved: the others take theirs above it
            self._refuse.wait(120)
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


def test_21_concurrent_withdrawals_from_one_hot_address_leave_no_nonce_gap(
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
    start = threading.Barrier(20)
    asked, refuse = threading.Event(), threading.Event()

    def withdraw(n: int) -> None:
        op = f"wd-{n}"
        key: Any = CustodyEvmSigner(signer, wallet.wallet_id, 0, op)
        if n == 7:
            # Refused once the 20 others, all together, have taken the nonces above its
            # own and sent their payments: its nonce would hold them all back.
            key = _FailingSigner(key, asked, refuse)
        else:
            start.wait()
        try:
            results[op] = broadcaster.send(
                op, key, node.eth_transfer(receiver, 1000 + n), filler=filler
            )
        except KeyAccessDenied as exc:
            results[op] = exc

    def filler(operation: str) -> Any:
        return CustodyEvmSigner(signer, wallet.wallet_id, 0, operation)

    refused = threading.Thread(target=withdraw, args=(7,))
    refused.start()
    assert asked.wait(60)
    threads = [threading.Thread(target=withdraw, args=(n,)) for n in range(21) if n != 7]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    refuse.set()
    refused.join(120)
    assert isinstance(results.pop("wd-7"), KeyAccessDenied)
    # Nonces are reserved before signing (decision 0021): the refused one's reservation
    # was freed and, the others holding nonces above it, filled with a transfer of
    # nothing from the hot wallet to itself.
    nonces = sorted(sent.nonce for sent in results.values())
    assert nonces == list(range(1, 21))
    gap = 0
    for op in results:
        status = mined(broadcaster, op)
        assert status.receipt is not None and status.receipt.succeeded, op
    fill = mined(broadcaster, f"fill:{node.chain_id()}:{hot}:{gap}")
    assert fill.receipt is not None and fill.nonce == gap
    assert node.pending_nonce(hot) == 21  # the chain agrees: no gap, nothing stuck
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


class _SlowSigner:
    """Signs once `go` is set (an attempt that outlived its timeout, still signing)."""

    def __init__(self, inner: Any, asked: threading.Event, go: threading.Event) -> None:
        self._inner, self._asked, self._go = inner, asked, go

    @property
    def address(self) -> str:
        return str(self._inner.address)

    def sign_transaction(self, tx: dict[str, object]) -> bytes:
        self._asked.set()
        assert self._go.wait(60)
        return bytes(self._inner.sign_transaction(tx))


def test_a_retry_beside_an_attempt_still_signing_waits_and_releases_nothing(
    node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    """Found by review: a retry whose build is refused beside a first attempt still
    signing released the nonce and reported nothing sent, and then the first paid."""
    key = _funded(node)
    receiver = Account.create().address
    call = node.eth_transfer(receiver, 99)
    asked, go = threading.Event(), threading.Event()
    first: dict[str, Any] = {}
    slow = threading.Thread(
        target=lambda: first.update(
            sent=broadcaster.send("op-slow", _SlowSigner(key, asked, go), call)
        )
    )
    slow.start()
    assert asked.wait(30)  # the first attempt holds the reservation and is signing
    with pytest.raises(DependencyUnavailable, match="another attempt"):
        broadcaster.send("op-slow", _FailingSigner(key), call)  # refused: but never tried
    go.set()
    slow.join(60)
    assert mined(broadcaster, "op-slow").receipt is not None
    assert node.balance(receiver) == 99 and node.pending_nonce(key.address) == 1
    assert broadcaster.send("op-slow", key, call) == first["sent"]  # recorded: the same


def test_a_retry_after_the_lease_that_is_refused_releases_nothing(
    fresh_postgres_url: str, node: Web3EthereumNode
) -> None:
    """Found by review: the lease alone was a timer. An attempt that outlives it may still
    sign; a retry that takes the reservation over and is refused must neither free the
    nonce nor report nothing sent (the saga would void a withdrawal that then pays)."""
    broadcaster = EvmBroadcaster(fresh_postgres_url, node, lease=timedelta(seconds=1))
    key = _funded(node)
    receiver = Account.create().address
    call = node.eth_transfer(receiver, 55)
    asked, go = threading.Event(), threading.Event()
    first: dict[str, Any] = {}
    slow = threading.Thread(
        target=lambda: first.update(
            sent=broadcaster.send("op-late", _SlowSigner(key, asked, go), call)
        )
    )
    slow.start()
    assert asked.wait(30)
    time.sleep(1.5)  # the first attempt's lease lapsed; it is still signing
    with pytest.raises(DependencyUnavailable, match="earlier attempt may still"):
        broadcaster.send("op-late", _FailingSigner(key), call)
    with SqlDatabase(fresh_postgres_url).tx() as conn:
        held = conn.one(
            "select operation_id from evm_nonce_reservations where nonce = 0 and sender = ?",
            (key.address,),
        )
    assert held is not None and held[0] == "op-late"  # not released
    go.set()
    slow.join(60)
    assert mined(broadcaster, "op-late").receipt is not None
    assert node.balance(receiver) == 55 and node.pending_nonce(key.address) == 1
