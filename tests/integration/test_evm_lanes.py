"""The hot wallet's lanes (decision 0026) on anvil and PostgreSQL: several sending
addresses, each with its own nonce row held through signing, so that payments sign at
once; a lane that is held or cannot pay is passed over; a payment the signer signed on
a lane stays on it, and so does its fee bump."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import psycopg
import pytest
from eth_account import Account
from web3 import Web3

from adapters.chains.ethereum.broadcaster import EvmBroadcaster
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import CallReverts, Web3EthereumNode
from adapters.chains.ethereum.signer import InMemorySigner
from adapters.operations import signer_record
from adapters.sqldb import SqlDatabase
from sagas.errors import ChainRejected, DependencyUnavailable
from services.settings import PlatformSettings
from tests.integration.test_evm_broadcaster import mined

ETH = 10**18


class _Counting:
    """A lane's key that takes `delay` seconds to sign and counts signatures in flight
    across every lane sharing `gauge`."""

    def __init__(self, inner: InMemorySigner, gauge: dict[str, int], delay: float) -> None:
        self._inner, self._gauge, self._delay = inner, gauge, delay

    @property
    def address(self) -> str:
        return self._inner.address

    def sign_transaction(self, tx: dict[str, object]) -> bytes:
        with _GAUGE_LOCK:
            self._gauge["now"] += 1
            self._gauge["most"] = max(self._gauge["most"], self._gauge["now"])
        try:
            time.sleep(self._delay)
            return self._inner.sign_transaction(tx)
        finally:
            with _GAUGE_LOCK:
                self._gauge["now"] -= 1


_GAUGE_LOCK = threading.Lock()


def _lanes(node: Web3EthereumNode, n: int, fund: bool = True) -> list[InMemorySigner]:
    keys = [InMemorySigner.generate() for _ in range(n)]
    for key in keys if fund else []:
        DevChainFaucet(node.web3).fund_eth(key.address, 10 * ETH)
    return keys


def _first(op: str, lane: Any, other: Any) -> list[Any]:
    """The two lanes in the order that makes `lane` the first a new payment `op` tries
    (the broadcaster starts at a lane spread by a hash of the operation id)."""
    start = int.from_bytes(hashlib.sha256(op.encode()).digest()[:4], "big") % 2
    return [lane, other] if start == 0 else [other, lane]


def _nonce_rows(url: str) -> dict[str, int]:
    with SqlDatabase(url).tx() as conn:
        rows = conn.all("select sender, next_nonce from evm_nonces")
    return {str(r[0]): int(r[1]) for r in rows}


def test_payments_sign_at_once_on_three_lanes_each_with_gapless_nonces(
    node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    gauge = {"now": 0, "most": 0}
    lanes = [_Counting(key, gauge, 0.4) for key in _lanes(node, 3)]
    receiver = Account.create().address
    sent: dict[str, Any] = {}
    start = threading.Barrier(9)

    def pay(n: int) -> None:
        start.wait()
        sent[f"lane-pay-{n}"] = broadcaster.send(
            f"lane-pay-{n}", lanes, node.eth_transfer(receiver, 1000 + n)
        )

    threads = [threading.Thread(target=pay, args=(n,)) for n in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(sent) == 9
    # More than one signature in flight: one lane's lock alone lets one sign at a time.
    assert gauge["most"] >= 2, gauge
    by_lane: dict[str, list[int]] = {}
    for s in sent.values():
        by_lane.setdefault(s.sender, []).append(s.nonce)
    assert set(by_lane) <= {lane.address for lane in lanes} and len(by_lane) >= 2, by_lane
    for sender, nonces in by_lane.items():
        assert sorted(nonces) == list(range(len(nonces))), (sender, nonces)
    for op in sent:
        status = mined(broadcaster, op)
        assert status.receipt is not None and status.receipt.succeeded, op
    for lane in lanes:
        assert node.pending_nonce(lane.address) == len(by_lane.get(lane.address, []))
    assert node.balance(receiver) == sum(1000 + n for n in range(9))


def test_a_lane_held_by_another_payment_is_passed_over(
    fresh_postgres_url: str, node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    first, second = _lanes(node, 2)
    receiver = Account.create().address
    # Each lane has its nonce row once it has sent.
    broadcaster.send("held-warm-1", [first], node.eth_transfer(receiver, 1))
    broadcaster.send("held-warm-2", [second], node.eth_transfer(receiver, 1))
    with psycopg.connect(fresh_postgres_url) as other:
        other.execute(
            "select 1 from evm_nonces where sender = %s for update",
            (Web3.to_checksum_address(first.address),),
        )  # another payment signing on the first lane
        began = time.monotonic()
        sent = [
            broadcaster.send(
                f"held-{n}", _first(f"held-{n}", first, second), node.eth_transfer(receiver, 10 + n)
            )
            for n in range(4)
        ]
        assert time.monotonic() - began < 20  # none waited for the held lane
        assert {s.sender for s in sent} == {second.address}
        assert [s.nonce for s in sent] == [1, 2, 3, 4]
        other.rollback()
    for n in range(4):
        assert mined(broadcaster, f"held-{n}").receipt is not None


def test_a_lane_that_cannot_pay_is_passed_over_and_keeps_its_nonce(
    fresh_postgres_url: str, node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    empty, other_empty = _lanes(node, 2, fund=False)
    (funded,) = _lanes(node, 1)
    receiver = Account.create().address
    for n in range(3):
        lanes = _first(f"short-{n}", empty, funded)  # the empty one tried first
        sent = broadcaster.send(f"short-{n}", lanes, node.eth_transfer(receiver, ETH))
        assert (sent.sender, sent.nonce) == (funded.address, n)
    assert _nonce_rows(fresh_postgres_url).get(empty.address, 0) == 0  # nothing consumed
    # No lane can pay: sent from the first, as from one hot wallet before lanes; the
    # node refuses it at broadcast and it stays recorded (the saga waits for a top-up).
    with pytest.raises(ChainRejected, match="insufficient funds"):
        broadcaster.send("short-all", [empty, other_empty], node.eth_transfer(receiver, ETH))
    waiting = broadcaster.status("short-all")
    assert waiting.nonce == 0 and waiting.receipt is None
    for n in range(3):
        assert mined(broadcaster, f"short-{n}").receipt is not None
    assert node.balance(receiver) == 3 * ETH


def test_a_payment_the_signer_signed_on_a_lane_stays_on_that_lane_and_nonce(
    fresh_postgres_url: str, node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    first, second = _lanes(node, 2)
    receiver = Account.create().address
    # The signer signed "pinned" at the second lane's nonce 0; its answer was lost, so
    # the worker recorded nothing.
    chain_id = node.chain_id()
    account = Web3.to_checksum_address(second.address)
    with SqlDatabase(fresh_postgres_url).tx(write=True) as conn:
        signer_record.claim(conn, signer_record.evm_claim(chain_id, account, 0), "pinned")
    # Not on this worker's lanes: it waits (transient), never moves to another lane.
    with pytest.raises(DependencyUnavailable):
        broadcaster.send("pinned", [first], node.eth_transfer(receiver, 5))
    # In the order that has the first lane tried first, were the payment new.
    sent = broadcaster.send(
        "pinned", _first("pinned", first, second), node.eth_transfer(receiver, 5)
    )
    assert (sent.sender, sent.nonce) == (account, 0)
    assert mined(broadcaster, "pinned").receipt is not None
    assert node.pending_nonce(first.address) == 0 and node.balance(receiver) == 5


def test_a_fee_bump_replaces_the_payment_on_its_own_lane(
    node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    lanes = _lanes(node, 3)
    receiver = Account.create().address
    call = node.eth_transfer(receiver, 321)
    node.web3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        stuck = broadcaster.send("lane-stuck", lanes, call)
        # Whatever order the lanes come in, the replacement is the stuck one's lane's.
        bumped = broadcaster.bump("lane-stuck", list(reversed(lanes)), call, percent=150)
        assert (bumped.sender, bumped.nonce, bumped.attempt) == (stuck.sender, stuck.nonce, 1)
        node.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        node.web3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    status = broadcaster.status("lane-stuck")
    assert status.tx_hash == bumped.tx_hash and status.receipt is not None
    assert node.balance(receiver) == 321
    assert sum(node.pending_nonce(lane.address) for lane in lanes) == 1


def test_a_lane_short_of_the_token_is_passed_over(
    stack_settings: PlatformSettings, node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    token = stack_settings.eth_token_address
    no_tokens, with_tokens = _lanes(node, 2)  # both have ETH for gas
    DevChainFaucet(node.web3).mint_token(token, with_tokens.address, 500)
    receiver = Account.create().address
    lanes = _first("token-short", no_tokens, with_tokens)
    sent = broadcaster.send("token-short", lanes, node.token_transfer(token, receiver, 300))
    assert sent.sender == with_tokens.address
    assert mined(broadcaster, "token-short").receipt is not None
    assert node.token_balance(token, receiver) == 300
    assert node.pending_nonce(no_tokens.address) == 0


def test_what_a_lane_signed_and_not_yet_mined_is_not_spent_twice(
    node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    small = InMemorySigner.generate()
    DevChainFaucet(node.web3).fund_eth(small.address, ETH)  # enough for one 0.6 ETH payment
    (big,) = _lanes(node, 1)
    receiver = Account.create().address
    node.web3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        first = broadcaster.send(
            "commit-0", _first("commit-0", small, big), node.eth_transfer(receiver, 6 * ETH // 10)
        )
        # The first is on the small lane only if the small lane comes first: make it so.
        assert first.sender == small.address
        # Not mined: the node's latest balance is still 1 ETH, but 0.6 of it is taken.
        second = broadcaster.send(
            "commit-1", _first("commit-1", small, big), node.eth_transfer(receiver, 6 * ETH // 10)
        )
        assert second.sender == big.address
        node.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    finally:
        node.web3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    for op in ("commit-0", "commit-1"):
        status = mined(broadcaster, op)
        assert status.receipt is not None and status.receipt.succeeded
    assert node.balance(receiver) == 12 * ETH // 10


def test_a_token_transfer_that_reverts_from_every_lane_waits_with_nothing_recorded(
    stack_settings: PlatformSettings, node: Web3EthereumNode, broadcaster: EvmBroadcaster
) -> None:
    token = stack_settings.eth_token_address
    lanes = _lanes(node, 2)  # ETH for gas, no tokens
    receiver = Account.create().address
    with pytest.raises(CallReverts) as waiting:
        broadcaster.send("token-none", lanes, node.token_transfer(token, receiver, 300))
    assert waiting.value.transient  # retried: the saga waits for a top-up, never voids
    with pytest.raises(KeyError):
        broadcaster.status("token-none")
    assert all(node.pending_nonce(lane.address) == 0 for lane in lanes)
