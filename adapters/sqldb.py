"""One relational database, SQLite or PostgreSQL by URL, for the platform's stores.

Hides the two drivers' differences (placeholders, big integers, timestamps), keeps
one connection per thread (connecting to PostgreSQL costs more than a transfer),
and runs each unit of work in one transaction. SQLite writers take the database's
write lock up front (BEGIN IMMEDIATE), so concurrent writers queue instead of
failing half-way.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import psycopg.errors

from adapters.ledger import sqlite_functions

T = TypeVar("T")


def _passthrough(exc: Exception) -> Exception:
    return exc


class Conn:
    """A connection inside a transaction."""

    def __init__(
        self, raw: Any, sqlite: bool, on_integrity: Callable[[Exception], Exception]
    ) -> None:
        self.raw = raw
        self.sqlite = sqlite
        self._on_integrity = on_integrity

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", "%s")

    def run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.raw.execute(self._sql(sql), params)
        except (sqlite3.IntegrityError, psycopg.errors.IntegrityError) as exc:
            raise self._on_integrity(exc) from exc

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.run(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self.run(sql, params).fetchall())

    def amount(self, value: int | None) -> Any:
        """An integer amount as this database stores it (SQLite: exact decimal text)."""
        if value is None:
            return None
        return str(value) if self.sqlite else value

    def time(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat() if self.sqlite else value

    @staticmethod
    def read_time(value: Any) -> datetime | None:
        if value is None:
            return None
        return datetime.fromisoformat(value) if isinstance(value, str) else value.astimezone(UTC)


class SqlDatabase:
    def __init__(
        self, url: str, on_integrity: Callable[[Exception], Exception] = _passthrough
    ) -> None:
        self.sqlite = url.startswith("sqlite:///")
        if not self.sqlite and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]}")
        self._target = url.removeprefix("sqlite:///") if self.sqlite else url
        self._on_integrity = on_integrity
        self._local = threading.local()

    @property
    def kind(self) -> str:
        return "sqlite" if self.sqlite else "postgresql"

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.sqlite:
                conn = sqlite3.connect(
                    self._target, timeout=60, isolation_level=None, check_same_thread=False
                )
                sqlite_functions.register(conn)
                conn.execute("pragma foreign_keys = on")
                conn.execute("pragma busy_timeout = 60000")
            else:
                conn = psycopg.connect(self._target)
            self._local.conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @contextmanager
    def tx(self, write: bool = False) -> Iterator[Conn]:
        """One transaction; commits if the block returns, rolls back if it raises."""
        raw = self._connection()
        try:
            if self.sqlite:
                raw.execute("begin immediate" if write else "begin")
                try:
                    yield Conn(raw, True, self._on_integrity)
                except BaseException:
                    raw.execute("rollback")
                    raise
                raw.execute("commit")
            else:
                with raw.transaction():
                    yield Conn(raw, False, self._on_integrity)
        except (sqlite3.OperationalError, psycopg.OperationalError):
            self._drop_connection()  # a broken connection is not reused
            raise

    def write(self, work: Callable[[Conn], T], retry_on: tuple[type[Exception], ...] = ()) -> T:
        """Run `work` in a write transaction; once more if it raised one of `retry_on`
        (a concurrent writer won a race the second attempt will see)."""
        # PostgreSQL may also abort a transaction to break a deadlock or a serialisation
        # conflict; the work is all-or-nothing, so running it again is safe.
        retryable: tuple[type[Exception], ...] = (*retry_on, psycopg.errors.TransactionRollback)
        for attempt in (1, 2):
            try:
                with self.tx(write=True) as conn:
                    return work(conn)
            except retryable:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")
