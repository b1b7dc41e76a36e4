"""The e2e tier's view of the platform runner (services/runner.py), plus HTTP helpers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from adapters.kafka.bus import KafkaEventBus
from sagas.events import Envelope
from sagas.topics import ALERTS
from services.cli.request_signing import ClientRequestSigner
from services.runner import BTC_DEPTH, ETH_DEPTH, Miner, Running, free_port, wait_for

__all__ = [
    "BTC_DEPTH",
    "ETH_DEPTH",
    "Miner",
    "Running",
    "alerts_about",
    "free_port",
    "post",
    "relayed",
    "rpc",
    "wait_for",
]


def relayed(run: Running, operator: str, client_id: str) -> httpx.Client:
    """An operator's session carrying a request the client signed (a bank's back office
    relaying it): the operator is its requester."""
    return httpx.Client(
        base_url=run.base_url,
        headers={"Authorization": f"Bearer {run.token(operator, 'operator')}"},
        auth=ClientRequestSigner(run.client_key(client_id)),
        timeout=30,
    )


def post(client: httpx.Client, path: str, body: Any, key: str | None = None) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key or uuid.uuid4().hex})


def alerts_about(run: Running, subject: str, kind: str, timeout: float = 60) -> list[Envelope]:
    """The alerts of type `kind` about `subject` on the alerts topic (read from its start
    by a new consumer group each time), once there is at least one."""
    bus = KafkaEventBus(run.settings.kafka_client("admin"))

    def found() -> list[Envelope]:
        group = f"test-alerts-{uuid.uuid4().hex[:8]}"
        every = bus.read(ALERTS.name, group, 1_000_000, timeout=20)
        return [e for e in every if e.subject == subject and e.type == kind]

    return list(wait_for(f"a {kind} alert about {subject}", found, timeout=timeout))


def rpc(run: Running, method: str, params: list[Any]) -> Any:
    return run.eth.web3.provider.make_request(method, params)  # type: ignore[arg-type]
