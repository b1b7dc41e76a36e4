"""Issue 14, acceptance 1 and 2 (in part) over HTTP on the real chain: a client deposits
ATOM, stakes part of it with the platform's validator, and the chain holds exactly that
delegation from the client's own address while the books move it to the client's
staked account; the client unstakes part, the worker is killed with SIGKILL during the
unbonding wait, and once the chain has released the unbonding (30 s on the stack) the
restarted worker credits it once. Books equal chain to the uatom: the client's
available balance is its address's balance, its staked balance the delegation.
And the worker killed with SIGKILL at every other step of a stake and of an unstake, one
after the other: one delegation, one undelegation, the amount credited once. A
redelegation with the worker killed after its broadcast. An ATOM withdrawal from the
client's own address with the worker killed after signing and after the broadcast: one
send, the fee the client's. (Rewards and slashing: test_staking_rewards_and_slashing.py.)"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from cosmpy.crypto.keypairs import PrivateKey

from adapters.chains.cosmos.tx import address_of
from adapters.sqldb import SqlDatabase
from sagas import accounts
from tests.e2e.conftest import (
    address,
    available,
    balances,
    commission_taken,
    credited,
    ledger_total,
    new_client,
    stake_view,
    until_state,
)
from tests.e2e.harness import Running, post, wait_for

ATOM = 10**6
FEE = 2_000  # uatom, what the API offers per transaction (docs/staking.md)


def test_stake_then_unstake_with_the_worker_killed_while_unbonding(run: Running) -> None:
    client_id, _ops, client = new_client(run, "stake")
    delegator = address(client, client_id, "ATOM")
    assert delegator.startswith("cosmos1")
    run.cosmos_faucet.fund((delegator, 50 * ATOM))
    credited(run, client, client_id, {"ATOM": 50 * ATOM})

    validator = run.settings.allowed_validators()[0]
    listed = client.get("/v1/staking/validators")
    assert listed.status_code == 200, listed.text
    assert validator in [v["operator_address"] for v in listed.json()]
    body = {"asset": "ATOM", "amount": "20", "validator": validator}
    reply = post(client, f"/v1/clients/{client_id}/stakes", body)
    assert reply.status_code in (201, 202), reply.text
    stake_id = reply.json()["stake_id"]
    wait_for("the stake to be active", lambda: stake_view(client, stake_id)["state"] == "active")
    node = run.cosmos
    assert node.delegation(delegator, validator) == 20 * ATOM
    assert available(client, client_id)["ATOM"] == 30 * ATOM - FEE == node.balance(delegator)
    staked = accounts.staked(client_id, validator, "ATOM")
    assert ledger_total(run, staked) == 20 * ATOM

    reply = post(client, f"/v1/stakes/{stake_id}/unstake", {"amount": "8"})
    assert reply.status_code in (201, 202), reply.text
    unstake_id = reply.json()["unstake_id"]

    def unbonding() -> dict[str, Any] | None:
        mine = stake_view(client, stake_id)["unstakes"]
        found = [u for u in mine if u["unstake_id"] == unstake_id]
        return found[0] if found and found[0]["state"] == "unbonding" else None

    entry = wait_for("the unstake to be unbonding", unbonding)
    run.kill("worker")  # SIGKILL in the middle of the unbonding wait
    assert node.delegation(delegator, validator) == 12 * ATOM
    completion = datetime.fromisoformat(entry["completion_time"])
    # The chain releases it while no worker runs; the books must not have moved yet.
    wait_for(
        "the chain to release the unbonding",
        lambda: not node.unbonding(delegator, validator),
        timeout=90,
    )
    assert time.time() >= completion.timestamp() - 1
    assert ledger_total(run, accounts.unbonding(client_id, validator, "ATOM")) == 8 * ATOM
    run.start_worker()

    def completed() -> dict[str, Any] | None:
        mine = stake_view(client, stake_id)["unstakes"]
        found = [u for u in mine if u["unstake_id"] == unstake_id]
        return found[0] if found and found[0]["state"] == "completed" else None

    wait_for("the unstake to complete", completed, timeout=120)
    # Books equal chain: what the client's address holds (the release, less the fees,
    # plus the rewards the undelegation withdrew into it) is its available balance.
    on_chain = node.balance(delegator) - commission_taken(client, client_id)
    assert available(client, client_id)["ATOM"] == balances(client, client_id)["ATOM"] == on_chain
    assert on_chain >= 30 * ATOM - 2 * FEE + 8 * ATOM
    assert node.delegation(delegator, validator) == 12 * ATOM
    assert ledger_total(run, staked) == 12 * ATOM
    assert ledger_total(run, accounts.unbonding(client_id, validator, "ATOM")) == 0
    # One delegation and one undelegation were ever signed and recorded.
    with SqlDatabase(run.db_url).tx() as conn:
        kinds = conn.all(
            "select kind from cosmos_transactions where address = ? order by sequence",
            (delegator,),
        )
        signed = conn.one("select count(*) from signer_signatures where account = ?", (delegator,))[
            0
        ]
    assert [k[0] for k in kinds] == ["delegate", "undelegate"] and int(signed) == 2


# Where the worker pauses (services/worker/main.py --pause-at): after the reservation is
# recorded, after the signer signed (before the transaction is recorded and broadcast),
# after the broadcast is recorded, after the books are posted (before the step is
# recorded), after the release is posted (before the unstake completes).
STAKE_KILLS = ("reserve", "sign", "broadcast", "settle")
UNSTAKE_KILLS = ("reserve", "sign", "broadcast", "settle", "release")


def _killed_at(run: Running, steps: tuple[str, ...], where: Path, start: Any) -> Any:
    """Start the operation with the worker set to pause at the first step; at each step
    SIGKILL it and restart it set to pause at the next; then restart it plainly."""
    result = None
    for n, at in enumerate(steps):
        marker = where / f"paused-{at}-{n}-{time.monotonic_ns()}"
        run.kill("worker")
        run.start_worker(pause_at=f"{at}:{marker}")
        if n == 0:
            result = start()
        wait_for(f"the worker to pause at {at}", marker.exists, timeout=90)
    run.kill("worker")  # SIGKILL, mid-step
    run.start_worker()
    return result


def test_stake_and_unstake_with_the_worker_killed_at_every_step(
    run: Running, tmp_path: Path
) -> None:
    client_id, _ops, client = new_client(run, "stake-kills")
    delegator = address(client, client_id, "ATOM")
    run.cosmos_faucet.fund((delegator, 30 * ATOM))
    credited(run, client, client_id, {"ATOM": 30 * ATOM})
    validator = run.settings.allowed_validators()[0]
    node = run.cosmos

    def stake() -> str:
        body = {"asset": "ATOM", "amount": "10", "validator": validator}
        reply = post(client, f"/v1/clients/{client_id}/stakes", body)
        assert reply.status_code in (201, 202), reply.text
        return str(reply.json()["stake_id"])

    stake_id = _killed_at(run, STAKE_KILLS, tmp_path, stake)
    wait_for("the stake to be active", lambda: stake_view(client, stake_id)["state"] == "active")
    assert node.delegation(delegator, validator) == 10 * ATOM
    staked = accounts.staked(client_id, validator, "ATOM")
    assert ledger_total(run, staked) == 10 * ATOM
    assert available(client, client_id)["ATOM"] == 20 * ATOM - FEE == node.balance(delegator)

    def unstake() -> str:
        reply = post(client, f"/v1/stakes/{stake_id}/unstake", {"amount": "10"})
        assert reply.status_code in (201, 202), reply.text
        return str(reply.json()["unstake_id"])

    unstake_id = _killed_at(run, UNSTAKE_KILLS, tmp_path, unstake)

    def completed() -> dict[str, Any] | None:
        found = dict(client.get(f"/v1/unstakes/{unstake_id}").json())
        return found if found["state"] == "completed" else None

    done = wait_for("the unstake to complete", completed, timeout=150)
    assert done["released_minor"] == str(10 * ATOM)
    assert node.delegation(delegator, validator) == 0 and not node.unbonding(delegator, validator)
    assert ledger_total(run, staked) == 0
    assert ledger_total(run, accounts.unbonding(client_id, validator, "ATOM")) == 0
    # Credited once: the address holds the deposit less two fees plus the rewards the
    # delegation and the undelegation withdrew on the way (each booked once); the books
    # the same.
    paid = [
        int(s["detail"].get("rewards") or 0)
        for s in done["timeline"] + stake_view(client, stake_id)["timeline"]
        if s["step"] in ("active", "unbonding")
    ]
    on_chain = node.balance(delegator)
    assert on_chain == 30 * ATOM - 2 * FEE + sum(paid)
    # (Less the platform's commission on those rewards, which stays at the address.)
    books = on_chain - commission_taken(client, client_id)
    assert available(client, client_id)["ATOM"] == balances(client, client_id)["ATOM"] == books
    with SqlDatabase(run.db_url).tx() as conn:
        kinds = conn.all(
            "select kind from cosmos_transactions where address = ? order by sequence",
            (delegator,),
        )
    assert [k[0] for k in kinds] == ["delegate", "undelegate"]
    history = [s["step"] for s in stake_view(client, stake_id)["timeline"]]
    assert history.count("active") == 1 and history.count("reserved") == 1


def _events(http: Any, client_id: str, prefix: str) -> list[dict[str, Any]]:
    """The client's events whose type starts with `prefix`, read through the API's stream."""
    found = []
    with http.stream(
        "GET", f"/v1/clients/{client_id}/events", params={"from": "beginning", "idle_seconds": 2}
    ) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"].startswith(prefix):
                    found.append(event)
    return found


def test_a_redelegation_moves_the_shares_at_once_with_the_worker_killed_after_broadcast(
    run: Running, tmp_path: Path
) -> None:
    """Issue 14's redelegation (decision 0033): stake 20 with A, move 8 to B with the
    worker SIGKILLed once the broadcast is recorded: one MsgBeginRedelegate signed and
    on chain, A holds 12 and B 8 on chain and in the books at once, the redelegation a
    position of its own; a redelegation from B before the chain's entry completes is
    refused (409 CUS-3009) and nothing is signed for it."""
    client_id, _ops, client = new_client(run, "redel")
    delegator = address(client, client_id, "ATOM")
    run.cosmos_faucet.fund((delegator, 30 * ATOM))
    credited(run, client, client_id, {"ATOM": 30 * ATOM})
    a, b = run.settings.allowed_validators()[:2]
    node = run.cosmos
    body = {"asset": "ATOM", "amount": "20", "validator": a}
    reply = post(client, f"/v1/clients/{client_id}/stakes", body)
    assert reply.status_code in (201, 202), reply.text
    stake_id = reply.json()["stake_id"]
    wait_for("the stake to be active", lambda: stake_view(client, stake_id)["state"] == "active")
    before_b = node.delegation(delegator, b)
    assert before_b == 0

    def redelegate() -> str:
        reply = post(client, f"/v1/stakes/{stake_id}/redelegate", {"amount": "8", "validator": b})
        assert reply.status_code in (201, 202), reply.text
        assert reply.json()["kind"] == "redelegation"
        return str(reply.json()["stake_id"])

    red_id = _killed_at(run, ("broadcast",), tmp_path, redelegate)
    wait_for(
        "the redelegation to be active", lambda: stake_view(client, red_id)["state"] == "active"
    )
    red = stake_view(client, red_id)
    assert (red["validator"], red["source_validator"], red["source_stake_id"]) == (b, a, stake_id)
    assert red["position"] == "active" and red["completion_time"] is not None
    assert stake_view(client, stake_id)["staked"] == "12"
    assert node.delegation(delegator, a) == 12 * ATOM
    # (At a destination slashed by earlier runs the moved tokens read a unit short.)
    assert 8 * ATOM - 1 <= node.delegation(delegator, b) <= 8 * ATOM
    assert ledger_total(run, accounts.staked(client_id, a, "ATOM")) == 12 * ATOM
    assert ledger_total(run, accounts.staked(client_id, b, "ATOM")) == 8 * ATOM
    # The client's address paid two fees (and took the rewards the chain paid on the way,
    # booked to it): books equal chain.
    cut = commission_taken(client, client_id)
    assert available(client, client_id)["ATOM"] == node.balance(delegator) - cut

    # Transitive: the chain holds the redelegation's entry, so none from B until it ends.
    refused = post(client, f"/v1/stakes/{red_id}/redelegate", {"amount": "1", "validator": a})
    assert refused.status_code == 409 and refused.json()["code"] == "CUS-3009", refused.text
    with SqlDatabase(run.db_url).tx() as conn:
        kinds = conn.all(
            "select kind from cosmos_transactions where address = ? order by sequence",
            (delegator,),
        )
        signed = conn.one("select count(*) from signer_signatures where account = ?", (delegator,))
    assert [k[0] for k in kinds] == ["delegate", "redelegate"] and int(signed[0]) == 2
    steps = [
        e["type"]
        for e in _events(client, client_id, "custody.redelegation.")
        if e["data"]["operation_id"] == red_id
    ]
    assert steps[0] == "custody.redelegation.reserved.v1"
    assert steps[-1] == "custody.redelegation.active.v1" and steps.count(steps[-1]) == 1


def test_an_atom_withdrawal_leaves_from_the_clients_address_once_with_the_worker_killed(
    run: Running, tmp_path: Path
) -> None:
    """Decision 0035 on the real chain: an ATOM withdrawal is one MsgSend from the client's
    own address, which pays the fee; the worker SIGKILLed after the signer signed and
    again after the broadcast. The destination receives exactly the amount once; the
    client's books are its address's balance (the amount and the one fee out); the
    platform's network-fee account is untouched."""
    client_id, _ops, client = new_client(run, "atom-out")
    source = address(client, client_id, "ATOM")
    run.cosmos_faucet.fund((source, 10 * ATOM))
    credited(run, client, client_id, {"ATOM": 10 * ATOM})
    destination = address_of(PrivateKey().public_key.public_key_bytes)
    node = run.cosmos

    def withdraw() -> str:
        body = {"asset": "ATOM", "amount": "3.5", "destination": destination}
        reply = post(client, f"/v1/clients/{client_id}/withdrawals", body)
        assert reply.status_code == 202, reply.text
        return str(reply.json()["operation_id"])

    op_id = _killed_at(run, ("sign", "broadcast"), tmp_path, withdraw)
    done = until_state(client, op_id, "completed", "failed", timeout=120)
    assert (done["state"], done["fee_minor"]) == ("completed", str(FEE)), done
    assert node.balance(destination) == 3_500_000
    left = 10 * ATOM - 3_500_000 - FEE
    assert node.balance(source) == left
    assert available(client, client_id)["ATOM"] == balances(client, client_id)["ATOM"] == left
    assert ledger_total(run, accounts.network_fees("ATOM")) == 0
    with SqlDatabase(run.db_url).tx() as conn:
        kinds = conn.all(
            "select kind from cosmos_transactions where address = ? order by sequence",
            (source,),
        )
        signed = conn.all(
            "select distinct operation_id, nonce, tx_hash from signer_signatures where account = ?",
            (source,),
        )
    # Signed again after the kill (its answer was lost): the same sequence, the same bytes.
    assert [k[0] for k in kinds] == ["send"]
    assert [(op, int(n), h) for op, n, h in signed] == [(op_id, 0, done["tx_hash"])]
    steps = [
        e["type"]
        for e in _events(client, client_id, "custody.withdrawal.")
        if e["data"]["operation_id"] == op_id
    ]
    assert steps[-1] == "custody.withdrawal.completed.v1" and steps.count(steps[-1]) == 1
    # More than is left with the fee on top is refused before anything is written.
    assert left == 6_498_000  # 6.497 and the fee are a unit of 0.001 ATOM more
    body = {"asset": "ATOM", "amount": "6.497", "destination": destination}
    refused = post(client, f"/v1/clients/{client_id}/withdrawals", body)
    assert refused.status_code == 422 and refused.json()["code"] == "CUS-1001", refused.text
