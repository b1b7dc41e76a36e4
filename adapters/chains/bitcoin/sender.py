"""Paying out Bitcoin from the platform's own UTXO set.

The UTXO set is the watcher's final deposit observations plus our own change
outputs, less what our transactions spent. A payment selects coins, adds change
to a fresh internal address (BIP84 change chain), signals RBF, has the signer
sign every input with one unwrap, and records the signed transaction, the spent
inputs and the new change output in one database transaction, before
broadcasting. Broadcasting the recorded transaction again is harmless, so a
repeated operation id, or a restart after a crash, just sends it again.
"""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.chains.bitcoin.node import BtcdNode
from adapters.chains.bitcoin.tx import Plan, Utxo, digest, finish, select, txid, unsigned
from adapters.ledger.migrate import upgrade
from adapters.sqldb import Conn, SqlDatabase
from sagas.ports import BitcoinSigner, KeyDerivation, KeyStore


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

    def unspent(self, wallet_id: str) -> list[Utxo]:
        with self._db.tx() as conn:
            rows = conn.all(
                "select u.txid, u.vout, u.address, u.amount from btc_utxos u "
                "join deposit_addresses a on a.address = u.address "
                "where a.wallet_id = ? and u.spent_by is null order by u.txid, u.vout",
                (wallet_id,),
            )
        return [Utxo(r[0], int(r[1]), r[2], int(r[3])) for r in rows]

    def pay(
        self, operation_id: str, wallet_id: str, outputs: list[tuple[str, int]], fee_rate: int
    ) -> tuple[str, int]:
        """Pay the outputs (address, sat) at `fee_rate` sat/vB; (txid, fee). Once per
        operation id: a repeat sends the recorded transaction again."""
        self.sync()
        recorded = self._recorded(operation_id)
        if recorded is None:
            wallet = self._keys.wallet(wallet_id)
            if wallet is None:
                raise KeyError(f"no wallet {wallet_id}")
            xpub = wallet.xpubs["bitcoin"]
            # The change address is taken first, in its own transaction: idempotent by
            # operation id, and an unused one only leaves a gap on the internal chain.
            change_address = self._keys.assign(
                wallet_id,
                "bitcoin",
                f"{wallet_id}:change:{operation_id}",
                None,
                "BTC",
                lambda i: self._deriver.address(xpub, "bitcoin", 1, i),
                change=1,
            ).address
            recorded = self._db.write(
                lambda conn: self._build(
                    conn, operation_id, wallet_id, xpub, outputs, fee_rate, change_address
                )
            )
        raw, fee = recorded
        sent = self._node.send_raw(raw)

        def mark(conn: Conn) -> None:
            conn.run(
                "update btc_transactions set state = 'broadcast' where operation_id = ?",
                (operation_id,),
            )

        self._db.write(mark)
        return sent, fee

    def _recorded(self, operation_id: str) -> tuple[bytes, int] | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select raw_tx, fee from btc_transactions where operation_id = ?", (operation_id,)
            )
        return None if row is None else (bytes.fromhex(row[0]), int(row[1]))

    def _build(
        self,
        conn: Conn,
        operation_id: str,
        wallet_id: str,
        xpub: str,
        outputs: list[tuple[str, int]],
        fee_rate: int,
        change_address: str,
    ) -> tuple[bytes, int]:
        # Lock the wallet's unspent coins: two payments never select the same coin.
        lock = "" if conn.sqlite else " for update of u"
        rows = conn.all(
            "select u.txid, u.vout, u.address, u.amount, a.change, a.address_index "
            "from btc_utxos u join deposit_addresses a on a.address = u.address "
            f"where a.wallet_id = ? and u.spent_by is null{lock}",
            (wallet_id,),
        )
        coins = {
            (r[0], int(r[1])): (Utxo(r[0], int(r[1]), r[2], int(r[3])), int(r[4]), int(r[5]))
            for r in rows
        }
        plan: Plan = select([c[0] for c in coins.values()], outputs, fee_rate)
        tx = unsigned(plan, change_address)
        requests = []
        for i, utxo in enumerate(plan.inputs):
            _, chg, index = coins[(utxo.txid, utxo.vout)]
            pub = self._deriver.public_key(xpub, "bitcoin", chg, index)
            requests.append((chg, index, digest(tx, i, utxo, pub)))
        raw = finish(tx, self._signer.sign_btc_digests(operation_id, wallet_id, requests))
        new_txid = txid(raw)
        conn.run(
            "insert into btc_transactions (operation_id, txid, raw_tx, fee, state, "
            "created_at) values (?, ?, ?, ?, 'signed', ?)",
            (operation_id, new_txid, raw.hex(), plan.fee, conn.time(datetime.now(UTC))),
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
        return raw, plan.fee
