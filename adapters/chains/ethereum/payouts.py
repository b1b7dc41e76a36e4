"""ETH and ERC-20 payouts from the platform's hot wallet through the EVM broadcaster
(recorded before it is broadcast: every call is idempotent by operation id)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

from adapters.chains.ethereum.broadcaster import EvmBroadcaster
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.chains.payouts_signed import signed
from adapters.sqldb import SqlDatabase
from sagas.errors import ChainRejected, CustodyError, DependencyUnavailable
from sagas.ports import EvmKeySigner
from sagas.withdrawal import ChainStatus

log = logging.getLogger("custody.payouts")
# Per process: each hot wallet lane's nonce lock lets one send sign at a time, and each
# send waiting holds a database connection the saga's other steps need.
EVM_SENDS_AT_ONCE = 4
EVM_SENDS_PER_LANE = 2
EVM_SENDS_MOST = 12  # half the worker's pool of 24 connections


class _OperationSigner:
    """A TransactionSigner for the hot wallet's address, signing under one operation id."""

    def __init__(
        self, signer: EvmKeySigner, wallet_id: str, index: int, address: str, operation: str
    ) -> None:
        self._signer = signer
        self._wallet_id = wallet_id
        self._index = index
        self._address = address
        self._operation = operation

    @property
    def address(self) -> str:
        return self._address

    def sign_transaction(self, tx: dict[str, object]) -> bytes:
        return self._signer.sign_evm_transaction(self._operation, self._wallet_id, self._index, tx)


class EvmPayouts:
    """sagas.ports.Payouts for ETH and the ERC-20 tokens of the hot wallet's lanes."""

    def __init__(
        self,
        db_url: str,
        wallet_id: str,
        evm: tuple[EvmBroadcaster, Web3EthereumNode, EvmKeySigner, Sequence[tuple[int, str]]],
        tokens: dict[str, str],
        eth_confirmations: int,
        gas_limits: tuple[int, int] | None = None,
    ) -> None:
        """`evm`: (broadcaster, node, signer, the hot wallet's lanes: (index, address)
        each, decision 0026); `tokens`: asset code -> ERC-20 contract address;
        `gas_limits`: the most gas an ETH transfer and a token transfer may use (None:
        unbounded, tests only)."""
        self._db = SqlDatabase(db_url)
        self._wallet = wallet_id
        self._evm = evm
        self._tokens = tokens
        self._eth_depth = eth_confirmations
        self._gas_limits = gas_limits
        self._evm_gate = threading.BoundedSemaphore(
            max(EVM_SENDS_AT_ONCE, min(EVM_SENDS_MOST, EVM_SENDS_PER_LANE * len(evm[3])))
        )
        self.assets = frozenset({"ETH", *tokens})

    def __repr__(self) -> str:
        return f"EvmPayouts(wallet={self._wallet!r})"

    def _call(self, asset: str, destination: str, amount: int) -> dict[str, Any]:
        node = self._evm[1]
        if asset == "ETH":
            return node.eth_transfer(destination, amount)
        return node.token_transfer(self._tokens[asset], destination, amount)

    def _gas_limit(self, asset: str) -> int | None:
        if self._gas_limits is None:
            return None
        return self._gas_limits[0] if asset == "ETH" else self._gas_limits[1]

    def _signers(self, operation_id: str) -> list[_OperationSigner]:
        """A signer per lane of the hot wallet, each signing under the operation's id."""
        _, _, signer, lanes = self._evm
        return [
            _OperationSigner(signer, self._wallet, index, address, operation_id)
            for index, address in lanes
        ]

    def send(
        self,
        operation_id: str,
        asset: str,
        destination: str,
        amount: int,
        source: str | None = None,
        fee: int = 0,
    ) -> str:
        try:
            call = self._call(asset, destination, amount)
        except ValueError as exc:
            raise ChainRejected(str(exc)) from exc
        try:
            signers = self._signers(operation_id)
            # Each lane's nonce lock lets one send sign at a time: more waiting for them
            # would each hold a database connection the saga's other steps need.
            with self._evm_gate:
                sent = self._evm[0].send(operation_id, signers, call, self._gas_limit(asset))
            return sent.tx_hash
        except CustodyError as exc:
            # Refused (by the node or the signer) while an attempt of this operation is
            # recorded: that payment exists and may still be sent, so this is not "nothing
            # left the platform". The saga waits for it, rebroadcasts, alerts and lets
            # operators decide. (A retry beside a slow first attempt was refused by the
            # signer for the nonce; voiding then paid the destination for free.)
            if exc.transient:
                raise
            recorded = self._live_evm(operation_id)
            if recorded is None and signed(self._db, operation_id):
                # The signer's record holds a signature for it whose answer was lost (a
                # refusal since: a lane dropped, the node's estimate): that payment may
                # still be broadcast. Never "nothing sent".
                raise DependencyUnavailable(
                    f"{operation_id} was signed but not recorded; operators decide"
                ) from exc
            if recorded is None:
                raise
            log.warning(
                "withdrawal %s refused at broadcast; recorded as %s", operation_id, recorded
            )
            return recorded

    def _live_evm(self, operation_id: str) -> str | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select tx_hash from evm_transactions where operation_id = ? and state in "
                "('signed', 'broadcast', 'mined') order by attempt desc limit 1",
                (operation_id,),
            )
        return None if row is None else str(row[0])

    def recorded(self, operation_id: str) -> bool:
        with self._db.tx() as conn:
            return bool(
                conn.one("select 1 from evm_transactions where operation_id = ?", (operation_id,))
            )

    def status(self, operation_id: str, asset: str) -> ChainStatus:
        status = self._evm[0].status(operation_id)
        receipt = status.receipt
        if receipt is None:
            return ChainStatus(state="pending", tx_hash=status.tx_hash, fee_asset="ETH")
        fee = receipt.gas_used * receipt.effective_gas_price
        final = status.confirmations >= self._eth_depth
        state: Literal["final", "reverted", "mined"] = (
            ("final" if receipt.succeeded else "reverted") if final else "mined"
        )
        return ChainStatus(
            state=state,
            tx_hash=receipt.tx_hash,
            confirmations=status.confirmations,
            fee=fee,
            fee_asset="ETH",
        )

    def rebroadcast(self, operation_id: str) -> None:
        with self._db.tx() as conn:
            # 'mined' too: a reorg may have dropped a transaction recorded as mined.
            rows = conn.all(
                "select raw_tx from evm_transactions where operation_id = ? and state in "
                "('signed', 'broadcast', 'mined')",
                (operation_id,),
            )
        for (raw,) in rows:
            try:
                self._evm[1].broadcast(bytes.fromhex(raw))
            except ChainRejected as exc:
                log.warning("rebroadcast of %s refused: %s", operation_id, exc)

    def bump(
        self, operation_id: str, asset: str, destination: str, amount: int, percent: int
    ) -> str:
        call = self._call(asset, destination, amount)
        signers = self._signers(operation_id)
        limit = self._gas_limit(asset)
        return self._evm[0].bump(operation_id, signers, call, percent, limit).tx_hash
