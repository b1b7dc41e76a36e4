"""The Kafka event backbone (confluent-kafka)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# How a client reaches Kafka: a bootstrap list (plaintext, a dev broker without
# authentication) or a full client config carrying the principal's SASL settings
# (services.settings.PlatformSettings.kafka_client). Never logged: it holds a password.
Connection = str | Mapping[str, Any]


def client_config(connection: Connection, **extra: Any) -> dict[str, Any]:
    """librdkafka settings for one client: the connection's, plus `extra`."""
    base: dict[str, Any] = (
        {"bootstrap.servers": connection} if isinstance(connection, str) else dict(connection)
    )
    return {**base, **extra}
