"""Acceptance 4 of issue 6: the worker killed with SIGKILL at each step of the buy saga
in turn (after the step's effect, before the saga learns of it), then restarted. Each
time: exactly one trade with the provider (never sent twice), one hold captured once,
the client's balances right."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.ledger.sql import SqlLedger
from adapters.sqldb import SqlDatabase
from sagas import accounts
from sagas.trade.activities import end_to_end_id
from tests.e2e.conftest import balances
from tests.e2e.harness import Running, post, wait_for
from tests.e2e.trading import banked_client, steps, until_ended
from tests.simulators import bank_account, lp_order, statement

EUR = 100
STEPS = ["quote", "accept", "hold", "execute", "book", "capture"]


@pytest.mark.parametrize("step", STEPS)
def test_a_worker_killed_at_each_buy_step_finishes_with_one_trade(
    run: Running, step: str, tmp_path: Path
) -> None:
    client_id, _ops, client, iban = banked_client(run, 1_000 * EUR, f"kill-{step}")
    marker = tmp_path / f"paused-{step}"
    run.kill("worker")
    run.start_worker(pause_at=f"{step}:{marker}")
    body = {"side": "buy", "asset": "ETH", "quantity": "0.05", "auto_accept": True}
    op_id = post(client, f"/v1/clients/{client_id}/trades", body).json()["operation_id"]
    wait_for(f"the worker to pause at {step}", marker.exists, timeout=60)
    run.kill("worker")  # SIGKILL, mid-step
    run.start_worker()

    t = until_ended(client, op_id, timeout=180)
    assert t["state"] == "completed", t
    # A quote gone stale while the worker was down is released and quoted again: every
    # hold but the captured one is released.
    done = steps(t)
    assert done[:2] == ["requested", "quoted"] and done[-3:] == ["executed", "booked", "completed"]
    holds = [x for x in done if x.split(":")[0] == "held"]
    assert len(holds) - len([x for x in done if x.split(":")[0] == "released"]) == 1

    # One trade with the provider, never sent twice; one trade booked.
    executed = next(x["detail"] for x in t["timeline"] if x["step"] == "executed")
    order = lp_order(run.settings.lp_url, t["counterparty"], executed["client_order_id"])
    assert order is not None and order["status"] == "filled" and order["repeats"] == 0
    for round_ in ("", ":2", ":3"):  # the other rounds' orders, if sent, did not fill
        other = lp_order(run.settings.lp_url, t["counterparty"], op_id + round_)
        assert other is None or other["status"] == "rejected" or other == order
    with SqlDatabase(run.db_url).tx() as conn:
        booked = conn.all("select trade_id from trades where operation_id = ?", (op_id,))
    assert booked == [(order["trade_id"],)]

    # One hold, captured once: one debit, nothing held, the client paid the quote.
    paid = int(t["client_amount_minor"])
    account = bank_account(run.settings.bank_url, iban)
    assert (account["booked"], account["held"]) == (1_000 * EUR - paid, 0)
    debits = [
        e
        for e in statement(run.settings.bank_url, iban)
        if e["end_to_end_id"] == end_to_end_id(op_id)
    ]
    assert [(e["indicator"], e["amount"]) for e in debits] == [("DBIT", paid)]

    # The asset booked once to the client, against the provider's settlement account.
    assert balances(client, client_id)["ETH"] == 5 * 10**16
    history = SqlLedger(run.db_url, migrate=False).history(
        accounts.settlement(t["counterparty"], "ETH")
    )
    assert [h.amount for h in history if h.reference == order["trade_id"]] == [5 * 10**16]
