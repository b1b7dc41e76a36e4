"""Acceptance 3 and 5 of issue 5: the worker killed with SIGKILL at each step of the
withdrawal saga, then restarted, finishes every saga with exactly one transaction on
chain and the balances right; a deposit reorged out before finality is never credited.
Plus a deposit from a screened source is quarantined, not credited."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from eth_account import Account
from temporalio.client import WorkflowExecutionStatus
from web3 import Web3

from adapters.chains.ethereum.signer import InMemorySigner
from adapters.sqldb import SqlDatabase
from adapters.temporal import connect
from tests.e2e.conftest import ETH, address, balances, credited, new_client, until_state
from tests.e2e.harness import Running, post, wait_for
from tests.reorgs import anvil_reorg

STEPS = ["reserve", "sign", "broadcast", "post"]
BTC = 10**8


@pytest.mark.parametrize("step", STEPS)
def test_a_worker_killed_at_each_step_finishes_with_one_transaction(
    run: Running, step: str, tmp_path: Path
) -> None:
    client_id, _ops, client = new_client(run, f"kill-{step}")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    hot = Web3.to_checksum_address(
        run.http("o", "operator").get("/v1/treasury").json()["ethereum_hot_wallet"]
    )
    nonce_before = run.eth.pending_nonce(hot)

    marker = tmp_path / f"paused-{step}"
    run.kill("worker")
    run.start_worker(pause_at=f"{step}:{marker}")
    destination = Account.create().address
    body = {"asset": "ETH", "amount": "0.25", "destination": destination}
    op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    wait_for(f"the worker to pause at {step}", marker.exists, timeout=60)
    run.kill("worker")  # SIGKILL, mid-step
    run.start_worker()

    done = until_state(client, op_id, "completed", "failed", timeout=180)
    assert done["state"] == "completed", done
    assert run.eth.balance(destination) == ETH // 4  # paid once, not twice
    assert run.eth.pending_nonce(hot) == nonce_before + 1  # one transaction from the hot wallet
    with SqlDatabase(run.db_url).tx() as conn:
        sent = conn.all(
            "select tx_hash, state from evm_transactions where operation_id = ?", (op_id,)
        )
    assert [s for _h, s in sent] == ["mined"]
    assert balances(client, client_id)["ETH"] == ETH - ETH // 4


def test_a_bitcoin_withdrawal_survives_a_worker_killed_after_broadcast(
    run: Running, tmp_path: Path
) -> None:
    client_id, _ops, client = new_client(run, "kill-btc")
    run.btc_faucet.fund(address(client, client_id, "BTC"), 50_000_000)
    credited(run, client, client_id, {"BTC": 50_000_000})
    marker = tmp_path / "paused"
    run.kill("worker")
    run.start_worker(pause_at=f"broadcast:{marker}")
    from tests.e2e.conftest import external_btc_address

    body = {"asset": "BTC", "amount": "0.2", "destination": external_btc_address("simnet")}
    op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    wait_for("the worker to pause after broadcast", marker.exists, timeout=60)
    run.kill("worker")
    run.start_worker()
    done = until_state(client, op_id, "completed", "failed", timeout=180)
    assert done["state"] == "completed", done
    with SqlDatabase(run.db_url).tx() as conn:
        payments = conn.all(  # its batch's (decision 0025): here a batch of one
            "select t.txid from btc_transactions t join btc_payout_queue q on "
            "q.batch_id = t.operation_id where q.operation_id = ?",
            (op_id,),
        )
    assert [p[0] for p in payments] == [done["tx_hash"]]
    out = run.btc.tx_out(done["tx_hash"], 0)
    assert out is not None and round(out["value"] * 10**8) == 20_000_000
    assert balances(client, client_id)["BTC"] == 30_000_000


def test_a_deposit_reorged_out_before_finality_is_never_credited(run: Running) -> None:
    client_id, _ops, client = new_client(run, "reorg")
    where = address(client, client_id, "ETH")
    run.miner.pause()
    try:
        run.faucet.fund_eth(where, ETH)  # mined alone in a block (anvil automines)

        def seen() -> list[dict[str, object]]:
            return [
                d
                for d in client.get(f"/v1/clients/{client_id}/deposits").json()
                if d["state"] == "seen"
            ]

        wait_for("the deposit seen", seen)
        # Replace the deposit's block by an empty one before it is final.
        run.eth.web3.provider.make_request("anvil_reorg", [1, []])  # type: ignore[arg-type]
    finally:
        run.miner.start()

    def cancelled() -> bool:
        deposits = client.get(f"/v1/clients/{client_id}/deposits").json()
        return [d["state"] for d in deposits] == ["cancelled"]

    wait_for("the deposit cancelled", cancelled)
    time.sleep(5)  # blocks go by; still nothing
    assert balances(client, client_id)["ETH"] == 0
    assert run.eth.balance(where) == 0


def test_a_deposit_from_a_denied_source_is_quarantined(run: Running) -> None:
    client_id, ops, client = new_client(run, "screen")
    funder = run.eth.web3.eth.accounts[0]
    run.deny_file.write_text(f"{funder}  # test: the faucet is on the deny list\n")
    try:
        run.faucet.fund_eth(address(client, client_id, "ETH"), ETH // 10)

        def quarantined() -> bool:
            deposits = client.get(f"/v1/clients/{client_id}/deposits").json()
            return [d["state"] for d in deposits] == ["quarantined"]

        wait_for("the deposit quarantined", quarantined)
    finally:
        run.deny_file.write_text("")
    assert balances(client, client_id)["ETH"] == 0
    accounts = {
        a["account_id"]: int(a["total_minor"]) for a in ops.get("/v1/treasury").json()["accounts"]
    }
    assert accounts["quarantine:ETH"] >= ETH // 10


def test_a_credited_deposit_re_included_by_a_deep_reorg_is_credited_once(run: Running) -> None:
    """Issue 11, point 3: the same signed transaction, final and credited, dropped by a
    reorg deeper than the confirmations and mined again behind another one (another
    transactionIndex), is the same deposit: its saga runs again and credits nothing."""
    client_id, _ops, client = new_client(run, "redeposit")
    where = address(client, client_id, "ETH")
    payer, other = InMemorySigner.generate(), InMemorySigner.generate()
    run.faucet.fund_eth(payer.address, ETH)
    run.faucet.fund_eth(other.address, ETH)
    margin = 4  # the reorg reaches below the deposit: blocks others mine meanwhile
    for _ in range(margin + 1):  # and the funding stays below it
        run.eth.web3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    deposit = payer.sign_transaction(
        run.eth.prepare(payer.address, run.eth.eth_transfer(where, ETH // 2), 0)
    )
    tx_hash = run.eth.broadcast(deposit)
    block = run.eth.wait_receipt(tx_hash, 30).block_number
    first = run.eth.web3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    credited(run, client, client_id, {"ETH": ETH // 2})

    bystander = other.sign_transaction(
        run.eth.prepare(other.address, run.eth.eth_transfer(Account.create().address, 10**15), 0)
    )
    run.miner.pause()
    try:
        reorged_at = time.time()
        depth = run.eth.block_number() - block + 1 + margin
        token = [run.settings.eth_token_address]
        anvil_reorg(run.eth.web3, depth, [(bystander, 0), (deposit, 0)], keep=token)
    finally:
        run.miner.start()
    again = run.eth.web3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    assert again["blockHash"] != first["blockHash"] and int(again["transactionIndex"]) == 1

    async def settled() -> bool:
        """The re-included observation final, and every deposit saga of this transaction
        finished, one of them started after the reorg."""
        with SqlDatabase(run.db_url).tx() as conn:
            rows = conn.all(
                "select block_hash, state from chain_observations where tx_hash = ?", (tx_hash,)
            )
        states = [s for _h, s in rows]
        if states.count("final") != 1 or "reorged" not in states:
            return False
        temporal = await connect(
            run.settings.temporal_address,
            run.settings.temporal_namespace,
            run.settings.temporal_transport(),
        )
        runs = []
        for d in client.get(f"/v1/clients/{client_id}/deposits").json():
            runs.append(await temporal.get_workflow_handle(d["operation_id"]).describe())
        return all(r.status == WorkflowExecutionStatus.COMPLETED for r in runs) and any(
            r.start_time.timestamp() > reorged_at for r in runs
        )

    wait_for("the re-included deposit's saga", lambda: asyncio.run(settled()), timeout=120)
    assert balances(client, client_id)["ETH"] == ETH // 2  # once
    deposits = client.get(f"/v1/clients/{client_id}/deposits").json()
    assert [(d["operation_id"], d["state"]) for d in deposits] == [
        (f"deposit:ethereum:{tx_hash}:value", "credited")
    ]
    with SqlDatabase(run.db_url).tx() as conn:
        alerts = [
            json.loads(r[0])
            for r in conn.all(
                "select payload from ledger_outbox where topic = 'custody.alerts.v1'", ()
            )
        ]
    assert [e["type"] for e in alerts if e["subject"] == where] == [
        "custody.alert.final_deposit_reorged.v1"
    ]


def test_quarantined_bitcoin_is_never_an_input_of_a_withdrawal(run: Running) -> None:
    """Issue 11, point 6: a BTC deposit from a deny-listed source is quarantined and its
    coin held: a withdrawal that could pick it (it is the largest coin) spends the
    client's own coin instead, on chain."""
    other_id, ops, other = new_client(run, "tainted")
    client_id, _ops, client = new_client(run, "clean")
    tainted_to = address(other, other_id, "BTC")
    run.deny_file.write_text(f"{run.btc_faucet.address}  # test: the faucet is denied\n")
    try:
        tainted_tx = run.btc_faucet.fund(tainted_to, 3 * BTC)

        def quarantined() -> bool:
            deposits = other.get(f"/v1/clients/{other_id}/deposits").json()
            return [d["state"] for d in deposits] == ["quarantined"]

        wait_for("the tainted deposit quarantined", quarantined)
    finally:
        run.deny_file.write_text("")
    run.btc_faucet.fund(address(client, client_id, "BTC"), BTC // 2)
    credited(run, client, client_id, {"BTC": BTC // 2})
    with SqlDatabase(run.db_url).tx() as conn:
        (position,) = conn.one(
            "select position from chain_observations where tx_hash = ? and state = 'final'",
            (tainted_tx,),
        )
    tainted = (tainted_tx, int(position.removeprefix("vout")))

    from tests.e2e.conftest import external_btc_address

    body = {"asset": "BTC", "amount": "0.1", "destination": external_btc_address("simnet")}
    op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    done = until_state(client, op_id, "completed", "failed", timeout=180)
    assert done["state"] == "completed", done
    raw = run.btc._rpc("getrawtransaction", done["tx_hash"], 1)
    inputs = {(vin["txid"], int(vin["vout"])) for vin in raw["vin"]}
    assert tainted not in inputs  # on chain: the quarantined coin was not spent
    assert run.btc.tx_out(*tainted) is not None
    assert balances(client, client_id)["BTC"] == BTC // 2 - BTC // 10
    treasury = {
        a["account_id"]: int(a["total_minor"]) for a in ops.get("/v1/treasury").json()["accounts"]
    }
    assert treasury["quarantine:BTC"] == 3 * BTC


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_killing_the_api_kills_its_serving_processes_and_it_starts_again(run: Running) -> None:
    """SIGKILL of the API's supervising process leaves nothing answering on its port:
    its serving processes die with it. Started again, it serves a withdrawal."""
    serving = [p for p in _children(run.procs["api"].pid) if "spawn_main" in _cmdline(p)]
    assert len(serving) == 2, serving  # CUSTODY_API_WORKERS, default 2
    run.kill("api")
    wait_for("the serving processes to die", lambda: not any(map(_alive, serving)), timeout=10)
    assert not run._healthy()
    run.start_api()
    client_id, _ops, client = new_client(run, "afterkill")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    path = f"/v1/clients/{client_id}/withdrawals"
    body = {"asset": "ETH", "amount": "0.1", "destination": Account.create().address}
    reply = post(client, path, body, key="after-kill")
    assert reply.status_code == 202, reply.text
    assert until_state(client, reply.json()["operation_id"], "completed")["state"] == "completed"
