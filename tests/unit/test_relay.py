"""The relay with fakes: at-least-once, marks only what Kafka acknowledged."""

from __future__ import annotations

import pytest

from sagas.ledger import Account, AccountKind, Asset, Transfer
from sagas.ledger.projection import BalanceProjection
from sagas.topics import ALL, EVENTS
from services.relay.relay import Relay
from tests.fakes import FakeEventBus, InMemoryLedger


class Crash(Exception):
    pass


def _ledger_with_transfers(n: int) -> InMemoryLedger:
    ledger = InMemoryLedger()
    ledger.register_asset(Asset(code="BTC", decimals=8))
    ledger.open_account(Account(id="omni", asset="BTC", kind=AccountKind.OMNIBUS))
    ledger.open_account(Account(id="c1", asset="BTC", kind=AccountKind.CLIENT_AVAILABLE))
    for i in range(n):
        ledger.submit(
            [
                Transfer(
                    id=f"t{i}", debit_account="omni", credit_account="c1", asset="BTC", amount=i + 1
                )
            ]
        )
    return ledger


def test_relay_publishes_in_order_and_empties_the_outbox() -> None:
    ledger, bus = _ledger_with_transfers(5), FakeEventBus()
    bus.ensure_topics(ALL)
    assert Relay(ledger, bus, batch_size=3).drain() == 10
    assert ledger.unpublished(100) == []
    c1 = [e for e in bus.topics[EVENTS.name] if e.subject == "c1"]
    assert [e.data["transfer_id"] for e in c1] == [f"t{i}" for i in range(5)]


def test_a_crash_after_publish_republishes_and_consumers_converge() -> None:
    ledger, bus = _ledger_with_transfers(4), FakeEventBus()
    bus.ensure_topics(ALL)

    def crash() -> None:
        raise Crash

    with pytest.raises(Crash):
        Relay(ledger, bus, after_publish=crash).run_once()
    assert len(ledger.unpublished(100)) == 8  # published, never marked
    Relay(ledger, bus).drain()
    assert ledger.unpublished(100) == []
    events = bus.topics[EVENTS.name]
    assert len(events) == 16 and len({e.id for e in events}) == 8
    projection = BalanceProjection()
    for event in events:
        projection.apply(event)
    assert projection.balance("c1") == ledger.balance("c1")
    assert projection.balance("omni") == ledger.balance("omni")


def test_nothing_is_marked_when_the_bus_refuses() -> None:
    ledger = _ledger_with_transfers(2)
    bus = FakeEventBus()  # no topics: publishing raises
    with pytest.raises(KeyError):
        Relay(ledger, bus).run_once()
    assert len(ledger.unpublished(100)) == 4
    assert bus.topics == {}


def test_the_running_relay_survives_a_refusal_and_relays_once_the_bus_is_back() -> None:
    import threading

    ledger = _ledger_with_transfers(2)
    bus = FakeEventBus()  # no topics yet: the first batches fail
    stop = threading.Event()
    worker = threading.Thread(target=Relay(ledger, bus).run, args=(stop, 0.01))
    worker.start()
    try:
        threading.Event().wait(1.5)  # at least one failed batch, logged and retried
        bus.ensure_topics(ALL)
        for _ in range(100):
            if not ledger.unpublished(100):
                break
            threading.Event().wait(0.1)
    finally:
        stop.set()
        worker.join(5)
    assert ledger.unpublished(100) == []
    assert len(bus.topics[EVENTS.name]) == 4
