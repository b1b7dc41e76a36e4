"""A reference core-banking system: IBAN accounts, holds with expiry, captures (full or
partial), releases, credit transfers and statements, over HTTP.

Run: python -m infra.simulators.bank --port 18300 --db <dir>/bank.sqlite3

Fields follow ISO 20022 where it has a name for them (end-to-end id, debtor/creditor
IBAN and BIC, unstructured remittance information, CRDT/DBIT) and refusals carry ISO
reason codes where one exists (AM04 insufficient funds, AC01 unknown account, AM03
currency). Every POST is idempotent by its Idempotency-Key, and GET
/v1/payments/by-key/{key} tells what became of a payment instruction (a payment, a
capture, a cash-in) under its key without doing it (a pacs.002-like status: ACSC with
the payment, RJCT with the remembered refusal's reason, 404 PAYMENT_UNKNOWN if the bank
never took one). POST /admin/faults injects latency, 503s, timeouts (the operation is
done but the answer comes late), lost answers and statements that lag behind the books
(`statement_lag_seconds`: entries younger than that are not shown yet).
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from infra.simulators.common import (
    Database,
    Faults,
    FaultSwitches,
    Refused,
    answer,
    install_handlers,
    serve,
)
from sagas.banking import bic_valid, iban_valid

SCHEMA = """
create table if not exists accounts (
    iban text primary key, bic text not null, name text not null, currency text not null,
    booked integer not null default 0, created_at text not null);
create table if not exists holds (
    id text primary key, iban text not null references accounts (iban), amount integer not null,
    currency text not null, status text not null, captured integer not null default 0,
    expires_at text not null, end_to_end_id text not null, remittance_info text not null);
create table if not exists entries (
    id integer primary key autoincrement, iban text not null, amount integer not null,
    currency text not null, indicator text not null, end_to_end_id text not null,
    counterparty_iban text, remittance_info text not null, booked_at text not null);
create table if not exists payments (
    id text primary key, end_to_end_id text not null, debtor_iban text not null,
    creditor_iban text not null, amount integer not null, currency text not null,
    remittance_info text not null, booked_at text not null);
"""

Key = Header(default=None, alias="Idempotency-Key")


class OpenAccount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bic: str
    name: str = Field(min_length=1, max_length=140)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class CashIn(BaseModel):
    """Money arriving from outside the simulated bank (a test's way to fund an account)."""

    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0)
    end_to_end_id: str = Field(min_length=1, max_length=35)
    remittance_info: str = Field(default="", max_length=140)


class HoldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    iban: str
    amount: StrictInt = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    expires_in_seconds: StrictInt = Field(gt=0, le=30 * 86400)
    end_to_end_id: str = Field(min_length=1, max_length=35)
    remittance_info: str = Field(default="", max_length=140)


class CaptureBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: StrictInt = Field(gt=0, description="at most the hold; the rest is released")
    creditor_iban: str
    end_to_end_id: str = Field(min_length=1, max_length=35)
    remittance_info: str = Field(default="", max_length=140)


class PaymentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    debtor_iban: str
    creditor_iban: str
    amount: StrictInt = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    end_to_end_id: str = Field(min_length=1, max_length=35)
    remittance_info: str = Field(default="", max_length=140)


# The idempotent operations that pay (the query by key answers for these only).
PAYING = ("payment", "capture ", "cash-in ")


def _now() -> datetime:
    return datetime.now(UTC)


