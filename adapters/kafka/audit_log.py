"""The audit topic on Kafka: a fenced transactional appender and a committed-only reader.

One writer at a time: the appender's transactional id is fixed, so a second
appender starting with the same id fences the first (its next transaction
fails), and its records and consumed offsets commit atomically (exactly once
from the events topic into the audit chain).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from pydantic import ValidationError

from adapters.kafka import Connection, client_config
from sagas.audit import GENESIS, AuditRecord
from sagas.errors import DependencyUnavailable
from sagas.events import Envelope

_LOG = logging.getLogger("custody.kafka.audit")


def unreadable_event(raw: bytes, topic: str, partition: int, offset: int) -> Envelope:
    """An event that records bytes which did not parse, identified by their hash."""
    digest = hashlib.sha256(raw).hexdigest()
    return Envelope(
        id=f"unreadable-{digest}",
        source="/custody/audit",
        type="custody.audit.unreadable.v1",
        subject=f"{topic}/{partition}",
        data={
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "sha256": digest,
            "raw_base64": base64.b64encode(raw).decode(),
        },
    )


class WriterFenced(Exception):
    """Another audit writer with the same transactional id took over; this one must stop."""


# Records taken from the consumer's queue at a time (it prefetches whole fetches).
_READ_BATCH = 1000
# AuditRecord.model_validate_json without its Python wrapper (a quarter of the time on
# records of 1 kB): the same validator, with the same defaults.
_parse_record = AuditRecord.__pydantic_validator__.validate_json


def read_audit(
    connection: Connection,
    topic: str,
    start: int = 0,
    end: int | None = None,
    timeout: float = 30.0,
) -> list[tuple[int, AuditRecord | None]]:
    """Committed records of the (single-partition) audit topic from offset `start` through
    `end`, in order; a record that does not parse is returned as None."""
    config: dict[str, object] = {
        "group.id": "custody-audit-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "isolation.level": "read_committed",
        # The end of the partition shows as an empty fetch: let the broker answer one in
        # 10 ms rather than hold it 500 ms (its default) waiting for new records.
        "fetch.wait.max.ms": 10,
        "logger": _LOG,
    }
    if start <= 0:
        # The beginning as offset 0, or the log's first offset if 0 is gone: what
        # OFFSET_BEGINNING means, without the offset lookup librdkafka puts off by 500 ms
        # when the partition's leader is not known yet (always, on a new consumer).
        config["auto.offset.reset"] = "earliest"
    else:
        # An offset past the end or removed by retention is an error, not an empty read
        # (librdkafka's default would jump to the end: "OK, 0 records").
        config["auto.offset.reset"] = "error"
    consumer = Consumer(client_config(connection, **config))
    out: list[tuple[int, AuditRecord | None]] = []
    try:
        consumer.assign([TopicPartition(topic, 0, max(start, 0))])
        while True:
            # Whatever is queued, without waiting; else wait for the next message or event.
            batch = consumer.consume(num_messages=_READ_BATCH, timeout=0)
            if not batch:
                msg = consumer.poll(timeout)
                if msg is None:
                    raise DependencyUnavailable(f"kafka: no answer reading {topic} in {timeout} s")
                batch = [msg]
            for msg in batch:
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        return out
                    raise DependencyUnavailable(f"kafka: read {topic}: {err.str()}")
                offset = msg.offset() or 0
                if end is not None and offset > end:
                    return out
                try:
                    out.append((offset, _parse_record(msg.value() or b"")))
                except ValidationError:
                    out.append((offset, None))
    finally:
        consumer.close()


AUDIT_GROUP = "custody-audit"


def chain_lag(
    connection: Connection, events_topic: str, group: str = AUDIT_GROUP, timeout: float = 10.0
) -> dict[int, tuple[int, int]]:
    """How far the audit writer is behind: per partition of the events topic, (the offset
    its group committed, the partition's end). The writer commits its offsets in the
    transaction that appends their records, so what it committed is chained. Read with
    the writer's principal (a group's committed offsets need Describe on it); this joins
    no group, so the running writer is not disturbed."""
    consumer = Consumer(
        client_config(
            connection,
            **{
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "logger": _LOG,
            },
        )
    )
    try:
        try:
            topic = consumer.list_topics(events_topic, timeout=timeout).topics[events_topic]
            if topic.error is not None:
                raise DependencyUnavailable(f"kafka: {events_topic}: {topic.error}")
            partitions = [TopicPartition(events_topic, p) for p in sorted(topic.partitions)]
            out: dict[int, tuple[int, int]] = {}
            for tp in consumer.committed(partitions, timeout=timeout):
                low, high = consumer.get_watermark_offsets(tp, timeout=timeout, cached=False)
                # Nothing committed yet: the writer starts at the log's beginning.
                out[tp.partition] = (tp.offset if tp.offset >= 0 else low, high)
            return out
        except KafkaException as exc:
            raise DependencyUnavailable(f"kafka: the audit writer's lag: {exc}") from exc
    finally:
        consumer.close()


class KafkaAuditAppender:
    def __init__(
        self,
        connection: Connection,
        events_topic: str,
        audit_topic: str,
        transactional_id: str = "custody-audit-writer",
        group: str = AUDIT_GROUP,
    ) -> None:
        self._connection = connection
        self._events_topic = events_topic
        self._audit_topic = audit_topic
        self._producer = Producer(
            client_config(
                connection,
                **{
                    "transactional.id": transactional_id,
                    "enable.idempotence": True,
                    "acks": "all",
                    "logger": _LOG,
                },
            )
        )
        self._consumer = Consumer(
            client_config(
                connection,
                **{
                    "group.id": group,
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                    "isolation.level": "read_committed",
                    "logger": _LOG,
                },
            )
        )

    def start(self) -> tuple[int, str, set[str]]:
        """Fence any earlier writer, then recover the chain head: (next seq, last hash,
        event ids already in the chain)."""
        try:
            self._producer.init_transactions(30)
        except KafkaException as exc:
            raise DependencyUnavailable(f"kafka: init transactions: {exc}") from exc
        existing = read_audit(self._connection, self._audit_topic)
        if existing and existing[-1][1] is None:
            # Resuming from an earlier record would reuse sequence numbers: a fork.
            raise RuntimeError(
                f"the last record of {self._audit_topic} (offset {existing[-1][0]}) is not a "
                "valid audit record; run `custody audit verify` before writing again"
            )
        records = [r for _, r in existing if r is not None]
        self._consumer.subscribe([self._events_topic])
        if not records:
            return 0, GENESIS, set()
        return records[-1].seq + 1, records[-1].hash, {r.event_id for r in records}

    def poll(self, max_events: int, timeout: float) -> list[Envelope]:
        events = []
        for msg in self._consumer.consume(num_messages=max_events, timeout=timeout):
            if msg.error() is not None:
                raise DependencyUnavailable(f"kafka: read {self._events_topic}: {msg.error()}")
            raw = msg.value() or b""
            try:
                events.append(Envelope.from_json(raw))
            except ValidationError:
                # Not an event we can parse: chain it anyway (encrypted, as raw bytes), so
                # the audit shows it and the writer does not stop on it for ever.
                events.append(
                    unreadable_event(
                        raw, msg.topic() or "", msg.partition() or 0, msg.offset() or 0
                    )
                )
        return events

    def rewind(self) -> None:
        """Go back to the last committed offsets (after a batch that did not commit)."""
        assignment = self._consumer.assignment()
        if not assignment:
            return
        for tp in self._consumer.committed(assignment, timeout=30):
            if tp.offset < 0:
                tp.offset = OFFSET_BEGINNING
            self._consumer.seek(tp)

    def caught_up(self) -> bool:
        """True once partitions are assigned and consumed up to their high watermarks."""
        assignment = self._consumer.assignment()
        if not assignment:
            return False
        for tp in self._consumer.position(assignment):
            _low, high = self._consumer.get_watermark_offsets(tp, timeout=10, cached=False)
            if tp.offset < 0 and high > 0:
                return False  # nothing consumed yet on a partition that has messages
            if tp.offset >= 0 and tp.offset < high:
                return False
        return True

    def append(self, records: list[AuditRecord]) -> None:
        """Write the records and the consumed events' offsets in one transaction."""
        try:
            self._producer.begin_transaction()
            for record in records:
                self._producer.produce(
                    self._audit_topic, key=b"custody-audit", value=record.to_json()
                )
            assignment = self._consumer.assignment()
            if assignment:
                self._producer.send_offsets_to_transaction(
                    self._consumer.position(assignment),
                    self._consumer.consumer_group_metadata(),
                    30,
                )
            self._commit()
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.fatal() or error.code() in (
                KafkaError._FENCED,
                KafkaError.PRODUCER_FENCED,
                KafkaError.INVALID_PRODUCER_EPOCH,
            ):
                raise WriterFenced(error.str()) from exc
            if error.txn_requires_abort():
                with contextlib.suppress(KafkaException):
                    self._producer.abort_transaction(30)
            raise DependencyUnavailable(f"kafka: audit transaction: {error.str()}") from exc

    def _commit(self) -> None:
        # A retriable failure may still complete in the background: librdkafka wants the
        # same call repeated, not a new transaction (which would fork the chain).
        for attempt in range(5):
            try:
                self._producer.commit_transaction(30)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == 4:
                    raise

    def close(self) -> None:
        self._consumer.close()
