"""Kafka authenticates every client (SASL/SCRAM) and authorizes it by ACL: only the
bank's principal may write the commands topic (issue 12, point 7 and attack 1e)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from adapters.kafka.access import AUDIT_TRANSACTIONAL_ID
from adapters.kafka.bus import KafkaEventBus
from adapters.ledger.sql import SqlLedger
from sagas.errors import DependencyUnavailable
from sagas.events import Envelope
from sagas.ports import TopicSpec
from sagas.topics import AUDIT, COMMANDS, EVENTS
from services.projector.projector import publish_balances, replay
from services.settings import PlatformSettings, stack_env_file
from tests.helpers import funded_book


def _command(marker: str) -> Envelope:
    return Envelope(
        source="/tests/acl",
        type="custody.command.withdrawal.create.v1",
        subject=f"client:acl-{marker}:commands",
        data={"marker": marker},
    )


def _produce(config: dict[str, str], topic: str, value: bytes) -> list[int]:
    """Produce one record; the error codes seen (delivery report and client errors, such
    as a failed login); [] if the record was acknowledged."""
    codes: list[int] = []
    producer = Producer(
        {
            **config,
            "acks": "all",
            "message.timeout.ms": 8_000,
            "log_level": 0,
            "error_cb": lambda err: codes.append(err.code()),
        }
    )
    delivered: list[bool] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        delivered.append(err is None)
        if err is not None:
            codes.append(err.code())

    producer.produce(topic, value=value, on_delivery=on_delivery)
    producer.flush(15)
    assert delivered, "no delivery report"
    return codes


def _on_topic(settings: PlatformSettings, topic: str, marker: str) -> list[bytes]:
    """Every record of `topic` (read as the admin) whose value contains `marker`."""
    admin_config = settings.kafka_client("admin")
    meta = AdminClient(admin_config).list_topics(topic, timeout=10)
    consumer = Consumer(
        {
            **admin_config,
            "group.id": f"test-acl-{uuid.uuid4().hex[:8]}",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    partitions = list(meta.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    found, at_end = [], set()
    try:
        while len(at_end) < len(partitions):
            msg = consumer.poll(10)
            assert msg is not None, f"no answer reading {topic}"
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                at_end.add(msg.partition())
                continue
            if marker.encode() in (msg.value() or b""):
                found.append(msg.value() or b"")
    finally:
        consumer.close()
    return found


@pytest.mark.parametrize("principal", ["api", "worker", "router", "relay", "projector"])
def test_only_the_bank_may_write_commands_others_are_refused_and_nothing_lands(
    stack_settings: PlatformSettings, principal: str
) -> None:
    marker = uuid.uuid4().hex
    bus = KafkaEventBus(stack_settings.kafka_client(principal), delivery_timeout_s=10)
    with pytest.raises(DependencyUnavailable, match=r"(?i)authorization.failed"):
        bus.publish(COMMANDS.name, _command(marker))
    codes = _produce(stack_settings.kafka_client(principal), COMMANDS.name, marker.encode())
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes
    assert _on_topic(stack_settings, COMMANDS.name, marker) == []


def test_the_bank_writes_a_command(stack_settings: PlatformSettings) -> None:
    marker = uuid.uuid4().hex
    KafkaEventBus(stack_settings.kafka_client("bank")).publish(COMMANDS.name, _command(marker))
    assert len(_on_topic(stack_settings, COMMANDS.name, marker)) == 1


def test_the_bank_may_not_forge_events_nor_read_the_audit_chain(
    stack_settings: PlatformSettings,
) -> None:
    marker = uuid.uuid4().hex
    bank = stack_settings.kafka_client("bank")
    codes = _produce(bank, EVENTS.name, marker.encode())
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes
    assert _on_topic(stack_settings, EVENTS.name, marker) == []
    with pytest.raises(DependencyUnavailable, match=r"(?i)authorization.failed"):
        KafkaEventBus(bank).read(AUDIT.name, f"bank-{marker[:8]}", 1, timeout=10)


def test_only_relay_and_router_write_events(stack_settings: PlatformSettings) -> None:
    marker = uuid.uuid4().hex
    # A well-formed event of a type nobody acts on: the real topic's readers (the router,
    # the audit chain) take it in their stride on a shared stack.
    probe = Envelope(
        source="/tests/acl", type="custody.test.acl_probe.v1", subject="acl", data={"m": marker}
    ).to_json()
    for principal in ("relay", "router"):
        assert _produce(stack_settings.kafka_client(principal), EVENTS.name, probe) == []
    for principal in ("api", "audit", "projector", "worker"):
        codes = _produce(stack_settings.kafka_client(principal), EVENTS.name, probe)
        assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes
    assert len(_on_topic(stack_settings, EVENTS.name, marker)) == 2


def test_a_process_may_not_create_topics(stack_settings: PlatformSettings) -> None:
    bus = KafkaEventBus(stack_settings.kafka_client("relay"))
    with pytest.raises(DependencyUnavailable, match="AUTHORIZATION_FAILED"):
        bus.ensure_topics([TopicSpec(f"test.acl.{uuid.uuid4().hex[:8]}", 1, {})])


def test_an_unauthenticated_client_is_refused(stack_settings: PlatformSettings) -> None:
    marker = uuid.uuid4().hex
    plain = {"bootstrap.servers": stack_settings.kafka_bootstrap}
    codes = _produce(plain, COMMANDS.name, marker.encode())
    assert codes  # the broker closes a connection that does not speak SASL
    with pytest.raises(KafkaException):
        AdminClient({**plain, "log_level": 0}).list_topics(timeout=5)
    assert _on_topic(stack_settings, COMMANDS.name, marker) == []


def test_a_wrong_password_is_refused(stack_settings: PlatformSettings) -> None:
    marker = uuid.uuid4().hex
    forged = {**stack_settings.kafka_client("bank"), "sasl.password": "not-the-password"}
    codes = _produce(forged, COMMANDS.name, marker.encode())
    assert KafkaError._AUTHENTICATION in codes or KafkaError.SASL_AUTHENTICATION_FAILED in codes
    with pytest.raises(KafkaException):
        AdminClient({**forged, "log_level": 0}).list_topics(timeout=5)
    assert _on_topic(stack_settings, COMMANDS.name, marker) == []


def test_an_unknown_user_is_refused(stack_settings: PlatformSettings) -> None:
    bank = stack_settings.kafka_client("bank")
    stranger = {**bank, "sasl.username": "mallory"}
    codes = _produce(stranger, COMMANDS.name, b"x")
    assert KafkaError._AUTHENTICATION in codes or KafkaError.SASL_AUTHENTICATION_FAILED in codes


def test_stack_publishes_paths_not_passwords(stack_settings: PlatformSettings) -> None:
    stack = stack_env_file().parent
    for principal in ("admin", "bank", "router"):
        creds = stack_settings.kafka_credentials(principal)
        assert creds is not None and creds.stat().st_mode & 0o077 == 0  # owner only
        password = stack_settings.kafka_client(principal)["sasl.password"]
        assert password not in stack_env_file().read_text()
        assert password not in (stack / "logs" / "kafka.log").read_text(errors="replace")


def test_the_processes_work_under_their_own_principals(
    stack_settings: PlatformSettings, tmp_path: Path
) -> None:
    """The relay process publishes the outbox as `relay`; the projector rebuilds balances
    as `projector` and publishes them; the router's consumer reads commands and events."""
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    ledger = SqlLedger(url)
    book = funded_book(ledger, "acl", 10**9)
    relay = subprocess.run(
        [sys.executable, "-m", "services.relay.main", "--ledger-url", url, "--until-empty"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert relay.returncode == 0, relay.stdout + relay.stderr
    assert ledger.unpublished(100) == []

    projector = KafkaEventBus(stack_settings.kafka_client("projector"))
    projection = replay(projector)
    assert projection.balance(book.a) == ledger.balance(book.a)
    assert publish_balances(projector, projection) > 0

    router = Consumer(
        {
            **stack_settings.kafka_client("router"),
            "group.id": f"custody-router-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
        }
    )
    router.subscribe([COMMANDS.name, EVENTS.name])
    try:
        msg = None
        deadline = time.monotonic() + 30
        while msg is None and time.monotonic() < deadline:
            msg = router.poll(1)
        assert msg is not None and msg.error() is None, msg and msg.error()
    finally:
        router.close()


def test_a_consumer_outside_its_groups_or_topics_is_refused(
    stack_settings: PlatformSettings,
) -> None:
    # The API may read events, but under its own group prefix only; never commands.
    for topic, group in ((EVENTS.name, "custody-router"), (COMMANDS.name, "custody-sse-x")):
        consumer = Consumer(
            {
                **stack_settings.kafka_client("api"),
                "group.id": group,
                "auto.offset.reset": "earliest",
            }
        )
        consumer.subscribe([topic])
        try:
            with pytest.raises(KafkaException, match=r"(?i)authorization"):
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    msg = consumer.poll(1)
                    if msg is not None and msg.error() is not None:
                        raise KafkaException(msg.error())
        finally:
            consumer.close()


@pytest.mark.parametrize("principal", ["relay", "router", "api"])
def test_no_other_principal_may_take_the_audit_writers_transactional_id(
    stack_settings: PlatformSettings, principal: str
) -> None:
    """Else a stolen credential could fence the audit writer (stop the chain) or write
    the audit topic as it. Refused before any epoch is bumped: the writer runs on."""
    producer = Producer(
        {
            **stack_settings.kafka_client(principal),
            "transactional.id": AUDIT_TRANSACTIONAL_ID,
            "log_level": 0,
        }
    )
    with pytest.raises(KafkaException) as refused:
        producer.init_transactions(15)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
