"""Paying out Bitcoin from the platform's own UTXO set.

The UTXO set is the watcher's final deposit observations plus our own change
outputs, less what our transactions spent: everything the platform holds on chain.
Only part of it is spendable: our change, and deposits the deposit saga credited.
A quarantined deposit (its source on the deny list, or no account for it) and one
not yet screened stay in the set, held, and are never selected.

A payment selects spendable coins, adds change to a fresh internal address (BIP84
change chain), signals RBF, hands the signer the unsigned transaction with the
outputs it spends and the key of each (the signer computes the sighashes, checks the
payment and signs every input with one unwrap), and
records the signed transaction, the spent inputs and the new change output in one
database transaction, before broadcasting. Broadcasting the recorded transaction
again is harmless, so a repeated operation id, or a restart after a crash, just
sends it again. `bump()` replaces a payment stuck in the mempool: same inputs and
outputs, a higher fee taken from the change. What cannot be paid (not enough
spendable coins, an address we do not pay, an output below dust) raises CannotPay
before anything is recorded.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

from adapters.chains.bitcoin.networks import select_network
from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.tx import (
    CHANGE_VB,
    DUST,
    Plan,
    Utxo,
    check_outputs,
    output_vbytes,
    select,
    to_request,
    txid,
    vsize,
)
from adapters.ledger.migrate import upgrade
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import ChainRejected, DependencyUnavailable, TransferIdConflict
from sagas.ports import BitcoinSigner, KeyDerivation, KeyStore
from sagas.signing import BATCH_PREFIX

# A coin may be spent if it is our change or its deposit was credited (the deposit saga's
# operation id is `deposit:bitcoin:<txid>:vout<n>`, sagas.deposit.workflow_id): never a
# quarantined one, nor one whose screening has not cleared it yet.
_SPENDABLE = (
    "(a.change = 1 or exists (select 1 from operations d where d.id = "
    "'deposit:bitcoin:' || u.txid || ':vout' || cast(u.vout as text) "
    "and d.state = 'credited'))"
)


class FeeBumpImpossible(Exception):
    """The change cannot pay the higher fee (or there is no change to take it from)."""


class BitcoinSender:
    def __init__(
        self,
        db_url: str,
        node: BtcdNode,
        signer: BitcoinSigner,
        keys: KeyStore,
        deriver: KeyDerivation,
        migrate: bool = True,
    ) -> None:
        if migrate:
            upgrade(db_url)
        select_network(deriver.btc_network)  # python-bitcoinlib parses addresses per network
        self._db = SqlDatabase(db_url)
        self._node = node
        self._signer = signer
        self._keys = keys
        self._deriver = deriver

    def __repr__(self) -> str:
        return "BitcoinSender()"

    def sync(self) -> None:
        """Take final deposits into the UTXO set (idempotent)."""

        def work(conn: Conn) -> None:
            conn.run(
                "insert into btc_utxos (txid, vout, address, amount) "
                "select o.tx_hash, cast(substr(o.position, 5) as integer), o.address, "
                "cast(o.amount as bigint) from chain_observations o "
                "where o.chain = 'bitcoin' and o.state = 'final' on conflict do nothing"
            )

        self._db.write(work)

    def unspent(self, wallet_id: str, spendable: bool = False) -> list[Utxo]:
        """The wallet's unspent coins (held: quarantined ones included), or only those
        a payment may select."""
        only = f" and {_SPENDABLE}" if spendable else ""
        with self._db.tx() as conn:
            rows = conn.all(
                "select u.txid, u.vout, u.address, u.amount from btc_utxos u "
                "join deposit_addresses a on a.address = u.address "
                f"where a.wallet_id = ? and u.spent_by is null{only} order by u.txid, u.vout",
                (wallet_id,),
            )
        return [Utxo(r[0], int(r[1]), r[2], int(r[3])) for r in rows]

    # --- paying --------------------------------------------------------------------
    def pay(
        self, operation_id: str, wallet_id: str, outputs: list[tuple[str, int]], fee_rate: int
    ) -> tuple[str, int]:
        """Pay the outputs (address, sat) at `fee_rate` sat/vB; (txid, fee). Once per
        operation id: a repeat sends the recorded transaction again."""
        self.sync()
        recorded = self._recorded_outputs(operation_id)
        if recorded is None:
            check_outputs(outputs)  # CannotPay before anything is taken or recorded
        if recorded is not None and recorded != [(a, int(v)) for a, v in outputs]:
            raise TransferIdConflict(f"{operation_id} was paid to other outputs")
        if recorded is None:
            xpub = self.xpub(wallet_id)
            # The change address is taken first, in its own transaction: idempotent by
            # operation id, and an unused one only leaves a gap on the internal chain.
            change_address = self.change_address(wallet_id, operation_id)
            self._db.write(
                lambda conn: self._build(
                    conn, operation_id, wallet_id, xpub, outputs, fee_rate, change_address
                )
            )
        return self.send_latest(operation_id)

    def bump(self, operation_id: str, wallet_id: str, fee_rate: int) -> tuple[str, int]:
        """Replace the operation's unconfirmed transaction with one paying `fee_rate`."""
        xpub = self.xpub(wallet_id)
        replaced = self._db.write(
            lambda conn: self._rebuild(conn, operation_id, wallet_id, xpub, fee_rate)
        )
        try:
            return self.send_latest(operation_id)
        except ChainRejected:
            # The node kept the original: put our books back as they were.
            self._db.write(lambda conn: self._unbump(conn, operation_id, *replaced))
            raise

    def _unbump(
        self,
        conn: Conn,
        operation_id: str,
        old_attempt: int,
        old_txid: str,
        old_change: tuple[int, str, int],
    ) -> None:
        self.lock_payment(conn, operation_id)
        latest = conn.one(
            "select max(attempt) from btc_transactions where operation_id = ?", (operation_id,)
        )
        if latest is None or latest[0] is None or int(latest[0]) != old_attempt + 1:
            return  # another bump came after this one: its books stand, not these
        row = conn.one(
            "select txid from btc_transactions where operation_id = ? and attempt = ?",
            (operation_id, old_attempt + 1),
        )
        conn.run("delete from btc_utxos where txid = ?", (row[0],))
        conn.run(
            "delete from btc_transactions where operation_id = ? and attempt = ?",
            (operation_id, old_attempt + 1),
        )
        conn.run(
            "update btc_transactions set state = 'broadcast' where operation_id = ? "
            "and attempt = ?",
            (operation_id, old_attempt),
        )
        vout, address, amount = old_change
        conn.run(
            "insert into btc_utxos (txid, vout, address, amount) values (?, ?, ?, ?)",
            (old_txid, vout, address, amount),
        )

    def _recorded_outputs(self, operation_id: str) -> list[tuple[str, int]] | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select outputs from btc_transactions where operation_id = ? "
                "order by attempt limit 1",
                (operation_id,),
            )
        return None if row is None else [(a, int(v)) for a, v in json.loads(row[0])]

    @staticmethod
    def lock_payment(conn: Conn, payment: str, wait: bool = True) -> bool:
        """One attempt at a time pays or bumps a payment (an operation's, or a batch's):
        locked to the end of the transaction (SQLite's write transaction already is).
        `wait=False`: refused at once (False) rather than a pooled connection held."""
        if conn.sqlite:
            return True
        if wait:
            conn.one("select pg_advisory_xact_lock(hashtextextended(?, 4243))", (payment,))
            return True
        row = conn.one("select pg_try_advisory_xact_lock(hashtextextended(?, 4243))", (payment,))
        return bool(row[0])

    def change_address(self, wallet_id: str, payment: str) -> str:
        """The change address of a payment (an operation or a batch), taken in its own
        transaction: idempotent by payment, and an unused one only leaves a gap on the
        internal chain."""
        xpub = self.xpub(wallet_id)
        return self._keys.assign(
            wallet_id,
            "bitcoin",
            f"{wallet_id}:change:{payment}",
            None,
            "BTC",
            lambda i: self._deriver.address(xpub, "bitcoin", 1, i),
            change=1,
        ).address

    def change_index(self, conn: Conn, wallet_id: str, change_address: str) -> int:
        row = conn.one(
            "select address_index from deposit_addresses where address = ? and "
            "wallet_id = ? and change = 1",
            (change_address, wallet_id),
        )
        if row is None:
            raise KeyError(f"{change_address} is not {wallet_id}'s change address")
        return int(row[0])

    def xpub(self, wallet_id: str) -> str:
        wallet = self._keys.wallet(wallet_id)
        if wallet is None:
            raise KeyError(f"no wallet {wallet_id}")
        return wallet.xpubs["bitcoin"]

    def latest(self, operation_id: str) -> tuple[int, str, bytes, int] | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select attempt, txid, raw_tx, fee from btc_transactions "
                "where operation_id = ? order by attempt desc limit 1",
                (operation_id,),
            )
        return None if row is None else (int(row[0]), row[1], bytes.fromhex(row[2]), int(row[3]))

    def send_latest(self, operation_id: str) -> tuple[str, int]:
        latest = self.latest(operation_id)
        assert latest is not None
        attempt, _, raw, fee = latest
        sent = self._node.send_raw(raw)
        self._db.write(
            lambda conn: conn.run(
                "update btc_transactions set state = 'broadcast' where operation_id = ? "
                "and attempt = ? and state = 'signed'",
                (operation_id, attempt),
            )
        )
        return sent, fee

    # --- building --------------------------------------------------------------------
    def coins(
        self, conn: Conn, wallet_id: str, spent_by: str | None, operation_id: str = ""
    ) -> dict[tuple[str, int], tuple[Utxo, int, int]]:
        # Lock the coins: two payments never select the same one.
        lock = "" if conn.sqlite else " for update of u"
        # New coins only from the spendable ones, and never one the signer's record holds
        # for another operation (signed, its answer lost before this was recorded): the
        # signer would refuse it. A fee bump re-signs the coins it took.
        condition = (
            f"u.spent_by is null and {_SPENDABLE} and not exists (select 1 from "
            "signer_claims c where c.claim = 'btc:' || u.txid || ':' || cast(u.vout as text) "
            "and c.operation_id <> ?)"
            if spent_by is None
            else "u.spent_by = ?"
        )
        params = (wallet_id, operation_id) if spent_by is None else (wallet_id, spent_by)
        rows = conn.all(
            "select u.txid, u.vout, u.address, u.amount, a.change, a.address_index "
            "from btc_utxos u join deposit_addresses a on a.address = u.address "
            f"where a.wallet_id = ? and {condition} order by u.txid, u.vout{lock}",
            params,
        )
        return {
            (r[0], int(r[1])): (Utxo(r[0], int(r[1]), r[2], int(r[3])), int(r[4]), int(r[5]))
            for r in rows
        }

    def _build(
        self,
        conn: Conn,
        operation_id: str,
        wallet_id: str,
        xpub: str,
        outputs: list[tuple[str, int]],
        fee_rate: int,
        change_address: str,
    ) -> None:
        # Locked, then re-checked: a retry beside an attempt that outlived its timeout
        # waits for it and sends what it recorded, never signing a second payment.
        if not self.lock_payment(conn, operation_id, wait=False):
            raise DependencyUnavailable(f"{operation_id}: another attempt is paying it now")
        if conn.one("select 1 from btc_transactions where operation_id = ?", (operation_id,)):
            return
        coins = self.coins(conn, wallet_id, None, operation_id)
        plan = select([c[0] for c in coins.values()], outputs, fee_rate)
        self._sign_and_record(conn, operation_id, 0, wallet_id, xpub, plan, coins, change_address)

    def _rebuild(
        self, conn: Conn, operation_id: str, wallet_id: str, xpub: str, fee_rate: int
    ) -> tuple[int, str, tuple[int, str, int]]:
        self.lock_payment(conn, operation_id)  # one bump (of a batch: any member's) at a time
        row = conn.one(
            "select attempt, txid, outputs, fee from btc_transactions where "
            "operation_id = ? order by attempt desc limit 1",
            (operation_id,),
        )
        if row is None:
            raise KeyError(f"no payment {operation_id}")
        attempt, old_txid, old_fee = int(row[0]), row[1], int(row[3])
        outputs = [(a, int(v)) for a, v in json.loads(row[2])]
        coins = self.coins(conn, wallet_id, operation_id)
        change_row = conn.one(
            "select vout, address, amount, spent_by from btc_utxos where txid = ?", (old_txid,)
        )
        if not self._node.in_mempool(old_txid):
            raise FeeBumpImpossible(f"{operation_id}: {old_txid} is not waiting in the mempool")
        if change_row is None or change_row[3] is not None:
            raise FeeBumpImpossible(f"{operation_id}: no unspent change to pay a higher fee")
        total_in = sum(c[0].amount for c in coins.values())
        target = sum(v for _, v in outputs)
        size = vsize(len(coins), output_vbytes(outputs) + CHANGE_VB)
        new_fee = math.ceil(size * fee_rate)
        # BIP125: more absolute fee than the original, by at least the incremental relay
        # fee (1 sat/vB) for the replacement's own size.
        if new_fee < old_fee + size or total_in - target - new_fee < DUST:
            raise FeeBumpImpossible(f"{operation_id}: cannot pay {new_fee} sat from change")
        old_change = (int(change_row[0]), str(change_row[1]), int(change_row[2]))
        plan = Plan(
            tuple(c[0] for c in coins.values()),
            tuple(outputs),
            total_in - target - new_fee,
            new_fee,
        )
        conn.run(
            "update btc_transactions set state = 'replaced' where operation_id = ? and attempt = ?",
            (operation_id, attempt),
        )
        conn.run("delete from btc_utxos where txid = ?", (old_txid,))  # its change output
        conn.run("update btc_utxos set spent_by = null where spent_by = ?", (operation_id,))
        self._sign_and_record(
            conn, operation_id, attempt + 1, wallet_id, xpub, plan, coins, old_change[1]
        )
        return attempt, old_txid, old_change

    def _sign_and_record(
        self,
        conn: Conn,
        operation_id: str,
        attempt: int,
        wallet_id: str,
        xpub: str,
        plan: Plan,
        coins: dict[tuple[str, int], tuple[Utxo, int, int]],
        change_address: str,
    ) -> None:
        keys = [coins[(u.txid, u.vout)][1:] for u in plan.inputs]
        change_index = None
        if plan.change:
            change_index = self.change_index(conn, wallet_id, change_address)
        pays = self._batch_members(conn, operation_id)
        request = to_request(plan, change_address, change_index, keys, pays)
        raw = self._signer.sign_btc_transaction(f"{operation_id}#{attempt}", wallet_id, request)
        self.record_signed(conn, operation_id, attempt, raw, plan, change_address)

    @staticmethod
    def _batch_members(conn: Conn, payment: str) -> list[str] | None:
        """A batch's members in output order (None: `payment` is one operation's)."""
        if not payment.startswith(BATCH_PREFIX):
            return None
        rows = conn.all(
            "select operation_id from btc_payout_queue where batch_id = ? order by position",
            (payment,),
        )
        return [str(r[0]) for r in rows]

    def record_signed(
        self,
        conn: Conn,
        operation_id: str,
        attempt: int,
        raw: bytes,
        plan: Plan,
        change_address: str,
    ) -> None:
        """Record a signed transaction of a payment (an operation or a batch) before it is
        broadcast: the transaction, its inputs taken, its change output ours."""
        new_txid = txid(raw)
        conn.run(
            "insert into btc_transactions (operation_id, attempt, txid, raw_tx, outputs, "
            "fee, state, created_at) values (?, ?, ?, ?, ?, ?, 'signed', ?)",
            (
                operation_id,
                attempt,
                new_txid,
                raw.hex(),
                json.dumps(plan.outputs),
                plan.fee,
                conn.time(datetime.now(UTC)),
            ),
        )
        for utxo in plan.inputs:
            conn.run(
                "update btc_utxos set spent_by = ? where txid = ? and vout = ?",
                (operation_id, utxo.txid, utxo.vout),
            )
        if plan.change:
            conn.run(
                "insert into btc_utxos (txid, vout, address, amount) values (?, ?, ?, ?)",
                (new_txid, len(plan.outputs), change_address, plan.change),
            )
