"""The hot wallet's lanes (decision 0026) through the whole platform: with three lanes,
a burst of ETH withdrawals is paid from several addresses, each with gapless nonces,
each withdrawal once; the worker killed after the signer signed a payment (before the
worker recorded it) pays it once, from the lane and at the nonce the signer signed.
(That the retry is kept on that lane by the signer's record, whatever lane it would
choose now, is shown in tests/integration/test_evm_lanes.py.)"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from adapters.sqldb import SqlDatabase
from tests.e2e.conftest import ETH, address, balances, credited, new_client, until_state
from tests.e2e.harness import Running, post, wait_for

PLATFORM = {"eth_hot_lanes": "3"}
LANES = 3


def _lanes(run: Running) -> list[str]:
    lanes = run.http("o", "operator").get("/v1/treasury").json()["ethereum_hot_lanes"]
    assert len(lanes) == LANES
    return [Web3.to_checksum_address(a) for a in lanes]


def _chain_equals_books(run: Running) -> None:
    """What every platform Ethereum address holds equals omnibus:ETH."""
    with SqlDatabase(run.db_url).tx() as conn:
        addresses = [
            r[0] for r in conn.all("select address from deposit_addresses where chain = 'ethereum'")
        ]
    held = sum(run.eth.balance(a) for a in addresses)
    accounts = {
        a["account_id"]: int(a["total_minor"])
        for a in run.http("o", "operator").get("/v1/treasury").json()["accounts"]
    }
    assert held == -accounts["omnibus:ETH"]
    assert accounts["treasury:ETH"] == LANES * 50 * ETH  # each lane's top-up, the treasury's


def test_a_burst_of_withdrawals_is_paid_from_several_lanes_each_once(run: Running) -> None:
    lanes = _lanes(run)
    nonces = {lane: run.eth.pending_nonce(lane) for lane in lanes}
    clients = [new_client(run, f"lanes-{n}") for n in range(3)]
    for client_id, _ops, client in clients:
        run.faucet.fund_eth(address(client, client_id, "ETH"), 2 * ETH)
    for client_id, _ops, client in clients:
        credited(run, client, client_id, {"ETH": 2 * ETH})
    wanted = []
    for n in range(12):
        client_id, _ops, client = clients[n % 3]
        destination = Account.create().address
        wanted.append((client_id, client, destination, 10 + n))  # 0.010 .. 0.021 ETH

    def withdraw(item: tuple[str, Any, str, int]) -> str:
        client_id, client, destination, milli = item
        body = {"asset": "ETH", "amount": f"0.0{milli}", "destination": destination}
        reply = post(client, f"/v1/clients/{client_id}/withdrawals", body)
        assert reply.status_code == 202, reply.text
        return str(reply.json()["operation_id"])

    with ThreadPoolExecutor(12) as pool:
        ops = list(pool.map(withdraw, wanted))
    for op, (_cid, client, _dest, _amount) in zip(ops, wanted, strict=True):
        done = until_state(client, op, "completed", "failed", timeout=240)
        assert done["state"] == "completed", done
    for _cid, _client, destination, milli in wanted:
        assert run.eth.balance(destination) == milli * 10**15  # each paid once
    with SqlDatabase(run.db_url).tx() as conn:
        rows = conn.all(
            "select operation_id, sender, nonce, state from evm_transactions where "
            "operation_id in (" + ", ".join("?" for _ in ops) + ")",
            ops,
        )
    assert sorted(r[0] for r in rows) == sorted(ops)  # one transaction each
    assert {r[3] for r in rows} == {"mined"}
    used: dict[str, list[int]] = {}
    for _op, sender, nonce, _state in rows:
        used.setdefault(sender, []).append(int(nonce))
    assert len(used) >= 2 and set(used) <= set(lanes), used
    for lane in lanes:
        got = sorted(used.get(lane, []))
        assert got == list(range(nonces[lane], nonces[lane] + len(got))), (lane, got)
        assert run.eth.pending_nonce(lane) == nonces[lane] + len(got)  # no gap, no extra
    for client_id, _ops, client in clients:
        # (Network fees are the platform's, fees:network:ETH, not the client's.)
        spent = sum(milli * 10**15 for c, _h, _d, milli in wanted if c == client_id)
        assert balances(client, client_id)["ETH"] == 2 * ETH - spent
    _chain_equals_books(run)
    # A lane is the platform's own address: no withdrawal pays it.
    client_id, _ops, client = clients[0]
    body = {"asset": "ETH", "amount": "0.01", "destination": lanes[-1]}
    refused = post(client, f"/v1/clients/{client_id}/withdrawals", body)
    assert refused.status_code == 422 and refused.json()["code"] == "CUS-3011", refused.text


def test_a_worker_killed_after_the_signer_signed_pays_once_from_the_signed_lane(
    run: Running, tmp_path: Path
) -> None:
    lanes = _lanes(run)
    client_id, _ops, client = new_client(run, "lanes-kill")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    sent_before = sum(run.eth.pending_nonce(lane) for lane in lanes)
    marker = tmp_path / "paused-sign"
    run.kill("worker")
    run.start_worker(pause_at=f"sign:{marker}")
    destination = Account.create().address
    body = {"asset": "ETH", "amount": "0.25", "destination": destination}
    op = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    wait_for("the worker to pause after the signature", marker.exists, timeout=60)
    run.kill("worker")  # SIGKILL: signed by the signer, not recorded by the worker
    with SqlDatabase(run.db_url).tx() as conn:
        claims = conn.all(
            "select claim from signer_claims where operation_id = ? and claim like ?",
            (op, "evm:%"),
        )
        recorded = conn.all("select 1 from evm_transactions where operation_id = ?", (op,))
    assert len(claims) == 1 and recorded == []
    _evm, _chain, signed_lane, signed_nonce = str(claims[0][0]).split(":")
    run.start_worker()

    done = until_state(client, op, "completed", "failed", timeout=180)
    assert done["state"] == "completed", done
    assert run.eth.balance(destination) == ETH // 4  # paid once
    assert sum(run.eth.pending_nonce(lane) for lane in lanes) == sent_before + 1
    with SqlDatabase(run.db_url).tx() as conn:
        rows = conn.all(
            "select sender, nonce, state from evm_transactions where operation_id = ?", (op,)
        )
    assert rows == [(signed_lane, int(signed_nonce), "mined")]
    assert balances(client, client_id)["ETH"] == ETH - ETH // 4
    _chain_equals_books(run)
