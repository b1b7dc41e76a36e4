"""PolicyStore on SQL: one row per version. Changes to one client's policy for one asset
are serialised (an advisory lock on PostgreSQL), and the primary key would refuse two
rows with the same version anyway."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.ledger.migrate import upgrade
from adapters.sqldb import Conn, SqlDatabase
from sagas.policy import PolicyRules, StoredPolicy


class _Race(Exception):
    pass


class SqlPolicyStore:
    def __init__(self, url: str, migrate: bool = True) -> None:
        if migrate:
            upgrade(url)
        self._db = SqlDatabase(url, on_integrity=lambda exc: _Race(str(exc)))

    def __repr__(self) -> str:
        return f"SqlPolicyStore({self._db.kind})"

    def put(self, rules: PolicyRules, created_by: str) -> StoredPolicy:
        def work(conn: Conn) -> StoredPolicy:
            if not conn.sqlite:  # SQLite writers are serialised already (BEGIN IMMEDIATE)
                conn.one(
                    "select pg_advisory_xact_lock(hashtextextended(?, 0))",
                    (f"policy/{rules.client_id}/{rules.asset}",),
                )
            row = conn.one(
                "select max(version) from policy_versions where client_id = ? and asset = ?",
                (rules.client_id, rules.asset),
            )
            stored = StoredPolicy(
                rules=rules,
                version=1 if row[0] is None else int(row[0]) + 1,
                created_by=created_by,
                created_at=datetime.now(UTC),
            )
            conn.run(
                "insert into policy_versions (client_id, asset, version, rules, "
                "created_by, created_at) values (?, ?, ?, ?, ?, ?)",
                (
                    rules.client_id,
                    rules.asset,
                    stored.version,
                    rules.model_dump_json(),
                    created_by,
                    conn.time(stored.created_at),
                ),
            )
            return stored

        return self._db.write(work, retry_on=(_Race,))

    def _one(self, sql: str, params: tuple[object, ...]) -> StoredPolicy | None:
        with self._db.tx() as conn:
            row = conn.one(sql, params)
        if row is None:
            return None
        return StoredPolicy(
            rules=PolicyRules.model_validate_json(row[0]),
            version=int(row[1]),
            created_by=row[2],
            created_at=row[3],
        )

    def current(self, client_id: str, asset: str) -> StoredPolicy | None:
        return self._one(
            "select rules, version, created_by, created_at from policy_versions "
            "where client_id = ? and asset = ? order by version desc limit 1",
            (client_id, asset),
        )

    def version(self, client_id: str, asset: str, version: int) -> StoredPolicy | None:
        return self._one(
            "select rules, version, created_by, created_at from policy_versions "
            "where client_id = ? and asset = ? and version = ?",
            (client_id, asset, version),
        )
