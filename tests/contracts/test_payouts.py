"""Payouts (sending a withdrawal or a settlement leg on its chain): the fake
(tests/fakes_chains.py) and the real ChainPayouts sending ETH on the stack's anvil from
a fresh hot address, its records on SQLite or PostgreSQL.

A payment is made once per operation id: a repeat send returns the same transaction and
pays nothing more; its status names that transaction and reaches final with its fee;
a refused send (not an address, nothing to pay) records nothing; a rebroadcast, and a
bump of a payment already mined, change nothing.

Not covered here: Bitcoin payouts (they spend the platform wallet's final deposits
through the signer: tests/integration/test_bitcoin_payouts.py), ERC-20 payouts, and the
replacement of a transaction still pending (anvil mines each one as it arrives; the
broadcaster's bump is in tests/integration/test_evm_broadcaster.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from adapters.chains.ethereum.broadcaster import EvmBroadcaster
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.payouts import ChainPayouts
from sagas.errors import ChainRejected
from sagas.ports import Payouts
from sagas.withdrawal import ChainStatus
from services.settings import PlatformSettings
from tests.fakes_chains import FakePayouts

ETH = 10**18
AMOUNT = 10**15

Subject = tuple[Payouts, Callable[[str], int]]  # the payouts, what an address received


class _HotKey:
    """sagas.ports.EvmKeySigner with the hot address's key in memory (the signer's part,
    which holds it to the operation's record, is not what this suite is about)."""

    def __init__(self, account: LocalAccount) -> None:
        self._account = account

    def sign_evm_transaction(
        self, operation: str, wallet_id: str, index: int, tx: dict[str, object]
    ) -> bytes:
        return bytes(self._account.sign_transaction(cast(Any, tx)).raw_transaction)


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "memory":
        fake = FakePayouts()
        yield fake, lambda address: fake.paid.get(address, 0)
        return
    request.node.add_marker(pytest.mark.stack)
    settings: PlatformSettings = request.getfixturevalue("stack_settings")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'payouts.sqlite3'}"
    else:
        url = request.getfixturevalue("fresh_postgres_url")
    node = Web3EthereumNode(settings.eth_rpc_url)
    hot: LocalAccount = Account.create()
    DevChainFaucet(node.web3).fund_eth(hot.address, ETH)
    payouts = ChainPayouts(
        url,
        "contract-wallet",
        (EvmBroadcaster(url, node), node, _HotKey(hot), [(0, hot.address)]),
        {},
        eth_confirmations=1,
        btc=None,
        btc_confirmations=6,
    )
    yield payouts, node.balance


def destination() -> str:
    return str(Account.create().address)


def operation() -> str:
    return f"wd:contract:{uuid.uuid4().hex[:12]}"


def settled(payouts: Payouts, operation_id: str, timeout: float = 30) -> ChainStatus:
    """The payment's status once final or reverted (anvil mines as transactions arrive)."""
    deadline = time.monotonic() + timeout
    while True:
        status = payouts.status(operation_id, "ETH")
        if status.state in ("final", "reverted") or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_is_the_port(subject: Subject) -> None:
    assert isinstance(subject[0], Payouts)


def test_a_payment_is_sent_once_per_operation(subject: Subject) -> None:
    payouts, received = subject
    op, to = operation(), destination()
    tx = payouts.send(op, "ETH", to, AMOUNT)
    assert payouts.send(op, "ETH", to, AMOUNT) == tx  # a repeat: the recorded transaction
    status = settled(payouts, op)
    assert (status.state, status.tx_hash, status.fee_asset) == ("final", tx, "ETH")
    assert status.confirmations >= 1 and status.fee > 0
    assert payouts.send(op, "ETH", to, AMOUNT) == tx  # and once it is final
    assert received(to) == AMOUNT


def test_each_operation_is_a_payment_of_its_own(subject: Subject) -> None:
    payouts, received = subject
    to = destination()
    first, second = operation(), operation()
    a = payouts.send(first, "ETH", to, AMOUNT)
    b = payouts.send(second, "ETH", to, 2 * AMOUNT)
    assert a != b
    assert (settled(payouts, first).tx_hash, settled(payouts, second).tx_hash) == (a, b)
    assert received(to) == 3 * AMOUNT


def test_a_refused_payment_records_nothing(subject: Subject) -> None:
    payouts, received = subject
    op, to = operation(), destination()
    with pytest.raises(ChainRejected):
        payouts.send(op, "ETH", "not-an-address", AMOUNT)
    with pytest.raises(ChainRejected):
        payouts.send(op, "ETH", to, 0)
    with pytest.raises(KeyError):  # nothing recorded: no transaction to ask about
        payouts.status(op, "ETH")
    tx = payouts.send(op, "ETH", to, AMOUNT)  # so the operation can still be paid, once
    assert settled(payouts, op).tx_hash == tx
    assert received(to) == AMOUNT


def test_a_rebroadcast_changes_nothing(subject: Subject) -> None:
    payouts, received = subject
    op, to = operation(), destination()
    payouts.rebroadcast(op)  # nothing recorded: nothing to send
    tx = payouts.send(op, "ETH", to, AMOUNT)
    payouts.rebroadcast(op)
    assert settled(payouts, op).tx_hash == tx
    payouts.rebroadcast(op)
    assert settled(payouts, op).tx_hash == tx
    assert received(to) == AMOUNT


def test_a_mined_payment_is_not_replaced_by_a_bump(subject: Subject) -> None:
    payouts, received = subject
    op, to = operation(), destination()
    tx = payouts.send(op, "ETH", to, AMOUNT)
    assert settled(payouts, op).state == "final"
    with pytest.raises(ValueError):  # a replacement must outbid the original by > 10%
        payouts.bump(op, "ETH", to, AMOUNT, 110)
    assert payouts.bump(op, "ETH", to, AMOUNT, 150) == tx
    assert settled(payouts, op).tx_hash == tx
    assert received(to) == AMOUNT
