"""Test helpers for the bank and liquidity simulators: open and fund accounts as the bank
would, set fault switches, read providers' orders."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from sagas.banking import make_iban

BIC = "SIMUDEFFXXX"


def new_iban() -> str:
    return make_iban("DE", f"5001051712{uuid.uuid4().int % 10**8:08d}")


def open_bank_account(url: str, iban: str, name: str = "test account") -> None:
    reply = httpx.put(
        f"{url}/v1/accounts/{iban}",
        json={"bic": BIC, "name": name, "currency": "EUR"},
        timeout=10,
    )
    assert reply.status_code in (200, 201), reply.text


def cash_in(url: str, iban: str, amount: int) -> None:
    reply = httpx.post(
        f"{url}/v1/accounts/{iban}/cash-in",
        json={"amount": amount, "end_to_end_id": f"cash-{uuid.uuid4().hex[:8]}"},
        headers={"Idempotency-Key": uuid.uuid4().hex},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text


def bank_account(url: str, iban: str) -> dict[str, Any]:
    reply = httpx.get(f"{url}/v1/accounts/{iban}", timeout=10)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def statement(url: str, iban: str, end_to_end_id: str | None = None) -> list[dict[str, Any]]:
    """The account's entries (the first 500; or all of one end-to-end id)."""
    params = {"end_to_end_id": end_to_end_id} if end_to_end_id else {}
    reply = httpx.get(f"{url}/v1/accounts/{iban}/statement", params=params, timeout=10)
    assert reply.status_code == 200, reply.text
    return list(reply.json()["entries"])


def set_faults(url: str, **switches: Any) -> None:
    """Fault switches of a simulator (latency_ms, fail_next, timeout_next, lose_next,
    reject_next, operations); no arguments clears them."""
    reply = httpx.post(f"{url}/admin/faults", json=switches, timeout=10)
    assert reply.status_code == 200, reply.text


def lp_order(url: str, counterparty: str, client_order_id: str) -> dict[str, Any] | None:
    reply = httpx.get(f"{url}/v1/lp/{counterparty}/orders/{client_order_id}", timeout=10)
    if reply.status_code == 404:
        return None
    return dict(reply.json())


def lp_positions(url: str, counterparty: str) -> dict[str, dict[str, int]]:
    reply = httpx.get(f"{url}/v1/lp/{counterparty}/positions", timeout=10)
    assert reply.status_code == 200, reply.text
    return dict(reply.json()["positions"])
