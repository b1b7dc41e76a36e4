"""What the signer checks before it signs: that the operation is a withdrawal the saga
recorded as approved, and (Ethereum) that the transaction pays exactly its destination
and amount. Anything else on the signer's queue is refused (KeyAccessDenied)."""

from __future__ import annotations

from web3 import Web3

from adapters.operations.store import SqlOperationStore
from sagas.errors import KeyAccessDenied
from sagas.operations import OperationRecord

_TRANSFER_SELECTOR = "a9059cbb"  # transfer(address,uint256)
_CLOSED = ("rejected", "expired", "completed", "failed")


class SigningGuard:
    def __init__(self, operations: SqlOperationStore, tokens: dict[str, str]) -> None:
        """`tokens`: asset code -> ERC-20 contract address."""
        self._ops = operations
        self._tokens = {k: Web3.to_checksum_address(v) for k, v in tokens.items() if v}

    def __repr__(self) -> str:
        return "SigningGuard()"

    def _approved(self, operation: str, chain: str) -> OperationRecord:
        op = self._ops.get(operation.split("#", 1)[0])
        if op is None or op.kind != "withdrawal":
            raise KeyAccessDenied(f"no withdrawal {operation} on record")
        if not op.approved or op.state in _CLOSED:
            raise KeyAccessDenied(f"withdrawal {op.id} is not approved for signing ({op.state})")
        if op.chain != chain:
            raise KeyAccessDenied(f"withdrawal {op.id} is on {op.chain}, not {chain}")
        return op

    def check_evm(self, operation: str, tx: dict[str, object]) -> None:
        op = self._approved(operation, "ethereum")
        to = Web3.to_checksum_address(str(tx.get("to")))
        value = int(str(tx.get("value", 0)))
        data = str(tx.get("data") or "").removeprefix("0x").lower()
        destination = Web3.to_checksum_address(op.destination or "")
        if op.asset == "ETH":
            ok = to == destination and value == op.amount and data == ""
        else:
            expected = (
                _TRANSFER_SELECTOR
                + bytes.fromhex(destination[2:]).rjust(32, b"\0").hex()
                + op.amount.to_bytes(32, "big").hex()
            )
            ok = to == self._tokens.get(op.asset) and value == 0 and data == expected
        if not ok:
            raise KeyAccessDenied(f"transaction does not match withdrawal {op.id}")

    def check_btc(self, operation: str) -> None:
        # The digests do not show the outputs; the signer checks the operation only.
        self._approved(operation, "bitcoin")
