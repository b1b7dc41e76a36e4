"""ChainReader for Ethereum: ETH value transfers and ERC-20 Transfer logs to our addresses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from web3 import Web3

from adapters.chains.ethereum.node import Web3EthereumNode
from sagas.chainwatch import BlockScan, RawDeposit

TRANSFER_TOPIC = "0x" + bytes(Web3.keccak(text="Transfer(address,address,uint256)")).hex()


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
                        f"tx{int(tx['transactionIndex'])}",
                        Web3.to_checksum_address(to),
                        "ETH",
                        value,
                    )
                )
        if self._tokens:
            # By block hash, not number: the logs are those of exactly this block.
            logs = self._w3.eth.get_logs(
                cast(
                    Any,
                    {
                        "blockHash": block_hash,
                        "address": list(self._tokens),
                        "topics": [TRANSFER_TOPIC],
                    },
                )
            )
            for log in logs:
                if len(log["topics"]) != 3:
                    continue
                to = Web3.to_checksum_address(bytes(log["topics"][2])[-20:])
                amount = int.from_bytes(bytes(log["data"]), "big")
                if amount > 0 and is_ours(to):
                    found.append(
                        RawDeposit(
                            "0x" + bytes(log["transactionHash"]).hex(),
                            f"log{int(log['logIndex'])}",
                            to,
                            self._tokens[Web3.to_checksum_address(log["address"])],
                            amount,
                        )
                    )
        txids = ["0x" + bytes(tx["hash"]).hex() for tx in block["transactions"]]
        return BlockScan(block_hash, "0x" + bytes(block["parentHash"]).hex(), found, txids)
