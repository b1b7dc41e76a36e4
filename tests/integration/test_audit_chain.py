"""The audit chain on real Kafka and OpenBao: written once per event by a fenced
transactional writer, verified by `custody audit verify`, tampering named by offset,
payloads unreadable on the topic, readable by the auditor role only."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from adapters.kafka.audit_log import WriterFenced, read_audit
from adapters.kafka.bus import KafkaEventBus
from sagas.audit import AuditRecord, chain_batch, record_hash
from sagas.errors import DependencyUnavailable
from sagas.events import Envelope
from sagas.ports import TopicSpec
from services.audit.main import build_writer
from services.audit.writer import AuditWriter
from services.settings import PlatformSettings
from tests.fakes import FakeAuditKeys

CUSTODY = str(Path(sys.executable).parent / "custody")
SECRET_IBAN = "DE89370400440532013000"
SECRET_AMOUNT = "987654321987654321987"


def _custody(*args: str) -> subprocess.CompletedProcess[str]:
    # These tests chain onto topics of their own, which only the admin may read.
    kafka = ["--kafka-principal", "admin"] if "--topic" in args else []
    return subprocess.run([CUSTODY, *args, *kafka], capture_output=True, text=True, timeout=120)


@pytest.fixture
def topics(stack_settings: PlatformSettings) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    events, audit = f"test.audit-events.{tag}", f"test.audit.{tag}"
    KafkaEventBus(stack_settings.kafka_client("admin")).ensure_topics(
        [TopicSpec(events, partitions=3, config={}), TopicSpec(audit, partitions=1, config={})]
    )
    return events, audit


def _publish(settings: PlatformSettings, topic: str, n: int) -> list[Envelope]:
    events = [
        Envelope(
            source="/tests",
            type="custody.test.payment.v1",
            subject=f"acct-{i % 4}",
            data={"iban": SECRET_IBAN, "amount": SECRET_AMOUNT, "n": i},
        )
        for i in range(n)
    ]
    KafkaEventBus(settings.kafka_client("admin")).publish_all([(topic, e) for e in events])
    return events


def _writer(
    settings: PlatformSettings, topics: tuple[str, str], txid: str, group: str | None = None
) -> AuditWriter:
    return build_writer(
        settings,
        events_topic=topics[0],
        audit_topic=topics[1],
        transactional_id=txid,
        group=group or f"audit-{txid}",
        kafka=settings.kafka_client("admin"),  # its own topics and transactional ids
    )


def _raw(settings: PlatformSettings, topic: str) -> list[bytes]:
    consumer = Consumer(
        {
            **settings.kafka_client("admin"),
            "group.id": "raw",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out = []
    while (msg := consumer.poll(10)) is not None and msg.error() is None:
        out.append(
            (msg.key() or b"")
            + (msg.value() or b"")
            + b"".join(v for _, v in (msg.headers() or []) if v)
        )
    consumer.close()
    return out


def _copy_to(settings: PlatformSettings, records: list[bytes]) -> str:
    topic = f"test.audit-copy.{uuid.uuid4().hex[:8]}"
    KafkaEventBus(settings.kafka_client("admin")).ensure_topics([TopicSpec(topic, 1, {})])
    producer = Producer(settings.kafka_client("admin"))
    for value in records:
        producer.produce(topic, value=value)
    producer.flush(10)
    return topic


def test_each_event_is_chained_once_and_verifies(
    stack_settings: PlatformSettings, topics: tuple[str, str]
) -> None:
    sent = _publish(stack_settings, topics[0], 25)
    writer = _writer(stack_settings, topics, f"tx-{uuid.uuid4().hex[:8]}")
    writer.start()
    assert writer.drain() == 25
    KafkaEventBus(stack_settings.kafka_client("admin")).publish(
        topics[0], sent[3]
    )  # a relay repeat
    assert writer.drain() == 0

    records = [r for _, r in read_audit(stack_settings.kafka_client("admin"), topics[1])]
    assert sorted(r.event_id for r in records if r) == sorted(e.id for e in sent)
    out = _custody("audit", "verify", "--topic", topics[1])
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("OK: 25 records verified")


def test_no_plaintext_payload_is_on_the_topic_and_only_auditors_decrypt(
    stack_settings: PlatformSettings, topics: tuple[str, str]
) -> None:
    _publish(stack_settings, topics[0], 5)
    writer = _writer(stack_settings, topics, f"tx-{uuid.uuid4().hex[:8]}")
    writer.start()
    writer.drain()
    raw = _raw(stack_settings, topics[1])
    assert len(raw) == 5
    for blob in raw:
        assert SECRET_IBAN.encode() not in blob and SECRET_AMOUNT.encode() not in blob

    shown = _custody("audit", "show", "--topic", topics[1])
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count(SECRET_IBAN) == 5
    refused = _custody("audit", "show", "--topic", topics[1], "--role", "custody-audit")
    assert refused.returncode == 4 and "CUS-4031" in refused.stderr
    assert SECRET_IBAN not in refused.stdout


@pytest.fixture(scope="module")
def chained_values() -> list[bytes]:
    """A 10-record chain written by the real writer, as the raw record values."""
    settings = PlatformSettings.load()
    tag = uuid.uuid4().hex[:8]
    topics = (f"test.audit-events.{tag}", f"test.audit.{tag}")
    KafkaEventBus(settings.kafka_client("admin")).ensure_topics(
        [TopicSpec(topics[0], partitions=3, config={}), TopicSpec(topics[1], 1, {})]
    )
    _publish(settings, topics[0], 10)
    writer = _writer(settings, topics, f"tx-{tag}")
    writer.start()
    assert writer.drain() == 10
    return [r.to_json() for _, r in read_audit(settings.kafka_client("admin"), topics[1]) if r]


@pytest.mark.parametrize(
    ("tamper", "offset", "problem"),
    [("alter", 4, "altered"), ("drop", 4, "missing"), ("swap", 6, "reordered")],
)
def test_tampered_copies_are_named_by_offset(
    stack_settings: PlatformSettings,
    chained_values: list[bytes],
    tamper: str,
    offset: int,
    problem: str,
) -> None:
    values = list(chained_values)
    if tamper == "alter":
        record = AuditRecord.model_validate_json(values[4])
        values[4] = record.model_copy(update={"event_type": "custody.benign.v1"}).to_json()
    elif tamper == "drop":
        del values[4]
    else:
        values[6], values[7] = values[7], values[6]
    out = _custody("audit", "verify", "--topic", _copy_to(stack_settings, values))
    assert out.returncode == 1
    assert out.stdout.startswith(f"BAD: offset {offset} "), out.stdout
    assert f": {problem}: " in out.stdout


def test_an_untampered_copy_verifies(
    stack_settings: PlatformSettings, chained_values: list[bytes]
) -> None:
    out = _custody("audit", "verify", "--topic", _copy_to(stack_settings, chained_values))
    assert out.returncode == 0 and out.stdout.startswith("OK: 10 records"), out.stdout


def test_a_record_appended_without_the_chain_key_is_named(
    stack_settings: PlatformSettings, topics: tuple[str, str]
) -> None:
    _publish(stack_settings, topics[0], 6)
    writer = _writer(stack_settings, topics, f"tx-{uuid.uuid4().hex[:8]}")
    writer.start()
    writer.drain()
    last = [r for _, r in read_audit(stack_settings.kafka_client("admin"), topics[1]) if r][-1]
    # The intruder can write to the topic and compute SHA-256, but holds no chain key.
    intruder_event = Envelope(source="/x", type="custody.fake.v1", subject="a")
    (forged,) = chain_batch(last.seq + 1, last.hash, [intruder_event], FakeAuditKeys())
    assert forged.hash == record_hash(forged.hashed_fields())  # links perfectly by hash
    offsets: list[int] = []
    producer = Producer(stack_settings.kafka_client("admin"))
    producer.produce(
        topics[1],
        key=b"custody-audit",
        value=forged.to_json(),
        on_delivery=lambda _e, msg: offsets.append(msg.offset()),
    )
    producer.flush(10)
    out = _custody("audit", "verify", "--topic", topics[1])
    assert out.returncode == 1
    assert out.stdout.startswith(f"BAD: offset {offsets[0]} (seq 6): forged: "), out.stdout


def test_a_second_writer_fences_the_first(
    stack_settings: PlatformSettings, topics: tuple[str, str]
) -> None:
    txid = f"tx-{uuid.uuid4().hex[:8]}"
    _publish(stack_settings, topics[0], 4)
    first = _writer(stack_settings, topics, txid)
    first.start()
    assert first.drain() == 4
    # Same transactional id: the first is fenced from here on. (Its own consumer group, so
    # the first still receives the new events and tries to write them.)
    second = _writer(stack_settings, topics, txid, group=f"audit-second-{txid}")
    second.start()
    _publish(stack_settings, topics[0], 3)
    with pytest.raises(WriterFenced):
        for _ in range(10):
            first.run_once(timeout=2)
    assert second.drain() == 3
    records = [r for _, r in read_audit(stack_settings.kafka_client("admin"), topics[1]) if r]
    assert [r.seq for r in records] == list(range(7))
    assert _custody("audit", "verify", "--topic", topics[1]).returncode == 0


class _FlakyKeys:
    """The writer's real keys, except that the first data key request fails (OpenBao down)."""

    def __init__(self, keys: object) -> None:
        self._keys = keys
        self.failed = False

    def new_data_key(self) -> tuple[bytes, str]:
        if not self.failed:
            self.failed = True
            raise DependencyUnavailable("openbao: simulated outage")
        return self._keys.new_data_key()  # type: ignore[attr-defined]

    def sign(self, digest: bytes) -> str:
        return self._keys.sign(digest)  # type: ignore[attr-defined]


def test_a_failed_batch_is_read_again_and_junk_is_chained_not_fatal(
    stack_settings: PlatformSettings, topics: tuple[str, str]
) -> None:
    sent = _publish(stack_settings, topics[0], 5)
    producer = Producer(stack_settings.kafka_client("admin"))
    producer.produce(topics[0], key=b"x", value=b"{not an event")
    producer.flush(10)
    writer = _writer(stack_settings, topics, f"tx-{uuid.uuid4().hex[:8]}")
    flaky = _FlakyKeys(writer._keys)
    writer._keys = flaky  # type: ignore[assignment]
    writer.start()
    with pytest.raises(DependencyUnavailable):
        writer.run_once(timeout=10)
    assert flaky.failed
    assert writer.drain() == 6  # nothing skipped: 5 events and the unreadable record
    records = [r for _, r in read_audit(stack_settings.kafka_client("admin"), topics[1]) if r]
    types = sorted(r.event_type for r in records)
    assert types == ["custody.audit.unreadable.v1"] + ["custody.test.payment.v1"] * 5
    assert {r.event_id for r in records} >= {e.id for e in sent}
    assert _custody("audit", "verify", "--topic", topics[1]).returncode == 0
