"""Attacks 1c, 1e and 1h on the running platform (API, router, saga, signer):
- 1e: a withdrawal whose request carries no client signature, a forged one (another
  key, or the body changed after signing), or a replayed one (the same signed request
  again under another Idempotency-Key), over REST and as a Kafka command; and a command
  produced by a Kafka principal other than the bank's;
- 1c: an approval update sent straight to Temporal with two made-up names, and the
  saga's "count again" signal sent by anyone;
- 1h: a withdrawal to a screened destination (held for compliance, never paid).
Each is refused or held, and no value moves: the destinations stay empty on chain and
the client's balance is whole."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from adapters.kafka.bus import KafkaEventBus
from adapters.temporal import connect
from sagas.errors import DependencyUnavailable
from sagas.events import Envelope
from sagas.topics import COMMANDS
from services.cli.request_signing import ClientRequestSigner, headers_for, signed
from tests.e2e.conftest import ETH, address, available, credited, new_client, run, until_state
from tests.e2e.harness import Running, alerts_about, post, wait_for
from tests.e2e.test_commands import answers

__all__ = ["run"]  # the e2e tier's platform fixture, one fresh database for this module
pytestmark = pytest.mark.stack


def code(reply: httpx.Response, status: int, expected: str) -> dict[str, Any]:
    assert (reply.status_code, reply.json().get("code")) == (status, expected), reply.text
    return dict(reply.json())


def funded(run: Running, prefix: str) -> tuple[str, httpx.Client]:
    client_id, _ops, client = new_client(run, prefix)
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    return client_id, client


def bearer_only(run: Running, client_id: str) -> httpx.Client:
    token = run.token(f"user-{client_id}", "client", client_id)
    return httpx.Client(
        base_url=run.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_a_withdrawal_needs_its_clients_own_fresh_signature(run: Running) -> None:
    client_id, client = funded(run, "rt-req")
    path = f"/v1/clients/{client_id}/withdrawals"
    to = Account.create().address
    body = {"asset": "ETH", "amount": "0.1", "destination": to}
    # The bearer token alone (a stolen token, or a compromised API gateway).
    code(post(bearer_only(run, client_id), path, body), 401, "CUS-3103")
    # Signed by a key that is not the client's.
    mallory = httpx.Client(
        base_url=run.base_url,
        headers={"Authorization": f"Bearer {run.token('m', 'client', client_id)}"},
        auth=ClientRequestSigner(Ed25519PrivateKey.generate()),
        timeout=30,
    )
    assert "unregistered_key" in code(post(mallory, path, body), 401, "CUS-3103")["detail"]
    # Signed by the client, then the body changed on the way (another destination).
    raw = json.dumps(body).encode()
    sig = signed(run.client_key(client_id), "POST", path, raw)
    tampered = json.dumps({**body, "destination": Account.create().address}).encode()
    reply = bearer_only(run, client_id).post(
        path,
        content=tampered,
        headers={
            **headers_for(sig.signature),
            "Content-Type": "application/json",
            "Idempotency-Key": "t1",
        },
    )
    code(reply, 401, "CUS-3103")
    # The client's genuine request, then the same bytes again under another key.
    genuine = {
        **headers_for(sig.signature),
        "Content-Type": "application/json",
        "Idempotency-Key": "g1",
    }
    first = bearer_only(run, client_id).post(path, content=raw, headers=genuine)
    assert first.status_code == 202, first.text
    replay = bearer_only(run, client_id).post(
        path, content=raw, headers={**genuine, "Idempotency-Key": "g2"}
    )
    assert "replayed_nonce" in code(replay, 401, "CUS-3103")["detail"]
    done = until_state(client, first.json()["operation_id"], "completed", "failed")
    assert done["state"] == "completed"
    assert run.eth.balance(to) == ETH // 10  # paid once, for the one genuine request
    listed = client.get(f"/v1/clients/{client_id}/withdrawals").json()
    assert [w["operation_id"] for w in listed] == [first.json()["operation_id"]]


def test_a_command_is_the_banks_and_carries_its_clients_signature(run: Running) -> None:
    client_id, client = funded(run, "rt-cmd")
    to = Account.create().address
    body = {"asset": "ETH", "amount": "0.2", "destination": to}
    path = f"/v1/clients/{client_id}/withdrawals"

    def command(key: str, request: Any) -> Envelope:
        data = {"client_id": client_id, "idempotency_key": key, "requested_by": "core", **body}
        if request is not None:
            data["request"] = request.model_dump(mode="json")
        return Envelope(
            source="/bank/core",
            type="custody.command.withdrawal.create.v1",
            subject=f"client:{client_id}:commands",
            data=data,
        )

    forged = signed(Ed25519PrivateKey.generate(), "POST", path, json.dumps(body).encode())
    genuine = signed(run.client_key(client_id), "POST", path, json.dumps(body).encode())
    unsigned, fake, real, replayed = (
        command("c1", None),
        command("c2", forged),
        command("c3", genuine),
        command("c4", genuine),
    )
    bank = KafkaEventBus(run.settings.kafka_client("bank"), client_id="bank-core")
    bank.publish(COMMANDS.name, unsigned)
    bank.publish(COMMANDS.name, fake)
    bank.publish(COMMANDS.name, real)
    bank.publish(COMMANDS.name, replayed)
    # Another principal (the API's credentials, stolen) cannot write the commands topic:
    # the bus reports the broker's refusal, and nothing reaches the router.
    intruder = KafkaEventBus(run.settings.kafka_client("api"), delivery_timeout_s=10)
    smuggled = command("c5", genuine)
    with pytest.raises(DependencyUnavailable, match=r"(?i)authorization.failed"):
        intruder.publish(COMMANDS.name, smuggled)

    ids = {unsigned.id, fake.id, real.id, replayed.id}
    got = wait_for(
        "answers", lambda: (a := answers(run, client, client_id)) and ids <= set(a) and a
    )
    assert smuggled.id not in got
    for refused in (unsigned, fake, replayed):
        assert got[refused.id]["data"]["code"] == "CUS-3103", got[refused.id]
    assert got[real.id]["type"] == "custody.command.accepted.v1"
    done = until_state(client, got[real.id]["data"]["operation_id"], "completed", "failed")
    assert done["state"] == "completed" and run.eth.balance(to) == ETH // 5
    assert len(client.get(f"/v1/clients/{client_id}/withdrawals").json()) == 1


def test_an_approval_update_or_signal_sent_straight_to_temporal_approves_nothing(
    run: Running,
) -> None:
    client_id, ops, client = new_client(run, "rt-tmp")
    run.faucet.fund_eth(address(client, client_id, "ETH"), ETH)
    credited(run, client, client_id, {"ETH": ETH})
    run.govern(ops.put(f"/v1/clients/{client_id}/policies/ETH", json={"approval_threshold": "0"}))
    to = Account.create().address
    body = {"asset": "ETH", "amount": "0.3", "destination": to}
    op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    until_state(client, op_id, "awaiting_approval")

    async def attack() -> str:
        temporal = await connect(
            run.settings.temporal_address,
            run.settings.temporal_namespace,
            run.settings.temporal_transport(),
        )
        handle = temporal.get_workflow_handle(op_id)
        refusals = []
        for name in ("mallory", "eve"):  # the old, name-based approval update
            try:
                await handle.execute_update("approve", {"operator": name})
                refusals.append("accepted")
            except Exception as exc:  # refused by the saga's validator
                refusals.append(type(exc).__name__)
        for _ in range(3):
            await handle.signal("approvals_changed")
        return ",".join(refusals)

    assert "accepted" not in asyncio.run(attack())
    wait_for("the saga to count again", lambda: True, timeout=1)
    shown = client.get(f"/v1/withdrawals/{op_id}").json()
    assert shown["state"] == "awaiting_approval", shown
    assert not [s for s in shown["timeline"] if s["step"].startswith("approval:")]
    assert run.eth.balance(to) == 0
    assert available(client, client_id)["ETH"] == ETH - 3 * ETH // 10  # reserved, not paid


def test_a_withdrawal_to_a_screened_destination_is_held_and_never_paid(run: Running) -> None:
    client_id, client = funded(run, "rt-scr")
    sanctioned = Account.create().address
    with run.deny_file.open("a") as deny:
        deny.write(sanctioned + "\n")
    body = {"asset": "ETH", "amount": "0.4", "destination": sanctioned}
    op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    held = until_state(client, op_id, "held")
    assert "held" in [s["step"] for s in held["timeline"]]
    assert alerts_about(run, op_id, "custody.alert.withdrawal_screened.v1")
    # Compliance rejects it: voided, the balance whole, nothing on chain.
    ops = run.http("compliance-1", "operator")
    decision = {"action": "reject"}
    reply = post(ops, f"/v1/withdrawals/{op_id}/decisions", decision)
    assert reply.status_code == 202, reply.text
    done = until_state(client, op_id, "rejected")
    assert done["error_code"] == "CUS-2012"
    assert run.eth.balance(sanctioned) == 0
    assert available(client, client_id)["ETH"] == ETH
