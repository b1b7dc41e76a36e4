"""After broadcast the saga never compensates blindly: a transaction a reorg dropped is
rebroadcast at once; one stuck past the deadline raises an alert and waits for an
operator's decision (here: a fee bump), and in both cases exactly one payment lands."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eth_account import Account
from web3 import Web3

from adapters.sqldb import SqlDatabase
from tests.e2e.conftest import ETH, address, balances, credited, new_client, until_state
from tests.e2e.harness import Running, post, rpc, wait_for

PLATFORM = {"stuck_after_seconds": "20"}


def steps(client: Any, op_id: str) -> list[str]:
    return [s["step"] for s in client.get(f"/v1/withdrawals/{op_id}").json()["timeline"]]


def attempts(run: Running, op_id: str) -> list[tuple[int, str]]:
    with SqlDatabase(run.db_url).tx() as conn:
        rows = conn.all(
            "select attempt, state from evm_transactions where operation_id = ? order by attempt",
            (op_id,),
        )
    return [(int(a), s) for a, s in rows]


def test_a_stuck_withdrawal_alerts_and_an_operators_fee_bump_gets_it_mined(run: Running) -> None:
    client_id, ops, client = new_client(run, "stuck")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    destination = Account.create().address
    run.miner.pause()
    rpc(run, "evm_setAutomine", [False])  # nothing gets mined: the payout waits in the pool
    try:
        body = {"asset": "ETH", "amount": "0.3", "destination": destination}
        op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
        until_state(client, op_id, "broadcast")
        wait_for("the stuck alert", lambda: "stuck_alert" in steps(client, op_id), timeout=90)
        # The operator's client sends the decision twice at once under one key (a retry
        # beside a slow first request): one decision, one bump, never a bump of the bump.
        key = f"bump-{op_id[-8:]}"
        path, body = f"/v1/withdrawals/{op_id}/decisions", {"action": "bump", "fee_percent": 150}
        with ThreadPoolExecutor(2) as pool:
            both = list(pool.map(lambda _: post(ops, path, body, key), range(2)))
        assert [d.status_code for d in both] == [202, 202], [d.text for d in both]
        wait_for(
            "the replacement",
            lambda: [s for _a, s in attempts(run, op_id)] == ["replaced", "broadcast"],
        )
    finally:
        rpc(run, "evm_setAutomine", [True])
        run.miner.start()
    done = until_state(client, op_id, "completed", "failed")
    assert done["state"] == "completed"
    assert [s for _a, s in attempts(run, op_id)] == ["replaced", "mined"]
    assert run.eth.balance(destination) == 3 * ETH // 10  # the bump paid, the original did not
    timeline = steps(client, op_id)
    assert len([s for s in timeline if s.endswith(":bumped")]) == 1, timeline
    assert timeline.index("stuck_alert") < next(
        i for i, s in enumerate(timeline) if s.startswith("operator_decision")
    )
    assert balances(client, client_id)["ETH"] == ETH - 3 * ETH // 10


def test_a_withdrawal_dropped_by_a_reorg_is_rebroadcast_and_paid_once(run: Running) -> None:
    client_id, _ops, client = new_client(run, "reorged")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    destination = Account.create().address
    hot = Web3.to_checksum_address(
        run.http("o", "operator").get("/v1/treasury").json()["ethereum_hot_wallet"]
    )
    run.miner.pause()
    try:
        body = {"asset": "ETH", "amount": "0.1", "destination": destination}
        op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
        until_state(client, op_id, "broadcast")
        wait_for("the payout mined", lambda: run.eth.balance(destination) == ETH // 10)
        time.sleep(3)  # the saga polls every second: it has seen it mined
        rpc(run, "anvil_reorg", [1, []])  # its block is replaced by an empty one
        assert run.eth.balance(destination) == 0
    finally:
        run.miner.start()
    done = until_state(client, op_id, "completed", "failed")
    assert done["state"] == "completed"
    assert "stuck_alert" not in steps(client, op_id)  # rebroadcast at once, not at the deadline
    assert run.eth.balance(destination) == ETH // 10
    assert [s for _a, s in attempts(run, op_id)] == ["mined"]
    assert run.eth.web3.eth.get_transaction_count(hot) >= 1
