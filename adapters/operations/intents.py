"""Intents and approvals on SQL (see sagas.ports.IntentStore): storage, not trust."""

from __future__ import annotations

from datetime import UTC, datetime

from adapters.ledger.migrate import upgrade
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import IdempotencyConflict
from sagas.intents import Approval, Intent


class _Race(Exception):
    pass


class SqlIntentStore:
    def __init__(self, url: str, migrate: bool = True) -> None:
        if migrate:
            upgrade(url)
        self._db = SqlDatabase(url, on_integrity=lambda exc: _Race(str(exc)))

    def __repr__(self) -> str:
        return f"SqlIntentStore({self._db.kind})"

    def put_intent(self, intent: Intent, required: int) -> bool:
        digest = intent.hash()

        def work(conn: Conn) -> bool:
            row = conn.one(
                "select intent_hash from intents where operation_id = ? and kind = ?",
                (intent.operation_id, intent.kind),
            )
            if row is not None:
                if row[0] != digest:
                    raise IdempotencyConflict(
                        f"{intent.operation_id} has another {intent.kind} intent"
                    )
                return False
            conn.run(
                "insert into intents (intent_hash, operation_id, kind, intent, required, "
                "created_at) values (?, ?, ?, ?, ?, ?)",
                (
                    digest,
                    intent.operation_id,
                    intent.kind,
                    intent.canonical().decode(),
                    required,
                    conn.time(datetime.now(UTC)),
                ),
            )
            return True

        return self._db.write(work, retry_on=(_Race,))

    def intent(self, operation_id: str, kind: str = "withdrawal") -> tuple[Intent, int] | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select intent, required from intents where operation_id = ? and kind = ?",
                (operation_id, kind),
            )
        return None if row is None else (Intent.from_json(row[0]), int(row[1]))

    def add_approval(self, approval: Approval, operator: str) -> bool:
        def work(conn: Conn) -> bool:
            row = conn.one(
                "insert into intent_approvals (intent_hash, key_id, signature, operator, "
                "approval, at) values (?, ?, ?, ?, ?, ?) on conflict do nothing returning key_id",
                (
                    approval.intent_hash,
                    approval.key_id,
                    approval.signature,
                    operator,
                    approval.model_dump_json(),
                    conn.time(datetime.now(UTC)),
                ),
            )
            return row is not None

        return self._db.write(work, retry_on=(_Race,))

    def approvals(self, intent_hash: str) -> list[Approval]:
        with self._db.tx() as conn:
            rows = conn.all(
                "select approval from intent_approvals where intent_hash = ? order by at, key_id",
                (intent_hash,),
            )
        return [Approval.model_validate_json(r[0]) for r in rows]
