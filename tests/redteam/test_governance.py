"""Red team, attack 1f (issue 12): one operator alone changing a policy, an IBAN, an
allow-list or adding an operator key; through the API with only their own signature,
and by writing a governance record (or the old tables) straight into the database.
Each is refused or ignored: the withdrawal beyond the old policy is still refused, the
old IBAN is still the one trades hold and pay on, the operators are still the genesis'.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from adapters.sqldb import SqlDatabase
from sagas.governance import GovernanceRecord
from sagas.intents import Intent, raw_public_key, sign_intent
from sagas.policy import PolicyRules
from services.cli import operator as operator_cli
from tests.e2e.conftest import ETH, address, credited, new_client, run, until_state
from tests.e2e.harness import Running, post
from tests.e2e.trading import banked_client, trade, until_ended
from tests.simulators import BIC, bank_account, cash_in, new_iban, open_bank_account

__all__ = ["run"]  # the e2e tier's platform fixture, one fresh database for this module
pytestmark = pytest.mark.stack
EUR = 100
MALLORY = Ed25519PrivateKey.generate()


def code(reply: Any, status: int, expected: str) -> None:
    assert (reply.status_code, reply.json().get("code")) == (status, expected), reply.text


def intent_of(run: Running, proposal_id: str) -> Intent:
    with run.http("alice", "operator") as http:
        return operator_cli.fetch_intent(http, proposal_id)[0]


def alice_alone(run: Running, reply: Any) -> dict[str, Any]:
    """Alice approves a proposal by someone else with her key, and nobody else does: the
    proposal stays pending. If she proposed it herself, her own approval is refused."""
    assert reply.status_code == 202, reply.text
    proposal_id = reply.json()["id"]
    intent = intent_of(run, proposal_id)
    alice = run.operator_key("alice")
    approval = sign_intent(intent, alice)
    path = f"/v1/governance/proposals/{proposal_id}/approvals"
    with run.http("alice", "operator") as http:
        answer = post(http, path, approval.model_dump(mode="json"))
    if reply.json()["proposed_by"] == "alice":
        code(answer, 409, "CUS-2006")
    else:
        assert answer.status_code == 200 and answer.json()["state"] == "pending", answer.text
    # Her signature under bob's key id, and mallory's (unregistered) key: not valid.
    forged = approval.model_copy(
        update={"key_id": sign_intent(intent, run.operator_key("bob")).key_id}
    )
    with run.http("alice", "operator") as http:
        code(post(http, path, forged.model_dump(mode="json")), 422, "CUS-2005")
        code(
            post(http, path, sign_intent(intent, MALLORY).model_dump(mode="json")), 422, "CUS-2005"
        )
        found = http.get(f"/v1/governance/proposals/{proposal_id}").json()
    assert found["state"] == "pending", found
    return dict(found)


def withdraw(http: Any, client_id: str, amount: str, destination: str) -> dict[str, Any]:
    body = {"asset": "ETH", "amount": amount, "destination": destination}
    reply = post(http, f"/v1/clients/{client_id}/withdrawals", body)
    assert reply.status_code in (200, 202), reply.text
    return dict(until_state(http, reply.json()["operation_id"], "rejected", "completed", "failed"))


def policy_detail(found: dict[str, Any]) -> dict[str, Any]:
    return dict(next(s for s in found["timeline"] if s["step"] == "policy_decided")["detail"])


def forge_record(run: Running, intent: Intent, *signers: Ed25519PrivateKey) -> int:
    """A database writer appends a governance record with the signatures they have."""
    state = run.http("auditor", "auditor").get("/v1/governance").json()
    record = GovernanceRecord(
        seq=state["seq"] + 1,
        intent=intent,
        approvals=tuple(sign_intent(intent, k) for k in signers),
        applied_at=datetime.now(UTC).replace(microsecond=0),
    )
    with SqlDatabase(run.db_url).tx(write=True) as conn:
        conn.run(
            "insert into governance_records (seq, intent_hash, body) values (?, ?, ?)",
            (record.seq, record.hash(), record.model_dump_json()),
        )
        conn.run(
            "update governance_proposals set state = 'applied' where intent_hash = ?",
            (record.hash(),),
        )
    return record.seq


def unforge(run: Running, seq: int) -> None:
    with SqlDatabase(run.db_url).tx(write=True) as conn:
        conn.run("delete from governance_records where seq = ?", (seq,))


def funded(run: Running, prefix: str) -> tuple[str, Any, Any]:
    client_id, ops, client = new_client(run, prefix)
    run.faucet.fund_eth(address(client, client_id, "ETH"), 3 * ETH)
    credited(run, client, client_id, {"ETH": 3 * ETH})
    return client_id, ops, client


def test_one_operator_cannot_raise_a_policy_limit(run: Running) -> None:
    client_id, ops, client = funded(run, "rt-pol")
    path = f"/v1/clients/{client_id}/policies/ETH"
    run.govern(ops.put(path, json={"per_transaction_limit": "0.5"}))
    # Through the API: alice proposes a limit of 100 ETH and approves it herself...
    alice = run.http("alice", "operator")
    alice_alone(run, alice.put(path, json={"per_transaction_limit": "100"}))
    # ... or has a colleague's token propose it, and approves it as the only one.
    pending = alice_alone(run, ops.put(path, json={"per_transaction_limit": "100"}))
    # By the database: the record with her signature alone, and a policy_versions row.
    seq = forge_record(
        run, Intent.model_validate(pending["intent"], strict=False), run.operator_key("alice")
    )
    generous = PolicyRules(client_id=client_id, asset="ETH", per_transaction_limit=100 * ETH)
    with SqlDatabase(run.db_url).tx(write=True) as conn:
        conn.run(
            "insert into policy_versions (client_id, asset, version, rules, created_by, "
            "created_at) values (?, 'ETH', 7, ?, 'db', ?)",
            (client_id, generous.model_dump_json(), conn.time(datetime.now(UTC))),
        )
    try:
        gov = run.http("auditor", "auditor").get("/v1/governance").json()
        assert gov["failure"] is not None and f"record {seq}" in gov["failure"], gov
        policy = ops.get(path).json()
        assert (policy["version"], policy["rules"]["per_transaction_limit"]) == (1, "0.5")
        found = withdraw(client, client_id, "1", Account.create().address)
        assert (found["state"], found["error_code"]) == ("rejected", "CUS-2001"), found
        assert policy_detail(found)["rule"] == "per_transaction_limit"
        assert policy_detail(found)["policy_version"] == 1
    finally:
        unforge(run, seq)


def test_one_operator_cannot_change_an_iban(run: Running) -> None:
    client_id, ops, client, iban = banked_client(run, 10_000 * EUR, "rt-iban")
    theirs = new_iban()
    open_bank_account(run.settings.bank_url, theirs, "the attacker's account")
    cash_in(run.settings.bank_url, theirs, 10_000 * EUR)
    pending = alice_alone(
        run, ops.put(f"/v1/clients/{client_id}/bank-account", json={"iban": theirs, "bic": BIC})
    )
    seq = forge_record(
        run,
        Intent.model_validate(pending["intent"], strict=False),
        run.operator_key("alice"),
        MALLORY,
    )
    with SqlDatabase(run.db_url).tx(write=True) as conn:
        conn.run("update clients set iban = ? where id = ?", (theirs, client_id))
    try:
        assert ops.get(f"/v1/clients/{client_id}/bank-account").json()["iban"] == iban
        before = bank_account(run.settings.bank_url, theirs)["booked"]
        bought = trade(
            client,
            client_id,
            {"side": "buy", "asset": "BTC", "quantity": "0.001", "auto_accept": True},
        )
        done = until_ended(client, bought["operation_id"])
        assert done["state"] == "completed", done
        assert bank_account(run.settings.bank_url, theirs)["booked"] == before
        assert bank_account(run.settings.bank_url, iban)["booked"] < 10_000 * EUR
    finally:
        unforge(run, seq)


def test_one_operator_cannot_add_an_allow_list_entry(run: Running) -> None:
    client_id, ops, client = funded(run, "rt-allow")
    listed, theirs = Account.create().address, Account.create().address
    path = f"/v1/clients/{client_id}/policies/ETH"
    run.govern(ops.put(path, json={"allow_list_required": True, "allowed_destinations": [listed]}))
    body = {
        "kind": "allow_list_change",
        "client_id": client_id,
        "asset": "ETH",
        "record": {"action": "add", "destination": theirs},
    }
    with run.http("alice", "operator") as alice:
        alice_alone(run, post(alice, "/v1/governance/proposals", body))
    pending = alice_alone(run, post(ops, "/v1/governance/proposals", body))
    seq = forge_record(
        run, Intent.model_validate(pending["intent"], strict=False), run.operator_key("alice")
    )
    try:
        found = withdraw(client, client_id, "0.1", theirs)
        assert (found["state"], found["error_code"]) == ("rejected", "CUS-2001"), found
        assert policy_detail(found)["rule"] == "destination_not_allowed"
    finally:
        unforge(run, seq)
    assert withdraw(client, client_id, "0.1", listed)["state"] == "completed"


def test_one_operator_cannot_add_an_operator_key(run: Running) -> None:
    body = {
        "kind": "operator_key_change",
        "record": {"action": "add", "name": "mallory", "public_key": raw_public_key(MALLORY).hex()},
    }
    ops = run.http("ops-desk", "operator")
    pending = alice_alone(run, post(ops, "/v1/governance/proposals", body))
    intent = Intent.model_validate(pending["intent"], strict=False)
    # Mallory's own signature over the record that would register her does not count.
    seq = forge_record(run, intent, run.operator_key("alice"), MALLORY)
    try:
        gov = run.http("auditor", "auditor").get("/v1/governance").json()
        assert gov["failure"] is not None
        assert sorted(o["name"] for o in gov["operators"]) == ["alice", "bob", "carol"]
        # Lowering the quorum below two is refused outright; one the operators could not
        # reach (it would lock governance) is refused as a record that cannot apply.
        unforge(run, seq)
        for quorum, expected in ((1, "CUS-3001"), (4, "CUS-2011")):
            change = {
                "kind": "operator_key_change",
                "record": {"action": "set_quorum", "quorum": quorum},
            }
            code(post(ops, "/v1/governance/proposals", change), 422, expected)
    finally:
        unforge(run, seq)
    # The genuine two-operator path still works afterwards, and mallory's key is refused.
    applied = run.govern(
        post(
            ops,
            "/v1/governance/proposals",
            {
                "kind": "operator_key_change",
                "record": {
                    "action": "add",
                    "name": "dave",
                    "public_key": raw_public_key(Ed25519PrivateKey.generate()).hex(),
                },
            },
        )
    )
    assert applied["state"] == "applied"
    gov = run.http("auditor", "auditor").get("/v1/governance").json()
    assert gov["failure"] is None and "mallory" not in {o["name"] for o in gov["operators"]}
