"""EventBus contract: the fake and Kafka behave alike."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from adapters.kafka.bus import KafkaEventBus
from sagas.events import Envelope
from sagas.ports import EventBus, TopicSpec
from services.settings import PlatformSettings
from tests.fakes import FakeEventBus


def _event(subject: str, n: int) -> Envelope:
    return Envelope(
        source="/tests", type="custody.test.happened.v1", subject=subject, data={"n": n}
    )


class EventBusContract:
    @pytest.fixture
    def bus(self) -> EventBus:
        raise NotImplementedError

    @pytest.fixture
    def topic(self, bus: EventBus) -> str:
        name = f"test.contract.{uuid.uuid4().hex[:10]}"
        bus.ensure_topics([TopicSpec(name, partitions=3, config={"retention.ms": "3600000"})])
        return name

    def test_is_an_event_bus(self, bus: EventBus) -> None:
        assert isinstance(bus, EventBus)

    def test_published_event_is_read_back_equal(self, bus: EventBus, topic: str) -> None:
        event = _event("acct-1", 1)
        bus.publish(topic, event)
        assert bus.read(topic, "g1", max_events=10, timeout=10) == [event]

    def test_events_of_one_subject_keep_their_order(self, bus: EventBus, topic: str) -> None:
        events = [_event("acct-ordered", n) for n in range(20)]
        for e in events:
            bus.publish(topic, e)
        got: list[Envelope] = []
        for _ in range(10):
            got += bus.read(topic, "g-order", max_events=100, timeout=5)
            if len(got) >= len(events):
                break
        assert got == events

    def test_a_group_does_not_read_an_event_twice(self, bus: EventBus, topic: str) -> None:
        bus.publish(topic, _event("acct-2", 1))
        assert len(bus.read(topic, "g2", max_events=10, timeout=10)) == 1
        assert bus.read(topic, "g2", max_events=10, timeout=2) == []
        assert len(bus.read(topic, "g3", max_events=10, timeout=10)) == 1

    def test_ensure_topics_is_idempotent(self, bus: EventBus, topic: str) -> None:
        bus.ensure_topics([TopicSpec(topic, partitions=3, config={})])
        bus.publish(topic, _event("acct-3", 1))
        assert len(bus.read(topic, "g4", max_events=10, timeout=10)) == 1


class TestFakeEventBus(EventBusContract):
    @pytest.fixture
    def bus(self) -> EventBus:
        return FakeEventBus()


@pytest.mark.stack
class TestKafkaEventBus(EventBusContract):
    @pytest.fixture
    def bus(self, stack_settings: PlatformSettings) -> Iterator[EventBus]:
        bus = KafkaEventBus(stack_settings.kafka_client("admin"), client_id="contract-tests")
        yield bus
        bus.close()
