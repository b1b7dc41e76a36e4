"""ChainReader (the chain watcher's view of a chain): BitcoinChainReader on the stack's
btcd, EthereumChainReader on its anvil, and the two scripted readers the watcher's own
tests drive (tests/contracts/test_deposit_observations.py, tests/unit/test_chainwatch.py).

A payment to one of our addresses is found by scanning its block: exactly that deposit
(transaction, position in it, address as is_ours saw it, asset, amount), and nothing
for an address that is not ours. The scan names the block by the hash block_hash gives
for its height (lower-case hex, 0x-prefixed on Ethereum) and its parent by the hash at
the height below, lists the ids of all the block's transactions, and the head is at or
above it. On
Ethereum an ERC-20 Transfer of a token the platform holds is a deposit of that token,
one of a token it does not hold is none."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from bitcoin.core import Hash160
from bitcoin.wallet import CBech32BitcoinAddress
from eth_account import Account

from adapters.chains.bitcoin.faucet import BtcFaucet
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.reader import BitcoinChainReader
from adapters.chains.bitcoin.script import output_script
from adapters.chains.ethereum.faucet import DevChainFaucet
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.reader import EthereumChainReader
from sagas.chainwatch import RawDeposit
from sagas.ports import ChainReader
from services.settings import PlatformSettings
from tests.contracts.test_deposit_observations import _ScriptedReader
from tests.unit.test_chainwatch import ScriptedChain

HASH = {"bitcoin": re.compile(r"^[0-9a-f]{64}$"), "ethereum": re.compile(r"^0x[0-9a-f]{64}$")}


@dataclass
class Rig:
    reader: ChainReader
    chain: str
    address: Callable[[], str]  # a fresh address, as the reader reports it
    pay: Callable[[str], tuple[int, RawDeposit]]  # the block's height, the deposit in it
    txids: Callable[[int], list[str]]  # the block's transactions, as the chain lists them
    scripted: bool = False


def _scripted(reader: _ScriptedReader | ScriptedChain) -> Rig:
    def pay(address: str) -> tuple[int, RawDeposit]:
        ours = RawDeposit(secrets.token_hex(32), "vout1", address, "BTC", 70_000)
        theirs = RawDeposit(secrets.token_hex(32), "vout0", "sb1q-not-ours", "BTC", 5)
        reader.blocks.append((secrets.token_hex(32), [theirs, ours]))
        return len(reader.blocks) - 1, ours

    return Rig(
        reader,
        "bitcoin",
        lambda: f"sb1q{secrets.token_hex(19)}",
        pay,
        lambda height: [d.tx_hash for d in reader.blocks[height][1]],
        scripted=True,
    )


def _bitcoin(s: PlatformSettings) -> Rig:
    node = BtcdNode(s.btc_rpc_url, s.btc_rpc_auth(), s.btc_network)
    reader = BitcoinChainReader(node, s.btc_network)  # selects the network's address format
    key = json.loads((s.btc_rpc_credentials.parent / "faucet.json").read_text())
    faucet = BtcFaucet(node, s.btc_network, key["wif"], key["address"])

    def pay(address: str) -> tuple[int, RawDeposit]:
        txid = faucet.fund(address, 70_000)  # and change to the faucet: not ours
        height = node.block(node.mine(1)[0]).height
        outs = [o["scriptPubKey"]["hex"] for o in node._rpc("getrawtransaction", txid, 1)["vout"]]
        n = outs.index(output_script(address).hex())
        return height, RawDeposit(txid, f"vout{n}", address, "BTC", 70_000)

    return Rig(
        reader,
        "bitcoin",
        lambda: str(CBech32BitcoinAddress.from_bytes(0, bytes(Hash160(secrets.token_bytes(16))))),
        pay,
        lambda height: list(node._rpc("getblock", node.block_hash(height), 1)["tx"]),
    )


def _ethereum(s: PlatformSettings) -> Rig:
    node = Web3EthereumNode(s.eth_rpc_url)
    w3, faucet = node.web3, DevChainFaucet(node.web3)

    def pay(address: str) -> tuple[int, RawDeposit]:
        tx_hash = faucet.fund_eth(address, 10**15)
        height = int(w3.eth.get_transaction_receipt(cast(Any, tx_hash))["blockNumber"])
        return height, RawDeposit(tx_hash, "value", address, "ETH", 10**15)

    def txids(height: int) -> list[str]:
        return [
            "0x" + bytes(cast(bytes, t)).hex() for t in w3.eth.get_block(height)["transactions"]
        ]

    tokens = {s.eth_token_address: "CTUSD"} if s.eth_token_address else {}
    reader = EthereumChainReader(node, tokens)
    return Rig(reader, "ethereum", lambda: str(Account.create().address), pay, txids)


@pytest.fixture(params=["scripted-contract", "scripted-unit", "bitcoin", "ethereum"])
def rig(request: pytest.FixtureRequest) -> Rig:
    if request.param == "scripted-contract":
        return _scripted(_ScriptedReader("bitcoin"))
    if request.param == "scripted-unit":
        return _scripted(ScriptedChain())
    request.node.add_marker(pytest.mark.stack)
    settings: PlatformSettings = request.getfixturevalue("stack_settings")
    return _bitcoin(settings) if request.param == "bitcoin" else _ethereum(settings)


def test_is_the_port(rig: Rig) -> None:
    assert isinstance(rig.reader, ChainReader) and rig.reader.chain == rig.chain


def test_a_scan_finds_the_deposit_to_our_address_and_no_other(rig: Rig) -> None:
    ours, also_ours = rig.address(), rig.address()
    height, deposit = rig.pay(ours)
    asked: list[str] = []

    def is_ours(address: str) -> bool:
        asked.append(address)
        return address == ours

    found = rig.reader.scan(height, is_ours)
    assert found.deposits == [deposit]
    assert ours in asked
    assert rig.reader.scan(height, lambda a: a == also_ours).deposits == []


def test_a_scan_lists_every_transaction_of_the_block(rig: Rig) -> None:
    height, deposit = rig.pay(rig.address())
    txids = rig.reader.scan(height, lambda a: False).txids
    assert txids == rig.txids(height) and deposit.tx_hash in txids


def test_the_scan_names_the_block_and_its_parent_by_their_hashes(rig: Rig) -> None:
    height, _ = rig.pay(rig.address())
    scan = rig.reader.scan(height, lambda a: False)
    assert scan.block_hash == rig.reader.block_hash(height)
    assert scan.parent_hash == rig.reader.block_hash(height - 1) != scan.block_hash
    assert rig.reader.head() >= height


def test_every_hash_is_lower_case_hex_from_genesis_up(rig: Rig) -> None:
    height, _ = rig.pay(rig.address())
    for h in (0, height, rig.reader.head()):
        assert HASH[rig.chain].match(rig.reader.block_hash(h)), h


@pytest.mark.stack
def test_an_erc20_transfer_is_a_deposit_of_a_token_we_hold(
    stack_settings: PlatformSettings,
) -> None:
    token = stack_settings.eth_token_address
    if not token:
        pytest.skip("the stack's settings name no test token")
    node = Web3EthereumNode(stack_settings.eth_rpc_url)
    ours = str(Account.create().address)
    tx_hash = DevChainFaucet(node.web3).mint_token(token, ours, 2_500_000)
    height = int(node.web3.eth.get_transaction_receipt(cast(Any, tx_hash))["blockNumber"])
    holding = EthereumChainReader(node, {token.lower(): "CTUSD"})
    found = holding.scan(height, lambda a: a == ours)
    assert found.deposits == [RawDeposit(tx_hash, "log0", ours, "CTUSD", 2_500_000)]
    assert EthereumChainReader(node, {}).scan(height, lambda a: a == ours).deposits == []
