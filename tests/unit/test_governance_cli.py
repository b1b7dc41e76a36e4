"""`custody governance init` (the genesis ceremony) and `custody operator approve` (fetch a
proposal's intent from the API, check it, sign it with the local key, post it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.governance.store import SqlGovernanceStore
from sagas.governance import change_intent, policy_record
from sagas.intents import Approval, Intent, raw_public_key, verify_approval
from sagas.policy import PolicyRules
from services.cli import operator
from services.cli.main import main

PASSPHRASE = "correct horse battery staple"


def pub() -> str:
    return raw_public_key(Ed25519PrivateKey.generate()).hex()


def test_init_writes_the_genesis_once_and_prints_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'g.sqlite3'}"
    args = ["governance", "init", "--operator", f"alice={pub()}", "--operator", f"bob={pub()}"]
    assert main([*args, "--quorum", "2", "--db-url", url]) == 0
    digest = capsys.readouterr().out.strip()
    state = SqlGovernanceStore(url, digest).state()
    assert state.operator_names() == {"alice", "bob"} and state.quorum() == 2
    # Another genesis in the same database, or one without four eyes, is refused.
    more = [*args, "--operator", f"carol={pub()}"]
    assert main([*more, "--quorum", "2", "--db-url", url]) == 4
    assert "another governance genesis" in capsys.readouterr().err
    assert main([*args, "--quorum", "1", "--db-url", f"sqlite:///{tmp_path / 'h'}"]) == 4
    assert main(["governance", "init", "--operator", "alice=zz", "--quorum", "2"]) == 4


@pytest.fixture
def keyfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(operator.PASSPHRASE_ENV, PASSPHRASE)
    path = tmp_path / "bob.pem"
    operator.generate(path, PASSPHRASE.encode())
    return path


def api(monkeypatch: pytest.MonkeyPatch, proposal: dict[str, Any]) -> list[Approval]:
    posted: list[Approval] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json=proposal)
        posted.append(Approval.model_validate_json(request.content))
        return httpx.Response(200, json={**proposal, "state": "applied", "seq": 1})

    monkeypatch.setattr(
        operator,
        "_api",
        lambda _args: httpx.Client(transport=httpx.MockTransport(handle), base_url="http://api"),
    )
    return posted


def proposal() -> dict[str, Any]:
    intent = change_intent(
        "policy_change",
        seq=1,
        prev="ab" * 32,
        proposed_by="ops-desk",
        record=policy_record(PolicyRules(client_id="acme", asset="ETH")),
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        client_id="acme",
        asset="ETH",
        policy_version=1,
    )
    return {
        "id": "gp-1",
        "intent": intent.model_dump(mode="json"),
        "intent_hash": intent.hash(),
        "proposed_by": "ops-desk",
        "state": "pending",
    }


def test_approve_signs_the_intent_it_fetched(
    keyfile: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    found = proposal()
    posted = api(monkeypatch, found)
    assert main(["operator", "approve", "--key", str(keyfile), "--proposal", "gp-1"]) == 0
    (approval,) = posted
    key = operator.load(keyfile, PASSPHRASE.encode())
    intent = operator.Intent.model_validate(found["intent"], strict=False)
    assert verify_approval(intent, approval, key.public_key())
    out, err = capsys.readouterr()
    assert json.loads(out)["state"] == "applied"
    assert "policy_change" in err and found["intent_hash"] in err
    assert PASSPHRASE not in out + err


def test_approve_refuses_an_intent_that_does_not_hash_to_the_named_hash(
    keyfile: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    found = proposal()
    found["intent"]["destination"] = "elsewhere"  # the API shows one thing, names another
    posted = api(monkeypatch, found)
    assert main(["operator", "approve", "--key", str(keyfile), "--proposal", "gp-1"]) == 4
    assert posted == [] and "intent hash" in capsys.readouterr().err


def withdrawal_intent_view(op: str = "wd:acme:k1") -> dict[str, Any]:
    intent = Intent(
        kind="withdrawal",
        operation_id=op,
        client_id="acme",
        asset="ETH",
        amount=25 * 10**16,
        destination="0x52908400098527886E0F7030069857D2E4169EE7",
        fee_cap=10**15,
        policy_version=1,
        expires_at=(datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0),
        payload={"requested_by": "acme-user"},
    )
    return {
        "intent": intent.model_dump(mode="json"),
        "intent_hash": intent.hash(),
        "approvals_required": 2,
    }


def test_approve_signs_a_withdrawals_intent_and_hands_it_in(
    keyfile: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = withdrawal_intent_view()
    posted: list[Approval] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            assert request.url.path == "/v1/withdrawals/wd:acme:k1/intent"
            return httpx.Response(200, json=shown)
        assert request.url.path == "/v1/withdrawals/wd:acme:k1/approvals"
        posted.append(Approval.model_validate_json(request.content))
        return httpx.Response(200, json={"required": 2, "approvers": ["bob"], "complete": False})

    monkeypatch.setattr(
        operator,
        "_api",
        lambda _args: httpx.Client(transport=httpx.MockTransport(handle), base_url="http://api"),
    )
    argv = ["operator", "approve", "--key", str(keyfile), "--withdrawal", "wd:acme:k1"]
    assert main(argv) == 0
    (approval,) = posted
    intent = Intent.model_validate(shown["intent"], strict=False)
    key = operator.load(keyfile, PASSPHRASE.encode())
    assert verify_approval(intent, approval, key.public_key())
    out, err = capsys.readouterr()
    assert json.loads(out)["approvers"] == ["bob"]
    assert "0x52908400098527886E0F7030069857D2E4169EE7" in err  # shown before it is signed
    # The intent of another operation, or one whose hash is not the named one: refused.
    for bad in (
        withdrawal_intent_view("wd:acme:other"),
        {**shown, "intent": {**shown["intent"], "amount": "1"}},
    ):
        shown = bad
        assert main(argv) == 4
    assert len(posted) == 1
