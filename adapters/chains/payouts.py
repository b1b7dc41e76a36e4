"""Payouts for the withdrawal saga: ETH and ERC-20 from the platform's hot wallet through
the EVM broadcaster, BTC from the platform wallet's UTXO set through the Bitcoin sender,
ATOM from the client's own address through the Cosmos adapter (decision 0035). Each
records before it broadcasts, so every call here is idempotent by operation id."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Literal

from adapters.chains.bitcoin.batches import BitcoinBatches
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.sender import BitcoinSender, FeeBumpImpossible
from adapters.chains.cosmos.staking import CosmosDelegations
from adapters.chains.ethereum.broadcaster import EvmBroadcaster
from adapters.chains.ethereum.node import Web3EthereumNode
from adapters.operations.signer_record import member_claim
from adapters.sqldb import SqlDatabase
from sagas.errors import ChainRejected, CustodyError, DependencyUnavailable
from sagas.ports import EvmKeySigner
from sagas.signing import fee_shares
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


class ChainPayouts:
    def __init__(
        self,
        db_url: str,
        wallet_id: str,
        evm: tuple[EvmBroadcaster, Web3EthereumNode, EvmKeySigner, Sequence[tuple[int, str]]]
        | None,
        tokens: dict[str, str],
        eth_confirmations: int,
        btc: tuple[BitcoinSender, BtcdNode] | None,
        btc_confirmations: int,
        btc_fee_rate: int = 2,
        gas_limits: tuple[int, int] | None = None,
        btc_batches: BitcoinBatches | None = None,
        cosmos: CosmosDelegations | None = None,
    ) -> None:
        """`evm`: (broadcaster, node, signer, the hot wallet's lanes: (index, address)
        each, decision 0026);
        `tokens`: asset code -> ERC-20 contract address; `gas_limits`: the most gas an
        ETH transfer and a token transfer may use (None: unbounded, tests only);
        `btc_batches`: Bitcoin withdrawals go out in batches (None: one transaction
        each); `cosmos`: ATOM withdrawals, each from the client's own address (which
        pays its fee coin: decision 0035)."""
        self._cosmos = cosmos
        self._batches = btc_batches
        self._gas_limits = gas_limits
        lanes = 1 if evm is None else len(evm[3])
        self._evm_gate = threading.BoundedSemaphore(
            max(EVM_SENDS_AT_ONCE, min(EVM_SENDS_MOST, EVM_SENDS_PER_LANE * lanes))
        )
        self._db = SqlDatabase(db_url)
        self._wallet = wallet_id
        self._evm = evm
        self._tokens = tokens
        self._eth_depth = eth_confirmations
        self._btc = btc
        self._btc_depth = btc_confirmations
        self._fee_rate = btc_fee_rate

    def __repr__(self) -> str:
        return f"ChainPayouts(wallet={self._wallet!r})"

    def _is_btc(self, asset: str) -> bool:
        return asset == "BTC"

    def _is_cosmos(self, asset: str) -> bool:
        return asset == "ATOM"

    def _cosmos_send(
        self, operation_id: str, destination: str, amount: int, source: str | None, fee: int
    ) -> str:
        """One MsgSend from the client's own address (the signer checks it is the
        withdrawal intent's client's, to its destination, for its amount), recorded before
        it is broadcast; a refusal with nothing in a block is nothing sent."""
        if self._cosmos is None:
            raise ChainRejected("this worker sends no ATOM")
        if not source or fee <= 0:
            raise ChainRejected("an ATOM payment leaves from the client's address with its fee")
        try:
            return self._cosmos.send(operation_id, source, destination, amount, fee)
        except ValueError as exc:  # not an address (the message's own validation)
            raise ChainRejected(str(exc)) from exc
        except DependencyUnavailable:
            # Recorded (signed) and not sent yet (an earlier sequence of the address is not
            # on the node: SequenceGap): it is the payment; its status says pending, the
            # saga rebroadcasts and alerts when it is stuck, rather than retrying here.
            recorded = self._cosmos.recorded(operation_id)
            if recorded is None:
                raise
            return recorded

    def _cosmos_status(self, operation_id: str) -> ChainStatus:
        """In a block is final (Tendermint); failed in its block paid its fee; refused at
        the node paid nothing."""
        if self._cosmos is None:
            raise DependencyUnavailable("this worker has no Cosmos adapter")
        outcome = self._cosmos.outcome(operation_id)
        if outcome.state == "pending":
            return ChainStatus(state="pending", tx_hash=outcome.tx_hash, fee_asset="ATOM")
        return ChainStatus(
            state="final" if outcome.state == "succeeded" else "reverted",
            tx_hash=outcome.tx_hash,
            confirmations=0 if outcome.height is None else 1,
            fee=outcome.fee,
            fee_asset="ATOM",
        )

    def _call(self, asset: str, destination: str, amount: int) -> dict[str, Any]:
        assert self._evm is not None
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
        assert self._evm is not None
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
        if self._is_cosmos(asset):
            return self._cosmos_send(operation_id, destination, amount, source, fee)
        if self._is_btc(asset):
            assert self._btc is not None
            try:
                if self._batches is not None and not self._paid_alone(operation_id):
                    txid, _share = self._batches.pay(
                        operation_id, self._wallet, destination, amount, self._fee_rate
                    )
                else:
                    txid, _fee = self._btc[0].pay(
                        operation_id, self._wallet, [(destination, amount)], self._fee_rate
                    )
            except CustodyError as exc:
                # A refusal (node, signer, no coins) after an attempt was recorded, its
                # coins taken: that payment stands. Only with none is nothing sent.
                recorded = None if exc.transient else self._recorded_btc(operation_id)
                if recorded is None and not exc.transient and self._signed(operation_id):
                    # The signer's record holds a signature for it whose answer was lost:
                    # that payment may still be broadcast. Never "nothing sent".
                    raise DependencyUnavailable(
                        f"{operation_id} was signed but not recorded; operators decide"
                    ) from exc
                if recorded is None:
                    raise
                return recorded
            return txid
        assert self._evm is not None
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
            if recorded is None and self._signed(operation_id):
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

    def _signed(self, operation_id: str) -> bool:
        """Whether the signer's record holds a signature paying the operation (alone, or
        in a Bitcoin batch): its claims are written only with a signature."""
        with self._db.tx() as conn:
            return bool(
                conn.one(
                    "select 1 from signer_claims where operation_id = ? or claim = ?",
                    (operation_id, member_claim(operation_id)),
                )
            )

    def _paid_alone(self, operation_id: str) -> bool:
        """Whether the operation has a payment of its own, signed before batching (the
        signer's record holds inputs for it, or the sender recorded one): it goes on
        alone, never also in a batch."""
        assert self._batches is not None
        if self._batches.queued(operation_id) is not None:
            return False
        with self._db.tx() as conn:
            return bool(
                conn.one(
                    "select 1 from btc_transactions where operation_id = ? union all "
                    "select 1 from signer_claims where operation_id = ? and claim like ?",
                    (operation_id, operation_id, "btc:%"),
                )
            )

    def _btc_payment(self, operation_id: str) -> tuple[str, int, int]:
        """What pays the operation: (its batch, its output, the batch's members), or
        (the operation itself, 0, 1) when it is paid alone."""
        batch = None if self._batches is None else self._batches.batch_of(operation_id)
        return (operation_id, 0, 1) if batch is None else batch

    def _recorded_btc(self, operation_id: str) -> str | None:
        payment = self._btc_payment(operation_id)[0]
        with self._db.tx() as conn:
            row = conn.one(
                "select txid from btc_transactions where operation_id = ? "
                "order by attempt desc limit 1",
                (payment,),
            )
        return None if row is None else str(row[0])

    def _live_evm(self, operation_id: str) -> str | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select tx_hash from evm_transactions where operation_id = ? and state in "
                "('signed', 'broadcast', 'mined') order by attempt desc limit 1",
                (operation_id,),
            )
        return None if row is None else str(row[0])

    def status(self, operation_id: str, asset: str) -> ChainStatus:
        if self._is_cosmos(asset):
            return self._cosmos_status(operation_id)
        if self._is_btc(asset):
            return self._btc_status(operation_id)
        assert self._evm is not None
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

    def _btc_status(self, operation_id: str) -> ChainStatus:
        assert self._btc is not None
        node = self._btc[1]
        payment, position, members = self._btc_payment(operation_id)
        with self._db.tx() as conn:
            rows = conn.all(
                "select txid, fee from btc_transactions where operation_id = ? "
                "order by attempt desc",
                (payment,),
            )
            watched = conn.all(
                "select tx_hash, state from chain_outgoing where chain = 'bitcoin' and "
                "operation_id = ? and state <> 'reorged'",
                (operation_id,),
            )
        if not rows:
            raise KeyError(f"no payment {operation_id}")
        # A batch member books its own share of the batch's fee.
        fees = {r[0]: fee_shares(int(r[1]), members)[position] for r in rows}
        for tx_hash, state in watched:  # the watcher's view first
            if state == "final":
                return ChainStatus(
                    state="final",
                    tx_hash=tx_hash,
                    confirmations=self._btc_depth,
                    fee=fees[tx_hash],
                    fee_asset="BTC",
                )
        for txid in fees:  # the fallback: the node's view of the payment output
            out = node.tx_out(txid, position)
            if out is not None and int(out.get("confirmations", 0)) > 0:
                depth = int(out["confirmations"])
                return ChainStatus(
                    state="final" if depth >= self._btc_depth else "mined",
                    tx_hash=txid,
                    confirmations=depth,
                    fee=fees[txid],
                    fee_asset="BTC",
                )
        return ChainStatus(state="pending", tx_hash=rows[0][0], fee_asset="BTC")

    def rebroadcast(self, operation_id: str) -> None:
        if self._cosmos is not None and self._cosmos.recorded(operation_id) is not None:
            self._cosmos.outcome(operation_id)  # a pending one's bytes go to the node again
            return
        with self._db.tx() as conn:
            # 'mined' too: a reorg may have dropped a transaction recorded as mined.
            evm = conn.all(
                "select raw_tx from evm_transactions where operation_id = ? and state in "
                "('signed', 'broadcast', 'mined')",
                (operation_id,),
            )
            btc = conn.all(
                "select raw_tx from btc_transactions where operation_id = ? and state in "
                "('signed', 'broadcast') order by attempt desc limit 1",
                (self._btc_payment(operation_id)[0],),
            )
        for (raw,) in evm:
            assert self._evm is not None
            try:
                self._evm[1].broadcast(bytes.fromhex(raw))
            except ChainRejected as exc:
                log.warning("rebroadcast of %s refused: %s", operation_id, exc)
        for (raw,) in btc:
            assert self._btc is not None
            try:
                self._btc[1].send_raw(bytes.fromhex(raw))
            except ChainRejected as exc:
                log.warning("rebroadcast of %s refused: %s", operation_id, exc)

    def bump(
        self, operation_id: str, asset: str, destination: str, amount: int, percent: int
    ) -> str:
        if self._is_cosmos(asset):  # a refused decision: the saga waits for the next
            raise ChainRejected("an ATOM payment's fee is fixed when signed: no bump")
        if self._is_btc(asset):
            assert self._btc is not None
            # A batch is bumped whole: every member's payment, a higher fee for each.
            payment = self._btc_payment(operation_id)[0]
            with self._db.tx() as conn:
                row = conn.one(
                    "select fee, raw_tx from btc_transactions where operation_id = ? "
                    "order by attempt desc limit 1",
                    (payment,),
                )
            size = len(bytes.fromhex(row[1]))  # an upper bound of the vsize
            rate = max(self._fee_rate + 1, -(-int(row[0]) * percent // (100 * size)))
            try:
                return self._btc[0].bump(payment, self._wallet, rate)[0]
            except FeeBumpImpossible as exc:  # a refused decision, not a retry for ever
                raise ChainRejected(str(exc)) from exc
        assert self._evm is not None
        call = self._call(asset, destination, amount)
        signers = self._signers(operation_id)
        limit = self._gas_limit(asset)
        return self._evm[0].bump(operation_id, signers, call, percent, limit).tx_hash
