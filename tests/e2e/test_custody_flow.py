"""Acceptance 1 of issue 5, over HTTP only on the real stack: a client gets deposit
addresses, receives BTC, ETH and the test token, sees them credited only after
finality, withdraws part of each to external addresses; then on-chain balances,
ledger balances, the events on Kafka and `custody audit verify` all agree. The
recorded histories of those sagas replay deterministically."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from eth_account import Account
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from adapters.sqldb import SqlDatabase
from adapters.temporal import connect
from sagas.deposit.workflows import DepositWorkflow
from sagas.withdrawal.workflows import WithdrawalWorkflow
from services.worker.bootstrap import SANDBOX
from tests.e2e.conftest import (
    ETH,
    USD,
    address,
    balances,
    credited,
    external_btc_address,
    new_client,
    until_state,
)
from tests.e2e.harness import Running, post, wait_for

BTC = 10**8


def sse(http: Any, client_id: str) -> list[dict[str, Any]]:
    """The client's events from the beginning, through the API's event stream."""
    events = []
    with http.stream(
        "GET", f"/v1/clients/{client_id}/events", params={"from": "beginning", "idle_seconds": 4}
    ) as reply:
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def test_deposit_then_withdraw_btc_eth_and_token_over_http(run: Running) -> None:
    client_id, ops, client = new_client(run, "flow")
    btc_address = address(client, client_id, "BTC")
    eth_address = address(client, client_id, "ETH")
    assert address(client, client_id, "CTUSD") == eth_address  # tokens share it
    assert address(client, client_id, "BTC") == btc_address  # the same on every call

    # Deposits land on chain but are not final yet: nothing is credited.
    run.miner.pause()
    token = run.settings.eth_token_address
    run.faucet.fund_eth(eth_address, 2 * ETH)
    run.faucet.mint_token(token, eth_address, 500 * USD)
    run.btc_faucet.fund(btc_address, 1 * BTC)
    run.btc.mine(1)

    def seen() -> bool:
        deposits = client.get(f"/v1/clients/{client_id}/deposits").json()
        return len(deposits) == 3 and {d["state"] for d in deposits} == {"seen"}

    wait_for("three deposits seen", seen)
    assert balances(client, client_id) == {"BTC": 0, "ETH": 0, "CTUSD": 0, "ATOM": 0}

    run.miner.start()
    credited(run, client, client_id, {"BTC": BTC, "ETH": 2 * ETH, "CTUSD": 500 * USD})

    # Withdraw part of each to external addresses.
    eth_out, btc_out = Account.create().address, external_btc_address(run.settings.btc_network)
    requests = {
        "ETH": ("0.5", eth_out, ETH // 2),
        "CTUSD": ("120.25", eth_out, 120_250_000),
        "BTC": ("0.3", btc_out, 30_000_000),
    }
    ids = {}
    for asset, (amount, destination, _minor) in requests.items():
        body = {"asset": asset, "amount": amount, "destination": destination}
        reply = post(client, f"/v1/clients/{client_id}/withdrawals", body)
        assert reply.status_code == 202, reply.text
        ids[asset] = reply.json()["operation_id"]
    done = {a: until_state(client, i, "completed", "failed") for a, i in ids.items()}
    assert {a: d["state"] for a, d in done.items()} == dict.fromkeys(ids, "completed")
    steps = [s["step"] for s in done["ETH"]["timeline"]]
    assert steps == [
        "requested",
        "reserved",
        "policy_decided",
        "screened",  # the default policy screens the destination on the way out
        "intent",  # what the signer pays: the client's signed request, under the policy
        "approved",
        "broadcast",
        "completed",
    ]

    # On chain: the external addresses received exactly what was asked.
    assert run.eth.balance(eth_out) == ETH // 2
    assert run.eth.token_balance(token, eth_out) == 120_250_000
    paid = run.btc.tx_out(done["BTC"]["tx_hash"], 0)
    assert paid is not None and round(paid["value"] * BTC) == 30_000_000

    # The client's ledger balances: deposits less withdrawals (network fees are the platform's).
    assert balances(client, client_id) == {
        "BTC": BTC - 30_000_000,
        "ETH": 2 * ETH - ETH // 2,
        "CTUSD": 500 * USD - 120_250_000,
        "ATOM": 0,
    }

    # What the platform holds on chain equals its omnibus accounts, fees included.
    treasury = {
        a["account_id"]: int(a["total_minor"]) for a in ops.get("/v1/treasury").json()["accounts"]
    }
    hot = ops.get("/v1/treasury").json()["ethereum_hot_wallet"]
    on_chain_eth = run.eth.balance(eth_address) + run.eth.balance(hot)
    assert on_chain_eth == -treasury["omnibus:ETH"]
    assert (
        run.eth.token_balance(token, eth_address) + run.eth.token_balance(token, hot)
        == -treasury["omnibus:CTUSD"]
    )
    with SqlDatabase(run.db_url).tx() as conn:
        utxos = conn.all("select txid, vout, amount from btc_utxos where spent_by is null")
    unspent = 0
    for txid, vout, amount in utxos:
        out = run.btc.tx_out(txid, int(vout))
        assert out is not None and round(out["value"] * BTC) == int(amount)
        unspent += int(amount)
    assert unspent == -treasury["omnibus:BTC"]
    assert treasury["fees:network:BTC"] == -int(done["BTC"]["fee_minor"])
    fees_eth = int(done["ETH"]["fee_minor"]) + int(done["CTUSD"]["fee_minor"])
    assert treasury["fees:network:ETH"] == -fees_eth

    # The events on Kafka, read back through the API's event stream.
    types = [e["type"] for e in sse(client, client_id)]
    assert types.count("custody.deposit.credited.v1") == 3
    assert types.count("custody.withdrawal.completed.v1") == 3
    assert types.count("custody.withdrawal.policy_decided.v1") == 3

    # The platform's audit writer has chained every event, and the chain verifies.
    run.audit_caught_up()
    verified = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "verify"],
        env=run.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr[-2000:]
    assert "OK" in verified.stdout

    # The sagas' recorded histories replay deterministically.
    asyncio.run(_replay(run, list(ids.values()), client_id))


async def _replay(run: Running, withdrawal_ids: list[str], client_id: str) -> None:
    temporal = await connect(
        run.settings.temporal_address,
        run.settings.temporal_namespace,
        run.settings.temporal_transport(),
    )
    histories: list[WorkflowHistory] = []
    for wid in withdrawal_ids:
        histories.append(await temporal.get_workflow_handle(wid).fetch_history())
    with SqlDatabase(run.db_url).tx() as conn:
        rows = conn.all(
            "select id from operations where kind = 'deposit' and client_id = ?", (client_id,)
        )
    for (wid,) in rows:
        histories.append(await temporal.get_workflow_handle(wid).fetch_history())
    replayer = Replayer(
        workflows=[WithdrawalWorkflow, DepositWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=SANDBOX,
    )
    for history in histories:
        await replayer.replay_workflow(history)
    assert len(histories) == 6
