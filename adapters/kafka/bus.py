"""EventBus on Apache Kafka: idempotent producer (acks=all), manual offset commits."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from pydantic import ValidationError

from adapters.kafka import Connection, client_config
from sagas.errors import DependencyUnavailable
from sagas.events import Envelope
from sagas.ports import TopicSpec

# librdkafka's own log lines go to Python logging, not straight to stderr.
_LOG = logging.getLogger("custody.kafka")


class KafkaEventBus:
    def __init__(
        self,
        connection: Connection,
        client_id: str = "custody",
        delivery_timeout_s: float = 30.0,
        replication_factor: int = 1,
    ) -> None:
        # 1 on the single-broker dev stack; production: 3 (with min.insync.replicas=2 on
        # the brokers), or acks=all means one copy and a lost disk loses published events.
        self._replication = replication_factor
        self._connection = connection
        self._client_id = client_id
        self._timeout = delivery_timeout_s
        self._producer: Producer | None = None
        self._fatal: KafkaError | None = None

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(
                client_config(
                    self._connection,
                    **{
                        "client.id": self._client_id,
                        # Exactly-once per partition from the producer's side: retries never
                        # duplicate.
                        "enable.idempotence": True,
                        "acks": "all",
                        "delivery.timeout.ms": int(self._timeout * 1000),
                        "linger.ms": 5,
                        "logger": _LOG,
                        "error_cb": self._on_error,
                    },
                )
            )
        return self._producer

    def _on_error(self, err: KafkaError) -> None:
        # A fatal error (e.g. this principal may not write at all: no idempotent producer
        # id) ends the producer; publish reports it. Others are retried by librdkafka.
        if err.fatal():
            self._fatal = err
        else:
            _LOG.warning("kafka: %s", err.str())

    def ensure_topics(self, specs: Sequence[TopicSpec]) -> None:
        admin = AdminClient(
            client_config(self._connection, **{"client.id": self._client_id, "logger": _LOG})
        )
        try:
            existing = set(admin.list_topics(timeout=10).topics)
        except KafkaException as exc:
            raise DependencyUnavailable(f"kafka: {exc}") from exc
        new = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=self._replication,
                config=s.config,
            )
            for s in specs
            if s.name not in existing
        ]
        if not new:
            return
        for name, future in admin.create_topics(new, operation_timeout=10).items():
            try:
                future.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise DependencyUnavailable(f"kafka: creating {name}: {exc}") from exc

    def publish(self, topic: str, event: Envelope) -> None:
        self.publish_all([(topic, event)])

    def publish_all(self, items: Sequence[tuple[str, Envelope]]) -> None:
        producer = self._get_producer()
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        for topic, event in items:
            while True:
                try:
                    producer.produce(
                        topic,
                        key=event.key(),
                        value=event.to_json(),
                        headers={"ce_id": event.id, "ce_type": event.type},
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    producer.poll(0.5)  # local queue full: let deliveries drain, then retry
        try:
            remaining = producer.flush(self._timeout)
        except (KafkaException, SystemError) as exc:
            # confluent-kafka raises a fatal error (a principal that may write no topic is
            # refused an idempotent producer id: CLUSTER_AUTHORIZATION_FAILED) from flush,
            # and a delivery callback that runs after it then fails as a SystemError.
            cause = exc if isinstance(exc, KafkaException) else exc.__cause__
            self._producer = None
            if not isinstance(cause, KafkaException):
                raise
            error: KafkaError = cause.args[0]
            raise DependencyUnavailable(f"kafka: publish: {error.name()}: {error.str()}") from exc
        if self._fatal is not None:
            fatal, self._fatal, self._producer = self._fatal, None, None  # a new one next time
            raise DependencyUnavailable(f"kafka: publish: {fatal.name()}: {fatal.str()}")
        if remaining or errors:
            detail = (
                f"{errors[0].name()}: {errors[0].str()}"
                if errors
                else f"{remaining} message(s) not acknowledged"
            )
            raise DependencyUnavailable(f"kafka: publish: {detail}")

    def read(self, topic: str, group: str, max_events: int, timeout: float) -> list[Envelope]:
        consumer = Consumer(
            client_config(
                self._connection,
                **{
                    "group.id": group,
                    "client.id": self._client_id,
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    "enable.partition.eof": True,
                    "isolation.level": "read_committed",
                    "logger": _LOG,
                },
            )
        )
        assigned: set[int] = set()
        at_end: set[int] = set()

        def on_assign(_c: Consumer, partitions: list[TopicPartition]) -> None:
            assigned.update(p.partition for p in partitions)

        events: list[Envelope] = []
        deadline = time.monotonic() + timeout
        try:
            consumer.subscribe([topic], on_assign=on_assign)
            # Stop at max_events, at the timeout, or once every assigned partition is
            # drained, whichever comes first: a caught-up reader does not wait it out.
            while len(events) < max_events and (remaining := deadline - time.monotonic()) > 0:
                msg = consumer.poll(min(remaining, 0.5))
                if msg is None:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        raise DependencyUnavailable(f"kafka: read {topic}: {err.str()}")
                    at_end.add(msg.partition() or 0)
                    if assigned and at_end >= assigned:
                        break
                    continue
                at_end.discard(msg.partition() or 0)
                value = msg.value()
                if value is None:
                    continue
                try:
                    events.append(Envelope.from_json(value))
                except ValidationError:
                    # Not one of our events: skip it rather than stop every reader on it
                    # for ever (the audit writer keeps such bytes in the chain).
                    _LOG.warning(
                        "skipping a record of %s at %s/%s that is not an event",
                        topic,
                        msg.partition(),
                        msg.offset(),
                    )
            if events:
                consumer.commit(asynchronous=False)
        finally:
            consumer.close()
        return events

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout)
            self._producer = None
