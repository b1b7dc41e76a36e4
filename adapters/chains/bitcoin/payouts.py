"""BTC payouts from the platform wallet's UTXO set through the Bitcoin sender, alone or
in batches (recorded before it is broadcast: every call is idempotent by operation id)."""

from __future__ import annotations

import logging

from adapters.chains.bitcoin.batches import BitcoinBatches
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.sender import BitcoinSender, FeeBumpImpossible
from adapters.chains.payouts_signed import signed
from adapters.sqldb import SqlDatabase
from sagas.errors import ChainRejected, CustodyError, DependencyUnavailable
from sagas.signing import fee_shares
from sagas.withdrawal import ChainStatus

log = logging.getLogger("custody.payouts")


class BitcoinPayouts:
    """sagas.ports.Payouts for BTC."""

    def __init__(
        self,
        db_url: str,
        wallet_id: str,
        btc: tuple[BitcoinSender, BtcdNode],
        btc_confirmations: int,
        btc_fee_rate: int = 2,
        btc_batches: BitcoinBatches | None = None,
    ) -> None:
        """`btc_batches`: withdrawals go out in batches (None: one transaction each)."""
        self._db = SqlDatabase(db_url)
        self._wallet = wallet_id
        self._btc = btc
        self._btc_depth = btc_confirmations
        self._fee_rate = btc_fee_rate
        self._batches = btc_batches
        self.assets = frozenset({"BTC"})

    def __repr__(self) -> str:
        return f"BitcoinPayouts(wallet={self._wallet!r})"

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
            if recorded is None and not exc.transient and signed(self._db, operation_id):
                # The signer's record holds a signature for it whose answer was lost:
                # that payment may still be broadcast. Never "nothing sent".
                raise DependencyUnavailable(
                    f"{operation_id} was signed but not recorded; operators decide"
                ) from exc
            if recorded is None:
                raise
            return recorded
        return txid

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

    def recorded(self, operation_id: str) -> bool:
        return self._recorded_btc(operation_id) is not None

    def status(self, operation_id: str, asset: str) -> ChainStatus:
        return self._btc_status(operation_id)

    def _btc_status(self, operation_id: str) -> ChainStatus:
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
        with self._db.tx() as conn:
            rows = conn.all(
                "select raw_tx from btc_transactions where operation_id = ? and state in "
                "('signed', 'broadcast') order by attempt desc limit 1",
                (self._btc_payment(operation_id)[0],),
            )
        for (raw,) in rows:
            try:
                self._btc[1].send_raw(bytes.fromhex(raw))
            except ChainRejected as exc:
                log.warning("rebroadcast of %s refused: %s", operation_id, exc)

    def bump(
        self, operation_id: str, asset: str, destination: str, amount: int, percent: int
    ) -> str:
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
