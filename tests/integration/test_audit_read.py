"""Reading the audit topic on real Kafka: from its first offset even when the log no
longer starts at 0, ranges by offset, unreadable values named, an empty topic empty."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from adapters.kafka.audit_log import read_audit
from adapters.kafka.bus import KafkaEventBus
from sagas.ports import TopicSpec
from services.settings import PlatformSettings


def _topic(settings: PlatformSettings, values: list[bytes]) -> str:
    topic = f"test.audit-read.{uuid.uuid4().hex[:8]}"
    KafkaEventBus(settings.kafka_client("admin")).ensure_topics([TopicSpec(topic, 1, {})])
    producer = Producer(settings.kafka_client("admin"))
    for value in values:
        producer.produce(topic, value=value)
    producer.flush(10)
    return topic


def test_ranges_and_unreadable_values(stack_settings: PlatformSettings) -> None:
    topic = _topic(stack_settings, [b"not a record %d" % i for i in range(10)])
    admin = stack_settings.kafka_client("admin")
    assert read_audit(admin, topic) == [(i, None) for i in range(10)]
    assert [o for o, _ in read_audit(admin, topic, start=3)] == list(range(3, 10))
    assert [o for o, _ in read_audit(admin, topic, start=6, end=8)] == [6, 7, 8]


def test_an_empty_topic_reads_as_empty(stack_settings: PlatformSettings) -> None:
    assert read_audit(stack_settings.kafka_client("admin"), _topic(stack_settings, [])) == []


@pytest.mark.parametrize("start", [0, -1])
def test_the_beginning_is_the_first_offset_still_in_the_log(
    stack_settings: PlatformSettings, start: int
) -> None:
    topic = _topic(stack_settings, [b"x%d" % i for i in range(10)])
    config: dict[str, Any] = stack_settings.kafka_client("admin")
    admin = AdminClient(config)
    for future in admin.delete_records([TopicPartition(topic, 0, 4)]).values():
        future.result(30)
    records = read_audit(stack_settings.kafka_client("admin"), topic, start=start)
    assert [o for o, _ in records] == list(range(4, 10))
