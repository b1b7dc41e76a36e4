"""Issue 11 (points 4 and 7, on the settlement path): a provider's settlement instruction
gets the checks a client's withdrawal destination gets. A counterparty whose Ethereum
instruction is the 0x...dEaD burn address has delivered its own legs, yet the platform sends it
nothing: the leg is alerted and stays owed (not settled, a reconciliation break for
operators), never burnt and never retried for ever."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from adapters.sqldb import SqlDatabase
from sagas.settlement.activities import end_to_end_id
from tests.e2e.harness import Running, alerts_about, post, wait_for
from tests.e2e.trading import banked_client, trade, until_ended
from tests.simulators import set_faults, statement

PLATFORM = {"settlement_leg_timeout_seconds": "120", "settlement_every_seconds": "3600"}
EUR = 100
BURN = "0x000000000000000000000000000000000000dEaD"  # not the zero address: anvil's coinbase
ENDED = ("settled", "partly_settled", "compensated", "nothing_to_settle")


@pytest.fixture
def burning_instruction(run: Running) -> Iterator[str]:
    """lp-beta's ETH settlement instruction is the 0x...dEaD burn address, for this test only."""
    url = f"{run.settings.lp_url}/admin/counterparties/lp-beta"
    ssi = httpx.get(f"{run.settings.lp_url}/v1/lp/lp-beta/settlement-instructions", timeout=10)
    before = ssi.json()["addresses"]
    httpx.put(url, json={"addresses": {**before, "ETH": BURN}}, timeout=10).raise_for_status()
    try:
        yield BURN
    finally:
        httpx.put(url, json={"addresses": before}, timeout=10).raise_for_status()


def settle(ops: Any) -> dict[str, Any]:
    key = f"refused-{uuid.uuid4().hex[:8]}"
    started = post(ops, "/v1/settlements", {}, key)
    assert started.status_code == 202, started.text

    def ended() -> dict[str, Any] | None:
        found = ops.get(f"/v1/settlements/st:{key}").json()
        return found if found["state"] in ENDED else None

    return dict(wait_for(f"settlement {key}", ended, timeout=300, every=1))


def test_a_settlement_leg_to_a_burn_address_is_never_paid(
    run: Running, burning_instruction: str
) -> None:
    client_id, ops, client, _iban = banked_client(run, 1_000 * EUR, "burn")
    # The client buys ETH from lp-alpha and sells it to lp-beta: the platform owes
    # lp-beta 0.02 ETH, lp-beta owes the platform euros.
    for cp, side in (("lp-alpha", "buy"), ("lp-beta", "sell")):
        body = {"side": side, "asset": "ETH", "quantity": "0.02", "auto_accept": True}
        done = until_ended(
            client, trade(client, client_id, {**body, "counterparty": cp})["operation_id"]
        )
        assert done["state"] == "completed", done
    burnt_before = run.eth.balance(burning_instruction)

    settled = settle(ops)
    assert settled["state"] == "partly_settled", settled
    steps = [s["step"] for s in settled["timeline"]]
    assert "leg_failed:lp-beta:ETH" in steps, steps
    assert run.eth.balance(burning_instruction) == burnt_before  # nothing burnt
    with SqlDatabase(run.db_url).tx() as conn:  # nothing signed or recorded for the leg
        sent = conn.one(
            "select count(*) from evm_transactions where operation_id like ?",
            (f"{settled['settlement_id']}%",),
        )[0]
    assert sent == 0
    (alert,) = alerts_about(run, settled["settlement_id"], "custody.alert.settlement_failed.v1")
    assert alert.data["counterparty"] == "lp-beta"


def test_a_refused_fiat_leg_is_alerted_and_paid_once_when_the_bank_takes_it(run: Running) -> None:
    """The provider delivered; the bank refuses the platform's transfer for a while: the
    leg is retried under the rule of sagas/payments.py, the desk is told (`leg_delayed`),
    and once the bank takes it the leg is paid exactly once."""
    client_id, ops, client, _iban = banked_client(run, 1_000 * EUR, "fiat")
    body = {"side": "buy", "asset": "BTC", "quantity": "0.001", "auto_accept": True}
    done = until_ended(
        client, trade(client, client_id, {**body, "counterparty": "lp-alpha"})["operation_id"]
    )
    assert done["state"] == "completed", done
    bank = run.settings.bank_url
    set_faults(bank, reject_next=8, operations=["payment"])  # the platform's transfers only
    try:
        key = f"fiat-{uuid.uuid4().hex[:8]}"
        assert post(ops, "/v1/settlements", {}, key).status_code == 202

        def delayed() -> bool:
            found = ops.get(f"/v1/settlements/st:{key}").json()
            return any(s["step"].startswith("leg_delayed:lp-alpha") for s in found["timeline"])

        wait_for("the delayed leg's alert", delayed, timeout=180)
    finally:
        set_faults(bank)

    def ended() -> dict[str, Any] | None:
        found = ops.get(f"/v1/settlements/st:{key}").json()
        return found if found["state"] in ENDED else None

    settled = dict(wait_for("the settlement", ended, timeout=300, every=1))
    assert settled["state"] == "settled", settled
    e2e = end_to_end_id(settled["settlement_id"], "lp-alpha")
    debits = [
        e for e in statement(bank, run.settings.bank_platform_iban, e2e) if e["indicator"] == "DBIT"
    ]
    assert len(debits) == 1, debits  # paid once, whatever the refusals and keys were
    alerts_about(run, settled["settlement_id"], "custody.alert.settlement_failed.v1")
