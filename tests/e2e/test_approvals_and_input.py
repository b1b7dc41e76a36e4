"""Acceptance 2 and 4 of issue 5 over HTTP: approvals (quorum of distinct operators, never
the requester; expiry voids and restores the balance) and bad input (a 4xx problem+json
with a stable code, and nothing written)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
from eth_account import Account

from adapters.sqldb import SqlDatabase
from sagas.intents import Intent, sign_intent
from services.cli.request_signing import ClientRequestSigner
from tests.e2e.conftest import (
    ETH,
    USD,
    address,
    available,
    balances,
    credited,
    new_client,
    until_state,
    withdrawal,
)
from tests.e2e.harness import Running, post, wait_for

# One platform with the defaults, shared with the other modules that set this (conftest).
SHARED_PLATFORM = True


def problem(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"].startswith("application/problem+json")
    body = dict(reply.json())
    assert body["code"] == code, body
    assert body["status"] == status and body["title"] and body["type"].endswith(code)
    return body


def funded_client(run: Running, prefix: str, eth: int = ETH, usd: int = 0) -> tuple[str, Any, Any]:
    client_id, ops, client = new_client(run, prefix)
    where = address(client, client_id, "ETH")
    run.faucet.fund_eth(where, eth)
    expected = {"ETH": eth}
    if usd:
        run.faucet.mint_token(run.settings.eth_token_address, where, usd)
        expected["CTUSD"] = usd
    credited(run, client, client_id, expected)
    return client_id, ops, client


def test_a_withdrawal_above_the_threshold_needs_two_distinct_operators(run: Running) -> None:
    client_id, ops, client = funded_client(run, "appr")
    policy = {"approval_threshold": "0.1", "approval_quorum": 2}
    # A governance proposal: in force once two operators have signed it with their keys.
    reply = ops.put(f"/v1/clients/{client_id}/policies/ETH", json=policy)
    assert reply.json()["intent"]["policy_version"] == 1, reply.text
    run.govern(reply)
    assert ops.get(f"/v1/clients/{client_id}/policies/ETH").json()["version"] == 1
    destination = Account.create().address

    body = {"asset": "ETH", "amount": "0.2", "destination": destination}
    op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    waiting = until_state(client, op_id, "awaiting_approval")
    decided = next(s for s in waiting["timeline"] if s["step"] == "policy_decided")
    assert decided["detail"]["rule"] == "approval_threshold"
    assert decided["detail"]["policy_version"] == 1
    assert available(client, client_id)["ETH"] == ETH - ETH // 5  # reserved meanwhile

    # A client may not approve at all; an operator once; the same operator never twice.
    shown = client.get(f"/v1/withdrawals/{op_id}/intent").json()
    intent = Intent.model_validate(shown["intent"], strict=False)
    by_alice = sign_intent(intent, run.operator_key("alice")).model_dump()
    problem(post(client, f"/v1/withdrawals/{op_id}/approvals", by_alice), 403, "CUS-3102")
    first = run.approve(op_id, "alice", key="a1")
    assert first.headers["Location"] == f"/v1/withdrawals/{op_id}"
    assert (first.status_code, first.json()) == (
        200,
        {"required": 2, "approvers": ["alice"], "complete": False},
    ), first.text
    again = run.approve(op_id, "alice", key="a1")
    assert again.json() == first.json()  # the same key: the first answer, nothing new
    # Her signature again under another key counts once (Ed25519 signs deterministically:
    # it is the same approval); a second operator key of hers would be refused, CUS-2002.
    assert run.approve(op_id, "alice", key="a2").json() == first.json()
    assert withdrawal(client, op_id)["state"] == "awaiting_approval"
    second = run.approve(op_id, "bob")
    assert second.status_code == 200 and second.json()["complete"] is True, second.text

    done = until_state(client, op_id, "completed", "failed")
    assert done["state"] == "completed"
    assert run.eth.balance(destination) == ETH // 5
    steps = [s["step"] for s in done["timeline"]]
    assert "approval:alice" in steps and "approval:bob" in steps
    assert steps.index("approval:bob") < steps.index("approved") < steps.index("broadcast")


def test_the_requester_cannot_approve_and_an_expired_withdrawal_is_voided(run: Running) -> None:
    client_id, ops, client = funded_client(run, "expiry")
    run.govern(
        ops.put(f"/v1/clients/{client_id}/policies/ETH", json={"approval_threshold": "0.01"})
    )
    # An operator (carol) hands in the client's signed request: she requested it.
    requester = httpx.Client(
        base_url=run.base_url,
        headers={"Authorization": f"Bearer {run.token('carol', 'operator')}"},
        auth=ClientRequestSigner(run.client_key(client_id)),
    )
    body = {"asset": "ETH", "amount": "0.3", "destination": Account.create().address}
    reply = post(requester, f"/v1/clients/{client_id}/withdrawals", body)
    op_id = reply.json()["operation_id"]
    until_state(client, op_id, "awaiting_approval")
    refused = problem(run.approve(op_id, "carol"), 409, "CUS-2002")
    assert "requested" in refused["detail"]
    assert available(client, client_id)["ETH"] == ETH - 3 * ETH // 10

    expired = until_state(client, op_id, "expired", timeout=60)  # approval TTL is 20 s here
    assert expired["error_code"] == "CUS-2003"
    assert balances(client, client_id)["ETH"] == ETH
    assert available(client, client_id)["ETH"] == ETH  # the reservation is released
    problem(run.approve(op_id, "alice"), 409, "CUS-3009")


def test_the_user_a_client_names_in_its_signed_request_cannot_approve(run: Running) -> None:
    """The client system signs the body naming the bank's user who asked (bob, who is
    also an operator): his approval does not count; two others release it."""
    client_id, ops, client = funded_client(run, "signedby")
    policy = {"approval_threshold": "0.01", "approval_quorum": 2}
    run.govern(ops.put(f"/v1/clients/{client_id}/policies/ETH", json=policy))
    destination = Account.create().address
    body = {"asset": "ETH", "amount": "0.1", "destination": destination, "requested_by": "bob"}
    op_id = post(client, f"/v1/clients/{client_id}/withdrawals", body).json()["operation_id"]
    until_state(client, op_id, "awaiting_approval")
    refused = problem(run.approve(op_id, "bob"), 409, "CUS-2002")
    assert "requested" in refused["detail"]
    assert run.approve(op_id, "alice").json()["approvers"] == ["alice"]
    assert run.approve(op_id, "carol").json()["complete"] is True
    assert until_state(client, op_id, "completed", "failed")["state"] == "completed"
    assert run.eth.balance(destination) == ETH // 10


def test_bad_input_gets_a_problem_with_a_code_and_nothing_is_written(run: Running) -> None:
    client_id, _ops, client = funded_client(run, "bad", eth=ETH, usd=5 * USD)
    other_id, _, _ = new_client(run, "other")
    path = f"/v1/clients/{client_id}/withdrawals"
    eth_to = Account.create().address
    wrong_checksum = eth_to[:-1] + (
        eth_to[-1].lower() if eth_to[-1].isupper() else eth_to[-1].upper()
    )
    if wrong_checksum == eth_to:  # the last character is a digit: flip another letter
        i = next(i for i, c in enumerate(eth_to) if c.isalpha() and i > 1)
        wrong_checksum = eth_to[:i] + eth_to[i].swapcase() + eth_to[i + 1 :]

    def w(asset: str, amount: Any, destination: str = eth_to) -> dict[str, Any]:
        return {"asset": asset, "amount": amount, "destination": destination}

    mainnet = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    cases = [
        (w("ETH", "0.1", wrong_checksum), 422, "CUS-3002"),
        (w("ETH", "0.1", "0x12345"), 422, "CUS-3002"),
        (w("BTC", "0.1", mainnet), 422, "CUS-3003"),
        (w("BTC", "0.1", eth_to), 422, "CUS-3003"),
        (w("ETH", "0.1", mainnet), 422, "CUS-3003"),
        (w("ETH", "0"), 422, "CUS-1008"),
        (w("ETH", "-1"), 422, "CUS-1008"),
        (w("ETH", "1e3"), 422, "CUS-1008"),
        (w("ETH", 0.1), 422, "CUS-3001"),  # a JSON number: never a float near money
        (w("ETH", "0.0000000000000000001"), 422, "CUS-3004"),
        (w("CTUSD", "1.0000001"), 422, "CUS-3004"),
        (w("DOGE", "1"), 422, "CUS-1010"),
        (w("ETH", "1.5"), 422, "CUS-1001"),
        (w("CTUSD", "5.000001"), 422, "CUS-1001"),
        ({"asset": "ETH", "amount": "0.1"}, 422, "CUS-3001"),
        ({**w("ETH", "0.1"), "extra": 1}, 422, "CUS-3001"),
    ]
    for body, status, code in cases:
        problem(post(client, path, body), status, code)
    headers = {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
    problem(
        client.post(path, content=b'{"asset": "ETH", "amount": ', headers=headers), 400, "CUS-3001"
    )
    big = json.dumps(w("ETH", "0.1", "x" * 100_000)).encode()
    problem(client.post(path, content=big, headers=headers), 413, "CUS-3007")
    problem(client.post(path, json=w("ETH", "0.1")), 400, "CUS-3006")  # no Idempotency-Key
    problem(post(client, f"/v1/clients/{other_id}/withdrawals", w("ETH", "0.1")), 403, "CUS-3102")
    problem(client.get(f"/v1/clients/{other_id}/balances"), 403, "CUS-3102")
    problem(httpx.post(run.base_url + path, json=w("ETH", "0.1")), 401, "CUS-3101")
    bogus = {"Authorization": "Bearer not-a-token"}
    problem(httpx.get(run.base_url + f"/v1/clients/{client_id}", headers=bogus), 401, "CUS-3101")
    problem(client.get("/v1/withdrawals/wd:nobody:x"), 404, "CUS-3008")

    # Nothing was written: no operation, no ledger entry, balances as they were.
    with SqlDatabase(run.db_url).tx() as conn:
        ops_rows = conn.all(
            "select id from operations where client_id = ? and kind = 'withdrawal'", (client_id,)
        )
        entries = conn.all(
            "select id from ledger_transfers where debit_account = ? or credit_account = ?",
            (f"client:{client_id}:ETH", f"client:{client_id}:ETH"),
        )
    assert ops_rows == []
    assert len(entries) == 1  # the deposit
    assert balances(client, client_id) == {"BTC": 0, "ETH": ETH, "CTUSD": 5 * USD, "ATOM": 0}


def test_the_same_key_returns_the_same_saga_and_another_body_is_refused(run: Running) -> None:
    client_id, _ops, client = funded_client(run, "idem")
    path = f"/v1/clients/{client_id}/withdrawals"
    body = {"asset": "ETH", "amount": "0.1", "destination": Account.create().address}
    first = post(client, path, body, key="pay-1")
    assert first.status_code == 202, first.text
    again = post(client, path, body, key="pay-1")
    assert again.status_code == 200 and again.json()["operation_id"] == first.json()["operation_id"]
    problem(post(client, path, {**body, "amount": "0.2"}, key="pay-1"), 409, "CUS-3005")
    done = until_state(client, first.json()["operation_id"], "completed")
    assert run.eth.balance(body["destination"]) == ETH // 10
    saga = client.get(f"/v1/sagas/{done['operation_id']}").json()
    assert saga["status"] == "COMPLETED" and saga["workflow_type"] == "Withdrawal"


def _workflow_status(run: Running, workflow_id: str, delete: bool = False) -> str | None:
    """The workflow's status in Temporal, None once it is gone (`delete`: delete it
    first, as the namespace's retention does to a finished run)."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DeleteWorkflowExecutionRequest
    from temporalio.service import RPCError, RPCStatusCode

    from adapters.temporal import connect

    async def go() -> str | None:
        s = run.settings
        client = await connect(s.temporal_address, s.temporal_namespace, s.temporal_transport())
        if delete:
            await client.workflow_service.delete_workflow_execution(
                DeleteWorkflowExecutionRequest(
                    namespace=s.temporal_namespace,
                    workflow_execution=WorkflowExecution(workflow_id=workflow_id),
                )
            )
        try:
            status = (await client.get_workflow_handle(workflow_id).describe()).status
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        return None if status is None else status.name

    return asyncio.run(go())


