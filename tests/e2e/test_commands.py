"""Bank systems may submit withdrawals on the Kafka commands topic instead of HTTP: the
router starts the same saga with the same validation and idempotency, and answers on
the events topic (keyed by the command's subject) with the command id as correlation."""

from __future__ import annotations

import json
import uuid
from typing import Any

from confluent_kafka import Producer
from eth_account import Account

from adapters.kafka.bus import KafkaEventBus
from sagas import accounts
from sagas.events import Envelope
from sagas.topics import COMMANDS
from services.cli.request_signing import signed
from tests.e2e.conftest import (
    ETH,
    address,
    credited,
    ledger_total,
    new_client,
    stake_view,
    until_state,
)
from tests.e2e.harness import Running, wait_for

# One platform with the defaults, shared with the other modules that set this (conftest).
SHARED_PLATFORM = True
ATOM = 10**6


def answers(run: Running, http: Any, client_id: str) -> dict[str, dict[str, Any]]:
    """Command answers for the client, by correlation id, read through the API's stream."""
    found = {}
    with http.stream(
        "GET", f"/v1/clients/{client_id}/events", params={"from": "beginning", "idle_seconds": 2}
    ) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                if event["type"].startswith("custody.command."):
                    found[event["data"]["correlation_id"]] = event
    return found


def test_a_withdrawal_command_on_kafka_starts_the_same_saga_with_the_same_rules(
    run: Running,
) -> None:
    client_id, _ops, client = new_client(run, "cmd")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    bus = KafkaEventBus(run.settings.kafka_client("bank"), client_id="bank-core")
    destination = Account.create().address
    subject = f"client:{client_id}:commands"

    def command(key: str, amount: str, **extra: Any) -> Envelope:
        body = {"asset": "ETH", "amount": amount, "destination": destination}
        # The bank's system signs the withdrawal as it would sign the REST request.
        request = signed(
            run.client_key(client_id),
            "POST",
            f"/v1/clients/{client_id}/withdrawals",
            json.dumps(body).encode(),
        )
        data = {
            "client_id": client_id,
            "idempotency_key": key,
            "requested_by": "bank-core-system",
            **body,
            "request": request.model_dump(mode="json"),
            **extra,
        }
        return Envelope(
            source="/bank/core",
            type="custody.command.withdrawal.create.v1",
            subject=subject,
            data=data,
        )

    first, repeat = command("k-1", "0.1"), command("k-1", "0.1")
    other_body, bad_amount = command("k-1", "0.2"), command("k-2", "0.1234567890123456789")
    unknown_field = command("k-3", "0.1", colour="blue")
    for c in (first, repeat, other_body, bad_amount, unknown_field):
        bus.publish(COMMANDS.name, c)
    # Not a CloudEvent at all: answered as invalid, never stuck on.
    raw = Producer(run.settings.kafka_client("bank"))
    raw.produce(COMMANDS.name, key=subject.encode(), value=b"{not json")
    raw.flush(10)

    ids = {first.id, repeat.id, other_body.id, bad_amount.id, unknown_field.id}
    got = wait_for(
        "answers to the commands",
        lambda: (a := answers(run, client, client_id)) and ids <= set(a) and a,
    )
    accepted = got[first.id]
    assert accepted["type"] == "custody.command.accepted.v1"
    assert got[repeat.id]["type"] == "custody.command.accepted.v1"
    assert got[repeat.id]["data"]["operation_id"] == accepted["data"]["operation_id"]
    assert (got[other_body.id]["type"], got[other_body.id]["data"]["code"]) == (
        "custody.command.rejected.v1",
        "CUS-3005",
    )
    assert got[bad_amount.id]["data"]["code"] == "CUS-3004"
    assert got[unknown_field.id]["data"]["code"] == "CUS-3001"
    assert any(
        a["data"].get("code") == "CUS-3001" and a["data"]["correlation_id"].startswith("invalid:")
        for a in got.values()
    )

    op_id = accepted["data"]["operation_id"]
    assert op_id == f"wd:{client_id}:k-1"
    done = until_state(client, op_id, "completed")
    assert done["requested_by"] == "bank-core-system"
    assert run.eth.balance(destination) == ETH // 10  # one saga, paid once
    listed = client.get(f"/v1/clients/{client_id}/withdrawals").json()
    assert [w["operation_id"] for w in listed] == [op_id]
    assert uuid.UUID(accepted["id"])  # a deterministic uuid: a re-handled command answers the same


