"""Helpers of the trading e2e tests: a client with a funded account at the bank, trades
driven over the API until they end."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import new_client
from tests.e2e.harness import Running, post, wait_for
from tests.simulators import BIC, cash_in, new_iban, open_bank_account

ENDED = ("completed", "rejected", "expired")


def banked_client(run: Running, euros_cents: int, prefix: str = "t") -> tuple[str, Any, Any, str]:
    """A client whose bank account (opened and funded at the bank) is registered:
    (client id, operator HTTP client, client HTTP client, IBAN)."""
    client_id, ops, client = new_client(run, prefix)
    iban = new_iban()
    open_bank_account(run.settings.bank_url, iban, f"Client {client_id}")
    if euros_cents:
        cash_in(run.settings.bank_url, iban, euros_cents)
    # A governance proposal: in force once two operators have signed it with their keys.
    run.govern(ops.put(f"/v1/clients/{client_id}/bank-account", json={"iban": iban, "bic": BIC}))
    return client_id, ops, client, iban


def trade(http: Any, client_id: str, body: dict[str, Any], key: str | None = None) -> Any:
    """Start a trade (the POST answers at once, `requested`) and poll its Location until
    the saga has quoted it, or refused it."""
    reply = post(http, f"/v1/clients/{client_id}/trades", body, key)
    assert reply.status_code in (200, 202), reply.text
    location = reply.headers["Location"]
    assert location == f"/v1/trades/{reply.json()['operation_id']}", location

    def moved() -> Any:
        found = http.get(location).json()
        return found if found["state"] != "requested" else None

    return wait_for(f"{location} to be quoted", moved, timeout=120, every=0.2)


def get_trade(http: Any, operation_id: str) -> dict[str, Any]:
    reply = http.get(f"/v1/trades/{operation_id}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def until_ended(http: Any, operation_id: str, timeout: float = 90) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        found = get_trade(http, operation_id)
        return found if found["state"] in ENDED else None

    return dict(wait_for(f"{operation_id} to end", ended, timeout=timeout))


def steps(found: dict[str, Any]) -> list[str]:
    return [s["step"] for s in found["timeline"]]