def test_a_retry_after_the_saga_left_temporal_starts_no_second_saga(run: Running) -> None:
    """Temporal's retention drops a finished run, and then REJECT_DUPLICATE no longer
    refuses a new one. A retry of a withdrawal whose saga moved on answers as it is and
    starts nothing: the destination is paid once (before the fix, a second saga ran)."""
    client_id, _ops, client = funded_client(run, "retain")
    path = f"/v1/clients/{client_id}/withdrawals"
    body = {"asset": "ETH", "amount": "0.1", "destination": Account.create().address}
    first = post(client, path, body, key="pay-kept")
    assert first.status_code == 202, first.text
    op_id = first.json()["operation_id"]
    until_state(client, op_id, "completed")
    left = available(client, client_id)["ETH"]
    assert _workflow_status(run, op_id) == "COMPLETED"
    _workflow_status(run, op_id, delete=True)
    # Temporal deletes in the background: on a busy machine that took over 30 s (CI).
    gone = lambda: _workflow_status(run, op_id) is None  # noqa: E731
    wait_for("Temporal to drop the run", gone, timeout=240, every=1)

    again = post(client, path, body, key="pay-kept")
    assert again.status_code == 200, again.text
    assert (again.json()["operation_id"], again.json()["state"]) == (op_id, "completed")
    time.sleep(3)  # a second saga would have started and reserved by now
    assert _workflow_status(run, op_id) is None
    assert available(client, client_id)["ETH"] == left
    assert run.eth.balance(body["destination"]) == ETH // 10
