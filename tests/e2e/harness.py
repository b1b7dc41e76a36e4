"""The e2e tier's view of the platform runner (services/runner.py), plus HTTP helpers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from services.runner import BTC_DEPTH, ETH_DEPTH, Miner, Running, free_port, wait_for

__all__ = ["BTC_DEPTH", "ETH_DEPTH", "Miner", "Running", "free_port", "post", "wait_for"]


def post(client: httpx.Client, path: str, body: Any, key: str | None = None) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key or uuid.uuid4().hex})
