"""The one algorithm that applies ledger commands, over any storage transaction.

Each implementation (in-memory fake, SQLite, PostgreSQL) provides a `LedgerTx`
for one atomic transaction; `execute` does the validation, idempotency and
counter arithmetic identically for all of them. The storage adds its own
guarantee on top: a database refuses a client account going negative even if
this code had a bug (CHECK constraints; see adapters/ledger/).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from sagas.errors import (
    AssetMismatch,
    InsufficientFunds,
    InvalidAmount,
    PendingExpired,
    PendingNotFound,
    PostExceedsPending,
    SameAccount,
    TransferIdConflict,
    UnknownAccount,
)
from sagas.events import Envelope
from sagas.ledger import (
    Account,
    Command,
    PendingState,
    PostPending,
    Transfer,
    TransferRecord,
    VoidPending,
)
from sagas.ledger.events import entry_events
from sagas.ledger.rules import Counters, apply
from sagas.topics import EVENTS


class LedgerTx(Protocol):
    """Storage operations inside one atomic transaction."""

    def find(self, transfer_id: str) -> tuple[TransferRecord, str] | None:
        """The recorded transfer with this id and the canonical body it was submitted with."""

    def lock_accounts(self, ids: list[str]) -> dict[str, tuple[Account, Counters]]:
        """The named accounts that exist, locked against concurrent change until commit."""

    def pending_state(self, pending_id: str) -> PendingState | None:
        """Current state of a pending transfer (read after its accounts are locked)."""

    def insert(self, record: TransferRecord, body: str) -> TransferRecord:
        """Append the record; returns it with its commit-order `seq`."""

    def set_counters(self, account_id: str, counters: Counters) -> None:
        """Store an account's new counters. InsufficientFunds if the storage refuses."""

    def set_pending_state(self, pending_id: str, state: PendingState) -> None:
        """Mark a pending transfer resolved."""

    def emit(self, topic: str, events: list[Envelope]) -> None:
        """Queue events in the same transaction (transactional outbox)."""


def canonical_body(command: Command) -> str:
    return command.model_dump_json()


def execute_batch(tx: LedgerTx, commands: Sequence[Command], now: datetime) -> list[TransferRecord]:
    """Apply a linked batch inside `tx`. Every account the batch touches is locked first,
    in one sorted request, so two batches can never wait on each other in a cycle."""
    accounts: set[str] = set()
    for cmd in commands:
        if isinstance(cmd, Transfer):
            accounts |= {cmd.debit_account, cmd.credit_account}
        elif (found := tx.find(cmd.pending_id)) is not None:
            accounts |= {found[0].debit_account, found[0].credit_account}
    tx.lock_accounts(sorted(accounts))
    return [execute(tx, cmd, now) for cmd in commands]


def _repeat(found: tuple[TransferRecord, str], body: str) -> TransferRecord:
    record, first_body = found
    if first_body != body:
        raise TransferIdConflict(record.id)
    return record


def execute(tx: LedgerTx, command: Command, now: datetime) -> TransferRecord:
    """Apply one command inside `tx`; a repeat of an applied command returns its record."""
    body = canonical_body(command)
    found = tx.find(command.id)
    if found is not None:
        return _repeat(found, body)
    if isinstance(command, Transfer):
        return _transfer(tx, command, body, now)
    return _resolve(tx, command, body, now)


def _transfer(tx: LedgerTx, cmd: Transfer, body: str, now: datetime) -> TransferRecord:
    if cmd.amount <= 0:
        raise InvalidAmount(f"{cmd.id}: amount must be a positive integer, got {cmd.amount}")
    if cmd.debit_account == cmd.credit_account:
        raise SameAccount(cmd.id)
    record = TransferRecord(
        seq=0,
        id=cmd.id,
        kind="pending" if cmd.pending else "transfer",
        debit_account=cmd.debit_account,
        credit_account=cmd.credit_account,
        asset=cmd.asset,
        amount=cmd.amount,
        expires_at=cmd.expires_at,
        reference=cmd.reference,
        recorded_at=now,
    )
    return _book(tx, record, body)


