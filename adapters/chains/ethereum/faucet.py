"""Funding on a development chain (anvil) from its unlocked dev account: no key handled here."""

from __future__ import annotations

from typing import Any

from web3 import Web3
from web3.types import Wei

from adapters.chains.ethereum.erc20 import ERC20_ABI
from sagas.errors import NotOnThisNetwork

DEV_CHAIN_IDS = frozenset({31337})


class DevChainFaucet:
    def __init__(self, w3: Web3) -> None:
        if w3.eth.chain_id not in DEV_CHAIN_IDS:
            raise NotOnThisNetwork(f"faucet on chain id {w3.eth.chain_id}")
        self._w3 = w3
        self._funder = w3.eth.accounts[0]

    def _mined(self, tx_hash: Any) -> str:
        receipt = self._w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
        if int(receipt["status"]) != 1:
            raise RuntimeError(f"faucet transaction {tx_hash.hex()} reverted")
        return "0x" + bytes(receipt["transactionHash"]).hex()

    def fund_eth(self, to: str, wei: int) -> str:
        tx = self._w3.eth.send_transaction(
            {"from": self._funder, "to": Web3.to_checksum_address(to), "value": Wei(wei)}
        )
        return self._mined(tx)

    def mint_token(self, token: str, to: str, amount: int) -> str:
        """Mint the stack's test token (the deployer holds MINTER_ROLE)."""
        contract = self._w3.eth.contract(address=Web3.to_checksum_address(token), abi=ERC20_ABI)
        tx = contract.functions.mint(Web3.to_checksum_address(to), amount).transact(
            {"from": self._funder}
        )
        return self._mined(tx)
