"""Attack 1e: the hot wallet's lanes (decision 0026). A compromised worker asks the real
signer, which runs with three lanes, to sign an approved withdrawal from a lane it was
not first signed on (a second payment of one approval, at another address's nonce), from
a key of the platform wallet that is no lane (a client's deposit address), and from a
fourth "lane" address a database writer assigned beyond the signer's own setting. Each
is refused (CUS-4031), nothing refused is recorded, and no value moves."""

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


@pytest.mark.signer_env(CUSTODY_ETH_HOT_LANES="3")
def test_the_signer_signs_from_its_lanes_only_and_keeps_a_payment_on_its_first_lane(
    stack_settings: PlatformSettings, fresh_postgres_url: str, attacker: TemporalSigningClient
) -> None:
    s, url = stack_settings, fresh_postgres_url
    # The worker's view has four lanes: one more than the signer was configured with.
    p = Platform(s.model_copy(update={"eth_hot_lanes": 4}), url)
    p.create_wallet()
    lanes = p.hot_wallets()
    assert len({lane.address for lane in lanes}) == 4
    client_key = p.client_address("c1", "ETH")  # a platform key, but no lane
    node = p.eth
    for lane in lanes:
        DevChainFaucet(node.web3).fund_eth(lane.address, ETH)
    receiver = Account.create().address
    operation, other = f"wd-{uuid.uuid4().hex[:8]}", f"wd-{uuid.uuid4().hex[:8]}"
    approve(url, operation, "ETH", "ethereum", 4321, receiver)
    approve(url, other, "ETH", "ethereum", 999, receiver)

    def tx(address: str, amount: int) -> dict[str, Any]:
        return node.prepare(
            address, node.eth_transfer(receiver, amount), node.pending_nonce(address)
        )

    def sign(op: str, index: int, fields: dict[str, Any]) -> bytes:
        return attacker.sign_evm_transaction(op, s.platform_wallet, index, fields)

    # The third lane signs the authorised payment.
    first = sign(operation, lanes[2].index, tx(lanes[2].address, 4321))
    assert signatures(url, operation) == 1
    # The same approval again from the first and the second lane (each at its own free
    # nonce: a second payment): refused.
    for lane in lanes[:2]:
        with pytest.raises(KeyAccessDenied, match="was signed with nonce") as refused:
            sign(operation, lane.index, tx(lane.address, 4321))
        assert refused.value.code == "CUS-4031"
    assert signatures(url, operation) == 1
    # Another approved withdrawal from a client's deposit key, or from the fourth
    # address (a lane to the worker, none to the signer): refused.
    for key in (client_key, lanes[3]):
        with pytest.raises(KeyAccessDenied, match="not the hot wallet's key") as refused:
            sign(other, key.index, tx(key.address, 999))
        assert refused.value.code == "CUS-4031"
    assert signatures(url, other) == 0
    # ... and from the first lane: signed (the refusals were for the keys).
    sign(other, lanes[0].index, tx(lanes[0].address, 999))
    assert signatures(url, other) == 1

    # Nothing was sent; what was signed pays exactly the authorised amount, once.
    assert node.balance(receiver) == 0
    assert all(node.balance(lane.address) == ETH for lane in lanes)
    receipt = node.wait_receipt(node.broadcast(first), 30)
    assert receipt.succeeded and node.balance(receiver) == 4321
