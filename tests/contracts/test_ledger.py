"""Ledger contract: one suite, run against the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from adapters.ledger import sqlite_functions
from adapters.ledger.sql import SqlLedger
from sagas.errors import (
    AccountConflict,
    AssetMismatch,
    CustodyError,
    InsufficientFunds,
    InvalidAmount,
    PendingExpired,
    PendingNotFound,
    PostExceedsPending,
    SameAccount,
    TransferIdConflict,
    UnknownAccount,
    UnknownAsset,
)
from sagas.ledger import (
    Account,
    AccountKind,
    Asset,
    Command,
    PostPending,
    Transfer,
    TransferRecord,
    VoidPending,
)
from sagas.ledger.projection import BalanceProjection
from sagas.ports import Ledger, Outbox, OutboxItem
from sagas.topics import EVENTS
from tests.fakes import InMemoryLedger


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 11, 27, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Book:
    """A fresh asset with an omnibus, an in-flight account and two clients funded by `fund`."""

    ledger: Ledger
    asset: str
    omnibus: str
    in_flight: str
    alice: str
    bob: str

    def tid(self) -> str:
        return f"t-{uuid.uuid4().hex}"

    def fund(self, account: str, amount: int) -> None:
        self.ledger.submit(
            [
                Transfer(
                    id=self.tid(),
                    debit_account=self.omnibus,
                    credit_account=account,
                    asset=self.asset,
                    amount=amount,
                )
            ]
        )

    def move(self, debit: str, credit: str, amount: int, **kw: object) -> Transfer:
        return Transfer(
            id=self.tid(),
            debit_account=debit,
            credit_account=credit,
            asset=self.asset,
            amount=amount,
            **kw,
        )  # type: ignore[arg-type]

    def available(self, account: str) -> int:
        return self.ledger.balance(account).available


class LedgerContract:
    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    @pytest.fixture
    def ledger(self, clock: Clock) -> Ledger:
        raise NotImplementedError

    @pytest.fixture
    def book(self, ledger: Ledger) -> Book:
        suffix = uuid.uuid4().hex[:8]
        asset = f"T{suffix.upper()}"
        ledger.register_asset(Asset(code=asset, decimals=18))
        ids = {name: f"{name}-{suffix}" for name in ("omnibus", "inflight", "alice", "bob")}
        ledger.open_account(Account(id=ids["omnibus"], asset=asset, kind=AccountKind.OMNIBUS))
        ledger.open_account(Account(id=ids["inflight"], asset=asset, kind=AccountKind.IN_FLIGHT))
        for client in ("alice", "bob"):
            ledger.open_account(
                Account(
                    id=ids[client], asset=asset, kind=AccountKind.CLIENT_AVAILABLE, owner=client
                )
            )
        return Book(ledger, asset, ids["omnibus"], ids["inflight"], ids["alice"], ids["bob"])

    # --- assets and accounts -----------------------------------------------
    def test_is_a_ledger(self, ledger: Ledger) -> None:
        assert isinstance(ledger, Ledger)

    def test_asset_and_account_opening_is_idempotent(self, book: Book) -> None:
        book.ledger.register_asset(Asset(code=book.asset, decimals=18))
        book.ledger.open_account(
            Account(
                id=book.alice, asset=book.asset, kind=AccountKind.CLIENT_AVAILABLE, owner="alice"
            )
        )
        assert book.ledger.balance(book.alice).total == 0

    def test_conflicting_asset_or_account_is_refused(self, book: Book) -> None:
        with pytest.raises(AssetMismatch):
            book.ledger.register_asset(Asset(code=book.asset, decimals=6))
        with pytest.raises(AccountConflict):
            book.ledger.open_account(
                Account(
                    id=book.alice,
                    asset=book.asset,
                    kind=AccountKind.CLIENT_AVAILABLE,
                    owner="mallory",
                )
            )
        with pytest.raises(UnknownAsset):
            book.ledger.open_account(
                Account(id=f"x-{uuid.uuid4().hex}", asset="NOPE", kind=AccountKind.FEES)
            )

    # --- posted transfers ----------------------------------------------------
    def test_transfer_moves_value_and_keeps_double_entry(self, book: Book) -> None:
        book.fund(book.alice, 1_000)
        book.ledger.submit([book.move(book.alice, book.bob, 300)])
        assert book.ledger.balance(book.alice).total == 700
        assert book.ledger.balance(book.bob).total == 300
        debits, credits = book.ledger.totals(book.asset)
        assert debits == credits == 1_300

    def test_amounts_beyond_64_bits_are_exact(self, book: Book) -> None:
        huge = 10**30 + 7  # far past int64 and float precision
        book.fund(book.alice, huge)
        book.ledger.submit([book.move(book.alice, book.bob, huge - 1)])
        assert book.ledger.balance(book.alice).available == 1
        assert book.ledger.balance(book.bob).total == huge - 1

    def test_repeating_a_transfer_returns_the_first_record_and_changes_nothing(
        self, book: Book
    ) -> None:
        book.fund(book.alice, 100)
        cmd = book.move(book.alice, book.bob, 40)
        (first,) = book.ledger.submit([cmd])
        (again,) = book.ledger.submit([cmd])
        assert again == first
        assert book.available(book.alice) == 60
        assert len(book.ledger.history(book.bob)) == 1

    def test_same_id_with_a_different_body_is_refused(self, book: Book) -> None:
        book.fund(book.alice, 100)
        cmd = book.move(book.alice, book.bob, 40)
        book.ledger.submit([cmd])
        with pytest.raises(TransferIdConflict) as info:
            book.ledger.submit([cmd.model_copy(update={"amount": 41})])
        assert info.value.code == "CUS-1003"
        assert book.available(book.alice) == 60

    def test_client_balance_can_never_go_negative(self, book: Book) -> None:
        book.fund(book.alice, 100)
        with pytest.raises(InsufficientFunds) as info:
            book.ledger.submit([book.move(book.alice, book.bob, 101)])
        assert info.value.code == "CUS-1001"
        assert book.available(book.alice) == 100
        assert book.ledger.balance(book.bob).total == 0

    def test_platform_accounts_may_go_negative_in_credit_terms(self, book: Book) -> None:
        book.fund(book.alice, 5)  # the omnibus is an asset account: debited past zero
        assert book.ledger.balance(book.omnibus).total == -5

    @pytest.mark.parametrize("amount", [0, -1])
    def test_non_positive_amounts_are_refused(self, book: Book, amount: int) -> None:
        with pytest.raises(InvalidAmount):
            book.ledger.submit([book.move(book.omnibus, book.alice, amount)])

    def test_bad_account_references_are_refused(self, book: Book, ledger: Ledger) -> None:
        with pytest.raises(UnknownAccount):
            ledger.submit([book.move(book.omnibus, "nobody", 1)])
        with pytest.raises(SameAccount):
            ledger.submit([book.move(book.alice, book.alice, 1)])
        other = f"O{uuid.uuid4().hex[:8].upper()}"
        ledger.register_asset(Asset(code=other, decimals=8))
        with pytest.raises(AssetMismatch):
            ledger.submit(
                [
                    Transfer(
                        id=book.tid(),
                        debit_account=book.omnibus,
                        credit_account=book.alice,
                        asset=other,
                        amount=1,
                    )
                ]
            )
        with pytest.raises(UnknownAccount):
            ledger.balance("nobody")

    # --- two-phase -------------------------------------------------------------
    def test_pending_reserves_and_full_post_completes(self, book: Book) -> None:
        book.fund(book.alice, 100)
        hold = book.move(book.alice, book.in_flight, 70, pending=True)
        book.ledger.submit([hold])
        bal = book.ledger.balance(book.alice)
        assert (bal.total, bal.held, bal.available) == (100, 70, 30)
        with pytest.raises(InsufficientFunds):  # the reservation is not spendable twice
            book.ledger.submit([book.move(book.alice, book.bob, 31)])
        book.ledger.submit([PostPending(id=book.tid(), pending_id=hold.id)])
        bal = book.ledger.balance(book.alice)
        assert (bal.total, bal.held, bal.available) == (30, 0, 30)
        assert book.ledger.balance(book.in_flight).total == 70

    def test_partial_post_releases_the_rest(self, book: Book) -> None:
        book.fund(book.alice, 100)
        hold = book.move(book.alice, book.in_flight, 70, pending=True)
        book.ledger.submit([hold])
        (post,) = book.ledger.submit([PostPending(id=book.tid(), pending_id=hold.id, amount=45)])
        assert (post.amount, post.pending_amount) == (45, 70)
        bal = book.ledger.balance(book.alice)
        assert (bal.total, bal.held, bal.available) == (55, 0, 55)
        assert book.ledger.balance(book.in_flight).total == 45

    def test_void_restores_the_balance(self, book: Book) -> None:
        book.fund(book.alice, 100)
        hold = book.move(book.alice, book.in_flight, 70, pending=True)
        book.ledger.submit([hold])
        book.ledger.submit([VoidPending(id=book.tid(), pending_id=hold.id)])
        bal = book.ledger.balance(book.alice)
        assert (bal.total, bal.held, bal.available) == (100, 0, 100)
        assert book.ledger.balance(book.in_flight).credits_pending == 0

    def test_a_pending_transfer_resolves_only_once(self, book: Book) -> None:
        book.fund(book.alice, 100)
        hold = book.move(book.alice, book.in_flight, 70, pending=True)
        book.ledger.submit([hold])
        with pytest.raises(PostExceedsPending):
            book.ledger.submit([PostPending(id=book.tid(), pending_id=hold.id, amount=71)])
        book.ledger.submit([PostPending(id=book.tid(), pending_id=hold.id)])
        with pytest.raises(PendingNotFound):
            book.ledger.submit([PostPending(id=book.tid(), pending_id=hold.id)])
        with pytest.raises(PendingNotFound):
            book.ledger.submit([VoidPending(id=book.tid(), pending_id=hold.id)])
        plain = book.move(book.omnibus, book.bob, 1)
        book.ledger.submit([plain])
        with pytest.raises(PendingNotFound):
            book.ledger.submit([VoidPending(id=book.tid(), pending_id=plain.id)])
        assert book.ledger.balance(book.alice).total == 30

    def test_expired_pending_cannot_be_posted_and_is_voided_by_the_sweep(
        self, book: Book, clock: Clock
    ) -> None:
        book.fund(book.alice, 100)
        hold = book.move(
            book.alice,
            book.in_flight,
            60,
            pending=True,
            expires_at=clock.now + timedelta(minutes=10),
        )
        book.ledger.submit([hold])
        clock.advance(9 * 60)
        assert book.ledger.expire_pending() == []
        clock.advance(61)
        with pytest.raises(PendingExpired) as info:
            book.ledger.submit([PostPending(id=book.tid(), pending_id=hold.id)])
        assert info.value.code == "CUS-1006"
        (expiry,) = book.ledger.expire_pending()
        assert (expiry.kind, expiry.pending_id, expiry.amount) == ("expire", hold.id, 60)
        assert book.available(book.alice) == 100
        assert book.ledger.expire_pending() == []
        with pytest.raises(PendingNotFound):
            book.ledger.submit([VoidPending(id=book.tid(), pending_id=hold.id)])

    # --- batches, history, as-of -------------------------------------------------
    def test_linked_batch_is_all_or_none(self, book: Book) -> None:
        book.fund(book.alice, 100)
        ok = book.move(book.alice, book.bob, 60)
        too_much = book.move(book.alice, book.bob, 60)
        with pytest.raises(InsufficientFunds):
            book.ledger.submit([ok, too_much])
        assert book.available(book.alice) == 100
        assert book.ledger.history(book.bob) == []
        (applied,) = book.ledger.submit([ok])  # its id was never taken
        assert applied.amount == 60

    def test_a_batch_sees_its_own_earlier_commands(self, book: Book) -> None:
        book.fund(book.alice, 100)
        hold = book.move(book.alice, book.in_flight, 60, pending=True)
        post = PostPending(id=book.tid(), pending_id=hold.id, amount=50)
        spend = book.move(book.alice, book.bob, 50)  # 50 left once the post released 10
        records = book.ledger.submit([hold, post, hold, spend])
        assert [r.kind for r in records] == ["pending", "post", "pending", "transfer"]
        assert records[0].seq == records[2].seq and records[0].seq > 0  # the repeat
        assert records[0].seq < records[1].seq < records[3].seq
        assert (book.available(book.alice), book.available(book.bob)) == (0, 50)
        assert book.ledger.balance(book.in_flight).credits_posted == 50
        # Resolved earlier in its own batch: a second resolution refuses the whole batch.
        again = book.move(book.bob, book.alice, 10, pending=True)
        with pytest.raises(PendingNotFound):
            book.ledger.submit(
                [
                    again,
                    VoidPending(id=book.tid(), pending_id=again.id),
                    PostPending(id=book.tid(), pending_id=again.id),
                ]
            )
        assert book.ledger.balance(book.bob).debits_pending == 0
        assert book.available(book.bob) == 50
        with pytest.raises(PendingNotFound):
            book.ledger.submit([PostPending(id=book.tid(), pending_id=again.id)])

    def test_a_batch_refused_late_writes_nothing(self, book: Book) -> None:
        book.fund(book.alice, 100)
        first = book.move(book.alice, book.bob, 60)
        with pytest.raises(InsufficientFunds):
            book.ledger.submit(
                [first, book.move(book.bob, book.alice, 10), book.move(book.alice, book.bob, 51)]
            )
        assert (book.available(book.alice), book.available(book.bob)) == (100, 0)
        assert book.ledger.history(book.bob) == []
        # The refused batch left no record behind: the first command applies afresh.
        (record,) = book.ledger.submit([first])
        assert record.kind == "transfer" and book.available(book.bob) == 60

    def test_each_event_of_a_batch_carries_the_balance_after_its_own_entry(
        self, book: Book
    ) -> None:
        book.fund(book.alice, 100)
        book.ledger.submit([book.move(book.alice, book.bob, n) for n in (10, 20, 30)])
        credits = [
            i.event.data["balance_after"]
            for i in self._my_outbox(book)
            if i.event.subject == book.bob
        ]
        assert [c["credits_posted"] for c in credits] == ["10", "30", "60"]  # type: ignore[index]
        seqs = [i.event.data["seq"] for i in self._my_outbox(book) if i.event.subject == book.bob]
        assert seqs == sorted(seqs) and len(set(seqs)) == 3

    def test_a_pending_transfer_resolved_concurrently_resolves_once(self, book: Book) -> None:
        book.fund(book.alice, 100)
        hold = book.move(book.alice, book.in_flight, 70, pending=True)
        book.ledger.submit([hold])
        start = threading.Barrier(8)
        won: list[TransferRecord] = []
        lost: list[BaseException] = []

        def resolve(i: int) -> None:
            cmd: Command = (
                PostPending(id=book.tid(), pending_id=hold.id)
                if i % 2
                else VoidPending(id=book.tid(), pending_id=hold.id)
            )
            start.wait()
            try:
                won.extend(book.ledger.submit([cmd]))
            except PendingNotFound as exc:
                lost.append(exc)

        threads = [threading.Thread(target=resolve, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(won) == 1 and len(lost) == 7
        alice = book.ledger.balance(book.alice)
        assert alice.debits_pending == 0
        assert alice.total == (30 if won[0].kind == "post" else 100)

    def test_history_is_in_commit_order_and_pages(self, book: Book) -> None:
        book.fund(book.alice, 100)
        moves = [book.move(book.alice, book.bob, n) for n in (1, 2, 3)]
        book.ledger.submit(moves)
        history = book.ledger.history(book.bob)
        assert [r.id for r in history] == [m.id for m in moves]
        assert [r.seq for r in history] == sorted(r.seq for r in history)
        page = book.ledger.history(book.bob, after_seq=history[0].seq, limit=1)
        assert [r.id for r in page] == [moves[1].id]

    def test_balance_as_of_a_sequence(self, book: Book) -> None:
        book.fund(book.alice, 100)
        hold = book.move(book.alice, book.in_flight, 30, pending=True)
        (held,) = book.ledger.submit([hold])
        snapshot = book.ledger.balance(book.alice)
        book.ledger.submit([PostPending(id=book.tid(), pending_id=hold.id, amount=10)])
        book.ledger.submit([book.move(book.alice, book.bob, 5)])
        assert book.ledger.balance(book.alice, as_of_seq=held.seq) == snapshot
        now = book.ledger.balance(book.alice)
        assert book.ledger.balance(book.alice, as_of_seq=10**12) == now
        assert (now.total, now.held) == (85, 0)

    # --- transactional outbox ---------------------------------------------------
    def _my_outbox(self, book: Book) -> list[OutboxItem]:
        mine = {book.omnibus, book.in_flight, book.alice, book.bob}
        outbox: Outbox = book.ledger  # type: ignore[assignment]
        return [i for i in outbox.unpublished(100_000) if i.event.subject in mine]

    def test_each_entry_is_an_event_in_the_same_transaction(self, book: Book) -> None:
        book.fund(book.alice, 100)
        cmd = book.move(book.alice, book.bob, 30)
        (record,) = book.ledger.submit([cmd])
        book.ledger.submit([cmd])  # an idempotent repeat emits nothing
        with pytest.raises(InsufficientFunds):  # a refused batch emits nothing either
            book.ledger.submit(
                [book.move(book.bob, book.alice, 1), book.move(book.alice, book.bob, 999)]
            )
        items = self._my_outbox(book)
        assert [i.topic for i in items] == [EVENTS.name] * 4
        debit, credit = (i.event for i in items[2:])
        assert (debit.subject, credit.subject) == (book.alice, book.bob)
        assert debit.type == credit.type == "custody.ledger.entry_recorded.v1"
        assert debit.data["transfer_id"] == record.id and debit.data["side"] == "debit"
        assert debit.data["amount"] == "30" and debit.data["seq"] == record.seq
        assert debit.data["balance_after"] == {
            "debits_pending": "0",
            "debits_posted": "30",
            "credits_pending": "0",
            "credits_posted": "100",
        }

    def test_outbox_events_replay_to_the_ledger_balances(self, book: Book) -> None:
        book.fund(book.alice, 1_000)
        hold = book.move(book.alice, book.in_flight, 400, pending=True)
        book.ledger.submit([hold, book.move(book.alice, book.bob, 100)])
        book.ledger.submit([PostPending(id=book.tid(), pending_id=hold.id, amount=250)])
        items = self._my_outbox(book)
        projection = BalanceProjection()
        for item in items + items:  # every event twice: repeats are dropped
            projection.apply(item.event)
        assert projection.breaks == []
        for account in (book.omnibus, book.in_flight, book.alice, book.bob):
            assert projection.balance(account) == book.ledger.balance(account)

    def test_marked_events_leave_the_outbox(self, book: Book) -> None:
        book.fund(book.alice, 5)
        items = self._my_outbox(book)
        outbox: Outbox = book.ledger  # type: ignore[assignment]
        outbox.mark_published([items[0].position])
        outbox.mark_published([items[0].position])  # idempotent
        assert [i.position for i in self._my_outbox(book)] == [items[1].position]

    # --- concurrency -------------------------------------------------------------
    def test_50_concurrent_reservations_against_10_exactly_10_win(self, book: Book) -> None:
        book.fund(book.alice, 10)
        results: list[str] = []
        seen_available: list[int] = []
        start = threading.Barrier(51)
        racing = threading.Event()
        racing.set()

        def reserve() -> None:
            start.wait()
            try:
                book.ledger.submit([book.move(book.alice, book.in_flight, 1, pending=True)])
                results.append("ok")
            except InsufficientFunds:
                results.append("refused")

        def watch() -> None:
            while racing.is_set():
                seen_available.append(book.available(book.alice))

        threads = [threading.Thread(target=reserve) for _ in range(50)]
        watcher = threading.Thread(target=watch)
        for t in threads:
            t.start()
        watcher.start()
        start.wait()
        for t in threads:
            t.join(120)
        racing.clear()
        watcher.join(30)
        assert results.count("ok") == 10
        assert results.count("refused") == 40
        bal = book.ledger.balance(book.alice)
        assert (bal.available, bal.held, bal.total) == (0, 10, 10)
        assert seen_available and min(seen_available) >= 0

    def test_the_same_transfer_id_submitted_concurrently_applies_once(self, book: Book) -> None:
        book.fund(book.alice, 100)
        cmd = book.move(book.alice, book.bob, 7)
        records: list[object] = []
        errors: list[BaseException] = []
        start = threading.Barrier(8)

        def submit() -> None:
            start.wait()
            try:
                records.extend(book.ledger.submit([cmd]))
            except CustodyError as exc:  # pragma: no cover - would fail the test below
                errors.append(exc)

        threads = [threading.Thread(target=submit) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert len(records) == 8 and len({r.seq for r in records}) == 1  # type: ignore[attr-defined]
        assert book.ledger.balance(book.bob).total == 7

    def test_concurrent_copies_of_a_command_that_spends_everything_all_succeed(
        self, book: Book
    ) -> None:
        # Exactly enough funds: a copy that waited for the lock must see the first copy's
        # record, not the balance it left (which would read as insufficient funds).
        book.fund(book.alice, 7)
        cmd = book.move(book.alice, book.bob, 7)
        hold = book.move(book.bob, book.in_flight, 7, pending=True)
        post = PostPending(id=book.tid(), pending_id=hold.id)
        for command, prepare in ((cmd, None), (post, hold)):
            if prepare is not None:
                book.ledger.submit([prepare])
            records, errors = _race(book.ledger, command, copies=8)
            assert errors == []
            assert len({r.seq for r in records}) == 1
        assert book.ledger.balance(book.in_flight).total == 7

    def test_batches_locking_in_opposite_orders_both_commit(self, book: Book) -> None:
        book.fund(book.alice, 1_000)
        book.fund(book.bob, 1_000)
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def run(pairs: list[tuple[str, str]]) -> None:
            start.wait()
            for _ in range(20):
                try:
                    book.ledger.submit([book.move(d, c, 1) for d, c in pairs])
                except Exception as exc:
                    errors.append(exc)

        forward = [(book.alice, book.bob), (book.bob, book.in_flight)]
        threads = [threading.Thread(target=run, args=(p,)) for p in (forward, forward[::-1])]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert book.ledger.balance(book.in_flight).total == 40

    def test_a_client_id_cannot_take_an_expiry_id(self, book: Book, clock: Clock) -> None:
        book.fund(book.alice, 100)
        hold = book.move(
            book.alice,
            book.in_flight,
            10,
            pending=True,
            expires_at=clock.now + timedelta(seconds=5),
        )
        book.ledger.submit([hold])
        squatter = book.move(book.omnibus, book.bob, 1).model_copy(
            update={"id": f"expire:{hold.id}"}
        )
        book.ledger.submit([squatter])
        from pydantic import ValidationError

        with pytest.raises(ValidationError):
            Transfer(
                id=f"expire!{hold.id}",
                debit_account=book.omnibus,
                credit_account=book.bob,
                asset=book.asset,
                amount=1,
            )
        clock.advance(6)
        (expiry,) = book.ledger.expire_pending()
        assert expiry.pending_id == hold.id
        assert book.available(book.alice) == 100


def _race(
    ledger: Ledger, command: Command, copies: int
) -> tuple[list[TransferRecord], list[BaseException]]:
    """Submit `copies` copies of one command at the same instant."""
    records: list[TransferRecord] = []
    errors: list[BaseException] = []
    start = threading.Barrier(copies)

    def submit() -> None:
        start.wait()
        try:
            records.extend(ledger.submit([command]))
        except CustodyError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(copies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return records, errors


class TestInMemoryLedger(LedgerContract):
    @pytest.fixture
    def ledger(self, clock: Clock) -> Ledger:
        return InMemoryLedger(clock=clock)


class TestSqliteLedger(LedgerContract):
    @pytest.fixture
    def ledger(self, clock: Clock, tmp_path: Path) -> Ledger:
        return SqlLedger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}", clock=clock)

    def test_the_database_itself_refuses_an_overdraft(self, book: Book, tmp_path: Path) -> None:
        book.fund(book.alice, 10)
        with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:
            sqlite_functions.register(conn)
            with pytest.raises(sqlite3.IntegrityError, match="ledger_no_overdraft"):
                conn.execute(
                    "update ledger_accounts set debits_posted = '11' where id = ?", (book.alice,)
                )
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(
                    "update ledger_accounts set credits_posted = '-1' where id = ?", (book.omnibus,)
                )

    def test_a_connection_without_the_ledger_functions_cannot_write(
        self, book: Book, tmp_path: Path
    ) -> None:
        with (
            sqlite3.connect(tmp_path / "ledger.sqlite3") as conn,
            pytest.raises(sqlite3.OperationalError, match="unknown function: ledger_covers"),
        ):
            conn.execute(
                "update ledger_accounts set debits_posted = '1' where id = ?", (book.alice,)
            )


@pytest.mark.stack
class TestPostgresLedger(LedgerContract):
    @pytest.fixture
    def ledger(self, clock: Clock, fresh_postgres_url: str) -> Ledger:
        return SqlLedger(fresh_postgres_url, clock=clock)

    def test_the_database_itself_refuses_an_overdraft(
        self, book: Book, fresh_postgres_url: str
    ) -> None:
        book.fund(book.alice, 10)
        with (
            psycopg.connect(fresh_postgres_url) as conn,
            pytest.raises(psycopg.errors.CheckViolation, match="ledger_no_overdraft"),
        ):
            conn.execute(
                "update ledger_accounts set debits_pending = 11 where id = %s", (book.alice,)
            )
        assert book.available(book.alice) == 10


def test_float_and_string_amounts_never_reach_a_ledger() -> None:
    from pydantic import ValidationError

    for bad in (1.5, "10", 10.0, 2**256):
        with pytest.raises(ValidationError):
            Transfer(id="t", debit_account="a", credit_account="b", asset="BTC", amount=bad)  # type: ignore[arg-type]


def test_expiry_requires_a_pending_transfer() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pending"):
        Transfer(
            id="t",
            debit_account="a",
            credit_account="b",
            asset="BTC",
            amount=1,
            expires_at=datetime(2030, 1, 1, tzinfo=UTC),
        )
