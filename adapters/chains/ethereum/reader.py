"""ChainReader for Ethereum: ETH value transfers and ERC-20 Transfer logs to our addresses.

A deposit's position names it within its transaction, never within its block: a
transaction that a reorg drops and a later block includes again, at another index,
is the same deposit ("value" for the ETH it carries; "log<i>" for the i-th log of its
receipt, which the same transaction emits again at the same place). The deposit
saga's id is built from it, so a re-included deposit is credited once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from web3 import Web3

from adapters.chains.ethereum.node import Web3EthereumNode
from sagas.chainwatch import BlockScan, RawDeposit

TRANSFER_TOPIC = "0x" + bytes(Web3.keccak(text="Transfer(address,address,uint256)")).hex()
VALUE = "value"  # the position of the ETH a transaction itself carries


class EthereumChainReader:
    chain = "ethereum"

    def __init__(self, node: Web3EthereumNode, tokens: dict[str, str]) -> None:
        """`tokens`: ERC-20 contract address -> asset code, the tokens the platform holds."""
        self._w3 = node.web3
        self._tokens = {Web3.to_checksum_address(a): code for a, code in tokens.items()}

    def head(self) -> int:
        return int(self._w3.eth.block_number)

    def block_hash(self, height: int) -> str:
        return "0x" + bytes(self._w3.eth.get_block(height)["hash"]).hex()

    def scan(self, height: int, is_ours: Callable[[str], bool]) -> BlockScan:
        block: Any = self._w3.eth.get_block(height, full_transactions=True)
        block_hash = "0x" + bytes(block["hash"]).hex()
        found = []
        for tx in block["transactions"]:
            to, value = tx.get("to"), int(tx.get("value", 0))
            if to and value > 0 and is_ours(Web3.to_checksum_address(to)):
                found.append(
                    RawDeposit(
                        "0x" + bytes(tx["hash"]).hex(),
                        VALUE,
                        Web3.to_checksum_address(to),
                        "ETH",
                        value,
                    )
                )
        if self._tokens:
            # By block hash, not number: the logs are those of exactly this block. All of
            # them, as a log's place in its receipt is its block index less the first of
            # its transaction's (a transaction's logs are consecutive in the block).
            logs = self._w3.eth.get_logs(cast(Any, {"blockHash": block_hash}))
            first: dict[str, int] = {}
            for log in logs:
                tx_hash, index = "0x" + bytes(log["transactionHash"]).hex(), int(log["logIndex"])
                first[tx_hash] = min(index, first.get(tx_hash, index))
            for log in logs:
                if (
                    Web3.to_checksum_address(log["address"]) not in self._tokens
                    or len(log["topics"]) != 3
                    or "0x" + bytes(log["topics"][0]).hex() != TRANSFER_TOPIC
                ):
                    continue
                to = Web3.to_checksum_address(bytes(log["topics"][2])[-20:])
                amount = int.from_bytes(bytes(log["data"]), "big")
                if amount > 0 and is_ours(to):
                    tx_hash = "0x" + bytes(log["transactionHash"]).hex()
                    found.append(
                        RawDeposit(
                            tx_hash,
                            f"log{int(log['logIndex']) - first[tx_hash]}",
                            to,
                            self._tokens[Web3.to_checksum_address(log["address"])],
                            amount,
                        )
                    )
        txids = ["0x" + bytes(tx["hash"]).hex() for tx in block["transactions"]]
        return BlockScan(block_hash, "0x" + bytes(block["parentHash"]).hex(), found, txids)
