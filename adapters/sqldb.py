"""One relational database, SQLite or PostgreSQL by URL, for the platform's stores.

Hides the two drivers' differences (placeholders, big integers, timestamps), keeps
SQLite connections per thread, PostgreSQL connections in one bounded pool per
database per process shared by every store (connecting costs more than a transfer,
and a server has a connection limit), and runs each unit of work in one
transaction. SQLite writers take the database's
write lock up front (BEGIN IMMEDIATE), so concurrent writers queue instead of
failing half-way.
"""

from __future__ import annotations

import contextlib
import json
import os
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

# The database did not answer (connection refused or lost): callers outside the
# adapters catch this name, not the driver's.
DatabaseUnavailable = psycopg.OperationalError


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

    def values(
        self, head: str, rows: Sequence[Sequence[Any]], tail: str = "", chunk: int = 500
    ) -> list[Any]:
        """`head VALUES (...), (...) tail` over `rows`, `chunk` rows per statement (one
        round trip each, not one per row); the rows a RETURNING tail gives, in order."""
        out: list[Any] = []
        if not rows:
            return out
        width = len(rows[0])
        marks = "(" + ", ".join("?" for _ in range(width)) + ")"
        for i in range(0, len(rows), chunk):
            part = rows[i : i + chunk]
            sql = f"{head} values {', '.join(marks for _ in part)} {tail}"
            cursor = self.run(sql, [v for row in part for v in row])
            if "returning" in tail:
                out += cursor.fetchall()
        return out

    def rows(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
        """PostgreSQL: `rows` as a set of records `v` with these typed columns
        ("name type"), from one JSON parameter, and that parameter: one statement of a
        fixed text however many rows, which the driver neither parses nor escapes row by
        row. Integers travel as JSON numbers (PostgreSQL reads their text: exact at any
        size), times as ISO 8601."""
        names = [c.split(" ", 1)[0] for c in columns]
        body = json.dumps(
            [dict(zip(names, row, strict=True)) for row in rows],
            separators=(",", ":"),
            default=_json_time,
        )
        return f"json_to_recordset(?::json) as v ({', '.join(columns)})", [body]

    def ordered_rows(
        self, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> tuple[str, list[Any]]:
        """PostgreSQL: a `select` of `rows` (as `rows` gives them) in their order, for an
        `insert ... select` whose identity column must number them in that order."""
        names = [c.split(" ", 1)[0] for c in columns]
        _, params = self.rows(columns, rows)
        listed = ", ".join(names)
        # The columns are the callers' constants; every value is in the one parameter.
        sql = (
            f"select {listed} from rows from (json_to_recordset(?::json) as "  # noqa: S608
            f"({', '.join(columns)})) with ordinality as v ({listed}, ord) order by v.ord"
        )
        return sql, params

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A unit inside the transaction: if the block raises, its writes are undone and
        the row locks it took are freed (the transaction goes on), and the error raised."""
        if not self.sqlite:
            with self.raw.transaction():
                yield
            return
        self.raw.execute("savepoint unit")
        try:
            yield
        except BaseException:
            self.raw.execute("rollback to savepoint unit")
            self.raw.execute("release savepoint unit")
            raise
        self.raw.execute("release savepoint unit")

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


def _json_time(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"no JSON form for {type(value).__name__}")


class _Pool:
    """A bounded pool of PostgreSQL connections, shared by every SqlDatabase of one URL
    in the process. A transaction holds one connection for its duration; a caller
    that cannot get one in `timeout` seconds gets DependencyUnavailable (transient)."""

    def __init__(self, dsn: str, size: int, timeout: float) -> None:
        self._dsn = dsn
        self._idle: list[Any] = []
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._timeout = timeout

    def get(self) -> Any:
        if not self._slots.acquire(timeout=self._timeout):
            from sagas.errors import DependencyUnavailable

            raise DependencyUnavailable("no database connection free in time")
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not conn.closed:
            return conn
        try:
            return psycopg.connect(self._dsn, connect_timeout=5)
        except BaseException:
            self._slots.release()
            raise

    def warm(self, count: int) -> int:
        """Open up to `count` idle connections now, so a burst of requests right after
        start does not pay for every connect at once; the number opened."""
        opened = []
        for _ in range(count):
            if not self._slots.acquire(blocking=False):
                break
            try:
                opened.append(psycopg.connect(self._dsn, connect_timeout=5))
            except Exception:
                self._slots.release()
                break
        for conn in opened:
            self.put(conn)
        return len(opened)

    def put(self, conn: Any, broken: bool = False) -> None:
        if (
            broken
            or conn.closed
            or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
        ):
            with contextlib.suppress(Exception):
                conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        self._slots.release()


_POOLS: dict[str, _Pool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(dsn: str) -> _Pool:
    with _POOLS_LOCK:
        if dsn not in _POOLS:
            size = int(os.environ.get("CUSTODY_DB_POOL_SIZE", "24"))
            # Below the sagas' activity timeouts, so a starved activity fails and retries
            # rather than a second attempt starting beside it.
            timeout = float(os.environ.get("CUSTODY_DB_POOL_TIMEOUT", "8"))
            _POOLS[dsn] = _Pool(dsn, size, timeout)
        return _POOLS[dsn]


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

    def warm(self, count: int) -> int:
        """PostgreSQL: open up to `count` pooled connections ahead of use (0 on SQLite)."""
        return 0 if self.sqlite else _pool(self._target).warm(count)

    @property
    def kind(self) -> str:
        return "sqlite" if self.sqlite else "postgresql"

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._target, timeout=60, isolation_level=None, check_same_thread=False
            )
            sqlite_functions.register(conn)
            conn.execute("pragma foreign_keys = on")
            conn.execute("pragma busy_timeout = 60000")
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
        if not self.sqlite:
            pool = _pool(self._target)
            pg = pool.get()
            broken = False
            try:
                with pg.transaction():
                    yield Conn(pg, False, self._on_integrity)
            except psycopg.OperationalError:
                broken = pg.broken  # a lost connection is not reused; a deadlock victim is
                raise
            finally:
                pool.put(pg, broken)
            return
        raw = self._connection()
        try:
            raw.execute("begin immediate" if write else "begin")
            try:
                yield Conn(raw, True, self._on_integrity)
            except BaseException:
                raw.execute("rollback")
                raise
            raw.execute("commit")
        except sqlite3.OperationalError:
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
