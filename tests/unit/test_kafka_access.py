"""The Kafka ACL table (adapters/kafka/access.py) and the clients' SASL settings."""

from __future__ import annotations

import json
from pathlib import Path

from adapters.kafka.access import PRINCIPALS, grants
from sagas.topics import AUDIT, BALANCES, COMMANDS, EVENTS
from services.settings import PlatformSettings


def _who(operation: str, topic: str) -> set[str]:
    return {
        g.principal
        for g in grants()
        if g.resource == "topic" and g.name == topic and g.operation == operation
    }


def test_only_the_bank_writes_commands_and_only_relay_and_router_write_events() -> None:
    assert _who("write", COMMANDS.name) == {"bank"}
    assert _who("write", EVENTS.name) == {"relay", "router"}
    assert _who("write", AUDIT.name) == {"audit"}
    assert _who("write", BALANCES.name) == {"projector"}
    assert _who("read", COMMANDS.name) == {"router"}
    assert _who("read", AUDIT.name) == {"audit", "auditor"}


def test_processes_without_a_kafka_client_hold_no_acl_and_nothing_is_a_wildcard() -> None:
    held = {g.principal for g in grants()}
    assert "worker" not in held and "chainwatch" not in held
    assert held <= set(PRINCIPALS)
    assert all(g.name and g.name != "*" for g in grants())
    # Prefixed grants are consumer groups only: never a topic prefix that a new topic
    # could fall under.
    assert {g.resource for g in grants() if g.prefixed} == {"group"}


def test_clients_are_plaintext_without_credentials_and_scram_with_them(tmp_path: Path) -> None:
    plain = PlatformSettings(kafka_bootstrap="127.0.0.1:1", kafka_credentials_dir=None)
    assert plain.kafka_client("router") == {"bootstrap.servers": "127.0.0.1:1"}
    creds = tmp_path / "router.json"
    creds.write_text(json.dumps({"username": "router", "password": "pw"}))
    sasl = PlatformSettings(kafka_bootstrap="127.0.0.1:1", kafka_credentials_dir=tmp_path)
    assert sasl.kafka_client("router") == {
        "bootstrap.servers": "127.0.0.1:1",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "router",
        "sasl.password": "pw",
    }
