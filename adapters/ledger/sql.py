"""The Ledger port on SQLite or PostgreSQL, chosen by URL.

Both run the same engine (sagas.ledger.engine) inside one database transaction
per batch. Concurrency: PostgreSQL locks the batch's accounts with
`SELECT ... FOR UPDATE` in id order (no deadlocks between batches); SQLite takes
its single write lock up front (`BEGIN IMMEDIATE`). Independently of the Python
checks, the schema's CHECK constraints refuse a client account whose debits
exceed its credits and any negative counter (migrations/versions/0001_ledger.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

from adapters.ledger.migrate import upgrade
from adapters.ledger.outbox import emit
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import (
    AccountConflict,
    AssetMismatch,
    InsufficientFunds,
    PendingNotFound,
    UnknownAccount,
    UnknownAsset,
)
from sagas.events import Envelope
from sagas.ledger import (
    Account,
    AccountKind,
    Asset,
    Balance,
    Command,
    PendingState,
    TransferRecord,
)
from sagas.ledger.engine import Found, StaleRead, execute_batch, expire_batch
from sagas.ledger.rules import Counters, replay
from sagas.ports import OutboxItem

_RECORD_COLUMNS = (
    "seq, id, kind, debit_account, credit_account, asset, amount, pending_id, pending_amount, "
    "expires_at, reference, recorded_at"
)
_COUNTER_COLUMNS = "debits_pending, debits_posted, credits_pending, credits_posted"
# The transfer log's inserted columns with their PostgreSQL types, in insert order.
_TRANSFER_TYPES = (
    "id text",
    "kind text",
    "debit_account text",
    "credit_account text",
    "asset text",
    "amount numeric",
    "pending_id text",
    "pending_amount numeric",
    "pending_state text",
    "expires_at timestamptz",
    "reference text",
    "body text",
    "recorded_at timestamptz",
)


T = TypeVar("T")
_STALE_RETRIES = 5


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _UniqueTransferId(Exception):
    """Two writers inserted the same transfer id at once; the loser retries the batch."""


class SqlLedger:
    def __init__(
        self, url: str, clock: Callable[[], datetime] = _utc_now, migrate: bool = True
    ) -> None:
        if migrate:
            upgrade(url)
        self._clock = clock
        self._db = SqlDatabase(url, on_integrity=_integrity_error)

    def __repr__(self) -> str:
        return f"SqlLedger({self._db.kind})"

    def _tx(self, write: bool = False) -> AbstractContextManager[Conn]:
        return self._db.tx(write)

    def _write(self, work: Callable[[Conn], T]) -> T:
        # A concurrent batch may record the same transfer id first: the retry finds the
        # first record and answers idempotently (or conflicts).
        return self._db.write(work, retry_on=(_UniqueTransferId,))

    # --- the port -------------------------------------------------------------
    def register_asset(self, asset: Asset) -> None:
        def work(conn: Conn) -> None:
            # Insert-if-absent, then compare: two concurrent first calls both succeed.
            conn.run(
                "insert into ledger_assets (code, decimals) values (?, ?) on conflict do nothing",
                (asset.code, asset.decimals),
            )
            row = conn.one("select decimals from ledger_assets where code = ?", (asset.code,))
            if int(row[0]) != asset.decimals:
                raise AssetMismatch(f"{asset.code} has {row[0]} decimals")

        self._write(work)

    def open_account(self, account: Account) -> None:
        def work(conn: Conn) -> None:
            if conn.one("select 1 from ledger_assets where code = ?", (account.asset,)) is None:
                raise UnknownAsset(account.asset)
            conn.run(
                "insert into ledger_accounts (id, asset, kind, owner, no_overdraft) "
                "values (?, ?, ?, ?, ?) on conflict do nothing",
                (
                    account.id,
                    account.asset,
                    account.kind.value,
                    account.owner,
                    account.kind.no_overdraft,
                ),
            )
            row = conn.one(
                "select asset, kind, owner from ledger_accounts where id = ?", (account.id,)
            )
            if tuple(row) != (account.asset, account.kind.value, account.owner):
                raise AccountConflict(account.id)

        self._write(work)

    def submit(self, commands: Sequence[Command]) -> list[TransferRecord]:
        def work(conn: Conn) -> list[TransferRecord]:
            return execute_batch(_SqlTx(conn), commands, self._clock())

        # A pending transfer recorded while the batch locked its accounts: run it again
        # (the next first read sees it). Each retry needs yet another such race.
        for _ in range(_STALE_RETRIES - 1):
            with contextlib.suppress(StaleRead):
                return self._write(work)
        return self._write(work)

    def expire_pending(self) -> list[TransferRecord]:
        def work(conn: Conn) -> list[TransferRecord]:
            now = self._clock()
            # Rows another sweeper holds are skipped; one resolved meanwhile is skipped
            # below: a race costs nothing but that row's turn.
            lock = "" if conn.sqlite else " for update skip locked"
            rows = conn.all(
                "select id from ledger_transfers "
                f"where pending_state = 'pending' and expires_at <= ? order by seq{lock}",
                (conn.time(now),),
            )
            return expire_batch(_SqlTx(conn), [r[0] for r in rows], now)

        return self._write(work)

    def balance(self, account_id: str, as_of_seq: int | None = None) -> Balance:
        with self._tx() as conn:
            row = conn.one(
                f"select asset, {_COUNTER_COLUMNS} from ledger_accounts where id = ?", (account_id,)
            )
            if row is None:
                raise UnknownAccount(account_id)
            if as_of_seq is None:
                d_pend, d_post, c_pend, c_post = (int(v) for v in row[1:])
                return Balance(
                    account_id=account_id,
                    asset=row[0],
                    debits_pending=d_pend,
                    debits_posted=d_post,
                    credits_pending=c_pend,
                    credits_posted=c_post,
                )
            records = [
                _record(r)
                for r in conn.all(
                    f"select {_RECORD_COLUMNS} from ledger_transfers "
                    "where (debit_account = ? or credit_account = ?) and seq <= ? order by seq",
                    (account_id, account_id, as_of_seq),
                )
            ]
            return replay(account_id, row[0], records)

    def history(
        self, account_id: str, after_seq: int = 0, limit: int = 100
    ) -> list[TransferRecord]:
        with self._tx() as conn:
            if conn.one("select 1 from ledger_accounts where id = ?", (account_id,)) is None:
                raise UnknownAccount(account_id)
            rows = conn.all(
                f"select {_RECORD_COLUMNS} from ledger_transfers "
                "where (debit_account = ? or credit_account = ?) and seq > ? "
                "order by seq limit ?",
                (account_id, account_id, after_seq, limit),
            )
            return [_record(r) for r in rows]

    def unpublished(self, limit: int) -> list[OutboxItem]:
        with self._tx() as conn:
            rows = conn.all(
                "select position, topic, payload from ledger_outbox "
                "where published_at is null order by position limit ?",
                (limit,),
            )
        return [OutboxItem(int(r[0]), r[1], Envelope.from_json(r[2])) for r in rows]

    def mark_published(self, positions: Sequence[int]) -> None:
        if not positions:
            return
        marks = ", ".join("?" for _ in positions)

        def work(conn: Conn) -> None:
            conn.run(
                f"update ledger_outbox set published_at = ? where position in ({marks}) "
                "and published_at is null",
                (conn.time(self._clock()), *positions),
            )

        self._write(work)

    def totals(self, asset: str) -> tuple[int, int]:
        with self._tx() as conn:
            rows = conn.all(
                "select debits_posted, credits_posted from ledger_accounts where asset = ?",
                (asset,),
            )
            return sum(int(r[0]) for r in rows), sum(int(r[1]) for r in rows)


def _record(row: Sequence[Any]) -> TransferRecord:
    return TransferRecord(
        seq=int(row[0]),
        id=row[1],
        kind=row[2],
        debit_account=row[3],
        credit_account=row[4],
        asset=row[5],
        amount=int(row[6]),
        pending_id=row[7],
        pending_amount=None if row[8] is None else int(row[8]),
        expires_at=Conn.read_time(row[9]),
        reference=row[10],
        recorded_at=Conn.read_time(row[11]) or datetime.min.replace(tzinfo=UTC),
    )


def _integrity_error(exc: Exception) -> Exception:
    text = str(exc)
    constraint = getattr(getattr(exc, "diag", None), "constraint_name", None) or text
    if any(
        name in constraint
        for name in (
            "ledger_no_overdraft",
            "ledger_counters_non_negative",
            "ledger_amount_ok(debits",
            "ledger_amount_ok(credits",
        )
    ):
        return InsufficientFunds("refused by the database")
    if "ledger_one_resolution" in constraint:
        # A second resolution of one pending transfer: the engine's checks under the
        # accounts' locks should refuse it first; the unique index is the last word.
        return PendingNotFound("resolved already (refused by the database)")
    if "ledger_transfers_id_key" in constraint or "ledger_transfers.id" in text:
        return _UniqueTransferId()
    return exc


class _SqlTx:
    """The engine's LedgerTx over one SQL transaction."""

    def __init__(self, conn: Conn) -> None:
        self._c = conn

    def find(self, ids: Sequence[str]) -> dict[str, Found]:
        if not ids:
            return {}
        params: list[Any] = list(ids)
        where = f"id in ({', '.join('?' for _ in ids)})"
        if not self._c.sqlite:
            where, params = "id = any(?::text[])", [params]
        rows = self._c.all(
            f"select {_RECORD_COLUMNS}, body, pending_state from ledger_transfers where {where}",
            params,
        )
        return {r[1]: Found(_record(r[:-2]), r[-2], r[-1]) for r in rows}

    def lock_accounts(self, ids: Sequence[str]) -> dict[str, tuple[Account, Counters]]:
        marks = ", ".join("?" for _ in ids)
        lock = "" if self._c.sqlite else " for update"
        rows = self._c.all(
            f"select id, asset, kind, owner, {_COUNTER_COLUMNS} from ledger_accounts "
            f"where id in ({marks}) order by id{lock}",
            list(ids),
        )
        return {
            r[0]: (
                Account(id=r[0], asset=r[1], kind=AccountKind(r[2]), owner=r[3]),
                Counters(int(r[4]), int(r[5]), int(r[6]), int(r[7])),
            )
            for r in rows
        }

    def write(
        self,
        records: Sequence[tuple[TransferRecord, str]],
        counters: Mapping[str, Counters],
        resolved: Mapping[str, PendingState],
    ) -> list[int]:
        c = self._c
        head = (
            "insert into ledger_transfers (id, kind, debit_account, credit_account, asset, "
            "amount, pending_id, pending_amount, pending_state, expires_at, reference, body, "
            "recorded_at)"
        )
        rows = [
            (
                r.id,
                r.kind,
                r.debit_account,
                r.credit_account,
                r.asset,
                c.amount(r.amount),
                r.pending_id,
                c.amount(r.pending_amount),
                "pending" if r.kind == "pending" else None,
                c.time(r.expires_at),
                r.reference,
                body,
                c.time(r.recorded_at),
            )
            for r, body in records
        ]
        if c.sqlite:
            returned = c.values(head, rows, "returning id, seq", chunk=400)
        else:
            select, params = c.ordered_rows(_TRANSFER_TYPES, rows)
            returned = c.all(f"{head} {select} returning id, seq", params)
        seqs = {row[0]: int(row[1]) for row in returned}
        amounts = [
            (
                account_id,
                c.amount(after.debits_pending),
                c.amount(after.debits_posted),
                c.amount(after.credits_pending),
                c.amount(after.credits_posted),
            )
            for account_id, after in counters.items()
        ]
        if c.sqlite:
            for account_id, *after in amounts:
                c.run(
                    "update ledger_accounts set debits_pending = ?, debits_posted = ?, "
                    "credits_pending = ?, credits_posted = ? where id = ?",
                    (*after, account_id),
                )
            for pending_id, state in resolved.items():
                c.run(
                    "update ledger_transfers set pending_state = ? where id = ?",
                    (state, pending_id),
                )
        else:
            # One statement each, however many accounts and pending transfers the batch
            # changed; the CHECK constraints still judge every account's new counters.
            source, params = c.rows(
                ("id text", "dp numeric", "dpo numeric", "cp numeric", "cpo numeric"), amounts
            )
            c.run(
                "update ledger_accounts as a set debits_pending = v.dp, debits_posted = v.dpo, "
                f"credits_pending = v.cp, credits_posted = v.cpo from {source} where a.id = v.id",
                params,
            )
            if resolved:
                source, params = c.rows(("id text", "state text"), list(resolved.items()))
                c.run(
                    "update ledger_transfers as t set pending_state = v.state "
                    f"from {source} where t.id = v.id",
                    params,
                )
        return [seqs[r.id] for r, _ in records]

    def emit(self, topic: str, events: Sequence[Envelope]) -> None:
        emit(self._c, topic, events)