def _resolve(
    tx: LedgerTx, cmd: PostPending | VoidPending, body: str, now: datetime
) -> TransferRecord:
    found = tx.find(cmd.pending_id)
    if found is None or found[0].kind != "pending":
        raise PendingNotFound(cmd.pending_id)
    pending = found[0]
    if isinstance(cmd, PostPending):
        if pending.expires_at is not None and pending.expires_at <= now:
            raise PendingExpired(cmd.pending_id)
        amount = pending.amount if cmd.amount is None else cmd.amount
        if amount <= 0:
            raise InvalidAmount(f"{cmd.id}: amount must be a positive integer, got {amount}")
        if amount > pending.amount:
            raise PostExceedsPending(f"{cmd.id}: {amount} > {pending.amount}")
    else:
        amount = pending.amount
    record = TransferRecord(
        seq=0,
        id=cmd.id,
        kind=cmd.kind,
        debit_account=pending.debit_account,
        credit_account=pending.credit_account,
        asset=pending.asset,
        amount=amount,
        pending_id=pending.id,
        pending_amount=pending.amount,
        recorded_at=now,
    )
    return _book(tx, record, body)


def expire(tx: LedgerTx, pending: TransferRecord, now: datetime) -> TransferRecord:
    """Void a pending transfer past its expiry. Its id, `expire!<pending id>`, is outside
    what callers may use (ID_PATTERN has no `!`), so no caller can take it first."""
    record = TransferRecord(
        seq=0,
        id=f"{EXPIRY_PREFIX}{pending.id}",
        kind="expire",
        debit_account=pending.debit_account,
        credit_account=pending.credit_account,
        asset=pending.asset,
        amount=pending.amount,
        pending_id=pending.id,
        pending_amount=pending.amount,
        recorded_at=now,
    )
    return _book(tx, record, body=record.model_dump_json(include={"id", "kind", "pending_id"}))


EXPIRY_PREFIX = "expire!"
_RESOLVED_STATE: dict[str, PendingState] = {"post": "posted", "void": "voided", "expire": "expired"}


def _book(tx: LedgerTx, record: TransferRecord, body: str) -> TransferRecord:
    accounts = tx.lock_accounts(sorted({record.debit_account, record.credit_account}))
    for account_id in (record.debit_account, record.credit_account):
        if account_id not in accounts:
            raise UnknownAccount(account_id)
    # A concurrent copy of this very command may have committed while we waited for the
    # locks: answer as the repeat it is, not with an error about the state it left.
    if (found := tx.find(record.id)) is not None:
        return _repeat(found, body)
    debit_account, debit = accounts[record.debit_account]
    credit_account, credit = accounts[record.credit_account]
    if not debit_account.asset == credit_account.asset == record.asset:
        raise AssetMismatch(
            f"{record.id}: {record.asset} between {debit_account.asset} and {credit_account.asset}"
        )
    if record.pending_id is not None and tx.pending_state(record.pending_id) != "pending":
        raise PendingNotFound(record.pending_id)  # resolved while we waited for the locks
    debit, credit = replace(debit), replace(credit)
    apply(record, debit, credit)
    for account, counters in ((debit_account, debit), (credit_account, credit)):
        if account.kind.no_overdraft and not counters.covers_debits():
            raise InsufficientFunds(f"{record.id}: account {account.id}")
    stored = tx.insert(record, body)
    tx.set_counters(debit_account.id, debit)
    tx.set_counters(credit_account.id, credit)
    if record.pending_id is not None:
        tx.set_pending_state(record.pending_id, _RESOLVED_STATE[record.kind])
    tx.emit(EVENTS.name, entry_events(stored, debit, credit))
    return stored
