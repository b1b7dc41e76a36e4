"""The operation store on SQLite and PostgreSQL, and its fake (tests/fakes.py): idempotent
creation under a key, a step recorded once with its events, the timeline in order,
velocity windows."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.operations.store import SqlOperationStore
from adapters.sqldb import SqlDatabase
from sagas.errors import IdempotencyConflict
from sagas.events import Envelope
from sagas.operations import OperationRecord, step_event_id
from sagas.ports import OperationStore
from tests.fakes import FakeOperationStore

Store = tuple[OperationStore, Callable[[], list[str]]]  # the store, its outbox's event ids


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        fake = FakeOperationStore()
        yield fake, lambda: [event.id for _topic, event in fake.outbox]
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ops.sqlite3'}"
    else:
        request.node.add_marker(pytest.mark.stack)
        url = request.getfixturevalue("fresh_postgres_url")
    yield SqlOperationStore(url), lambda: outbox(url)


def record(
    op_id: str, amount: int = 5, digest: str = "h1", at: datetime | None = None
) -> OperationRecord:
    now = at or datetime.now(UTC)
    return OperationRecord(
        id=op_id,
        kind="withdrawal",
        client_id="c1",
        asset="ETH",
        chain="ethereum",
        amount=amount,
        destination="0xabc",
        request_hash=digest,
        requested_by="u1",
        state="requested",
        created_at=now,
        updated_at=now,
    )


def event(op_id: str, step: str) -> tuple[str, Envelope]:
    return "custody.events.v1", Envelope(
        id=step_event_id(op_id, step),
        source="/test",
        type="custody.withdrawal.reserved.v1",
        subject="client:c1:ETH",
    )


def outbox(url: str) -> list[str]:
    with SqlDatabase(url).tx() as conn:
        return [r[0] for r in conn.all("select event_id from ledger_outbox order by position")]


def test_an_operation_is_created_once_per_key(subject: Store) -> None:
    store, events = subject
    op_id = f"wd:c1:{uuid.uuid4().hex[:6]}"
    first, created = store.create(record(op_id), [event(op_id, "requested")])
    again, created_again = store.create(record(op_id), [event(op_id, "requested")])
    assert created and not created_again and again == first
    with pytest.raises(IdempotencyConflict):
        store.create(record(op_id, digest="h2"))
    assert events() == [step_event_id(op_id, "requested")]
    assert [s.step for s in store.timeline(op_id)] == ["requested"]


def test_a_step_is_recorded_once_with_its_events_and_fields(subject: Store) -> None:
    store, events = subject
    op_id = f"wd:c1:{uuid.uuid4().hex[:6]}"
    store.create(record(op_id))
    assert store.advance(op_id, "reserved", [event(op_id, "reserved")], state="reserved")
    assert not store.advance(op_id, "reserved", [event(op_id, "reserved")], state="failed")
    assert store.advance(
        op_id, "completed", [event(op_id, "completed")], state="completed", tx_hash="0x1", fee=21
    )
    got = store.get(op_id)
    assert got is not None
    assert (got.state, got.tx_hash, got.fee, got.approved) == ("completed", "0x1", 21, False)
    assert [s.step for s in store.timeline(op_id)] == ["requested", "reserved", "completed"]
    assert events() == [step_event_id(op_id, "reserved"), step_event_id(op_id, "completed")]


def test_recent_withdrawals_count_what_was_not_refused(subject: Store) -> None:
    store, _events = subject
    now = datetime.now(UTC)
    ids = [f"wd:c1:{uuid.uuid4().hex[:6]}" for _ in range(4)]
    store.create(record(ids[0], 10, at=now - timedelta(hours=30)))  # outside the window
    store.create(record(ids[1], 20, at=now - timedelta(hours=1)))
    store.create(record(ids[2], 40, at=now - timedelta(minutes=5)))
    store.create(record(ids[3], 80, at=now))
    for op_id in ids[:3]:
        store.advance(op_id, "reserved", state="reserved")
    store.advance(ids[2], "rejected", state="rejected")
    recent = store.recent_withdrawals("c1", "ETH", now - timedelta(hours=24), exclude=ids[0])
    assert sorted(amount for _at, amount in recent) == [20, 80]  # 80 is still being decided


def test_serialised_is_held_by_one_caller_at_a_time(subject: Store) -> None:
    """Two callers of one key: the second gets in only once the first is out (what keeps an
    unstake and a redelegation of one position from both taking its last units); another
    key is not held up; the first's writes inside are seen by the second."""
    store, _ = subject
    key = f"position:{uuid.uuid4().hex[:8]}"
    inside = threading.Event()
    order: list[str] = []

    def first() -> None:
        with store.serialised(key):
            inside.set()
            order.append("first in")
            store.create(record(f"op-{key}"))
            time.sleep(0.5)
            order.append("first out")

    def second() -> bool:
        inside.wait(5)
        with store.serialised(key):
            order.append("second in")
            return store.get(f"op-{key}") is not None

    with ThreadPoolExecutor(3) as pool:
        a, b = pool.submit(first), pool.submit(second)
        inside.wait(5)
        started = time.monotonic()
        with store.serialised(f"{key}-other"):
            other_waited = time.monotonic() - started
        a.result(10)
        seen = b.result(10)
    assert order == ["first in", "first out", "second in"]
    assert seen and other_waited < 0.4
