"""Outbox contract: the ledgers' transactional outbox, tests/fakes.py InMemoryLedger and
adapters/ledger/sql.py SqlLedger on SQLite and PostgreSQL (each a fresh database, so
every event waiting is this test's). Events come from ledger transfers, as in service.

Checked: nothing waits in a new outbox; each committed transfer's events wait, oldest
first (by position, in commit order), with their topic; `limit` takes the oldest;
marking takes out exactly the positions named (not every one below them), is
idempotent, and leaves the rest in order; a refused batch or an idempotent repeat adds
no event (events are committed with the change that caused them, or not at all)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from adapters.ledger.sql import SqlLedger
from sagas.errors import InsufficientFunds
from sagas.ledger import Account, AccountKind, Asset, Transfer
from sagas.ports import Ledger, Outbox
from sagas.topics import EVENTS
from tests.fakes import InMemoryLedger

OMNIBUS, ALICE, BOB = "omnibus", "client:alice:TST", "client:bob:TST"


def transfer_of(debit: str, credit: str, amount: int) -> Transfer:
    return Transfer(
        id=f"t-{uuid.uuid4().hex}",
        debit_account=debit,
        credit_account=credit,
        asset="TST",
        amount=amount,
    )


class Books:
    """The outbox and the ledger it belongs to, with an asset and three accounts."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.outbox: Outbox = ledger  # type: ignore[assignment]
        ledger.register_asset(Asset(code="TST", decimals=2))
        ledger.open_account(Account(id=OMNIBUS, asset="TST", kind=AccountKind.OMNIBUS))
        for client in (ALICE, BOB):
            ledger.open_account(Account(id=client, asset="TST", kind=AccountKind.CLIENT_AVAILABLE))

    def move(self, debit: str, credit: str, amount: int) -> Transfer:
        transfer = transfer_of(debit, credit, amount)
        self.ledger.submit([transfer])
        return transfer

    def waiting(self) -> list[tuple[int, str, str, str]]:
        """(position, topic, transfer id, subject) of every unpublished event."""
        items = self.outbox.unpublished(10_000)
        return [
            (i.position, i.topic, str(i.event.data["transfer_id"]), i.event.subject) for i in items
        ]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def books(request: pytest.FixtureRequest, tmp_path: Path) -> Books:
    if request.param == "memory":
        return Books(InMemoryLedger())
    if request.param == "sqlite":
        return Books(SqlLedger(f"sqlite:///{tmp_path / 'ledger.sqlite3'}"))
    request.node.add_marker(pytest.mark.stack)
    return Books(SqlLedger(request.getfixturevalue("fresh_postgres_url")))


def test_is_the_port_and_starts_empty(books: Books) -> None:
    assert isinstance(books.ledger, Outbox)
    assert books.outbox.unpublished(100) == []


def test_committed_events_wait_oldest_first(books: Books) -> None:
    first = books.move(OMNIBUS, ALICE, 500)
    second = books.move(ALICE, BOB, 200)
    waiting = books.waiting()
    positions = [w[0] for w in waiting]
    assert positions == sorted(set(positions))
    assert [w[1:] for w in waiting] == [
        (EVENTS.name, first.id, OMNIBUS),
        (EVENTS.name, first.id, ALICE),
        (EVENTS.name, second.id, ALICE),
        (EVENTS.name, second.id, BOB),
    ]
    assert [i.position for i in books.outbox.unpublished(3)] == positions[:3]


def test_marking_takes_out_exactly_the_positions_named(books: Books) -> None:
    for _ in range(3):
        books.move(OMNIBUS, ALICE, 100)
    p = [w[0] for w in books.waiting()]
    books.outbox.mark_published([p[3]])  # a later one first: the earlier ones stay
    assert [w[0] for w in books.waiting()] == p[:3] + p[4:]
    books.outbox.mark_published([p[0], p[3]])
    books.outbox.mark_published([p[0]])  # idempotent
    books.outbox.mark_published([])
    assert [w[0] for w in books.waiting()] == [p[1], p[2], p[4], p[5]]
    assert [i.position for i in books.outbox.unpublished(1)] == [p[1]]
    later = books.move(ALICE, BOB, 1)
    assert [w[2] for w in books.waiting()][-2:] == [later.id, later.id]


def test_only_committed_changes_have_events(books: Books) -> None:
    funded = books.move(OMNIBUS, ALICE, 100)
    before = books.waiting()
    books.ledger.submit([funded])  # a repeat of a transfer applied before: no change
    with pytest.raises(InsufficientFunds):  # all or none: its first transfer is undone
        books.ledger.submit([transfer_of(ALICE, BOB, 50), transfer_of(BOB, ALICE, 999)])
    assert books.waiting() == before
