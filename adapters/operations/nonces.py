"""sagas.intents.NonceStore on SQL: a client request's nonce is accepted once."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.sqldb import Conn, SqlDatabase


class SqlNonceStore:
    def __init__(self, url: str) -> None:
        self._db = SqlDatabase(url)

    def __repr__(self) -> str:
        return f"SqlNonceStore({self._db.kind})"

    def claim(self, key_id: str, nonce: str, keep_until: datetime) -> bool:
        def work(conn: Conn) -> bool:
            # Entries past their keep_until are refused by the clock check anyway.
            conn.run(
                "delete from request_nonces where key_id = ? and keep_until < ?",
                (key_id, conn.time(datetime.now(UTC))),
            )
            row = conn.one(
                "insert into request_nonces (key_id, nonce, keep_until) values (?, ?, ?) "
                "on conflict do nothing returning nonce",
                (key_id, nonce, conn.time(keep_until)),
            )
            return row is not None

        return self._db.write(work)
