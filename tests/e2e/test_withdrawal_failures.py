"""Issue 11, points 7-9: a withdrawal that cannot be paid ends, it is never stuck for ever.

- A fee bump the signer would refuse is refused at the API (CUS-3013); one that gets to
  the saga anyway (a direct Temporal signal) is recorded as the decision's refused
  outcome, and the saga goes on to pay once.
- An ETH withdrawal to a contract that burns more gas than the limit fails (CUS-4223):
  nothing is sent, the reservation is voided, the desk is alerted.
- A BTC withdrawal the platform's coins cannot pay (the whole pool, with no room for the
  fee) fails the same way instead of retrying for ever with the reservation held.
"""

from __future__ import annotations

import asyncio
from typing import Any

from eth_account import Account

from adapters.sqldb import SqlDatabase
from adapters.temporal import connect
from sagas.withdrawal import OperatorDecision
from tests.e2e.conftest import (
    ETH,
    address,
    available,
    balances,
    credited,
    external_btc_address,
    new_client,
    until_state,
    withdrawal,
)
from tests.e2e.harness import Running, alerts_about, post, rpc, wait_for

CAP = 5 * 10**9  # wei/gas: the signer's fee cap in this module (the market is ~1 gwei)
PLATFORM = {"signer_max_fee_per_gas": str(CAP), "stuck_after_seconds": "600"}
BTC = 10**8
# A contract whose receive stores two words: about 65,000 gas, more than the ETH limit.
GAS_BURNER_INIT = "0x6a6001600055600160015500600052600b6015f3"


def steps(client: Any, op_id: str) -> list[str]:
    return [s["step"] for s in withdrawal(client, op_id)["timeline"]]


def live_attempt(run: Running, op_id: str) -> tuple[int, int] | None:
    """(attempt, max fee per gas) of the operation's live transaction."""
    with SqlDatabase(run.db_url).tx() as conn:
        row = conn.one(
            "select attempt, max_fee from evm_transactions where operation_id = ? and state "
            "in ('signed', 'broadcast') order by attempt desc limit 1",
            (op_id,),
        )
    return None if row is None else (int(row[0]), int(row[1]))


async def signal_decision(run: Running, op_id: str, decision: OperatorDecision) -> None:
    client = await connect(
        run.settings.temporal_address,
        run.settings.temporal_namespace,
        run.settings.temporal_transport(),
    )
    await client.get_workflow_handle(op_id).signal("operator_decision", decision)


def test_a_fee_bump_above_the_signers_cap_is_refused_and_never_fails_the_saga(
    run: Running,
) -> None:
    client_id, ops, client = new_client(run, "cap")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    destination = Account.create().address
    run.miner.pause()
    rpc(run, "evm_setAutomine", [False])  # the payout waits in the pool: a bump applies
    try:
        body = {"asset": "ETH", "amount": "0.2", "destination": destination}
        op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
        until_state(client, op_id, "broadcast")
        live = wait_for("the recorded attempt", lambda: live_attempt(run, op_id))
        percent = CAP * 100 // live[1] + 1
        assert 110 < percent <= 1000, live  # the market must leave room for the test

        # At the API: refused with its code, nothing reaches the saga.
        before = steps(client, op_id)
        path = f"/v1/withdrawals/{op_id}/decisions"
        refused = post(ops, path, {"action": "bump", "fee_percent": percent})
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "CUS-3013"
        assert steps(client, op_id) == before

        # Past the API (any Temporal client): the signer refuses, the saga records it.
        bump = OperatorDecision(operator="ops-direct", action="bump", fee_percent=percent)
        asyncio.run(signal_decision(run, op_id, bump))
        wait_for(
            "the refused bump recorded",
            lambda: any(s.endswith(":refused") for s in steps(client, op_id)),
            timeout=60,
        )
        assert live_attempt(run, op_id) == live  # the original is still the live one
        assert withdrawal(client, op_id)["state"] == "broadcast"
    finally:
        rpc(run, "evm_setAutomine", [True])
        run.miner.start()
    done = until_state(client, op_id, "completed", "failed")
    assert done["state"] == "completed"
    assert run.eth.balance(destination) == 2 * ETH // 10
    assert balances(client, client_id)["ETH"] == ETH - 2 * ETH // 10


def test_eth_to_a_contract_that_burns_more_gas_than_the_limit_fails_and_is_voided(
    run: Running,
) -> None:
    client_id, _ops, client = new_client(run, "gas")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    w3 = run.eth.web3
    deployer = w3.eth.accounts[0]
    tx = w3.eth.send_transaction({"from": deployer, "data": GAS_BURNER_INIT})
    burner = w3.eth.wait_for_transaction_receipt(tx, timeout=30)["contractAddress"]
    assert w3.eth.estimate_gas({"to": burner, "value": 1, "from": deployer}) > 50_000

    body = {"asset": "ETH", "amount": "0.1", "destination": burner}
    op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    done = until_state(client, op_id, "failed", "completed", timeout=90)
    assert (done["state"], done["error_code"]) == ("failed", "CUS-4223"), done
    assert run.eth.balance(burner) == 0  # nothing was sent
    assert available(client, client_id)["ETH"] == ETH  # the reservation was voided
    with SqlDatabase(run.db_url).tx() as conn:
        assert (
            conn.one("select count(*) from evm_transactions where operation_id = ?", (op_id,))[0]
            == 0
        )
    (alert,) = alerts_about(run, op_id, "custody.alert.withdrawal_failed.v1")
    assert alert.data["error_code"] == "CUS-4223"


def test_a_btc_withdrawal_the_coins_cannot_pay_fails_instead_of_retrying_for_ever(
    run: Running,
) -> None:
    client_id, _ops, client = new_client(run, "coins")
    run.btc_faucet.fund(address(client, client_id, "BTC"), BTC)  # the module's only coins
    credited(run, client, client_id, {"BTC": BTC})
    # The whole pool: the outputs and the fee cannot both come out of 1 BTC.
    body = {
        "asset": "BTC",
        "amount": "1",
        "destination": external_btc_address(run.settings.btc_network),
    }
    op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    done = until_state(client, op_id, "failed", "completed", timeout=90)
    assert (done["state"], done["error_code"]) == ("failed", "CUS-4223"), done
    assert available(client, client_id)["BTC"] == BTC
    (alert,) = alerts_about(run, op_id, "custody.alert.withdrawal_failed.v1")
    assert alert.data["error_code"] == "CUS-4223"