class Bank:
    def __init__(self, path: Path) -> None:
        self.db = Database(path, SCHEMA)
        self.faults = Faults()

    # --- helpers (inside a transaction) ------------------------------------------------
    def expire(self, conn: Any) -> None:
        conn.execute(
            "update holds set status = 'expired' where status = 'active' and expires_at <= ?",
            (_now().isoformat(),),
        )

    def account(self, conn: Any, iban: str) -> tuple[str, str, int]:
        if not iban_valid(iban):
            raise Refused(422, "AC01", f"{iban} is not a valid IBAN")
        row = conn.execute(
            "select currency, bic, booked from accounts where iban = ?", (iban,)
        ).fetchone()
        if row is None:
            raise Refused(422, "AC01", f"no account {iban} at this bank")
        return str(row[0]), str(row[1]), int(row[2])

    def held(self, conn: Any, iban: str) -> int:
        row = conn.execute(
            "select coalesce(sum(amount - captured), 0) from holds "
            "where iban = ? and status = 'active'",
            (iban,),
        ).fetchone()
        return int(row[0])

    def balance(self, conn: Any, iban: str) -> dict[str, Any]:
        self.expire(conn)
        currency, bic, booked = self.account(conn, iban)
        held = self.held(conn, iban)
        return {
            "iban": iban,
            "bic": bic,
            "currency": currency,
            "booked": booked,
            "held": held,
            "available": booked - held,
        }

    def book(
        self,
        conn: Any,
        debtor: str | None,
        creditor: str,
        amount: int,
        currency: str,
        e2e: str,
        info: str,
    ) -> dict[str, Any]:
        at = _now().isoformat()
        if debtor is not None:
            conn.execute("update accounts set booked = booked - ? where iban = ?", (amount, debtor))
            conn.execute(
                "insert into entries (iban, amount, currency, indicator, end_to_end_id, "
                "counterparty_iban, remittance_info, booked_at) "
                "values (?, ?, ?, 'DBIT', ?, ?, ?, ?)",
                (debtor, amount, currency, e2e, creditor, info, at),
            )
        conn.execute("update accounts set booked = booked + ? where iban = ?", (amount, creditor))
        conn.execute(
            "insert into entries (iban, amount, currency, indicator, end_to_end_id, "
            "counterparty_iban, remittance_info, booked_at) values (?, ?, ?, 'CRDT', ?, ?, ?, ?)",
            (creditor, amount, currency, e2e, debtor, info, at),
        )
        payment_id = f"pmt-{uuid.uuid4().hex[:16]}"
        conn.execute(
            "insert into payments values (?, ?, ?, ?, ?, ?, ?, ?)",
            (payment_id, e2e, debtor or "", creditor, amount, currency, info, at),
        )
        return {
            "payment_id": payment_id,
            "end_to_end_id": e2e,
            "debtor_iban": debtor or "",
            "creditor_iban": creditor,
            "amount": amount,
            "currency": currency,
            "remittance_info": info,
            "status": "ACSC",
        }

    def hold_view(self, conn: Any, hold_id: str) -> dict[str, Any]:
        self.expire(conn)
        row = conn.execute(
            "select id, iban, amount, currency, status, captured, expires_at, end_to_end_id "
            "from holds where id = ?",
            (hold_id,),
        ).fetchone()
        if row is None:
            raise Refused(404, "HOLD_NOT_FOUND", f"no hold {hold_id}")
        keys = ("hold_id", "iban", "amount", "currency", "status", "captured", "expires_at")
        return {**dict(zip(keys, row[:7], strict=True)), "end_to_end_id": row[7]}

    def sweep(self, stop: threading.Event) -> None:
        """Expired holds give their money back even if nobody asks."""
        while not stop.wait(1.0):
            try:
                with self.db.tx() as conn:
                    self.expire(conn)
            except Exception:  # noqa: S112 - a missed sweep is retried a second later
                continue