def test_stake_and_unstake_commands_start_the_same_sagas_signed_by_the_client(
    run: Running,
) -> None:
    """A stake and an unstake put on Kafka as commands: the client's signature checked as
    the API checks it, the same idempotency; another client's stake is not found; the
    delegation and undelegation land on chain once."""
    client_id, _ops, client = new_client(run, "cmdstk")
    other_id, _other_ops, _other = new_client(run, "cmdoth")
    delegator = address(client, client_id, "ATOM")
    run.cosmos_faucet.fund((delegator, 10 * ATOM))
    credited(run, client, client_id, {"ATOM": 10 * ATOM})
    validator = run.settings.allowed_validators()[0]
    bus = KafkaEventBus(run.settings.kafka_client("bank"), client_id="bank-core")
    subject = f"client:{client_id}:commands"

    def command(kind: str, path: str, body: dict[str, str], key: str, **data: Any) -> Envelope:
        signer = run.client_key(data.pop("signed_by", client_id))
        request = signed(signer, "POST", path, json.dumps(body).encode())
        return Envelope(
            source="/bank/core",
            type=f"custody.command.{kind}.create.v1",
            subject=subject,
            data={
                "client_id": client_id,
                "idempotency_key": key,
                "requested_by": "bank-core-system",
                **body,
                "request": request.model_dump(mode="json"),
                **data,
            },
        )

    stake_body = {"asset": "ATOM", "amount": "4", "validator": validator}
    stakes_path = f"/v1/clients/{client_id}/stakes"
    stake = command("stake", stakes_path, stake_body, "s-1")
    again = command("stake", stakes_path, stake_body, "s-1")
    forged = command("stake", stakes_path, stake_body, "s-2", signed_by=other_id)
    for c in (stake, again, forged):
        bus.publish(COMMANDS.name, c)
    got = wait_for(
        "answers to the stake commands",
        lambda: (
            (a := answers(run, client, client_id))
            and {stake.id, again.id, forged.id} <= set(a)
            and a
        ),
    )
    stake_id = got[stake.id]["data"]["operation_id"]
    assert stake_id == f"stk:{client_id}:s-1"
    assert got[again.id]["data"]["operation_id"] == stake_id
    assert (got[forged.id]["type"], got[forged.id]["data"]["code"]) == (
        "custody.command.rejected.v1",
        "CUS-3103",
    )
    wait_for("the stake to be active", lambda: stake_view(client, stake_id)["state"] == "active")
    assert run.cosmos.delegation(delegator, validator) == 4 * ATOM  # delegated once

    unstake_body = {"amount": "1.5"}
    unstake_path = f"/v1/stakes/{stake_id}/unstake"
    unstake = command("unstake", unstake_path, unstake_body, "u-1", stake_id=stake_id)
    not_theirs = command(
        "unstake", unstake_path, unstake_body, "u-2", stake_id=stake_id, client_id=other_id
    )
    for c in (unstake, not_theirs):
        bus.publish(COMMANDS.name, c)
    got = wait_for(
        "answers to the unstake commands",
        lambda: (
            (a := answers(run, client, client_id)) and {unstake.id, not_theirs.id} <= set(a) and a
        ),
    )
    assert got[unstake.id]["data"]["operation_id"] == f"uns:{stake_id}:u-1"
    assert got[not_theirs.id]["data"]["code"] == "CUS-3008"
    wait_for(
        "the undelegation",
        lambda: (
            client.get(f"/v1/unstakes/uns:{stake_id}:u-1").json()["state"]
            in ("unbonding", "completed")
        ),
    )
    assert run.cosmos.delegation(delegator, validator) == 4 * ATOM - 1_500_000
    assert run.cosmos.delegation(delegator, validator) == ledger_total(
        run, accounts.staked(client_id, validator, "ATOM")
    )
