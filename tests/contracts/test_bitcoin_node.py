"""BitcoinNode (what the chain follower reads of Bitcoin) on the stack's btcd simnet: the
only implementation, BtcdNode (adapters/chains/bitcoin/node.py); there is no fake.

The height is the tip's; block_hash(h) names the best chain's block at h in RPC byte
order (its header's double SHA-256, reversed); block(hash) is that block, parsed: its
height, its parent and its transaction ids (coinbase first, as the node lists them).
A node that hands back another block than the one asked for is refused (ChainRejected),
never believed; a node that cannot be reached, or refuses our credentials, is a
transient DependencyUnavailable."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from bitcoin.core import Hash160
from bitcoin.wallet import CBech32BitcoinAddress

from adapters.chains.bitcoin.faucet import BtcFaucet
from adapters.chains.bitcoin.node import BtcdNode
from sagas.errors import ChainRejected, DependencyUnavailable
from sagas.ports import BitcoinNode
from services.settings import PlatformSettings

pytestmark = pytest.mark.stack
HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class Rig:
    node: BitcoinNode
    mine: Callable[[int], list[str]]  # block hashes
    fund: Callable[[str, int], str]  # txid, unconfirmed
    raw: Callable[[str, str, Any], Any]  # the node's own answer: (method, block hash, arg)
    down: Callable[[str, tuple[str, str]], BitcoinNode]  # the node at another URL/credentials
    lie: Callable[[pytest.MonkeyPatch, str], None]  # from now on, getblock answers this block


@pytest.fixture(params=["btcd"])
def rig(stack_settings: PlatformSettings) -> Rig:
    s = stack_settings
    node = BtcdNode(s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network)
    key = json.loads((s.btc_rpc_credentials.parent / "faucet.json").read_text())
    faucet = BtcFaucet(node, s.btc_network, key["wif"], key["address"])
    real = node._rpc

    def lie(monkeypatch: pytest.MonkeyPatch, other: str) -> None:
        def lying(method: str, *params: Any) -> Any:
            return (
                real(method, other, *params[1:]) if method == "getblock" else real(method, *params)
            )

        monkeypatch.setattr(node, "_rpc", lying)

    return Rig(
        node,
        node.mine,
        faucet.fund,
        lambda method, h, arg: real(method, h, arg),
        lambda url, auth: BtcdNode(url, auth, s.btc_network, timeout=2),
        lie,
    )


def test_is_the_port(rig: Rig) -> None:
    assert isinstance(rig.node, BitcoinNode)


def test_the_height_and_hashes_are_the_best_chains(rig: Rig) -> None:
    before = rig.node.height()
    first, second = rig.mine(2)
    assert rig.node.height() >= before + 2
    info = rig.node.block(second)
    assert info.height > before + 1 and info.block_hash == second
    assert rig.node.block_hash(info.height) == second
    assert rig.node.block_hash(info.height - 1) == first == info.previous_hash
    for block_hash in (first, second):  # RPC byte order: the header's sha256d, reversed
        header = bytes.fromhex(rig.raw("getblock", block_hash, 0))[:80]
        digest = hashlib.sha256(hashlib.sha256(header).digest()).digest()
        assert HASH.match(block_hash) and digest[::-1].hex() == block_hash


def test_a_block_lists_its_transactions_as_the_node_does(rig: Rig) -> None:
    payee = str(CBech32BitcoinAddress.from_bytes(0, bytes(Hash160(b"contract-payee"))))
    txid = rig.fund(payee, 50_000)
    (block_hash,) = rig.mine(1)
    info = rig.node.block(block_hash)
    listed = tuple(rig.raw("getblock", block_hash, 1)["tx"])
    assert info.txids == listed and len(listed) >= 2
    assert txid in info.txids[1:]  # the coinbase is first; the payment is in the block
    assert all(HASH.match(t) for t in info.txids)


def test_a_block_the_node_misreports_is_refused(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = rig.mine(2)
    assert rig.node.block(second).previous_hash == first
    rig.lie(monkeypatch, first)  # asked for `second`, the node hands back `first`
    with pytest.raises(ChainRejected):
        rig.node.block(second)


def test_an_unreachable_or_refusing_node_is_a_transient_failure(
    rig: Rig, stack_settings: PlatformSettings
) -> None:
    url = stack_settings.btc_rpc_url
    for node in (
        rig.down("http://127.0.0.1:9", stack_settings.btc_rpc_auth()),  # nothing listens
        rig.down(url, ("custody-contract", "not-the-password")),  # credentials refused
    ):
        with pytest.raises(DependencyUnavailable):
            node.height()
