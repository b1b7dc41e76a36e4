"""DepositObservations on the chain watcher's table."""

from __future__ import annotations

from adapters.sqldb import SqlDatabase
from sagas.deposit import DepositState


class SqlDepositObservations:
    def __init__(self, url: str) -> None:
        self._db = SqlDatabase(url)

    def __repr__(self) -> str:
        return "SqlDepositObservations()"

    def state(self, chain: str, tx_hash: str, position: str) -> DepositState:
        with self._db.tx() as conn:
            rows = conn.all(
                "select state from chain_observations where chain = ? and tx_hash = ? "
                "and position = ?",
                (chain, tx_hash, position),
            )
        states = {r[0] for r in rows}
        if not states:
            return "unknown"
        if "final" in states:
            return "final"
        if "seen" in states:
            return "seen"
        return "reorged"

    def final(self, chain: str, tx_hash: str, position: str) -> tuple[str, str, str, int] | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select address, account_id, asset, amount from chain_observations "
                "where chain = ? and tx_hash = ? and position = ? and state = 'final'",
                (chain, tx_hash, position),
            )
        return None if row is None else (row[0], row[1], row[2], int(row[3]))
