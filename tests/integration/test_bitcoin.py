"""btcd simnet: mine a block, read it back, check its hash locally."""

from __future__ import annotations

import json

from adapters.chains.bitcoin.node import BtcdNode
from services.settings import PlatformSettings


def test_mined_block_is_read_back_at_the_new_height(stack_settings: PlatformSettings) -> None:
    node = BtcdNode(
        stack_settings.btc_rpc_url, stack_settings.btc_rpc_auth(), stack_settings.btc_network
    )
    before = node.height()
    mined = node.mine(2)
    assert node.height() == before + 2
    tip = node.block(node.block_hash(before + 2))
    parent = node.block(node.block_hash(before + 1))
    assert [parent.block_hash, tip.block_hash] == mined
    assert tip.height == before + 2
    assert tip.previous_hash == parent.block_hash
    assert len(tip.txids) == 1  # the coinbase


def test_coinbase_pays_the_stack_faucet_address(stack_settings: PlatformSettings) -> None:
    node = BtcdNode(
        stack_settings.btc_rpc_url, stack_settings.btc_rpc_auth(), stack_settings.btc_network
    )
    (block_hash,) = node.mine(1)
    coinbase = node.block(block_hash).txids[0]
    faucet_env = stack_settings.btc_rpc_credentials.parent / "faucet.json"
    address = json.loads(faucet_env.read_text())["address"]
    assert address.startswith("sb1q")
    tx = node._rpc("getrawtransaction", coinbase, 1)
    paid = [
        o["scriptPubKey"].get("address") or o["scriptPubKey"].get("addresses", [None])[0]
        for o in tx["vout"]
    ]
    assert address in paid