def build(path: Path) -> FastAPI:
    bank = Bank(path)
    app = FastAPI(title="core-banking simulator", version="1")
    install_handlers(app)
    stop = threading.Event()
    threading.Thread(target=bank.sweep, args=(stop,), daemon=True).start()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/admin/faults")
    def set_faults(switches: FaultSwitches) -> FaultSwitches:
        bank.faults.set(switches)
        return switches

    @app.put("/v1/accounts/{iban}")
    def open_account(iban: str, body: OpenAccount) -> JSONResponse:
        if not iban_valid(iban):
            raise Refused(422, "AC01", f"{iban} is not a valid IBAN")
        if not bic_valid(body.bic):
            raise Refused(422, "RC01", f"{body.bic} is not a valid BIC")
        with bank.db.tx() as conn:
            row = conn.execute(
                "select bic, name, currency from accounts where iban = ?", (iban,)
            ).fetchone()
            if row is not None:
                if tuple(row) != (body.bic, body.name, body.currency):
                    raise Refused(409, "ACCOUNT_CONFLICT", f"{iban} exists with other details")
                return answer(200, bank.balance(conn, iban))
            conn.execute(
                "insert into accounts (iban, bic, name, currency, created_at) "
                "values (?, ?, ?, ?, ?)",
                (iban, body.bic, body.name, body.currency, _now().isoformat()),
            )
            return answer(201, bank.balance(conn, iban))

    @app.get("/v1/accounts/{iban}")
    def account(iban: str) -> dict[str, Any]:
        bank.faults.before("balance")
        with bank.db.tx() as conn:
            return bank.balance(conn, iban)

    @app.post("/v1/accounts/{iban}/cash-in")
    def cash_in(iban: str, body: CashIn, key: str | None = Key) -> JSONResponse:
        def work(conn: Any) -> dict[str, Any]:
            currency, _bic, _booked = bank.account(conn, iban)
            return bank.book(
                conn, None, iban, body.amount, currency, body.end_to_end_id, body.remittance_info
            )

        return answer(*bank.db.idempotent(key, f"cash-in {iban}", body.model_dump(), work))

    @app.get("/v1/accounts/{iban}/statement")
    def statement(
        iban: str, after: int = 0, limit: int = 500, end_to_end_id: str | None = None
    ) -> dict[str, Any]:
        bank.faults.before("statement")
        # A statement that lags behind the books (a batch job at a real bank).
        lag = timedelta(seconds=bank.faults.switches.statement_lag_seconds)
        with bank.db.tx() as conn:
            bank.account(conn, iban)
            rows = conn.execute(
                "select id, booked_at, amount, currency, indicator, end_to_end_id, "
                "counterparty_iban, remittance_info from entries where iban = ? and id > ? "
                "and (? is null or end_to_end_id = ?) and booked_at <= ? order by id limit ?",
                (
                    iban,
                    after,
                    end_to_end_id,
                    end_to_end_id,
                    (_now() - lag).isoformat(),
                    min(limit, 5000),
                ),
            ).fetchall()
        keys = (
            "entry_id",
            "booked_at",
            "amount",
            "currency",
            "indicator",
            "end_to_end_id",
            "counterparty_iban",
            "remittance_info",
        )
        return {"iban": iban, "entries": [dict(zip(keys, r, strict=True)) for r in rows]}

    @app.post("/v1/holds")
    def hold(body: HoldBody, key: str | None = Key) -> JSONResponse:
        bank.faults.before("hold")

        def work(conn: Any) -> dict[str, Any]:
            view = bank.balance(conn, body.iban)
            if view["currency"] != body.currency:
                raise Refused(422, "AM03", f"{body.iban} holds {view['currency']}")
            if view["available"] < body.amount:
                raise Refused(422, "AM04", f"{body.iban} has {view['available']} available")
            hold_id = f"hold-{uuid.uuid4().hex[:16]}"
            expires = _now() + timedelta(seconds=body.expires_in_seconds)
            conn.execute(
                "insert into holds (id, iban, amount, currency, status, expires_at, "
                "end_to_end_id, remittance_info) values (?, ?, ?, ?, 'active', ?, ?, ?)",
                (
                    hold_id,
                    body.iban,
                    body.amount,
                    body.currency,
                    expires.isoformat(),
                    body.end_to_end_id,
                    body.remittance_info,
                ),
            )
            return bank.hold_view(conn, hold_id)

        result = bank.db.idempotent(key, "hold", body.model_dump(), work)
        bank.faults.after("hold")
        return answer(*result)

    @app.get("/v1/holds/{hold_id}")
    def get_hold(hold_id: str) -> dict[str, Any]:
        with bank.db.tx() as conn:
            return bank.hold_view(conn, hold_id)

    @app.post("/v1/holds/{hold_id}/capture")
    def capture(hold_id: str, body: CaptureBody, key: str | None = Key) -> JSONResponse:
        bank.faults.before("capture")

        def work(conn: Any) -> dict[str, Any]:
            held = bank.hold_view(conn, hold_id)
            if held["status"] == "expired":
                raise Refused(422, "HOLD_EXPIRED", f"{hold_id} expired at {held['expires_at']}")
            if held["status"] != "active":
                raise Refused(422, "HOLD_NOT_ACTIVE", f"{hold_id} is {held['status']}")
            if body.amount > held["amount"]:
                raise Refused(422, "AMOUNT_EXCEEDS_HOLD", f"{hold_id} holds {held['amount']}")
            currency, _bic, _b = bank.account(conn, body.creditor_iban)
            if currency != held["currency"]:
                raise Refused(422, "AM03", f"{body.creditor_iban} holds {currency}")
            conn.execute(
                "update holds set status = 'captured', captured = ? where id = ?",
                (body.amount, hold_id),
            )
            payment = bank.book(
                conn,
                held["iban"],
                body.creditor_iban,
                body.amount,
                currency,
                body.end_to_end_id,
                body.remittance_info,
            )
            return {**payment, "released": held["amount"] - body.amount}

        result = bank.db.idempotent(key, f"capture {hold_id}", body.model_dump(), work)
        bank.faults.after("capture")
        return answer(*result)

    @app.post("/v1/holds/{hold_id}/release")
    def release(hold_id: str, key: str | None = Key) -> JSONResponse:
        bank.faults.before("release")

        def work(conn: Any) -> dict[str, Any]:
            held = bank.hold_view(conn, hold_id)
            if held["status"] == "active":
                conn.execute("update holds set status = 'released' where id = ?", (hold_id,))
            elif held["status"] == "captured":
                raise Refused(422, "HOLD_NOT_ACTIVE", f"{hold_id} was captured")
            return bank.hold_view(conn, hold_id)  # released or expired: nothing is held

        result = bank.db.idempotent(key, f"release {hold_id}", {}, work)
        bank.faults.after("release")
        return answer(*result)

    @app.post("/v1/payments")
    def pay(body: PaymentBody, key: str | None = Key) -> JSONResponse:
        bank.faults.before("payment")

        def work(conn: Any) -> dict[str, Any]:
            if body.debtor_iban == body.creditor_iban:
                raise Refused(422, "AM09", "debtor and creditor are the same account")
            view = bank.balance(conn, body.debtor_iban)
            currency, _bic, _b = bank.account(conn, body.creditor_iban)
            if body.currency not in (view["currency"], currency) or currency != view["currency"]:
                raise Refused(422, "AM03", "currencies of the accounts and payment differ")
            if view["available"] < body.amount:
                raise Refused(422, "AM04", f"{body.debtor_iban} has {view['available']} available")
            return bank.book(
                conn,
                body.debtor_iban,
                body.creditor_iban,
                body.amount,
                body.currency,
                body.end_to_end_id,
                body.remittance_info,
            )

        result = bank.db.idempotent(key, "payment", body.model_dump(), work)
        bank.faults.after("payment")
        return answer(*result)

    @app.get("/v1/payments/by-key/{key:path}")
    def payment_by_key(key: str) -> dict[str, Any]:
        """What became of the payment instruction taken under `key` (done once, refused
        once: the bank remembers both), without doing anything."""
        bank.faults.before("payment_query")
        found = bank.db.first_answer(key)
        if found is None or not found[0].startswith(PAYING):
            raise Refused(404, "PAYMENT_UNKNOWN", f"no payment instruction under {key}")
        _operation, status, body = found
        if status == 200:
            return {**body, "key": key, "status": "ACSC"}
        return {
            "key": key,
            "status": "RJCT",
            "reason": body.get("code"),
            "detail": body.get("detail", ""),
        }

    return app


if __name__ == "__main__":
    serve("core-banking", build)
