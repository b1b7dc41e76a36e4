"""The one algorithm that applies ledger commands, over any storage transaction.

Each implementation (in-memory fake, SQLite, PostgreSQL) provides a `LedgerTx`
for one atomic transaction; `execute_batch` does the validation, idempotency and
counter arithmetic identically for all of them. A batch reads what it needs in a
few requests (the transfers it names, its accounts, locked), applies its commands
in order in memory, and writes the result in a few more: the storage's round trips
do not grow with each command's reads and writes. The storage adds its own
guarantee on top: a database refuses a client account going negative even if this
code had a bug (CHECK constraints on the counters each batch leaves; see
adapters/ledger/).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple, Protocol

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


class Found(NamedTuple):
    """A recorded transfer, the canonical body it was submitted with, and (a pending
    transfer's) state."""

    record: TransferRecord
    body: str
    state: PendingState | None


class LedgerTx(Protocol):
    """Storage operations inside one atomic transaction."""

    def find(self, ids: Sequence[str]) -> dict[str, Found]:
        """The recorded transfers among `ids`, by id."""

    def lock_accounts(self, ids: Sequence[str]) -> dict[str, tuple[Account, Counters]]:
        """The named accounts that exist, locked against concurrent change until commit
        (locked in the order given: callers pass them sorted)."""

    def write(
        self,
        records: Sequence[tuple[TransferRecord, str]],
        counters: Mapping[str, Counters],
        resolved: Mapping[str, PendingState],
    ) -> list[int]:
        """Append the records (with their bodies) in order, store the accounts' new
        counters and mark the pending transfers resolved; the records' commit-order
        `seq`s, in order. InsufficientFunds if the storage refuses a counter."""

    def emit(self, topic: str, events: Sequence[Envelope]) -> None:
        """Queue events in the same transaction (transactional outbox)."""


class StaleRead(Exception):
    """A transfer the batch names was recorded by another batch while this one locked its
    accounts: the storage runs the batch again (its first read then sees it)."""


@dataclass(frozen=True)
class Expiry:
    """The sweeper's release of a pending transfer past its expiry: not a caller's
    command. Its id, `expire!<pending id>`, is outside what callers may use
    (ID_PATTERN has no `!`), so no caller can take it first."""

    pending_id: str

    @property
    def id(self) -> str:
        return f"{EXPIRY_PREFIX}{self.pending_id}"


EXPIRY_PREFIX = "expire!"
_RESOLVED_STATE: dict[str, PendingState] = {"post": "posted", "void": "voided", "expire": "expired"}


def canonical_body(command: Command) -> str:
    return command.model_dump_json()


def execute_batch(tx: LedgerTx, commands: Sequence[Command], now: datetime) -> list[TransferRecord]:
    """Apply a linked batch inside `tx`, all or nothing; a repeat of an applied command
    returns its record. Every account the batch touches is locked first, in one sorted
    request, so two batches can never wait on each other in a cycle."""
    return _Batch(tx, now).run(commands, skip_resolved=False)


def expire_batch(tx: LedgerTx, pending_ids: Sequence[str], now: datetime) -> list[TransferRecord]:
    """Release each of these pending transfers that is still pending and past its expiry
    (one resolved or extended meanwhile is skipped: a race costs nothing but its turn)."""
    return _Batch(tx, now).run([Expiry(p) for p in pending_ids], skip_resolved=True)


class _Batch:
    """One batch's view: what storage held when the batch locked its accounts, plus what
    the batch's earlier commands changed."""

    def __init__(self, tx: LedgerTx, now: datetime) -> None:
        self._tx = tx
        self._now = now
        self._accounts: dict[str, tuple[Account, Counters]] = {}
        self._locked: frozenset[str] = frozenset()
        self._found: dict[str, Found] = {}
        self._new: dict[str, tuple[TransferRecord, str]] = {}
        self._states: dict[str, PendingState] = {}
        self._resolved: dict[str, PendingState] = {}
        self._after: list[tuple[Counters, Counters]] = []
        self._touched: dict[str, None] = {}

    def run(
        self, commands: Sequence[Command | Expiry], skip_resolved: bool
    ) -> list[TransferRecord]:
        resolving = [c.pending_id for c in commands if not isinstance(c, Transfer)]
        accounts: set[str] = set()
        for cmd in commands:
            if isinstance(cmd, Transfer):
                accounts |= {cmd.debit_account, cmd.credit_account}
        # A pending transfer's accounts never change: reading it before the locks is safe.
        for found in self._tx.find(sorted(set(resolving))).values() if resolving else ():
            accounts |= {found.record.debit_account, found.record.credit_account}
        self._locked = frozenset(accounts)
        locked = self._tx.lock_accounts(sorted(accounts)) if accounts else {}
        for account_id, (account, counters) in locked.items():
            self._accounts[account_id] = (account, replace(counters))
        # Read after the locks: no other batch can change these accounts' transfers now.
        self._found = self._tx.find(sorted({c.id for c in commands} | set(resolving)))
        for pending_id in resolving:
            late = self._found.get(pending_id)
            if late is not None and not (
                {late.record.debit_account, late.record.credit_account} <= self._locked
            ):
                # Recorded by another batch between the two reads: its accounts are not
                # locked, so what was read of it (and of commands on it) may be stale, and
                # locking them now, out of order, could deadlock. Run the batch again.
                raise StaleRead(pending_id)
        results: list[TransferRecord] = []
        for cmd in commands:
            try:
                results.append(self._one(cmd))
            except PendingNotFound:
                if not skip_resolved:
                    raise
        if not self._new:
            return results
        seqs = self._tx.write(
            list(self._new.values()),
            {i: self._accounts[i][1] for i in self._touched},
            self._resolved,
        )
        stored: dict[str, TransferRecord] = {}
        events: list[Envelope] = []
        for (record, _), seq, (debit, credit) in zip(
            self._new.values(), seqs, self._after, strict=True
        ):
            stored[record.id] = record = record.model_copy(update={"seq": seq})
            events += entry_events(record, debit, credit)
        self._tx.emit(EVENTS.name, events)
        return [stored.get(r.id, r) if r.seq == 0 else r for r in results]

    # --- reads through the batch's changes -------------------------------------------
    def _recorded(self, transfer_id: str) -> tuple[TransferRecord, str] | None:
        if transfer_id in self._new:
            return self._new[transfer_id]
        found = self._found.get(transfer_id)
        return None if found is None else (found.record, found.body)

    def _state(self, pending_id: str) -> PendingState | None:
        if pending_id in self._states:
            return self._states[pending_id]
        found = self._found.get(pending_id)
        return None if found is None else found.state

    # --- the commands ---------------------------------------------------------------
    def _one(self, cmd: Command | Expiry) -> TransferRecord:
        if isinstance(cmd, Expiry):
            if self._recorded(cmd.id) is not None:
                raise PendingNotFound(cmd.pending_id)  # expired already: skip
            record = self._resolution(cmd)
            return self._book(record, record.model_dump_json(include={"id", "kind", "pending_id"}))
        body = canonical_body(cmd)
        if (prior := self._recorded(cmd.id)) is not None:
            return _repeat(prior, body)
        if isinstance(cmd, Transfer):
            if cmd.amount <= 0:
                raise InvalidAmount(
                    f"{cmd.id}: amount must be a positive integer, got {cmd.amount}"
                )
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
                recorded_at=self._now,
            )
        else:
            record = self._resolution(cmd)
        return self._book(record, body)

    def _resolution(self, cmd: PostPending | VoidPending | Expiry) -> TransferRecord:
        prior = self._recorded(cmd.pending_id)
        if prior is None or prior[0].kind != "pending":
            raise PendingNotFound(cmd.pending_id)
        pending = prior[0]
        if isinstance(cmd, Expiry):
            if pending.expires_at is None or pending.expires_at > self._now:
                raise PendingNotFound(cmd.pending_id)  # extended or never expiring: skip
            kind, amount = "expire", pending.amount
        elif isinstance(cmd, PostPending):
            if pending.expires_at is not None and pending.expires_at <= self._now:
                raise PendingExpired(cmd.pending_id)
            kind, amount = "post", pending.amount if cmd.amount is None else cmd.amount
            if amount <= 0:
                raise InvalidAmount(f"{cmd.id}: amount must be a positive integer, got {amount}")
            if amount > pending.amount:
                raise PostExceedsPending(f"{cmd.id}: {amount} > {pending.amount}")
        else:
            kind, amount = "void", pending.amount
        return TransferRecord(
            seq=0,
            id=cmd.id,
            kind=kind,  # type: ignore[arg-type]
            debit_account=pending.debit_account,
            credit_account=pending.credit_account,
            asset=pending.asset,
            amount=amount,
            pending_id=pending.id,
            pending_amount=pending.amount,
            recorded_at=self._now,
        )

    def _book(self, record: TransferRecord, body: str) -> TransferRecord:
        # Every account the batch can touch was locked up front (run): one missing here
        # does not exist.
        for account_id in (record.debit_account, record.credit_account):
            if account_id not in self._accounts:
                raise UnknownAccount(account_id)
        debit_account, debit = self._accounts[record.debit_account]
        credit_account, credit = self._accounts[record.credit_account]
        if not debit_account.asset == credit_account.asset == record.asset:
            raise AssetMismatch(
                f"{record.id}: {record.asset} between {debit_account.asset} and "
                f"{credit_account.asset}"
            )
        if record.pending_id is not None and self._state(record.pending_id) != "pending":
            raise PendingNotFound(record.pending_id)  # resolved, here or by another batch
        new_debit, new_credit = replace(debit), replace(credit)
        apply(record, new_debit, new_credit)
        for account, counters in ((debit_account, new_debit), (credit_account, new_credit)):
            if not counters.non_negative() or (
                account.kind.no_overdraft and not counters.covers_debits()
            ):
                raise InsufficientFunds(f"{record.id}: account {account.id}")
        self._accounts[debit_account.id] = (debit_account, new_debit)
        self._accounts[credit_account.id] = (credit_account, new_credit)
        self._new[record.id] = (record, body)
        self._touched[debit_account.id] = self._touched[credit_account.id] = None
        self._after.append((new_debit, new_credit))
        if record.kind == "pending":
            self._states[record.id] = "pending"
        if record.pending_id is not None:
            state = _RESOLVED_STATE[record.kind]
            self._states[record.pending_id] = self._resolved[record.pending_id] = state
        return record


def _repeat(found: tuple[TransferRecord, str], body: str) -> TransferRecord:
    record, first_body = found
    if first_body != body:
        raise TransferIdConflict(record.id)
    return record
