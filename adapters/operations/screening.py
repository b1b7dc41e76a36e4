"""The reference screening adapter: the sources of a transaction, checked against a
configurable deny list (a file of addresses, one per line; `#` starts a comment).
A real deployment puts a sanctions/analytics provider behind the same port."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bitcoin.core import CTransaction
from web3 import Web3

from adapters.chains.bitcoin.networks import select_network
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.script import address_of_script
from adapters.chains.cosmos.node import CosmosNode
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.ethereum.reader import TRANSFER_TOPIC
from sagas.errors import DependencyUnavailable


class DenyListScreening:
    def __init__(
        self,
        eth: Web3EthereumNode | None,
        btc: BtcdNode | None,
        deny: Sequence[str] = (),
        deny_file: Path | None = None,
        btc_network: str = "simnet",
        cosmos: CosmosNode | None = None,
    ) -> None:
        self._eth = eth
        self._btc = btc
        self._cosmos = cosmos
        self._static = {a.strip().lower() for a in deny if a.strip()}
        self._file = deny_file
        self._network = btc_network

    def __repr__(self) -> str:
        return f"DenyListScreening({len(self._denied())} address(es))"

    def _denied(self) -> set[str]:
        denied = set(self._static)
        if self._file is not None and self._file.exists():  # re-read: edits apply at once
            for line in self._file.read_text().splitlines():
                entry = line.split("#", 1)[0].strip().lower()
                if entry:
                    denied.add(entry)
        return denied

    def sources(self, chain: str, tx_hash: str) -> list[str]:
        if chain == "cosmos":
            return self._cosmos_sources(tx_hash)
        if chain == "ethereum":
            assert self._eth is not None
            w3 = self._eth.web3
            tx: Any = w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            found = [Web3.to_checksum_address(tx["from"])]
            receipt: Any = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            for log in receipt["logs"]:
                topics = log["topics"]
                if len(topics) == 3 and "0x" + bytes(topics[0]).hex() == TRANSFER_TOPIC:
                    found.append(Web3.to_checksum_address(bytes(topics[1])[-20:]))
            return sorted(set(found))
        assert self._btc is not None
        select_network(self._network)
        raw = self._btc._rpc("getrawtransaction", tx_hash, 0)
        tx_in = CTransaction.deserialize(bytes.fromhex(raw))
        out = set()
        for vin in tx_in.vin:
            prev_id = vin.prevout.hash[::-1].hex()
            if prev_id == "00" * 32:
                continue  # coinbase
            prev = CTransaction.deserialize(
                bytes.fromhex(self._btc._rpc("getrawtransaction", prev_id, 0))
            )
            script = bytes(prev.vout[vin.prevout.n].scriptPubKey)
            # Taproot sources too (python-bitcoinlib names witness v0 scripts only).
            out.add(address_of_script(script) or "script:" + script.hex())
        return sorted(out)

    def _cosmos_sources(self, tx_hash: str) -> list[str]:
        """Every address whose coins the transaction spent (the bank's `coin_spent`
        events; `transfer` senders too): the senders of its sends, each input of a
        multi-send (whose transfer events name no sender in SDK 0.46) and the fee payer.
        Without a node to ask, DependencyUnavailable: a deposit is never credited
        unscreened, it waits for a worker that can screen it."""
        if self._cosmos is None:
            raise DependencyUnavailable("screening has no Cosmos node to read the sources from")
        result = self._cosmos.tx(tx_hash)
        if result is None:
            raise DependencyUnavailable(f"cosmos transaction {tx_hash} is not indexed (yet)")
        spent = [e.get("spender") for e in result.events_of("coin_spent")]
        sent = [e.get("sender") for e in result.events_of("transfer")]
        return sorted({a for a in spent + sent if a})

    def check(self, chain: str, addresses: Sequence[str]) -> str | None:
        denied = self._denied()
        for address in addresses:
            if address.lower() in denied:
                return f"source {address} is on the deny list"
        return None
