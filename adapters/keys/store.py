"""KeyStore on SQL (the platform database): wallets and deposit-address assignments."""

from __future__ import annotations

import json
from collections.abc import Callable

from adapters.ledger.migrate import upgrade
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import AccountConflict
from sagas.keys import AddressAssignment, Chain, WalletRecord

_COLUMNS = "address, account_id, owner, chain, asset, wallet_id, change, address_index"
_SELECT_BY = {
    "address": f"select {_COLUMNS} from deposit_addresses where address = ?",
    "account_id": f"select {_COLUMNS} from deposit_addresses where account_id = ?",
}


class _RaceLost(Exception):
    pass


_ADDRESS_LOCK = 0x6B657973  # "keys": the two-key lock space, apart from the migrations' lock


def _integrity(exc: Exception) -> Exception:
    return _RaceLost(str(exc))


class SqlKeyStore:
    def __init__(self, url: str, migrate: bool = True) -> None:
        if migrate:
            upgrade(url)
        self._db = SqlDatabase(url, on_integrity=_integrity)

    def __repr__(self) -> str:
        return f"SqlKeyStore({self._db.kind})"

    def save_wallet(self, record: WalletRecord) -> WalletRecord:
        """Store a new wallet; if the id exists, the stored one wins and is returned."""

        def work(conn: Conn) -> None:
            if self._wallet(conn, record.wallet_id) is None:
                conn.run(
                    "insert into key_wallets (wallet_id, wrapped_seed, xpubs, btc_network, "
                    "created_at) values (?, ?, ?, ?, ?)",
                    (
                        record.wallet_id,
                        record.wrapped_seed,
                        json.dumps(record.xpubs),
                        record.btc_network,
                        conn.time(record.created_at),
                    ),
                )

        self._db.write(work, retry_on=(_RaceLost,))
        stored = self.wallet(record.wallet_id)
        assert stored is not None
        return stored

    def wallet(self, wallet_id: str) -> WalletRecord | None:
        with self._db.tx() as conn:
            return self._wallet(conn, wallet_id)

    @staticmethod
    def _wallet(conn: Conn, wallet_id: str) -> WalletRecord | None:
        row = conn.one(
            "select wallet_id, wrapped_seed, xpubs, btc_network, created_at "
            "from key_wallets where wallet_id = ?",
            (wallet_id,),
        )
        if row is None:
            return None
        return WalletRecord(
            wallet_id=row[0],
            wrapped_seed=row[1],
            xpubs=json.loads(row[2]),
            btc_network=row[3],
            created_at=row[4],  # pydantic parses SQLite's ISO text too
        )

    def assign(
        self,
        wallet_id: str,
        chain: Chain,
        account_id: str,
        owner: str | None,
        asset: str,
        derive: Callable[[int], str],
        change: int = 0,
    ) -> AddressAssignment:
        """The account's address: the one it has, or the next unused index's on the
        external (change=0: deposits) or internal (change=1: our change) chain."""

        def work(conn: Conn) -> AddressAssignment:
            existing = self._by(conn, "account_id", account_id)
            if existing is not None:
                if (existing.wallet_id, existing.chain, existing.asset, existing.owner) != (
                    wallet_id,
                    chain,
                    asset,
                    owner,
                ):
                    raise AccountConflict(f"{account_id} has an address for another asset")
                return existing
            # Serialise allocation per wallet: a transaction lock named after it
            # (PostgreSQL), or the write lock already held (SQLite). Not a row lock:
            # `for update` would need UPDATE on key_wallets, which no process that hands
            # out addresses should hold (adapters/ledger/grants.py).
            if not conn.sqlite:
                conn.one(
                    "select pg_advisory_xact_lock(cast(? as integer), hashtext(?))",
                    (_ADDRESS_LOCK, wallet_id),
                )
            row = conn.one(
                "select max(address_index) from deposit_addresses where wallet_id = ? "
                "and chain = ? and change = ?",
                (wallet_id, chain, change),
            )
            index = 0 if row is None or row[0] is None else int(row[0]) + 1
            assignment = AddressAssignment(
                address=derive(index),
                account_id=account_id,
                owner=owner,
                chain=chain,
                asset=asset,
                wallet_id=wallet_id,
                change=change,
                index=index,
            )
            conn.run(
                "insert into deposit_addresses (address, account_id, owner, chain, asset, "
                "wallet_id, change, address_index) values (?, ?, ?, ?, ?, ?, ?, ?)",
                (assignment.address, account_id, owner, chain, asset, wallet_id, change, index),
            )
            return assignment

        return self._db.write(work, retry_on=(_RaceLost,))

    def lookup(self, address: str) -> AddressAssignment | None:
        with self._db.tx() as conn:
            return self._by(conn, "address", address)

    @staticmethod
    def _by(conn: Conn, column: str, value: str) -> AddressAssignment | None:
        row = conn.one(_SELECT_BY[column], (value,))
        if row is None:
            return None
        return AddressAssignment(
            address=row[0],
            account_id=row[1],
            owner=row[2],
            chain=row[3],
            asset=row[4],
            wallet_id=row[5],
            change=int(row[6]),
            index=int(row[7]),
        )
