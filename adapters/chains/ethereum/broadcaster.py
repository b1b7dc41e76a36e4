"""Sending EVM transactions safely: persisted gapless nonces, record before send,
idempotent broadcast, nonce re-sync, fee bump by replacement, confirmations.

- A nonce is allocated, the transaction built and signed, and the signed bytes
  recorded in one database transaction, with the sender's nonce row locked. If
  anything fails before that commits (the signer refuses, the node cannot
  estimate gas), nothing is consumed: no gap.
- The recorded transaction is sent after the commit. Sending it again is
  harmless (same bytes, same hash), so after a crash `rebroadcast_unsent()`
  sends whatever was recorded but not sent.
- If the node says the nonce was taken by something else, the operation is
  re-signed with a fresh nonce from the node's view, once.
- `bump()` replaces a stuck transaction with the same nonce and higher fees.
- Several senders (the hot wallet's lanes, decision 0026) each have their own nonce
  row: a payment takes the first lane no other payment is signing on and that can pay
  it, and stays on that lane (and nonce) for good once the signer signed it there.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eth_account.typed_transactions.typed_transaction import TypedTransaction
from hexbytes import HexBytes
from web3 import Web3

from adapters.chains.ethereum.node import CallReverts, Web3EthereumNode
from adapters.ledger.migrate import upgrade
from adapters.operations import signer_record
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import ChainRejected, DependencyUnavailable, NonceAlreadyUsed
from sagas.ports import TransactionSigner, TxReceipt

_LIVE = ("signed", "broadcast", "mined")
_LOCK_NONCE = "select next_nonce from evm_nonces where chain_id = ? and sender = ? for update"
log = logging.getLogger("custody.ethereum.broadcaster")


@dataclass(frozen=True)
class SentTx:
    operation_id: str
    attempt: int
    nonce: int
    tx_hash: str
    sender: str = ""


# One sender, or the hot wallet's lanes: every address a payment may be sent from.
Lanes = TransactionSigner | Sequence[TransactionSigner]


def _lanes(signers: Lanes) -> list[TransactionSigner]:
    return list(signers) if isinstance(signers, (list, tuple)) else [signers]  # type: ignore[list-item]


def _lane_of(lanes: Sequence[TransactionSigner], sender: str) -> TransactionSigner | None:
    return next((s for s in lanes if Web3.to_checksum_address(s.address) == sender), None)


def _on_lane(lanes: Sequence[TransactionSigner], sender: str) -> TransactionSigner:
    signer = _lane_of(lanes, sender)
    if signer is None:
        # Pinned there by the signer's record or an attempt: never moved to another lane.
        raise DependencyUnavailable(f"the payment is on {sender}, not one of this worker's lanes")
    return signer


@dataclass(frozen=True)
class TxStatus:
    operation_id: str
    tx_hash: str
    nonce: int
    receipt: TxReceipt | None
    confirmations: int


class _Conflict(Exception):
    pass


class _Short(Exception):
    """A lane that cannot pay the payment now."""


class EvmBroadcaster:
    def __init__(self, db_url: str, node: Web3EthereumNode, migrate: bool = True) -> None:
        if migrate:
            upgrade(db_url)
        self._db = SqlDatabase(db_url, on_integrity=lambda exc: _Conflict(str(exc)))
        self._node = node
        self._chain_id = node.chain_id()

    def __repr__(self) -> str:
        return f"EvmBroadcaster(chain_id={self._chain_id})"

    # --- sending -----------------------------------------------------------------
    def send(
        self,
        operation_id: str,
        signers: Lanes,
        call: dict[str, Any],
        gas_limit: int | None = None,
    ) -> SentTx:
        """Send `call` from one of the signers' addresses, once per operation id
        (CannotPay if it needs more than `gas_limit` gas)."""
        lanes = _lanes(signers)
        sent = self._db.write(
            lambda c: self._record(c, operation_id, lanes, call, gas_limit=gas_limit),
            retry_on=(_Conflict,),
        )
        # (A recorded attempt on a lane this worker no longer has is still (re)sent.)
        return self._broadcast(sent, _lane_of(lanes, sent.sender), call, gas_limit)

    def _record(
        self,
        conn: Conn,
        operation_id: str,
        lanes: list[TransactionSigner],
        call: dict[str, Any],
        bump_percent: int = 100,
        gas_limit: int | None = None,
    ) -> SentTx:
        # The operation is locked before anything is read: an attempt that outlived its
        # timeout may still be signing this operation beside its retry. Under the lock
        # the retry sees that attempt's record (and re-sends it) instead of taking the
        # next nonce. SQLite's BEGIN IMMEDIATE already serialises writers.
        self._lock_operation(conn, operation_id)
        live = self._live(conn, operation_id)
        if live is not None and bump_percent == 100:
            return live  # already recorded: the caller (re)broadcasts it
        attempt = self._next_attempt(conn, operation_id)
        if live is not None:
            # Replacement: same lane and nonce, the old attempt marked replaced first. The
            # next attempt number, not live + 1: a refused replacement keeps its row.
            signer, nonce = _on_lane(lanes, live.sender), live.nonce
            conn.run(
                "update evm_transactions set state = 'replaced' where operation_id = ? "
                "and attempt = ?",
                (operation_id, live.attempt),
            )
            # A replacement must outbid the transaction it replaces, not just the market.
            tx = self._node.prepare(
                live.sender,
                call,
                nonce,
                fee_bump_percent=bump_percent,
                min_fees=self._fees_of(conn, live.tx_hash),
                gas_limit=gas_limit,
            )
        else:
            # The signer pins an operation to the lane and nonce it first signed it with
            # (its own record), even if that signature's answer was lost and nothing was
            # recorded here: take those again, or else a free lane's next nonce.
            signed = signer_record.signed_evm(conn, operation_id, self._chain_id)
            if signed is None:
                signer, nonce, tx = self._choose_lane(
                    conn, operation_id, lanes, call, gas_limit, bump_percent
                )
            else:
                signer, nonce = _on_lane(lanes, signed[0]), signed[1]
                tx = self._node.prepare(
                    signed[0], call, nonce, fee_bump_percent=bump_percent, gas_limit=gas_limit
                )
        sender = Web3.to_checksum_address(signer.address)
        raw = signer.sign_transaction(tx)
        tx_hash = "0x" + bytes(Web3.keccak(raw)).hex()
        conn.run(
            "insert into evm_transactions (operation_id, attempt, chain_id, sender, nonce, "
            "tx_hash, raw_tx, max_fee, max_priority_fee, state, created_at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, 'signed', ?)",
            (
                operation_id,
                attempt,
                self._chain_id,
                sender,
                nonce,
                tx_hash,
                raw.hex(),
                str(tx["maxFeePerGas"]),
                str(tx["maxPriorityFeePerGas"]),
                conn.time(datetime.now(UTC)),
            ),
        )
        return SentTx(operation_id, attempt, nonce, tx_hash, sender)

    def _choose_lane(
        self,
        conn: Conn,
        operation_id: str,
        lanes: list[TransactionSigner],
        call: dict[str, Any],
        gas_limit: int | None,
        bump_percent: int = 100,
    ) -> tuple[TransactionSigner, int, dict[str, Any]]:
        """A lane for a new payment, its nonce and the transaction: from a first lane
        spread by operation id, the first whose nonce row no other payment holds (it is
        held to the end of this transaction, through signing) and that holds what the
        payment spends (a lane short of funds, or whose node estimate fails, is passed
        over and its row freed). When every lane is held, wait for them in turn; when
        none can pay, the first that was short (the node refuses it at broadcast, as it
        would with one lane). The node's refusal if it refused every lane; CallReverts
        (transient: the payment waits) if the call reverts from every lane."""
        first = int.from_bytes(hashlib.sha256(operation_id.encode()).digest()[:4], "big")
        order = lanes[first % len(lanes) :] + lanes[: first % len(lanes)]
        refused: ChainRejected | CallReverts | None = None
        held: list[TransactionSigner] = []
        short: list[TransactionSigner] = []
        one = len(lanes) == 1
        # One lane: wait for it, as before lanes. Several: pass over the held ones first,
        # then wait for them in turn; and over those short of funds.
        for wait, candidates, check in (
            (one, order, not one),
            (True, held, True),
            (True, short, False),
        ):
            for signer in list(candidates):
                sender = Web3.to_checksum_address(signer.address)
                try:
                    with conn.savepoint():
                        nonce = self._allocate(conn, sender, operation_id, wait)
                        if nonce is None:
                            held.append(signer)
                            continue
                        tx = self._node.prepare(
                            sender, call, nonce, fee_bump_percent=bump_percent, gas_limit=gas_limit
                        )
                        if check and not self._node.can_pay(
                            sender, [tx, *self._unmined(conn, sender)]
                        ):
                            raise _Short
                except _Short:
                    short.append(signer)
                    continue
                except CallReverts as exc:  # short of the token there: try another
                    refused = refused if isinstance(refused, ChainRejected) else exc
                    continue
                except ChainRejected as exc:
                    refused = exc
                    continue
                # (In the last pass: no lane could pay it, so the first that was short, as
                # with one lane: the node refuses it at broadcast, the saga waits.)
                return signer, nonce, tx
        assert refused is not None
        raise refused

    def _unmined(self, conn: Conn, sender: str) -> list[dict[str, Any]]:
        """The sender's recorded payments not mined yet (at nonces from its count of mined
        transactions on): what they may still spend is not the lane's to spend again."""
        rows = conn.all(
            "select raw_tx from evm_transactions where chain_id = ? and sender = ? and "
            "state in ('signed', 'broadcast') and nonce >= ?",
            (self._chain_id, sender, self._node.mined_nonce(sender)),
        )
        unmined = []
        for (raw,) in rows:
            try:
                unmined.append(dict(TypedTransaction.from_bytes(HexBytes(raw)).as_dict()))
            except (ValueError, TypeError):  # not an EIP-1559 payment we built: no claim
                log.warning("unreadable recorded transaction from %s", sender)
        return unmined

    @staticmethod
    def _lock_operation(conn: Conn, operation_id: str) -> None:
        """Held to the end of the transaction (re-entrant). Taken or refused at once: a
        retry beside a live attempt fails fast (transient, Temporal tries again) instead
        of holding a pooled connection while the attempt signs."""
        if conn.sqlite:
            return
        row = conn.one(
            "select pg_try_advisory_xact_lock(hashtextextended(?, 4242))", (operation_id,)
        )
        if not row[0]:
            raise DependencyUnavailable(f"{operation_id}: another attempt is sending it now")

    def _allocate(self, conn: Conn, sender: str, operation_id: str, wait: bool) -> int | None:
        """The sender's next nonce, its row locked to the end of the transaction; None if
        another transaction holds it and not `wait`."""
        nonce = self._take_nonce(conn, sender, wait)
        if nonce is None:
            return None
        # A nonce the signer signed for another operation whose record here was lost
        # (the worker gave up waiting for the signer's answer) stays that operation's:
        # skip it (its retry sends it and fills the gap).
        skipped = False
        while signer_record.claimed_by_other(
            conn, signer_record.evm_claim(self._chain_id, sender, nonce), operation_id
        ):
            nonce, skipped = nonce + 1, True
        if skipped:
            conn.run(
                "update evm_nonces set next_nonce = ? where chain_id = ? and sender = ? "
                "and next_nonce <= ?",
                (nonce + 1, self._chain_id, sender, nonce),
            )
        return nonce

    def _take_nonce(self, conn: Conn, sender: str, wait: bool = True) -> int | None:
        if conn.sqlite:  # the write lock is the database's: never held by another
            row = conn.one(
                "select next_nonce from evm_nonces where chain_id = ? and sender = ?",
                (self._chain_id, sender),
            )
        else:
            key = (self._chain_id, sender)
            if conn.one("select 1 from evm_nonces where chain_id = ? and sender = ?", key) is None:
                conn.run(
                    "insert into evm_nonces (chain_id, sender, next_nonce) values (?, ?, ?) "
                    "on conflict do nothing",
                    (*key, self._node.pending_nonce(sender)),
                )
            row = conn.one(_LOCK_NONCE if wait else _LOCK_NONCE + " skip locked", key)
            if row is None:
                return None  # held by another payment signing on this lane
        if row is None:
            nonce = self._node.pending_nonce(sender)
            conn.run(
                "insert into evm_nonces (chain_id, sender, next_nonce) values (?, ?, ?)",
                (self._chain_id, sender, nonce + 1),
            )
            return nonce
        nonce = int(row[0])
        conn.run(
            "update evm_nonces set next_nonce = ? where chain_id = ? and sender = ?",
            (nonce + 1, self._chain_id, sender),
        )
        return nonce

    @staticmethod
    def _next_attempt(conn: Conn, operation_id: str) -> int:
        row = conn.one(
            "select max(attempt) from evm_transactions where operation_id = ?", (operation_id,)
        )
        return 0 if row is None or row[0] is None else int(row[0]) + 1

    def _live(self, conn: Conn, operation_id: str) -> SentTx | None:
        row = conn.one(
            "select attempt, nonce, tx_hash, sender from evm_transactions where operation_id "
            "= ? and state in ('signed', 'broadcast', 'mined') order by attempt desc limit 1",
            (operation_id,),
        )
        if row is None:
            return None
        return SentTx(operation_id, int(row[0]), int(row[1]), row[2], str(row[3]))

    def _raw(self, sent: SentTx) -> bytes:
        with self._db.tx() as conn:
            row = conn.one("select raw_tx from evm_transactions where tx_hash = ?", (sent.tx_hash,))
        return bytes.fromhex(row[0])

    def _broadcast(
        self,
        sent: SentTx,
        signer: TransactionSigner | None,
        call: dict[str, Any] | None,
        gas_limit: int | None = None,
    ) -> SentTx:
        try:
            self._node.broadcast(self._raw(sent))
        except NonceAlreadyUsed:
            # Was it one of this operation's own attempts (sent before a crash, or the
            # original of a fee bump mined first)? Then the payment is made: never sign it
            # again. Only a nonce taken by something else is re-synced.
            for attempt_hash in self._attempt_hashes(sent.operation_id):
                if self._node.receipt(attempt_hash) is not None:
                    mined = self._attempt(attempt_hash)
                    return self._mark(mined, "mined")
            if signer is None or call is None:
                raise
            return self._resync(sent, signer, call, gas_limit)
        return self._mark(sent, "broadcast")

    @staticmethod
    def _fees_of(conn: Conn, tx_hash: str) -> tuple[int, int]:
        row = conn.one(
            "select max_fee, max_priority_fee from evm_transactions where tx_hash = ?", (tx_hash,)
        )
        return int(row[0]), int(row[1])

    def _attempt_hashes(self, operation_id: str) -> list[str]:
        with self._db.tx() as conn:
            rows = conn.all(
                "select tx_hash from evm_transactions where operation_id = ? order by attempt",
                (operation_id,),
            )
        return [r[0] for r in rows]

    def _attempt(self, tx_hash: str) -> SentTx:
        with self._db.tx() as conn:
            row = conn.one(
                "select operation_id, attempt, nonce, sender from evm_transactions "
                "where tx_hash = ?",
                (tx_hash,),
            )
        return SentTx(row[0], int(row[1]), int(row[2]), tx_hash, str(row[3]))

    def _resync(
        self,
        sent: SentTx,
        signer: TransactionSigner,
        call: dict[str, Any],
        gas_limit: int | None = None,
    ) -> SentTx:
        """Someone else used our nonce: drop that attempt, take the node's view, re-sign."""
        sender = Web3.to_checksum_address(signer.address)

        def work(conn: Conn) -> SentTx:
            conn.run(
                "update evm_transactions set state = 'dropped' where tx_hash = ?", (sent.tx_hash,)
            )
            conn.run(
                "update evm_nonces set next_nonce = ? where chain_id = ? and sender = ? "
                "and next_nonce < ?",
                (
                    self._node.pending_nonce(sender),
                    self._chain_id,
                    sender,
                    self._node.pending_nonce(sender),
                ),
            )
            return self._record(conn, sent.operation_id, [signer], call, gas_limit=gas_limit)

        again = self._db.write(work, retry_on=(_Conflict,))
        self._node.broadcast(self._raw(again))
        return self._mark(again, "broadcast")

    def _mark(self, sent: SentTx, state: str) -> SentTx:
        def work(conn: Conn) -> None:
            conn.run(
                "update evm_transactions set state = ? where tx_hash = ? and state in "
                "('signed', 'broadcast')",
                (state, sent.tx_hash),
            )

        self._db.write(work)
        return sent

    def bump(
        self,
        operation_id: str,
        signers: Lanes,
        call: dict[str, Any],
        percent: int = 130,
        gas_limit: int | None = None,
    ) -> SentTx:
        """Replace the operation's pending transaction: same lane and nonce, fees x
        percent/100."""
        lanes = _lanes(signers)
        if percent <= 110:
            raise ValueError("a replacement must raise fees by more than 10%")
        for attempt_hash in self._attempt_hashes(operation_id):
            if self._node.receipt(attempt_hash) is not None:  # already mined: nothing to bump
                return self._mark(self._attempt(attempt_hash), "mined")
        with self._db.tx() as conn:
            replaced = self._live(conn, operation_id)
        sent = self._db.write(
            lambda c: self._record(c, operation_id, lanes, call, percent, gas_limit),
            retry_on=(_Conflict,),
        )
        try:
            return self._broadcast(sent, None, None)
        except ChainRejected:
            # The node kept the original: it stays the live attempt, the replacement is dead.
            def revert(conn: Conn) -> None:
                conn.run(
                    "update evm_transactions set state = 'dropped' where tx_hash = ?",
                    (sent.tx_hash,),
                )
                conn.run(
                    "update evm_transactions set state = 'broadcast' where "
                    "operation_id = ? and attempt = ?",
                    (operation_id, replaced.attempt if replaced is not None else -1),
                )

            self._db.write(revert)
            raise

    def rebroadcast_unsent(self) -> int:
        """Send every transaction recorded but not yet sent (after a crash)."""
        with self._db.tx() as conn:
            rows = conn.all(
                "select operation_id, attempt, nonce, tx_hash from evm_transactions "
                "where state = 'signed' and chain_id = ? order by nonce",
                (self._chain_id,),
            )
        sent = 0
        for row in rows:
            # A recorded transaction is committed: keep trying every one, and one refusal
            # must not hold back the others (a later run tries it again).
            try:
                self._broadcast(SentTx(row[0], int(row[1]), int(row[2]), row[3]), None, None)
                sent += 1
            except ChainRejected:
                log.warning("rebroadcast of %s refused; it stays recorded", row[3])
        return sent

    # --- tracking ----------------------------------------------------------------
    def status(self, operation_id: str) -> TxStatus:
        """Which attempt was mined, if any, and with how many confirmations."""
        with self._db.tx() as conn:
            rows = conn.all(
                "select attempt, nonce, tx_hash from evm_transactions "
                "where operation_id = ? order by attempt desc",
                (operation_id,),
            )
        if not rows:
            raise KeyError(f"no transaction for operation {operation_id}")
        head = self._node.block_number()
        for _attempt, nonce, tx_hash in rows:
            receipt = self._node.receipt(tx_hash)
            if receipt is not None:
                self._mark(SentTx(operation_id, int(_attempt), int(nonce), tx_hash), "mined")
                return TxStatus(
                    operation_id, tx_hash, int(nonce), receipt, head - receipt.block_number + 1
                )
        return TxStatus(operation_id, rows[0][2], int(rows[0][1]), None, 0)
