"""Acceptance 2 of issue 13: a batched Bitcoin payout killed at every step pays each
withdrawal exactly once. Two withdrawals posted together go out in one transaction
(decision 0025); the worker is paused at a step of the batch's payout (a withdrawal
queued, the batch formed, the signer's answer in hand, the signed batch recorded, the
batch broadcast), killed with SIGKILL there and started again. Both withdrawals
complete on the one transaction, recorded once; each destination holds exactly its
amount in it; the client's balance is debited once per withdrawal; the two fee shares
add up to the transaction's fee."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from adapters.sqldb import SqlDatabase
from tests.e2e.conftest import (
    address,
    balances,
    credited,
    external_btc_address,
    new_client,
    until_state,
)
from tests.e2e.harness import Running, post, wait_for

# Long enough that two withdrawals posted together meet in one batch.
PLATFORM = {"btc_batch_window_seconds": "3"}
STEPS = ["queued", "formed", "sign", "recorded", "broadcast"]
SAT = 10**8


@pytest.mark.parametrize("step", STEPS)
def test_a_batched_payout_killed_at_each_step_pays_each_withdrawal_once(
    run: Running, step: str, tmp_path: Path
) -> None:
    client_id, _ops, client = new_client(run, f"batch-{step}")
    run.btc_faucet.fund(address(client, client_id, "BTC"), SAT // 2)
    credited(run, client, client_id, {"BTC": SAT // 2})

    marker = tmp_path / f"paused-{step}"
    run.kill("worker")
    run.start_worker(pause_at=f"{step}:{marker}")
    destinations = [external_btc_address("simnet") for _ in range(2)]
    amounts = ["0.1", "0.05"]
    ops = [
        post(
            client,
            f"/v1/clients/{client_id}/withdrawals",
            {"asset": "BTC", "amount": amount, "destination": destination},
        ).json()["operation_id"]
        for amount, destination in zip(amounts, destinations, strict=True)
    ]
    wait_for(f"the worker to pause at {step}", marker.exists, timeout=90)
    time.sleep(1)  # the other withdrawal's thread runs on meanwhile
    run.kill("worker")  # SIGKILL, mid-step
    run.start_worker()

    done = [until_state(client, op, "completed", "failed", timeout=240) for op in ops]
    assert [d["state"] for d in done] == ["completed", "completed"], done
    paid = {d["tx_hash"] for d in done}
    assert len(paid) == 1, done  # one transaction for both
    (txid,) = paid
    with SqlDatabase(run.db_url).tx() as conn:
        members = conn.all(
            "select operation_id, batch_id, position from btc_payout_queue "
            "where operation_id in (?, ?)",
            tuple(ops),
        )
        (batch,) = {m[1] for m in members}
        sent = conn.all("select txid from btc_transactions where operation_id = ?", (batch,))
        # The signer's own record: one signed transaction for each withdrawal, this one.
        signed = conn.all(
            "select operation_id, count(distinct tx_hash), min(tx_hash) from "
            "signer_signatures where operation_id in (?, ?) group by operation_id",
            tuple(ops),
        )
    assert [s[0] for s in sent] == [txid]  # signed and recorded once
    assert sorted((s[0], int(s[1]), s[2]) for s in signed) == sorted((op, 1, txid) for op in ops)

    def confirmed() -> bool:  # the watcher confirms each member on its own (its pace)
        with SqlDatabase(run.db_url).tx() as conn:
            rows = conn.all(
                "select operation_id from chain_outgoing where tx_hash = ? and state = 'final'",
                (txid,),
            )
        return sorted(r[0] for r in rows) == sorted(ops)

    wait_for("the watcher to confirm both members", confirmed, timeout=60)
    raw = run.btc._rpc("getrawtransaction", txid, 1)
    position = {m[0]: int(m[2]) for m in members}
    for op, amount, destination in zip(ops, (10_000_000, 5_000_000), destinations, strict=True):
        out = raw["vout"][position[op]]
        assert out["scriptPubKey"]["address"] == destination
        assert round(float(out["value"]) * SAT) == amount
    # Nothing else paid either destination: one output each in the whole transaction.
    assert sum(v["scriptPubKey"].get("address") in destinations for v in raw["vout"]) == 2
    spent = sum(
        round(
            float(run.btc._rpc("getrawtransaction", i["txid"], 1)["vout"][i["vout"]]["value"]) * SAT
        )
        for i in raw["vin"]
    )
    fee = spent - sum(round(float(v["value"]) * SAT) for v in raw["vout"])
    assert sum(int(d["fee_minor"]) for d in done) == fee
    assert balances(client, client_id)["BTC"] == SAT // 2 - 15_000_000
