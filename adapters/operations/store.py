"""Operations and their timelines on SQL, each step committed with the events that
report it (the transactional outbox the relay publishes), so a step and its events
are never one without the other. A step is recorded once: a retried activity
finds it there and changes nothing."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from adapters.ledger.migrate import upgrade
from adapters.ledger.outbox import emit
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import DependencyUnavailable, IdempotencyConflict
from sagas.events import Envelope
from sagas.operations import OperationRecord, Step

_COLUMNS = (
    "id, kind, client_id, asset, chain, amount, destination, request_hash, requested_by, "
    "state, approved, error_code, tx_hash, fee, created_at, updated_at"
)


class _Race(Exception):
    pass


LOCK_WAIT_SECONDS = 5.0
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


@contextmanager
def _local_lock(key: str) -> Iterator[None]:
    with _LOCKS_LOCK:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        yield


class SqlOperationStore:
    def __init__(self, url: str, migrate: bool = True) -> None:
        if migrate:
            upgrade(url)
        self._db = SqlDatabase(url, on_integrity=lambda exc: _Race(str(exc)))

    def __repr__(self) -> str:
        return f"SqlOperationStore({self._db.kind})"

    # --- operations --------------------------------------------------------------
    @contextmanager
    def serialised(self, key: str) -> Iterator[None]:
        """PostgreSQL: a transaction-scoped advisory lock on `key`, held on a connection of
        its own while the caller reads and writes on others. A caller waiting for it holds
        no connection (it tries every 50 ms); DependencyUnavailable after 5 s. SQLite (one
        process): a lock per key in this process."""
        if self._db.sqlite:
            with _local_lock(key):
                yield
            return
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            with self._db.tx() as conn:
                got = conn.one(
                    "select pg_try_advisory_xact_lock(hashtextextended(?, 4248))", (key,)
                )
                if got is not None and got[0]:
                    yield
                    return
            if time.monotonic() > deadline:
                raise DependencyUnavailable(f"{key} is busy: retry")
            time.sleep(0.05)

    def create(
        self,
        record: OperationRecord,
        events: Sequence[tuple[str, Envelope]] = (),
        detail: dict[str, Any] | None = None,
    ) -> tuple[OperationRecord, bool]:
        """Store a new operation (with its first step, `record.state`, and events); if the
        id exists with the same request hash, return the stored one and False.
        IdempotencyConflict if it exists with another request."""

        def work(conn: Conn) -> tuple[OperationRecord, bool]:
            existing = self._get(conn, record.id)
            if existing is not None:
                if existing.request_hash != record.request_hash:
                    raise IdempotencyConflict(f"{record.id} was used for another request")
                return existing, False
            conn.run(
                f"insert into operations ({_COLUMNS}) "
                "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.kind,
                    record.client_id,
                    record.asset,
                    record.chain,
                    str(record.amount),
                    record.destination,
                    record.request_hash,
                    record.requested_by,
                    record.state,
                    record.approved,
                    record.error_code,
                    record.tx_hash,
                    None if record.fee is None else str(record.fee),
                    conn.time(record.created_at),
                    conn.time(record.updated_at),
                ),
            )
            self._insert_step(conn, record.id, record.state, detail or {}, record.created_at)
            for topic, event in events:
                emit(conn, topic, [event])
            return record, True

        return self._db.write(work, retry_on=(_Race,))

    def get(self, operation_id: str) -> OperationRecord | None:
        with self._db.tx() as conn:
            return self._get(conn, operation_id)

    def _get(self, conn: Conn, operation_id: str) -> OperationRecord | None:
        row = conn.one(f"select {_COLUMNS} from operations where id = ?", (operation_id,))
        return None if row is None else _record(row)

    def for_client(
        self, client_id: str, kind: str = "withdrawal", limit: int = 100
    ) -> list[OperationRecord]:
        with self._db.tx() as conn:
            rows = conn.all(
                f"select {_COLUMNS} from operations where client_id = ? and kind = ? "
                "order by created_at desc limit ?",
                (client_id, kind, limit),
            )
        return [_record(r) for r in rows]

    def of_kind(self, kind: str, states: Sequence[str]) -> list[OperationRecord]:
        if not states:
            return []
        marks = ", ".join("?" for _ in states)
        with self._db.tx() as conn:
            rows = conn.all(
                f"select {_COLUMNS} from operations where kind = ? and state in ({marks}) "
                "order by created_at, id",
                (kind, *states),
            )
        return [_record(r) for r in rows]

    def recent_withdrawals(
        self, client_id: str, asset: str, since: datetime, exclude: str
    ) -> list[tuple[datetime, int]]:
        """The client's withdrawals of the asset since `since` that were not refused,
        including those still being decided (two concurrent withdrawals count each other:
        the velocity limit can be too strict for a moment, never too lax)."""
        with self._db.tx() as conn:
            rows = conn.all(
                "select created_at, amount from operations where kind = 'withdrawal' and "
                "client_id = ? and asset = ? and created_at > ? and id <> ? and state not in "
                "('rejected', 'expired', 'failed')",
                (client_id, asset, conn.time(since), exclude),
            )
        out = []
        for at, amount in rows:
            when = Conn.read_time(at)
            assert when is not None
            out.append((when, int(amount)))
        return out

    # --- steps -------------------------------------------------------------------
    def advance(
        self,
        operation_id: str,
        step: str,
        events: Sequence[tuple[str, Envelope]] = (),
        detail: dict[str, Any] | None = None,
        state: str | None = None,
        **fields: Any,
    ) -> bool:
        """Record a step once: with its events, the new state and fields (approved,
        error_code, tx_hash, fee). False (and nothing changed) if it was recorded before."""
        now = datetime.now(UTC)

        def work(conn: Conn) -> bool:
            if not self._insert_step(conn, operation_id, step, detail or {}, now):
                return False
            sets = {**fields, **({"state": state} if state is not None else {})}
            if "fee" in sets and sets["fee"] is not None:
                sets["fee"] = str(sets["fee"])
            assignments = ", ".join(f"{name} = ?" for name in sets)
            conn.run(
                f"update operations set {assignments}{', ' if sets else ''}updated_at = ? "
                "where id = ?",
                (*sets.values(), conn.time(now), operation_id),
            )
            for topic, event in events:
                emit(conn, topic, [event])
            return True

        return self._db.write(work, retry_on=(_Race,))

    @staticmethod
    def _insert_step(
        conn: Conn, operation_id: str, step: str, detail: dict[str, Any], at: datetime
    ) -> bool:
        row = conn.one(
            "insert into operation_steps (operation_id, step, detail, at) values (?, ?, ?, ?) "
            "on conflict do nothing returning step",
            (operation_id, step, json.dumps(detail, sort_keys=True), conn.time(at)),
        )
        return row is not None

    def timeline(self, operation_id: str) -> list[Step]:
        with self._db.tx() as conn:
            rows = conn.all(
                "select step, detail, at from operation_steps where operation_id = ? "
                "order by at, step",
                (operation_id,),
            )
        return [Step(step=r[0], detail=json.loads(r[1]), at=_time(r[2])) for r in rows]

    # --- clients -----------------------------------------------------------------
    def create_client(self, client_id: str, name: str, created_by: str) -> tuple[str, bool]:
        def work(conn: Conn) -> tuple[str, bool]:
            row = conn.one("select name from clients where id = ?", (client_id,))
            if row is not None:
                if row[0] != name:
                    raise IdempotencyConflict(f"client {client_id} exists with another name")
                return row[0], False
            conn.run(
                "insert into clients (id, name, created_by, created_at) values (?, ?, ?, ?)",
                (client_id, name, created_by, conn.time(datetime.now(UTC))),
            )
            return name, True

        return self._db.write(work, retry_on=(_Race,))

    def client(self, client_id: str) -> str | None:
        with self._db.tx() as conn:
            row = conn.one("select name from clients where id = ?", (client_id,))
        return None if row is None else str(row[0])


def _record(row: Sequence[Any]) -> OperationRecord:
    return OperationRecord(
        id=row[0],
        kind=row[1],
        client_id=row[2],
        asset=row[3],
        chain=row[4],
        amount=int(row[5]),
        destination=row[6],
        request_hash=row[7],
        requested_by=row[8],
        state=row[9],
        approved=bool(row[10]),
        error_code=row[11],
        tx_hash=row[12],
        fee=None if row[13] is None else int(row[13]),
        created_at=_time(row[14]),
        updated_at=_time(row[15]),
    )


def _time(value: Any) -> datetime:
    when = Conn.read_time(value)
    assert when is not None
    return when


class SqlIdempotencyStore:
    """The API's remembered answers, by scope (caller, path and Idempotency-Key)."""

    def __init__(self, url: str) -> None:
        self._db = SqlDatabase(url, on_integrity=lambda exc: _Race(str(exc)))

    def __repr__(self) -> str:
        return "SqlIdempotencyStore()"

    def get(self, scope: str) -> tuple[str, int, str] | None:
        """(request hash, status, body) of the first answer."""
        with self._db.tx() as conn:
            row = conn.one(
                "select request_hash, status, body from api_idempotency where scope = ?",
                (scope,),
            )
        return None if row is None else (row[0], int(row[1]), row[2])

    def put(self, scope: str, digest: str, status: int, body: str) -> None:
        def work(conn: Conn) -> None:
            conn.run(
                "insert into api_idempotency (scope, request_hash, status, body, created_at) "
                "values (?, ?, ?, ?, ?) on conflict do nothing",
                (scope, digest, status, body, conn.time(datetime.now(UTC))),
            )

        self._db.write(work)
