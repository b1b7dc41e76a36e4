"""What both simulators share: a SQLite database behind one lock, idempotent POSTs by
Idempotency-Key, fault switches, and the uvicorn entry point."""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class Refused(Exception):
    """A business refusal: answered with its status and code, and remembered under the
    request's idempotency key like a success."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status, self.code, self.detail = status, code, detail

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.detail}


class FaultSwitches(BaseModel):
    """Set by tests through POST /admin/faults. Each *_next counts down per matching call."""

    latency_ms: int = Field(default=0, ge=0, le=60_000)
    fail_next: int = Field(default=0, ge=0, description="answer 503, do nothing")
    timeout_next: int = Field(default=0, ge=0, description="do it, answer after timeout_seconds")
    timeout_seconds: float = Field(default=12.0, ge=0, le=120)
    lose_next: int = Field(default=0, ge=0, description="do it, then answer 502 (response lost)")
    reject_next: int = Field(default=0, ge=0, description="refuse it (the simulator's reject)")
    statement_lag_seconds: float = Field(
        default=0, ge=0, le=3600, description="bank: statements hide entries younger than this"
    )
    fill_skew_bps: int = Field(
        default=0,
        ge=-5000,
        le=5000,
        description="liquidity: fill orders this many bps off their quote's notional and price",
    )
    fill_skew_price_only: bool = Field(
        default=False, description="liquidity: skew only the fill's price, not its notional"
    )
    operations: list[str] = Field(default_factory=list, description="empty: every operation")


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.switches = FaultSwitches()

    def set(self, switches: FaultSwitches) -> None:
        with self._lock:
            self.switches = switches

    def _take(self, operation: str, name: str) -> bool:
        with self._lock:
            s = self.switches
            if s.operations and operation not in s.operations:
                return False
            left = getattr(s, name)
            if left <= 0:
                return False
            self.switches = s.model_copy(update={name: left - 1})
            return True

    def applies(self, operation: str) -> bool:
        s = self.switches
        return not s.operations or operation in s.operations

    def before(self, operation: str) -> None:
        """Latency, injected 503s and rejects: before anything is done."""
        s = self.switches
        if s.latency_ms and (not s.operations or operation in s.operations):
            time.sleep(s.latency_ms / 1000)
        if self._take(operation, "fail_next"):
            raise Refused(503, "UNAVAILABLE", f"injected failure of {operation}")
        if self._take(operation, "reject_next"):
            raise Refused(422, "REJECTED", f"injected reject of {operation}")

    def after(self, operation: str) -> None:
        """Timeouts and lost responses: after the operation was done and committed."""
        if self._take(operation, "timeout_next"):
            time.sleep(self.switches.timeout_seconds)
        if self._take(operation, "lose_next"):
            raise Refused(502, "RESPONSE_LOST", f"injected lost response of {operation}")


class Database:
    def __init__(self, path: Path, schema: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("pragma journal_mode = wal")
        self._conn.execute("pragma synchronous = full")
        self._lock = threading.Lock()
        self._conn.executescript(schema)
        self._conn.execute(
            "create table if not exists idempotency (key text primary key, request_hash text "
            "not null, status integer not null, body text not null, operation text)"
        )
        columns = {row[1] for row in self._conn.execute("pragma table_info(idempotency)")}
        if "operation" not in columns:  # a database from before the column
            self._conn.execute("alter table idempotency add column operation text")

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("begin immediate")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("rollback")
                raise
            self._conn.execute("commit")

    def idempotent(
        self, key: str | None, operation: str, body: dict[str, Any], work: Callable[..., Any]
    ) -> tuple[int, dict[str, Any]]:
        """Run `work(conn)` once per key: a repeat with the same body gets the first answer
        (success or refusal); another body under the key is refused (409)."""
        if not key:
            raise Refused(400, "IDEMPOTENCY_KEY_MISSING", "POSTs need an Idempotency-Key")
        digest = hashlib.sha256((operation + json.dumps(body, sort_keys=True)).encode()).hexdigest()
        with self.tx() as conn:
            row = conn.execute(
                "select request_hash, status, body from idempotency where key = ?", (key,)
            ).fetchone()
            if row is not None:
                if row[0] != digest:
                    raise Refused(
                        409, "IDEMPOTENCY_CONFLICT", f"{key} was used for another request"
                    )
                return int(row[1]), json.loads(row[2])
            conn.execute("savepoint work")
            try:
                status, answer = 200, work(conn)
            except Refused as exc:
                if exc.status >= 500:
                    raise
                conn.execute("rollback to work")
                status, answer = exc.status, exc.body()
            conn.execute("release work")
            conn.execute(
                "insert into idempotency (key, request_hash, status, body, operation) "
                "values (?, ?, ?, ?, ?)",
                (key, digest, status, json.dumps(answer), operation),
            )
            return status, answer

    def first_answer(self, key: str) -> tuple[str, int, dict[str, Any]] | None:
        """What was answered under a key, without doing anything: (operation, status,
        body), or None if no request was ever taken under it."""
        with self.tx() as conn:
            row = conn.execute(
                "select operation, status, body from idempotency where key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return str(row[0] or ""), int(row[1]), json.loads(row[2])


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(Refused)
    async def refused(_request: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            {"code": "INVALID_REQUEST", "detail": str(exc.errors()[:3])}, status_code=400
        )


def answer(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def serve(name: str, build: Callable[[Path], FastAPI]) -> None:
    parser = argparse.ArgumentParser(description=f"the {name} simulator")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--db", type=Path, required=True, help="its own SQLite database")
    args = parser.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    uvicorn.run(build(args.db), host=args.host, port=args.port, log_level="warning")
