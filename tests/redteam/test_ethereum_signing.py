"""Attack 1b: a worker-side Temporal client asks the real signer to sign Ethereum
transactions an approved withdrawal does not authorise: a legacy or type-1
transaction, a blob field or an unknown one, a raised `gas`, another `to`/`value`/
`data` (a token transfer to another holder or for more), a second nonce for the
operation, its nonce for another operation. (On the code before the signer kept its
own record, the last two were signed.) Each is
refused (KeyAccessDenied, CUS-4031), nothing is recorded, and no value moves."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from eth_account import Account

from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.temporal.signing import TemporalSigningClient
from sagas.errors import KeyAccessDenied
from services.platform import Platform
from services.settings import PlatformSettings
from tests.redteam.conftest import approve, signatures

ETH = 10**18


def test_the_signer_signs_only_the_authorised_eip1559_payment_at_one_nonce(
    stack_settings: PlatformSettings, fresh_postgres_url: str, attacker: TemporalSigningClient
) -> None:
    s, url = stack_settings, fresh_postgres_url
    p = Platform(s, url)
    p.create_wallet()
    hot = p.hot_wallet()
    node = p.eth
    DevChainFaucet(node.web3).fund_eth(hot.address, ETH)
    receiver, thief = Account.create().address, Account.create().address
    operation, other = f"wd-{uuid.uuid4().hex[:8]}", f"wd-{uuid.uuid4().hex[:8]}"
    approve(url, operation, "ETH", "ethereum", 12345, receiver)
    approve(url, other, "ETH", "ethereum", 777, receiver)
    nonce = node.pending_nonce(hot.address)
    tx: dict[str, Any] = node.prepare(hot.address, node.eth_transfer(receiver, 12345), nonce)

    def sign(op: str, fields: dict[str, Any]) -> bytes:
        return attacker.sign_evm_transaction(op, s.platform_wallet, hot.index, fields)

    fees = ("maxFeePerGas", "maxPriorityFeePerGas")
    plain = {k: v for k, v in tx.items() if k not in fees}
    attacks: dict[str, dict[str, Any]] = {
        "legacy": {**plain, "type": 0, "gasPrice": 10**15},
        "type-1": {**plain, "type": 1, "gasPrice": 10**15},
        "gasPrice beside the EIP-1559 fees": {**tx, "gasPrice": 10**15},
        "blob fee": {**tx, "maxFeePerBlobGas": 10**9},
        "blob hashes": {**tx, "blobVersionedHashes": "0x" + "01" * 32},
        "unknown field": {**tx, "from": thief},
        "raised gas": {**tx, "gas": s.eth_gas_limit_eth + 1},
        "another to": {**tx, "to": thief},
        "another value": {**tx, "value": 12346},
        "data": {**tx, "data": "0xdeadbeef"},
        "another chain": {**tx, "chainId": 1},
        "no fee cap": {k: v for k, v in tx.items() if k != "maxFeePerGas"},
    }
    for name, fields in attacks.items():
        with pytest.raises(KeyAccessDenied) as refused:
            sign(operation, fields)
        assert refused.value.code == "CUS-4031", name
    assert signatures(url) == 0

    # The authorised payment is signed, at the nonce the broadcaster reserved.
    first = sign(operation, tx)
    assert signatures(url, operation) == 1
    # A fee bump of it: the same nonce, higher fees. Signed.
    bumped = {**tx, "maxFeePerGas": tx["maxFeePerGas"] * 2, "maxPriorityFeePerGas": 2 * 10**9}
    assert sign(operation, bumped) != first
    # A second nonce for the same operation (a second payment for one approval): refused.
    with pytest.raises(KeyAccessDenied):
        sign(operation, {**tx, "nonce": nonce + 1})
    # Its nonce for another approved operation (which would replace the first): refused.
    other_tx = node.prepare(hot.address, node.eth_transfer(receiver, 777), nonce)
    with pytest.raises(KeyAccessDenied):
        sign(other, other_tx)
    assert signatures(url, operation) == 2 and signatures(url, other) == 0

    # A token withdrawal: the transfer call to another holder, or for more, is refused.
    token_op = f"wd-{uuid.uuid4().hex[:8]}"
    approve(url, token_op, "CTUSD", "ethereum", 5_000_000, receiver)
    token = s.eth_token_address
    for to, amount in ((thief, 5_000_000), (receiver, 5_000_001)):
        call = node.token_transfer(token, to, amount)
        token_tx = {**tx, **call, "nonce": nonce + 5, "gas": 60_000}
        with pytest.raises(KeyAccessDenied):
            sign(token_op, token_tx)
    assert signatures(url, token_op) == 0
    # (The authorised call itself is signed: the refusals above were for the call.)
    sign(
        token_op,
        {
            **tx,
            **node.token_transfer(token, receiver, 5_000_000),
            "nonce": nonce + 5,
            "gas": 60_000,
        },
    )
    assert signatures(url, token_op) == 1

    # No value moved: nothing refused was signed, and nothing signed was sent.
    assert node.balance(thief) == 0 and node.balance(receiver) == 0
    assert node.balance(hot.address) == ETH
    # What was signed is a valid payment of exactly the authorised amount.
    receipt = node.wait_receipt(node.broadcast(first), 30)
    assert receipt.succeeded and node.balance(receiver) == 12345
    assert node.balance(thief) == 0
