"""Issue 14, acceptance 1 and 3, over HTTP on the real chain, with the rewards schedule
and the staking watch on (every few seconds here; a day and a minute in production).

Rewards: a client deposits ATOM and stakes with the platform's validator; the schedule
claims and books its rewards over several runs, each to the unit of what the chain paid
(the client's address holds exactly its deposit, less its stake and the fees, plus every
gross reward booked; the books the same less the platform's commission, which stays at
the address: docs/staking.md); it unstakes and is credited once, after the unbonding.

Slashing: a client stakes with the second validator, which is then stopped: the chain
jails and slashes it for downtime; the watch books the exact loss against the client's
staked position, alerts, and the stake shows `slashed`; an unstake of what is left
returns what the chain returns. The audit chain verifies everything at the end. The
validator is restarted and unjailed afterwards, so the stack is whole again."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from infra.services.cosmos import CHAIN_ID, SimdB
from infra.settings import StackSettings
from sagas import accounts
from sagas.staking.events import JAILED_ALERT, SLASHED_ALERT
from tests.e2e.conftest import (
    address,
    available,
    commission_taken,
    credited,
    ledger_total,
    new_client,
    stake_view,
)
from tests.e2e.harness import Running, alerts_about, post, wait_for

ATOM = 10**6
FEE = 2_000  # uatom per staking transaction and per claim (docs/staking.md)
PLATFORM = {
    "staking_rewards_every_seconds": "12",
    "staking_min_claim": "5000",
    "staking_claim_fee": str(FEE),
    "staking_commission_bps": "1000",
    "signer_cosmos_claim_every_seconds": "5",
    "staking_watch_every_seconds": "3",
}


def _staked(run: Running, http: Any, client_id: str, validator: str, amount: str) -> str:
    body = {"asset": "ATOM", "amount": amount, "validator": validator}
    reply = post(http, f"/v1/clients/{client_id}/stakes", body)
    assert reply.status_code in (201, 202), reply.text
    stake_id = str(reply.json()["stake_id"])
    wait_for("the stake to be active", lambda: stake_view(http, stake_id)["state"] == "active")
    return stake_id


def _unstaked(http: Any, stake_id: str, amount: str) -> dict[str, Any]:
    reply = post(http, f"/v1/stakes/{stake_id}/unstake", {"amount": amount})
    assert reply.status_code in (201, 202), reply.text
    unstake_id = reply.json()["unstake_id"]

    def completed() -> dict[str, Any] | None:
        found = http.get(f"/v1/unstakes/{unstake_id}").json()
        return found if found["state"] in ("completed", "failed") else None

    done: dict[str, Any] = wait_for("the unstake to complete", completed, timeout=150)
    assert done["state"] == "completed", done
    return done


def _booked_rewards(stake: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        s["detail"]
        for s in stake["timeline"]
        if s["step"].startswith("rewards:") and s["detail"]["state"] == "booked"
    ]


def test_rewards_are_booked_as_the_chain_paid_them_over_several_runs(run: Running) -> None:
    client_id, _ops, client = new_client(run, "rewards")
    delegator = address(client, client_id, "ATOM")
    run.cosmos_faucet.fund((delegator, 50 * ATOM))
    credited(run, client, client_id, {"ATOM": 50 * ATOM})
    validator = run.settings.allowed_validators()[0]
    stake_id = _staked(run, client, client_id, validator, "20")
    node = run.cosmos

    wait_for(
        "rewards booked by two runs",
        lambda: len(_booked_rewards(stake_view(client, stake_id))) >= 2,
        timeout=120,
    )

    def books_equal_chain() -> bool:
        """Between claims (none in flight): the address holds the deposit less the stake
        and every fee, plus every gross reward booked; the books that less the
        commission, which each claim took at 10 % rounded down."""
        booked = _booked_rewards(stake_view(client, stake_id))
        gross = sum(int(r["gross"]) for r in booked)
        fees = sum(int(r["fee"]) for r in booked)
        cut = sum(int(r["commission"]) for r in booked)
        assert all(int(r["commission"]) == int(r["gross"]) * 1000 // 10_000 for r in booked)
        assert all(int(r["net"]) == int(r["gross"]) - int(r["fee"]) - int(r["commission"])
                   for r in booked)  # fmt: skip
        on_chain = node.balance(delegator)
        return (
            on_chain == 50 * ATOM - 20 * ATOM - FEE - fees + gross
            and available(client, client_id)["ATOM"] == on_chain - cut
        )

    wait_for("the books to equal the chain", books_equal_chain, timeout=60)
    runs = {r["operation_id"] for r in _booked_rewards(stake_view(client, stake_id))}
    assert len(runs) >= 2 and all(r.startswith(f"rwd:{client_id}:") for r in runs)
    assert ledger_total(run, accounts.staked(client_id, validator, "ATOM")) == 20 * ATOM

    done = _unstaked(client, stake_id, "20")
    assert done["released_minor"] == str(20 * ATOM) and done["slashed_minor"] == "0"
    assert node.delegation(delegator, validator) == 0
    assert ledger_total(run, accounts.staked(client_id, validator, "ATOM")) == 0
    assert ledger_total(run, accounts.unbonding(client_id, validator, "ATOM")) == 0
    booked = _booked_rewards(stake_view(client, stake_id))
    # Credited once: what the address holds (the release, the rewards the undelegation
    # withdrew on the way, every claim) is the client's, less the commission on all of
    # them (the claims' and the undelegation's, at one rate).
    wait_for(
        "the release booked",
        lambda: (
            available(client, client_id)["ATOM"]
            == node.balance(delegator) - commission_taken(client, client_id)
        ),
        timeout=30,
    )
    assert node.balance(delegator) > 50 * ATOM - 2 * FEE - FEE * len(booked)


def _simd_b(*args: str) -> subprocess.CompletedProcess[str]:
    b = SimdB(StackSettings())
    rpc = b.rpc_url().replace("http://", "tcp://")
    return subprocess.run(
        [str(b.binary), *args, "--home", str(b.home), "--keyring-backend", "test",
         "--chain-id", CHAIN_ID, "--node", rpc],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _stack(action: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "stack", action, "simd-b"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _unjail_b(run: Running, validator: str) -> None:
    """Validator B back in the set: running, its downtime jail served, unjailed."""
    _stack("up")
    deadline = time.monotonic() + 150
    while run.cosmos.validator(validator).jailed:
        assert time.monotonic() < deadline, "validator B is still jailed"
        _simd_b("tx", "slashing", "unjail", "--from", "validator", "--fees", "2000uatom", "-y")
        time.sleep(5)


def test_a_slashed_validator_costs_its_delegators_exactly_what_the_chain_took(
    run: Running,
) -> None:
    validator = run.settings.allowed_validators()[1]
    node = run.cosmos
    if node.validator(validator).jailed:  # a run before this one left it so
        _unjail_b(run, validator)
    client_id, _ops, client = new_client(run, "slashed")
    delegator = address(client, client_id, "ATOM")
    run.cosmos_faucet.fund((delegator, 20 * ATOM))
    credited(run, client, client_id, {"ATOM": 20 * ATOM})
    stake_id = _staked(run, client, client_id, validator, "5")
    staked = accounts.staked(client_id, validator, "ATOM")
    # (A run before this one slashed B: its rate is below 1 and the chain may truncate.)
    assert 5 * ATOM - 2 <= node.delegation(delegator, validator) <= ledger_total(run, staked)
    assert ledger_total(run, staked) == 5 * ATOM

    _stack("down")  # the second validator stops signing blocks
    try:
        wait_for("the validator to be jailed", lambda: node.validator(validator).jailed, 90)
        stake = wait_for(
            "the stake to be slashed",
            lambda: (s := stake_view(client, stake_id))["state"] == "slashed" and s,
            timeout=60,
        )
        on_chain = node.delegation(delegator, validator)
        assert 0 < on_chain < 5 * ATOM
        loss = 5 * ATOM - on_chain
        # The books lost exactly what the chain took, and say so.
        assert ledger_total(run, staked) == on_chain
        assert stake["position"] == "slashed"
        assert stake["slashed_minor"] == str(loss)
        assert stake["staked_minor"] == str(on_chain)
        (slashed,) = [s for s in stake["timeline"] if s["step"].startswith("slashed:")]
        assert slashed["detail"]["loss"] == str(loss) and slashed["detail"]["jailed"] is True
        tokens, shares = map(int, slashed["detail"]["rate"].split("/"))
        assert 0 < tokens < shares  # the validator's rate fell: that is what was booked
        (alert,) = alerts_about(run, staked, SLASHED_ALERT)
        assert alert.data["position_loss"] == str(loss)
        assert alerts_about(run, validator, JAILED_ALERT)
        assert any(s["step"].startswith("jailed:") for s in stake["timeline"])

        # Part of it moves away to A. At B's fallen rate the chain delegates to A what the
        # unbonded shares are worth, truncated: up to a unit less than asked. The books
        # post at A exactly what reached A (A's rate is 1: its delegation reads exact)
        # and take the unit the chain kept from B's stake.
        a = run.settings.allowed_validators()[0]
        asked = ATOM + 1
        reply = post(
            client, f"/v1/stakes/{stake_id}/redelegate", {"amount": "1.000001", "validator": a}
        )
        assert reply.status_code in (201, 202), reply.text
        red_id = str(reply.json()["stake_id"])
        wait_for("the move to be active", lambda: stake_view(client, red_id)["state"] == "active")
        (active,) = [s for s in stake_view(client, red_id)["timeline"] if s["step"] == "active"]
        at_a = node.delegation(delegator, a)
        assert asked - 1 <= at_a <= asked
        assert int(active["detail"]["moved"]) == at_a
        assert ledger_total(run, accounts.staked(client_id, a, "ATOM")) == at_a
        left = on_chain - asked
        assert ledger_total(run, staked) == left
        # (Taking shares at the fallen rate leaves B's rate a hair higher: the chain may
        # hold a unit more than the books for what is left, never less.)
        assert left <= node.delegation(delegator, validator) <= left + 1

        # An unstake of what is left returns what the chain returns.
        whole, frac = divmod(left, ATOM)
        done = _unstaked(client, stake_id, f"{whole}.{frac:06d}")
        # The chain truncates the tokens of the shares it undelegates at a fallen rate: it
        # may give back a unit less than the delegation showed. The books release what it
        # gave (the available balance below equals the chain's, to the unit) and book the
        # unit as lost with the rest of the slash.
        released = int(done["released_minor"])
        assert left - 1 <= released <= left, (released, left)
        assert int(done["slashed_minor"]) == left - released
        assert node.delegation(delegator, validator) <= 1
        assert ledger_total(run, staked) == 0
        wait_for(
            "the release booked",
            lambda: (
                available(client, client_id)["ATOM"]
                == node.balance(delegator) - commission_taken(client, client_id)
            ),
            timeout=30,
        )
        # Part moved to A, the rest came back: the position's word is the move's.
        assert stake_view(client, stake_id)["position"] == "redelegated"
    finally:
        _unjail_b(run, validator)

    # The platform's audit writer has chained every event (rewards, slashes, alerts), and
    # the chain verifies.
    run.audit_caught_up()
    checked = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "audit", "verify"], env=run.env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr[-2000:]
    assert "OK" in checked.stdout
