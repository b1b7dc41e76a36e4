"""EthereumNode on web3.py: EIP-1559 transfers built from our own data, signed by a
TransactionSigner, broadcast raw."""

from __future__ import annotations

from typing import Any, cast

import requests
from web3 import Web3
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError

from adapters.chains.ethereum.erc20 import ERC20_ABI
from sagas.errors import CannotPay, ChainRejected, DependencyUnavailable, NonceAlreadyUsed
from sagas.ports import TransactionSigner, TxReceipt


class CallReverts(DependencyUnavailable):
    """The node's estimate of a call reverts from this sender (a token transfer from an
    address short of the token): transient, the payment waits for a top-up."""


class Web3EthereumNode:
    def __init__(self, rpc_url: str, timeout: float = 10.0) -> None:
        self._w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))

    @property
    def web3(self) -> Web3:
        return self._w3

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except requests.RequestException as exc:
            raise DependencyUnavailable(f"ethereum node: {type(exc).__name__}") from exc

    def chain_id(self) -> int:
        return int(self._guard(lambda: self._w3.eth.chain_id))

    def block_number(self) -> int:
        return int(self._guard(lambda: self._w3.eth.block_number))

    def balance(self, address: str) -> int:
        return int(self._guard(self._w3.eth.get_balance, Web3.to_checksum_address(address)))

    def _token(self, token: str) -> Any:
        return self._w3.eth.contract(address=Web3.to_checksum_address(token), abi=ERC20_ABI)

    def token_balance(self, token: str, address: str) -> int:
        fn = self._token(token).functions.balanceOf(Web3.to_checksum_address(address))
        return int(self._guard(fn.call))

    def can_pay(self, sender: str, txs: list[dict[str, Any]]) -> bool:
        """Whether `sender` holds, at the latest block, what all of `txs` may spend (the
        payment and those the sender signed that are not mined yet): their values and
        most fees, and the amounts of their token transfers."""
        who = Web3.to_checksum_address(sender)
        wei, tokens = 0, dict[str, int]()
        for tx in txs:
            wei += int(tx.get("value", 0)) + int(tx["gas"]) * int(tx["maxFeePerGas"])
            token, amount = _token_transfer(tx)
            if token is not None:
                tokens[token] = tokens.get(token, 0) + amount
        if int(self._guard(self._w3.eth.get_balance, who)) < wei:
            return False
        return all(self.token_balance(token, who) >= need for token, need in tokens.items())

    def token_decimals(self, token: str) -> int:
        return int(self._guard(self._token(token).functions.decimals().call))

    def _fees(self) -> dict[str, int]:
        base = int(self._guard(lambda: self._w3.eth.get_block("latest"))["baseFeePerGas"])
        tip = int(self._guard(lambda: self._w3.eth.max_priority_fee))
        # Room for the base fee to double twice before the transaction stops being includable.
        return {"maxFeePerGas": 2 * base + tip, "maxPriorityFeePerGas": tip}

    # --- building blocks for callers that manage nonces themselves --------------
    @staticmethod
    def eth_transfer(to: str, wei: int) -> dict[str, Any]:
        if wei <= 0:
            raise ValueError("amount must be positive")
        return {"to": Web3.to_checksum_address(to), "value": wei}

    def token_transfer(self, token: str, to: str, amount: int) -> dict[str, Any]:
        if amount <= 0:
            raise ValueError("amount must be positive")
        data = self._token(token).encode_abi(
            "transfer", args=[Web3.to_checksum_address(to), amount]
        )
        return {"to": Web3.to_checksum_address(token), "value": 0, "data": data}

    def mined_nonce(self, address: str) -> int:
        """How many of the address's transactions are mined (its next nonce at the latest
        block)."""
        sender = Web3.to_checksum_address(address)
        return int(self._guard(self._w3.eth.get_transaction_count, sender, "latest"))

    def pending_nonce(self, address: str) -> int:
        sender = Web3.to_checksum_address(address)
        return int(self._guard(self._w3.eth.get_transaction_count, sender, "pending"))

    def prepare(
        self,
        sender: str,
        call: dict[str, Any],
        nonce: int,
        fee_bump_percent: int = 100,
        min_fees: tuple[int, int] = (0, 0),
        gas_limit: int | None = None,
    ) -> dict[str, Any]:
        """A complete EIP-1559 transaction, unsigned: fees are the market's, or `min_fees`
        (max fee, tip) if higher, times `fee_bump_percent`/100. CannotPay if it needs more
        gas than `gas_limit` (the platform pays the fee: a destination whose code burns
        gas must not burn the hot wallet's)."""
        market = self._fees()
        fees = {
            "maxFeePerGas": max(market["maxFeePerGas"], min_fees[0]),
            "maxPriorityFeePerGas": max(market["maxPriorityFeePerGas"], min_fees[1]),
        }
        tx: dict[str, Any] = {
            **call,
            "from": Web3.to_checksum_address(sender),
            "chainId": self.chain_id(),
            "nonce": nonce,
            "type": 2,
            "maxFeePerGas": fees["maxFeePerGas"] * fee_bump_percent // 100,
            "maxPriorityFeePerGas": fees["maxPriorityFeePerGas"] * fee_bump_percent // 100,
        }
        try:
            tx["gas"] = int(self._w3.eth.estimate_gas(cast(Any, tx)))
        except Web3RPCError as exc:
            raise ChainRejected(str(exc.message or exc)) from exc
        except ContractLogicError as exc:  # a token transfer from an address short of it
            raise CallReverts(f"the call reverts from {sender}: {exc}") from exc
        if gas_limit is not None and tx["gas"] > gas_limit:
            raise CannotPay(f"the transfer needs {tx['gas']} gas; the limit is {gas_limit}")
        del tx["from"]
        return tx

    def broadcast(self, raw: bytes) -> str:
        """Send a signed transaction; its hash. Sending one the node already has is fine.
        NonceAlreadyUsed if its nonce was taken; ChainRejected for other refusals."""
        tx_hash = "0x" + bytes(Web3.keccak(raw)).hex()
        try:
            return "0x" + bytes(self._w3.eth.send_raw_transaction(raw)).hex()
        except Web3RPCError as exc:
            message = str(exc.message or exc).lower()
            if "already known" in message or "already imported" in message:
                return tx_hash
            if "nonce too low" in message:
                raise NonceAlreadyUsed(message) from exc
            raise ChainRejected(message) from exc
        except requests.RequestException as exc:
            raise DependencyUnavailable(f"ethereum node: {type(exc).__name__}") from exc

    def receipt(self, tx_hash: str) -> TxReceipt | None:
        try:
            r = self._w3.eth.get_transaction_receipt(cast(Any, tx_hash))
        except TransactionNotFound:
            return None
        return _receipt(r)

    def _send(self, signer: TransactionSigner, call: dict[str, Any]) -> str:
        tx = self.prepare(signer.address, call, self.pending_nonce(signer.address))
        return self.broadcast(signer.sign_transaction(tx))

    def send_eth(self, signer: TransactionSigner, to: str, wei: int) -> str:
        return self._send(signer, self.eth_transfer(to, wei))

    def send_token(self, signer: TransactionSigner, token: str, to: str, amount: int) -> str:
        return self._send(signer, self.token_transfer(token, to, amount))

    def wait_receipt(self, tx_hash: str, timeout: float) -> TxReceipt:
        try:
            r = self._w3.eth.wait_for_transaction_receipt(cast(Any, tx_hash), timeout=timeout)
        except TimeExhausted as exc:
            raise DependencyUnavailable(f"{tx_hash} not mined within {timeout} s") from exc
        return _receipt(r)


def _token_transfer(tx: dict[str, Any]) -> tuple[str | None, int]:
    """(token, amount) of an ERC-20 `transfer(address,uint256)` call; (None, 0) else."""
    data = tx.get("data") or ""
    raw = bytes(data) if isinstance(data, bytes | bytearray) else bytes.fromhex(str(data)[2:])
    if raw[:4] != bytes.fromhex("a9059cbb") or len(raw) != 68:
        return None, 0
    to = tx["to"]
    token = Web3.to_checksum_address(to if isinstance(to, str) else "0x" + bytes(to).hex())
    return token, int.from_bytes(raw[36:], "big")


def _receipt(r: Any) -> TxReceipt:
    return TxReceipt(
        tx_hash="0x" + bytes(r["transactionHash"]).hex(),
        block_number=int(r["blockNumber"]),
        succeeded=int(r["status"]) == 1,
        gas_used=int(r["gasUsed"]),
        effective_gas_price=int(r["effectiveGasPrice"]),
    )
