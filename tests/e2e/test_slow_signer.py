"""Issue 11, point 1: an Ethereum send retried beside its own slow first attempt pays
once. The signer is slowed (CUSTODY_SIGNER_DELAY_SECONDS) so that, with 20 withdrawals
queued on the hot wallet's nonce, many `send` attempts outlive their start-to-close
timeout while still signing; Temporal starts a retry beside each. On PostgreSQL the
retry used to read "nothing recorded" before the nonce lock, take the next nonce, be
refused by the signer and void the reservation while the first attempt paid: the
destination paid, the client keeping the balance."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from eth_account import Account

from adapters.sqldb import SqlDatabase
from adapters.temporal import connect
from tests.e2e.conftest import ETH, address, balances, credited, new_client, until_state
from tests.e2e.harness import Running, post

PLATFORM = {"signer_delay_seconds": "1.5"}
COUNT = 20
AMOUNT = ETH // 100  # 0.01 ETH each


def sends(run: Running) -> list[tuple[str, int]]:
    """(operation id, nonce) of every transaction the broadcaster recorded."""
    with SqlDatabase(run.db_url).tx() as conn:
        rows = conn.all("select operation_id, nonce from evm_transactions order by nonce")
    return [(str(r[0]), int(r[1])) for r in rows]


async def send_attempts(run: Running, op_ids: list[str]) -> list[int]:
    """The attempt number of each saga's `withdrawal.send` activity, from its history."""
    client = await connect(
        run.settings.temporal_address,
        run.settings.temporal_namespace,
        run.settings.temporal_transport(),
    )
    found = []
    for op_id in op_ids:
        history = await client.get_workflow_handle(op_id).fetch_history()
        scheduled: dict[int, str] = {}
        attempt = 0
        for ev in history.events:
            if ev.HasField("activity_task_scheduled_event_attributes"):
                name = ev.activity_task_scheduled_event_attributes.activity_type.name
                scheduled[ev.event_id] = name
            if ev.HasField("activity_task_started_event_attributes"):
                started = ev.activity_task_started_event_attributes
                if scheduled.get(started.scheduled_event_id) == "withdrawal.send":
                    attempt = started.attempt
        found.append(attempt)
    return found


def test_20_eth_withdrawals_with_a_signer_slower_than_the_send_timeout_pay_once(
    run: Running,
) -> None:
    assert run.db_url.startswith("postgresql://")  # SQLite's BEGIN IMMEDIATE hid the race
    client_id, _ops, client = new_client(run, "slow")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    destinations = [Account.create().address for _ in range(COUNT)]

    def withdraw(destination: str) -> Any:
        body = {"asset": "ETH", "amount": "0.01", "destination": destination}
        reply = post(client, f"/v1/clients/{client_id}/withdrawals", body)
        assert reply.status_code in (201, 202), reply.text
        return reply.json()["operation_id"]

    with concurrent.futures.ThreadPoolExecutor(COUNT) as pool:
        op_ids = list(pool.map(withdraw, destinations))
    ended = {op: until_state(client, op, "completed", "failed", timeout=400) for op in op_ids}

    # The race was run: some `send` needed more than one attempt, or this test proves
    # nothing (the signer delay must push the nonce queue past the 20 s timeout).
    assert max(asyncio.run(send_attempts(run, op_ids))) > 1

    paid = {op: run.eth.balance(d) for op, d in zip(op_ids, destinations, strict=True)}
    completed = [op for op, w in ended.items() if w["state"] == "completed"]
    failed = {op: w.get("error_code") for op, w in ended.items() if w["state"] != "completed"}
    # On-chain payments equal completed withdrawals, to the wei, and nothing else paid.
    assert {op for op, wei in paid.items() if wei} == set(completed), (paid, failed)
    assert all(paid[op] == AMOUNT for op in completed)
    assert not failed, failed  # a slow signer is no reason to fail a withdrawal
    # One transaction (one nonce) per withdrawal: no retry took a second nonce.
    recorded = sends(run)
    assert sorted(op for op, _n in recorded) == sorted(op_ids), recorded
    assert balances(client, client_id)["ETH"] == ETH - AMOUNT * len(completed)
