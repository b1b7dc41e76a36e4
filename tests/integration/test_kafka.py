"""Kafka through the platform's EventBus: topics as specified, events read back."""

from __future__ import annotations

import uuid

from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from adapters.kafka.bus import KafkaEventBus
from sagas.events import Envelope
from sagas.ports import TopicSpec
from services.settings import PlatformSettings


def test_topic_is_created_with_its_partitions_and_config(stack_settings: PlatformSettings) -> None:
    # Topics are the platform admin's to create (no process principal may).
    bus = KafkaEventBus(stack_settings.kafka_client("admin"))
    name = f"test.compacted.{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([TopicSpec(name, partitions=6, config={"cleanup.policy": "compact"})])
    admin = AdminClient(stack_settings.kafka_client("admin"))
    topic = admin.list_topics(timeout=10).topics[name]
    assert len(topic.partitions) == 6
    resource = ConfigResource(ResourceType.TOPIC, name)
    config = admin.describe_configs([resource])[resource].result()
    assert config["cleanup.policy"].value == "compact"


def test_event_published_is_read_back_with_key_and_payload(
    stack_settings: PlatformSettings,
) -> None:
    bus = KafkaEventBus(stack_settings.kafka_client("admin"))
    topic = f"test.events.{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([TopicSpec(topic, partitions=3, config={})])
    sent = [
        Envelope(
            source="/tests",
            type="custody.deposit.observed.v1",
            subject=f"acct-{i % 2}",
            data={"amount": str(1000 + i), "asset": "BTC"},
        )
        for i in range(6)
    ]
    for event in sent:
        bus.publish(topic, event)
    bus.close()
    got = bus.read(topic, f"it-{uuid.uuid4().hex[:6]}", max_events=100, timeout=15)
    assert sorted(got, key=lambda e: e.id) == sorted(sent, key=lambda e: e.id)
    for account in ("acct-0", "acct-1"):  # per-account order survives partitioning
        assert [e for e in got if e.subject == account] == [e for e in sent if e.subject == account]
