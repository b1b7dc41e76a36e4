"""What the signer checks before it signs: that the operation is a withdrawal the saga
recorded as approved, and (Ethereum) that the transaction pays exactly its destination
and amount. Anything else on the signer's queue is refused (KeyAccessDenied)."""

from __future__ import annotations

from web3 import Web3

from adapters.operations.store import SqlOperationStore
from adapters.sqldb import SqlDatabase
from sagas.errors import KeyAccessDenied
from sagas.operations import OperationRecord

_TRANSFER_SELECTOR = "a9059cbb"  # transfer(address,uint256)
_CLOSED = ("rejected", "expired", "completed", "failed")
HOT_WALLET_ACCOUNT = "treasury:ETH"  # sagas.accounts.treasury("ETH"): see decision 0006


def _int(value: object) -> int:
    """A transaction field as an integer; anything unreadable is a refusal, not a crash."""
    try:
        return int(str(value))
    except ValueError:
        raise KeyAccessDenied(f"unreadable transaction field {value!r}") from None


class SigningGuard:
    def __init__(
        self,
        operations: SqlOperationStore,
        db_url: str,
        tokens: dict[str, str],
        chain_id: int,
        max_fee_per_gas: int,
        gas_limits: tuple[int, int] | None = None,
    ) -> None:
        """`tokens`: asset code -> ERC-20 contract address; `max_fee_per_gas` (wei): the
        most a signed transaction may offer (a fee bump included); `gas_limits`: the most
        gas an ETH and a token transfer may use."""
        self._gas_limits = gas_limits
        self._ops = operations
        self._db = SqlDatabase(db_url)
        self._tokens = {k: Web3.to_checksum_address(v) for k, v in tokens.items() if v}
        self._chain_id = chain_id
        self._max_fee = max_fee_per_gas

    def __repr__(self) -> str:
        return "SigningGuard()"

    def _approved(self, operation: str, chain: str) -> OperationRecord:
        op = self._ops.get(operation.split("#", 1)[0])
        # Withdrawals, and the platform's own legs of a settlement (recorded approved by
        # the settlement saga once the counterparty's legs were confirmed).
        if op is None or op.kind not in ("withdrawal", "settlement"):
            raise KeyAccessDenied(f"no withdrawal {operation} on record")
        if not op.approved or op.state in _CLOSED:
            raise KeyAccessDenied(f"withdrawal {op.id} is not approved for signing ({op.state})")
        if op.chain != chain:
            raise KeyAccessDenied(f"withdrawal {op.id} is on {op.chain}, not {chain}")
        return op

    def _hot_wallet(self) -> tuple[str, int] | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select wallet_id, address_index from deposit_addresses "
                "where account_id = ? and chain = 'ethereum'",
                (HOT_WALLET_ACCOUNT,),
            )
        return None if row is None else (str(row[0]), int(row[1]))

    def _recorded_nonce(self, operation: str) -> int | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select nonce from evm_transactions where operation_id = ? and state in "
                "('signed', 'broadcast', 'mined', 'replaced') order by attempt desc limit 1",
                (operation,),
            )
        return None if row is None else int(row[0])

    def check_evm(self, operation: str, wallet_id: str, index: int, tx: dict[str, object]) -> None:
        op = self._approved(operation, "ethereum")
        # Only from the hot wallet, on this chain, at a bounded fee, and once an attempt is
        # recorded only with its nonce (a fee bump replaces it; it never pays twice).
        if self._hot_wallet() != (wallet_id, index):
            raise KeyAccessDenied(f"withdrawal {op.id}: not the hot wallet's key")
        if _int(tx.get("chainId", -1)) != self._chain_id:
            raise KeyAccessDenied(f"withdrawal {op.id}: chain id {tx.get('chainId')}")
        # EIP-1559 only: a legacy or access-list transaction's gasPrice is not capped here.
        if _int(tx.get("type", -1)) != 2 or "gasPrice" in tx:
            raise KeyAccessDenied(f"withdrawal {op.id}: only EIP-1559 (type 2) transactions")
        max_fee = _int(tx.get("maxFeePerGas", 0))
        if max_fee > self._max_fee or _int(tx.get("maxPriorityFeePerGas", 0)) > max_fee:
            raise KeyAccessDenied(f"withdrawal {op.id}: fee above {self._max_fee} wei/gas")
        if self._gas_limits is not None:
            limit = self._gas_limits[0] if op.asset == "ETH" else self._gas_limits[1]
            if not 0 < _int(tx.get("gas", 0)) <= limit:
                raise KeyAccessDenied(f"withdrawal {op.id}: gas above {limit}")
        recorded = self._recorded_nonce(op.id)
        if recorded is not None and _int(tx.get("nonce", -1)) != recorded:
            raise KeyAccessDenied(f"withdrawal {op.id} is recorded with nonce {recorded}")
        to = Web3.to_checksum_address(str(tx.get("to")))
        value = _int(tx.get("value", 0))
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
