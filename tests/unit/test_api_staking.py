"""The staking routes without the stack: the real API app (services.api.app.create_app)
on a SQLite platform with governance in place (tests.governed), a recording Temporal
client and a fake node; the sagas' steps are the real staking activities, called in
order where the worker would run them.

A stake is the client's signed request for exactly asset, amount and validator; every
refusal (asset, amount, validator, balance, signature, role) answers its code and writes
nothing; the saga starts once per key with the signed request in its input; an unstake
takes at most what is still staked of an active stake; approvals are checked like a
withdrawal's and signal the saga; the position follows the stake and its unstakes."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from pydantic import BaseModel
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from adapters.chains.cosmos.node import UnknownValidator, ValidatorInfo
from adapters.chains.cosmos.tx import module_address
from adapters.ledger.migrate import upgrade
from adapters.sqldb import SqlDatabase
from sagas import accounts
from sagas.errors import DependencyUnavailable
from sagas.intents import sign_intent, sign_request
from sagas.keys.wallets import create_wallet
from sagas.ledger import Transfer
from sagas.operations import OperationRecord
from sagas.staking import RedelegateInput, StakeInput, UnstakeInput
from sagas.staking.activities import StakingActivities
from sagas.withdrawal import WithdrawalInput
from sagas.withdrawal.intent import SIGNING_GRACE
from services.api.app import create_app
from services.api.auth import issue, load_secret
from services.app.stakes import (
    STAKING_FEE,
    STAKING_GAS,
    Stakes,
    position,
    staking_fee,
    still_staked,
)
from services.cli.request_signing import headers_for
from services.platform import Platform
from services.settings import PlatformSettings
from tests.fakes import FakeKeyWrapper
from tests.fakes_chains import FakeDelegations
from tests.governed import Governed

V1 = "cosmosvaloper1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqlxklzq"
V2 = "cosmosvaloper1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzq2rqcn"
V_UNKNOWN = "cosmosvaloper1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxjjjjjj"
V_OFF = "cosmosvaloper1yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy0000ff"  # not on the allow-list
FUNDED = 20_000_000  # uatom: 20 ATOM


# --- fakes ---------------------------------------------------------------------------
@dataclass
class FakeTemporal:
    """What the API asks of Temporal: start a workflow once per id, signal it."""

    started: dict[str, tuple[str, str, BaseModel]] = field(default_factory=dict)
    starts: int = 0
    signals: list[tuple[str, str]] = field(default_factory=list)
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def start_workflow(self, run: Any, arg: BaseModel, **options: Any) -> None:
        if self.down:
            raise RPCError("temporal is down", RPCStatusCode.UNAVAILABLE, b"")
        with self.lock:
            self.starts += 1
            if options["id"] in self.started:
                raise WorkflowAlreadyStartedError(options["id"], run.__qualname__)
            self.started[options["id"]] = (run.__qualname__, options["task_queue"], arg)

    def get_workflow_handle_for(self, run: Any, workflow_id: str) -> FakeHandle:
        return FakeHandle(self, workflow_id)


@dataclass
class FakeHandle:
    temporal: FakeTemporal
    workflow_id: str

    async def signal(self, name: str, *args: Any) -> None:
        self.temporal.signals.append((self.workflow_id, name))


@dataclass
class FakeNode:
    """platform.cosmos for the validators route."""

    down: bool = False
    # The chain's redelegation entries into a validator: (delegator, validator) -> ends.
    entries: dict[tuple[str, str], list[datetime]] = field(default_factory=dict)

    def redelegations_into(self, delegator: str, validator: str) -> list[datetime]:
        if self.down:
            raise DependencyUnavailable("cosmos node: UNAVAILABLE")
        return self.entries.get((delegator, validator), [])

    def validator(self, valoper: str) -> ValidatorInfo:
        if self.down:
            raise DependencyUnavailable("cosmos node: UNAVAILABLE")
        if valoper == V_UNKNOWN:
            raise UnknownValidator(valoper)
        jailed = valoper == V2
        return ValidatorInfo(valoper, "BOND_STATUS_BONDED", jailed, 1_000_000_500_000, "1.0")


# --- the world -------------------------------------------------------------------------
@dataclass
class World:
    http: TestClient
    platform: Platform
    governed: Governed
    temporal: FakeTemporal
    node: FakeNode
    chain: FakeDelegations
    secret: bytes
    acts: StakingActivities
    clients: int = 0

    def token(self, sub: str, role: str, client_id: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue(self.secret, sub, role, client_id)}"}  # type: ignore[arg-type]

    def operator(self, name: str = "alice") -> dict[str, str]:
        return self.token(name, "operator")

    def new_client(self, funds: int = FUNDED, **policy: Any) -> Client:
        self.clients += 1
        cid = f"c{self.clients}-{datetime.now(UTC).strftime('%H%M%S%f')}"
        opened = self.http.post(
            "/v1/clients",
            json={"client_id": cid, "name": f"Client {cid}"},
            headers={**self.operator(), "Idempotency-Key": f"open-{cid}"},
        )
        assert opened.status_code == 201, opened.text
        key = self.governed.client_key(cid)
        if policy:
            self.governed.policy(cid, "ATOM", **policy)
        delegator = self.platform.client_address(cid, "ATOM").address
        if funds:
            self.platform.ledger.submit(
                [
                    Transfer(
                        id=f"fund-{cid}",
                        debit_account=accounts.omnibus("ATOM"),
                        credit_account=accounts.client(cid, "ATOM"),
                        asset="ATOM",
                        amount=funds,
                    )
                ]
            )
        return Client(self, cid, key, delegator)

    # the worker's part: the saga's steps, in its order
    def saga_input(self, op_id: str) -> Any:
        return self.temporal.started[op_id][2]

    def authorise(self, op_id: str) -> str:
        """reserve -> decide -> intent; the decision's outcome."""
        req = self.saga_input(op_id)
        assert self.acts.reserve(req) is None
        decision = self.acts.decide(req)
        self.acts.record_intent(req, decision)
        return decision.outcome

    def in_block(self, op_id: str) -> None:
        """approved -> broadcast -> in a block -> settled (active or unbonding)."""
        req = self.saga_input(op_id)
        self.acts.count_approvals(req)  # records each approval that counts
        self.acts.mark_approved(req)
        assert self.acts.broadcast(req).tx_hash is not None
        while (outcome := self.acts.outcome(req)).state == "pending":
            pass
        self.acts.settle(req, outcome)

    def run(self, op_id: str) -> None:
        assert self.authorise(op_id) == "allow"
        self.in_block(op_id)

    def release(self, op_id: str) -> None:
        req = self.saga_input(op_id)
        self.acts.release(req, req.amount)

    def available(self, cid: str) -> int:
        return self.platform.ledger.balance(accounts.client(cid, "ATOM")).available

    def operations(self, cid: str, kind: str) -> list[OperationRecord]:
        return self.platform.operations.for_client(cid, kind)


@dataclass
class Client:
    world: World
    id: str
    key: Ed25519PrivateKey
    delegator: str
    sub: str = "u-bank"

    def headers(self) -> dict[str, str]:
        return self.world.token(self.sub, "client", self.id)

    def signed(
        self,
        path: str,
        body: dict[str, Any],
        key: str,
        who: dict[str, str] | None = None,
        signed_body: dict[str, Any] | None = None,
        signer: Ed25519PrivateKey | None = None,
        signed_path: str | None = None,
    ) -> Any:
        """POST `body` to `path` signed by the client's key (or `signer`), over
        `signed_body` at `signed_path` if given (a forgery)."""
        raw = json.dumps(body).encode()
        over = json.dumps(signed_body).encode() if signed_body is not None else raw
        when = datetime.now(UTC).replace(microsecond=0)
        nonce = f"n{datetime.now(UTC).timestamp():.6f}".replace(".", "_") + key
        sig = sign_request(signer or self.key, "POST", signed_path or path, over, when, nonce)
        return self.world.http.post(
            path,
            content=raw,
            headers={
                **(who or self.headers()),
                **headers_for(sig),
                "Idempotency-Key": key,
                "Content-Type": "application/json",
            },
        )

    def stake(self, amount: str, key: str, validator: str = V1, **kw: Any) -> Any:
        body = {"asset": "ATOM", "amount": amount, "validator": validator}
        return self.signed(f"/v1/clients/{self.id}/stakes", body, key, **kw)

    def unstake(self, stake_id: str, amount: str, key: str, **kw: Any) -> Any:
        return self.signed(f"/v1/stakes/{stake_id}/unstake", {"amount": amount}, key, **kw)

    def redelegate(self, stake_id: str, amount: str, to: str, key: str, **kw: Any) -> Any:
        body = {"amount": amount, "validator": to}
        return self.signed(f"/v1/stakes/{stake_id}/redelegate", body, key, **kw)

    def active_stake(self, amount: str, key: str) -> str:
        answer = self.stake(amount, key)
        assert answer.status_code == 202, answer.text
        op_id = str(answer.json()["stake_id"])
        self.world.run(op_id)
        return op_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("staking-api")
    url = f"sqlite:///{tmp / 'custody.sqlite3'}"
    upgrade(url)
    governed = Governed(url)
    governed.defaults()
    settings = PlatformSettings(
        ledger_url=url,
        governance_genesis_hash=governed.genesis_hash,
        cosmos_validators=f"{V1},{V2},{V_UNKNOWN}",
        cosmos_gas_price=0,
        chain_poll_seconds=15,
        api_token_secret_file=tmp / "api-token-secret",
    )
    platform = Platform(settings, url)
    platform.open_books()
    create_wallet(
        settings.platform_wallet, platform.deriver, FakeKeyWrapper({}, False), platform.keys
    )
    node = FakeNode()
    platform.__dict__["cosmos"] = node  # the cached property, as a fake node
    temporal = FakeTemporal()
    chain = FakeDelegations(in_block_after=1, unbonding=timedelta(seconds=30))
    acts = StakingActivities(
        platform.ledger,
        platform.operations,
        platform.policies,
        platform.intents,
        platform.verified,
        chain,
        platform.fee_cap,
    )

    async def connect() -> Any:
        return temporal

    app = create_app(platform, connect)
    with TestClient(app, raise_server_exceptions=False) as http:
        secret = load_secret(settings.api_token_secret_file)
        yield World(http, platform, governed, temporal, node, chain, secret, acts)


def problem(answer: Any, status: int, code: str) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == code, answer.text


# --- stakes --------------------------------------------------------------------------
def test_a_signed_stake_is_recorded_and_its_saga_started_once(world: World) -> None:
    c = world.new_client()
    answer = c.stake("12.5", "s1")
    assert answer.status_code == 202, answer.text
    op_id = f"stk:{c.id}:s1"
    assert answer.headers["Location"] == f"/v1/stakes/{op_id}"
    assert answer.headers["Retry-After"] == "1"
    view = answer.json()
    assert (view["stake_id"], view["state"], view["position"]) == (op_id, "requested", "pending")
    assert (view["amount"], view["amount_minor"], view["validator"]) == ("12.5", "12500000", V1)
    assert view["delegator"] == c.delegator and view["unstakes"] == []

    op = world.platform.operations.get(op_id)
    assert op is not None
    assert (op.kind, op.chain, op.destination, op.amount) == ("stake", "cosmos", V1, 12_500_000)
    workflow, queue, req = world.temporal.started[op_id]
    assert (workflow, queue) == ("StakeWorkflow.run", world.platform.settings.saga_task_queue)
    assert isinstance(req, StakeInput)
    assert (req.amount, req.validator, req.delegator, req.fee) == (
        12_500_000,
        V1,
        c.delegator,
        STAKING_FEE,
    )
    assert req.poll_seconds == 5  # min(chain_poll_seconds, 5)
    assert req.requested_by == c.sub
    # The client's own signed request goes to the saga, for the signer to check again.
    assert req.request is not None
    assert req.request.target == f"/v1/clients/{c.id}/stakes"
    assert json.loads(req.request.body_bytes()) == {
        "asset": "ATOM",
        "amount": "12.5",
        "validator": V1,
    }

    # A replay (same key and body, a fresh signature) is the same stake: 200.
    again = c.stake("12.5", "s1")
    assert again.status_code == 200, again.text
    assert again.json()["stake_id"] == op_id
    assert again.headers["Location"] == f"/v1/stakes/{op_id}"
    assert len(world.operations(c.id, "stake")) == 1
    # The same key for another body: 409 before anything is checked.
    problem(c.stake("1", "s1"), 409, "CUS-3005")
    assert len([k for k in world.temporal.started if k.startswith(f"stk:{c.id}:")]) == 1


@pytest.mark.parametrize(
    ("case", "body", "status", "code"),
    [
        ("a known asset that cannot be staked", {"asset": "BTC"}, 422, "CUS-1010"),
        ("an unknown asset", {"asset": "DOGE"}, 422, "CUS-1010"),
        ("zero", {"amount": "0"}, 422, "CUS-1008"),
        ("not a decimal", {"amount": "1e3"}, 422, "CUS-1008"),
        ("a negative amount", {"amount": "-1"}, 422, "CUS-1008"),
        ("more decimals than ATOM has", {"amount": "1.0000001"}, 422, "CUS-3004"),
        ("a validator off the allow-list", {"validator": V_OFF}, 422, "CUS-3001"),
        ("more than available", {"amount": "20.000001"}, 422, "CUS-1001"),
        ("the whole balance: no room for the fee", {"amount": "20"}, 422, "CUS-1001"),
        ("a field the signer does not know", {"requested_by": "x"}, 422, "CUS-3001"),
        ("a JSON number", {"amount": 5}, 422, "CUS-3001"),
    ],
)
def test_a_refused_stake_writes_nothing(
    world: World, case: str, body: dict[str, Any], status: int, code: str
) -> None:
    c = world.new_client()
    full = {"asset": "ATOM", "amount": "5", "validator": V1, **body}
    problem(c.signed(f"/v1/clients/{c.id}/stakes", full, "k1"), status, code)
    assert world.operations(c.id, "stake") == [], case
    assert not any(k.startswith(f"stk:{c.id}:") for k in world.temporal.started), case
    assert world.available(c.id) == FUNDED
    # The refusal claimed no nonce and no key: the right request under the key is taken.
    assert c.stake("5", "k1").status_code == 202


def test_a_stake_needs_its_clients_signature_over_exactly_this_request(world: World) -> None:
    c, other = world.new_client(), world.new_client()
    path = f"/v1/clients/{c.id}/stakes"
    body = {"asset": "ATOM", "amount": "5", "validator": V1}
    unsigned = world.http.post(path, json=body, headers={**c.headers(), "Idempotency-Key": "u1"})
    problem(unsigned, 401, "CUS-3103")
    cases = {
        "another client's key": {"signer": other.key},
        "another body": {"signed_body": {**body, "amount": "6"}},
        "another validator": {"signed_body": {**body, "validator": V2}},
        "another path": {"signed_path": f"/v1/clients/{other.id}/stakes"},
    }
    for n, (case, forged) in enumerate(cases.items()):
        problem(c.signed(path, body, f"f{n}", **forged), 401, "CUS-3103")
        assert world.operations(c.id, "stake") == [], case
    # Signed for a withdrawal (the same fields' target is another route).
    wd = c.signed(path, body, "f9", signed_path=f"/v1/clients/{c.id}/withdrawals")
    problem(wd, 401, "CUS-3103")
    assert world.operations(c.id, "stake") == []


def test_who_may_stake_and_see_stakes(world: World) -> None:
    c, other = world.new_client(), world.new_client()
    stake_id = c.active_stake("1", "mine")
    # Another client's token: 403 on its client path, 404 for its stake.
    problem(c.stake("1", "x1", who=other.headers()), 403, "CUS-3102")
    problem(world.http.get(f"/v1/stakes/{stake_id}", headers=other.headers()), 404, "CUS-3008")
    problem(world.http.get(f"/v1/clients/{c.id}/stakes", headers=other.headers()), 403, "CUS-3102")
    # Auditors read, never write; operators may relay a client's signed request.
    auditor = world.token("audrey", "auditor")
    problem(c.stake("1", "x2", who=auditor), 403, "CUS-3102")
    assert world.http.get(f"/v1/stakes/{stake_id}", headers=auditor).status_code == 200
    relayed = c.stake("1", "x3", who=world.operator("carol"))
    assert relayed.status_code == 202, relayed.text
    assert relayed.json()["requested_by"] == "carol"
    listed = world.http.get(f"/v1/clients/{c.id}/stakes", headers=c.headers())
    assert [s["stake_id"] for s in listed.json()] == [relayed.json()["stake_id"], stake_id]
    problem(world.http.get("/v1/clients/nobody/stakes", headers=auditor), 404, "CUS-3008")
    no_token = world.http.get(f"/v1/stakes/{stake_id}")
    problem(no_token, 401, "CUS-3101")


def test_concurrent_identical_requests_make_one_stake(world: World) -> None:
    """The same signed request several times at once (a client retrying on a timeout):
    one operation, one saga. One answer is 202; each other is the same stake (200) or, if
    it came between the first's nonce claim and its record, a replayed nonce (401, as
    for withdrawals), which a retry with a fresh signature turns into the 200."""
    c = world.new_client()
    path = f"/v1/clients/{c.id}/stakes"
    raw = json.dumps({"asset": "ATOM", "amount": "3", "validator": V1}).encode()
    sig = sign_request(c.key, "POST", path, raw, datetime.now(UTC).replace(microsecond=0), "r" * 20)
    headers = {
        **c.headers(),
        **headers_for(sig),
        "Idempotency-Key": "race",
        "Content-Type": "application/json",
    }
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda _i: world.http.post(path, content=raw, headers=headers), range(4))
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(202) == 1 and set(statuses) <= {200, 202, 401}, [a.text for a in answers]
    for a in answers:
        if a.status_code == 401:
            assert "replayed" in a.json()["detail"], a.text
        else:
            assert a.json()["stake_id"] == f"stk:{c.id}:race"
    assert len(world.operations(c.id, "stake")) == 1
    assert [k for k in world.temporal.started if k.startswith(f"stk:{c.id}:")] == [
        f"stk:{c.id}:race"
    ]
    assert c.stake("3", "race").status_code == 200  # a retry, freshly signed
    # The same signature under another key is a replayed nonce.
    problem(
        world.http.post(path, content=raw, headers={**headers, "Idempotency-Key": "r2"}),
        401,
        "CUS-3103",
    )


def test_temporal_down_is_a_503_and_the_retry_starts_the_saga(world: World) -> None:
    c = world.new_client()
    world.temporal.down = True
    try:
        problem(c.stake("2", "t1"), 503, "CUS-9001")
    finally:
        world.temporal.down = False
    (op,) = world.operations(c.id, "stake")
    assert op.state == "requested" and op.id not in world.temporal.started
    again = c.stake("2", "t1")
    assert again.status_code == 200, again.text  # recorded before: a replay, now started
    assert op.id in world.temporal.started


# --- the position and unstakes -----------------------------------------------------
def test_a_stake_active_then_unstaked_in_parts_until_withdrawn(world: World) -> None:
    c = world.new_client()
    stake_id = c.active_stake("10", "big")
    view = world.http.get(f"/v1/stakes/{stake_id}", headers=c.headers()).json()
    assert (view["state"], view["position"], view["staked"]) == ("active", "active", "10")
    assert view["tx_hash"] and view["fee_minor"] == str(STAKING_FEE)
    steps = [s["step"] for s in view["timeline"]]
    assert steps[0] == "requested" and steps[-1] == "active"
    assert world.available(c.id) == FUNDED - 10_000_000 - STAKING_FEE

    first = c.unstake(stake_id, "4", "u1")
    assert first.status_code == 202, first.text
    uns_id = f"uns:{stake_id}:u1"
    assert first.headers["Location"] == f"/v1/unstakes/{uns_id}"
    assert (first.json()["unstake_id"], first.json()["stake_id"]) == (uns_id, stake_id)
    req = world.saga_input(uns_id)
    assert isinstance(req, UnstakeInput)
    assert (req.stake_id, req.validator, req.delegator, req.amount) == (
        stake_id,
        V1,
        c.delegator,
        4_000_000,
    )
    assert req.request is not None and req.request.target == f"/v1/stakes/{stake_id}/unstake"
    assert json.loads(req.request.body_bytes()) == {"amount": "4"}

    # One in progress counts against the stake: 6 left, not 10.
    problem(c.unstake(stake_id, "6.000001", "u2"), 422, "CUS-1001")
    problem(c.unstake(stake_id, "0", "u2"), 422, "CUS-1008")
    problem(c.unstake(stake_id, "1.0000001", "u2"), 422, "CUS-3004")
    assert len(world.operations(c.id, "unstake")) == 1

    world.run(uns_id)  # undelegated: unbonding
    view = world.http.get(f"/v1/stakes/{stake_id}", headers=c.headers()).json()
    assert (view["position"], view["staked"]) == ("unbonding", "6")
    (summary,) = view["unstakes"]
    assert (summary["unstake_id"], summary["state"], summary["amount"]) == (
        uns_id,
        "unbonding",
        "4",
    )
    assert summary["completion_time"] is not None
    uns = world.http.get(f"/v1/unstakes/{uns_id}", headers=c.headers()).json()
    assert uns["completion_time"] == summary["completion_time"] and uns["tx_hash"]

    world.release(uns_id)
    uns = world.http.get(f"/v1/unstakes/{uns_id}", headers=c.headers()).json()
    assert (uns["state"], uns["released_minor"], uns["slashed_minor"]) == (
        "completed",
        "4000000",
        "0",
    )
    view = world.http.get(f"/v1/stakes/{stake_id}", headers=c.headers()).json()
    assert view["position"] == "active"  # 6 still delegated

    rest = c.unstake(stake_id, "6", "u3")
    assert rest.status_code == 202, rest.text
    problem(c.unstake(stake_id, "0.000001", "u4"), 422, "CUS-1001")  # nothing left
    world.run(rest.json()["unstake_id"])
    world.release(rest.json()["unstake_id"])
    view = world.http.get(f"/v1/stakes/{stake_id}", headers=c.headers()).json()
    assert (view["position"], view["staked"], view["state"]) == ("withdrawn", "0", "active")
    assert world.available(c.id) == FUNDED - 3 * STAKING_FEE


def test_an_unstake_is_of_an_active_stake_of_the_callers_own(world: World) -> None:
    c, other = world.new_client(), world.new_client()
    pending = c.stake("1", "p1").json()["stake_id"]
    problem(c.unstake(pending, "1", "u1"), 409, "CUS-3009")  # not delegated yet
    active = c.active_stake("1", "a1")
    # Another client cannot see it, let alone unstake it (even signing with its own key).
    problem(other.unstake(active, "1", "u1"), 404, "CUS-3008")
    problem(c.unstake(active, "1", "u2", who=world.token("audrey", "auditor")), 403, "CUS-3102")
    problem(c.unstake("stk:nobody:x", "1", "u3"), 404, "CUS-3008")
    # Signed for another stake's unstake: refused.
    problem(
        c.unstake(active, "1", "u4", signed_path=f"/v1/stakes/{pending}/unstake"), 401, "CUS-3103"
    )
    problem(c.unstake(active, "1", "u5", signer=other.key), 401, "CUS-3103")
    assert world.operations(c.id, "unstake") == []
    assert c.unstake(active, "1", "u6").status_code == 202
    assert c.unstake(active, "1", "u6").status_code == 200  # replay
    problem(c.unstake(active, "0.5", "u6"), 409, "CUS-3005")


def test_a_failed_stake_is_a_failed_position(world: World) -> None:
    c = world.new_client()
    stake_id = c.stake("1", "f1").json()["stake_id"]
    world.chain.fail.add(stake_id)
    world.run(stake_id)
    view = world.http.get(f"/v1/stakes/{stake_id}", headers=c.headers()).json()
    assert (view["state"], view["position"], view["error_code"]) == ("failed", "failed", "CUS-4221")
    problem(c.unstake(stake_id, "1", "u1"), 409, "CUS-3009")


# --- approvals -----------------------------------------------------------------------
def test_approvals_of_a_stake_are_checked_like_a_withdrawals(world: World) -> None:
    c = world.new_client(approval_threshold=1_000_000, approval_quorum=2)
    relayed = c.stake("5", "big", who=world.operator("carol"))  # carol is its requester
    stake_id = relayed.json()["stake_id"]
    problem(world.http.get(f"/v1/stakes/{stake_id}/intent", headers=c.headers()), 409, "CUS-3009")
    assert world.authorise(stake_id) == "needs_approval"
    got = world.http.get(f"/v1/stakes/{stake_id}/intent", headers=c.headers())
    assert got.status_code == 200, got.text
    intent = got.json()
    assert intent["approvals_required"] == 2 and intent["intent"]["kind"] == "stake"
    assert intent["intent"]["destination"] == V1
    stored = world.platform.intents.intent(stake_id, "stake")
    assert stored is not None and stored[0].hash() == intent["intent_hash"]
    keys = world.governed.operator_keys
    path = f"/v1/stakes/{stake_id}/approvals"

    def hand_in(operator: str, approval: Any, key: str) -> Any:
        body = approval.model_dump()
        return world.http.post(
            path, json=body, headers={**world.operator(operator), "Idempotency-Key": key}
        )

    problem(hand_in("carol", sign_intent(stored[0], keys["carol"]), "a0"), 409, "CUS-2002")
    problem(hand_in("bob", sign_intent(stored[0], keys["alice"]), "a1"), 403, "CUS-3102")
    other = stored[0].model_copy(update={"amount": 1})
    problem(hand_in("bob", sign_intent(other, keys["bob"]), "a2"), 422, "CUS-2007")
    client_try = world.http.post(
        path,
        json=sign_intent(stored[0], keys["bob"]).model_dump(),
        headers={**c.headers(), "Idempotency-Key": "a3"},
    )
    problem(client_try, 403, "CUS-3102")
    assert all(s[0] != stake_id for s in world.temporal.signals)  # no refusal signals

    bob = sign_intent(stored[0], keys["bob"])
    answer = hand_in("bob", bob, "b1")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"required": 2, "approvers": ["bob"], "complete": False}
    assert answer.headers["Location"] == f"/v1/stakes/{stake_id}"
    assert (stake_id, "approvals_changed") in world.temporal.signals
    assert hand_in("bob", bob, "b1").json() == answer.json()  # the retry: the first answer
    # The same signature under another key counts once (Ed25519 signs deterministically).
    assert hand_in("bob", bob, "b2").json() == answer.json()
    done = hand_in("alice", sign_intent(stored[0], keys["alice"]), "c1")
    assert done.json() == {"required": 2, "approvers": ["alice", "bob"], "complete": True}

    world.in_block(stake_id)  # the saga counts the quorum and delegates
    view = world.http.get(f"/v1/stakes/{stake_id}", headers=c.headers()).json()
    assert view["position"] == "active"
    assert "approval:alice" in [s["step"] for s in view["timeline"]]
    problem(hand_in("alice", sign_intent(stored[0], keys["alice"]), "c2"), 409, "CUS-3009")


def test_approvals_of_an_unstake(world: World) -> None:
    c = world.new_client(approval_threshold=1_000_000, approval_quorum=2)
    stake_id = c.stake("0.5", "small").json()["stake_id"]
    world.run(stake_id)  # below the threshold: no approval
    uns_id = c.unstake(stake_id, "0.5", "u1").json()["unstake_id"]
    assert world.authorise(uns_id) == "allow"
    problem(
        world.http.post(
            f"/v1/unstakes/{uns_id}/approvals",
            json=sign_intent(
                world.platform.intents.intent(uns_id, "unstake")[0],  # type: ignore[index]
                world.governed.operator_keys["bob"],
            ).model_dump(),
            headers={**world.operator("bob"), "Idempotency-Key": "x"},
        ),
        409,
        "CUS-3009",  # allowed by policy: not awaiting approval
    )
    got = world.http.get(f"/v1/unstakes/{uns_id}/intent", headers=c.headers()).json()
    assert got["intent"]["kind"] == "unstake" and got["intent"]["payload"]["stake"] == stake_id
    problem(world.http.get(f"/v1/stakes/{uns_id}/intent", headers=c.headers()), 404, "CUS-3008")


# --- validators ----------------------------------------------------------------------
def test_the_allowed_validators_as_the_chain_has_them(world: World) -> None:
    c = world.new_client(funds=0)
    got = world.http.get("/v1/staking/validators", headers=c.headers())
    assert got.status_code == 200, got.text
    by = {v["operator_address"]: v for v in got.json()}
    assert list(by) == [V1, V2, V_UNKNOWN]
    assert by[V1] == {
        "operator_address": V1,
        "status": "BOND_STATUS_BONDED",
        "jailed": False,
        "tokens": "1000000.5",
        "tokens_minor": "1000000500000",
    }
    assert by[V2]["jailed"] is True
    assert by[V_UNKNOWN]["status"] == "unknown" and by[V_UNKNOWN]["jailed"] is None
    world.node.down = True
    try:
        problem(world.http.get("/v1/staking/validators", headers=c.headers()), 503, "CUS-9001")
    finally:
        world.node.down = False


# --- the document and the rules ---------------------------------------------------
def test_the_document_states_the_staking_routes(world: World) -> None:
    doc = world.http.get("/openapi.json").json()
    paths = doc["paths"]
    for path in ("/v1/clients/{client_id}/stakes", "/v1/stakes/{stake_id}/unstake"):
        op = paths[path]["post"]
        names = {p["name"]: p for p in op["parameters"]}
        assert names["Idempotency-Key"]["required"] is True, path
        assert {"Custody-Key-Id", "Custody-Signature"} <= set(names), path
        assert op["responses"]["202"]["headers"]["Location"]["required"] is True, path
        assert "200" in op["responses"], path
    body = doc["components"]["schemas"]["StakeBody"]
    assert body["additionalProperties"] is False
    assert set(body["required"]) == {"asset", "amount", "validator"}
    assert body["properties"]["asset"]["enum"] == ["ATOM"]
    for path in ("/v1/stakes/{stake_id}/approvals", "/v1/unstakes/{unstake_id}/approvals"):
        assert "post" in paths[path]
    for path in (
        "/v1/stakes/{stake_id}",
        "/v1/unstakes/{unstake_id}",
        "/v1/stakes/{stake_id}/intent",
        "/v1/unstakes/{unstake_id}/intent",
        "/v1/staking/validators",
    ):
        assert "get" in paths[path], path


def _op(op_id: str, kind: str, amount: int, state: str, at: int = 0) -> OperationRecord:
    when = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=at)
    return OperationRecord(
        id=op_id,
        kind=kind,  # type: ignore[arg-type]
        client_id="acme",
        asset="ATOM",
        chain="cosmos",
        amount=amount,
        destination=V1,
        request_hash="h",
        requested_by="u",
        state=state,
        created_at=when,
        updated_at=when,
    )


@pytest.mark.parametrize(
    ("stake_state", "unstakes", "expected", "left"),
    [
        ("requested", [], "pending", 10),
        ("awaiting_approval", [], "pending", 10),
        ("broadcast", [], "pending", 10),
        ("rejected", [], "failed", 10),
        ("expired", [], "failed", 10),
        ("failed", [], "failed", 10),
        ("active", [], "active", 10),
        ("active", [("requested", 4)], "active", 6),
        ("active", [("unbonding", 4)], "unbonding", 6),
        ("active", [("completed", 4), ("unbonding", 6)], "unbonding", 0),
        ("active", [("completed", 4), ("failed", 6)], "active", 6),
        ("active", [("completed", 4), ("rejected", 6), ("expired", 6)], "active", 6),
        ("active", [("completed", 4), ("completed", 6)], "withdrawn", 0),
    ],
)
def test_the_position_and_what_is_still_staked(
    stake_state: str, unstakes: list[tuple[str, int]], expected: str, left: int
) -> None:
    stake = _op("stk:acme:k", "stake", 10, stake_state)
    ops = [_op(f"uns:stk:acme:k:{n}", "unstake", a, s, n) for n, (s, a) in enumerate(unstakes)]
    assert position(stake, ops) == expected
    assert still_staked(stake, ops) == left


@pytest.mark.parametrize(
    ("unstakes", "slashed", "expected", "left"),
    [
        ([], 1, "slashed", 9),
        ([("requested", 4)], 1, "slashed", 5),
        ([("unbonding", 4)], 1, "unbonding", 5),
        ([("completed", 9)], 1, "withdrawn", 0),
        ([("completed", 4), ("failed", 5)], 1, "slashed", 5),
    ],
)
def test_a_slashed_stake_holds_less_and_says_so(
    unstakes: list[tuple[str, int]], slashed: int, expected: str, left: int
) -> None:
    stake = _op("stk:acme:k", "stake", 10, "slashed")
    ops = [_op(f"uns:stk:acme:k:{n}", "unstake", a, s, n) for n, (s, a) in enumerate(unstakes)]
    assert position(stake, ops, slashed) == expected
    assert still_staked(stake, ops, slashed) == left


def test_the_fee_is_the_fixed_one_or_priced_gas() -> None:
    assert staking_fee(PlatformSettings(cosmos_gas_price=0)) == STAKING_FEE == 2_000
    assert staking_fee(PlatformSettings(cosmos_gas_price=3)) == 3 * STAKING_GAS


# --- redelegations ---------------------------------------------------------------------
def test_a_redelegation_is_a_position_of_its_own(world: World) -> None:
    """Stake 10 with V1, move 4 to V2: the redelegation's saga input carries the position's
    validator as its source (never the body's), it is a position at V2 once settled, the
    stake holds 6; a redelegation back from V2 is refused while the chain holds the
    entry (transitive); the redelegation is unstaked like a stake."""
    c = world.new_client()
    stake_id = c.active_stake("10", "r-big")
    answer = c.redelegate(stake_id, "4", V_UNKNOWN, "r1")
    assert answer.status_code == 202, answer.text
    red_id = f"red:{stake_id}:r1"
    assert answer.headers["Location"] == f"/v1/stakes/{red_id}"
    view = answer.json()
    assert (view["stake_id"], view["kind"], view["validator"]) == (
        red_id,
        "redelegation",
        V_UNKNOWN,
    )
    assert (view["source_stake_id"], view["source_validator"]) == (stake_id, V1)
    req = world.saga_input(red_id)
    assert isinstance(req, RedelegateInput)
    assert (req.stake_id, req.source, req.validator, req.amount, req.delegator) == (
        stake_id, V1, V_UNKNOWN, 4_000_000, c.delegator,
    )  # fmt: skip
    assert req.request is not None and req.request.target == f"/v1/stakes/{stake_id}/redelegate"
    assert json.loads(req.request.body_bytes()) == {"amount": "4", "validator": V_UNKNOWN}
    assert c.redelegate(stake_id, "4", V_UNKNOWN, "r1").status_code == 200  # replay
    problem(c.redelegate(stake_id, "3", V_UNKNOWN, "r1"), 409, "CUS-3005")
    # In progress it counts against the stake: 6 left.
    problem(c.redelegate(stake_id, "6.000001", V2, "r2"), 422, "CUS-1001")
    problem(c.unstake(stake_id, "6.000001", "u-r"), 422, "CUS-1001")

    world.run(red_id)
    stake = world.http.get(f"/v1/stakes/{stake_id}", headers=c.headers()).json()
    assert (stake["position"], stake["staked"]) == ("active", "6")
    assert [(r["redelegation_id"], r["state"]) for r in stake["redelegations"]] == [
        (red_id, "active")
    ]
    red = world.http.get(f"/v1/stakes/{red_id}", headers=c.headers()).json()
    assert (red["state"], red["position"], red["staked"]) == ("active", "active", "4")
    assert red["completion_time"] is not None
    listed = world.http.get(f"/v1/clients/{c.id}/stakes", headers=c.headers()).json()
    assert {v["stake_id"]: v["kind"] for v in listed} == {red_id: "redelegation", stake_id: "stake"}
    books = world.platform.ledger.balance
    assert books(accounts.staked(c.id, V1, "ATOM")).total == 6_000_000
    assert books(accounts.staked(c.id, V_UNKNOWN, "ATOM")).total == 4_000_000

    # From V_UNKNOWN (the redelegation's validator) the chain refuses until it completes.
    problem(c.redelegate(red_id, "1", V2, "r3"), 409, "CUS-3009")
    # The redelegation is unstaked from its own validator.
    unstake = c.unstake(red_id, "4", "u-red")
    assert unstake.status_code == 202, unstake.text
    ureq = world.saga_input(f"uns:{red_id}:u-red")
    assert (ureq.stake_id, ureq.validator) == (red_id, V_UNKNOWN)
    problem(c.redelegate(red_id, "0.000001", V2, "r4"), 422, "CUS-1001")  # nothing left
    assert [op.id for op in world.operations(c.id, "redelegation")] == [red_id]


def _both_checked_before_either_is_stored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests at once: each waits (up to 1.5 s) after its check of what is left for
    the other to have checked too, so without a lock both are checked before either is
    stored."""
    checked = threading.Barrier(2, timeout=1.5)
    real = Stakes._check_unstake

    def racing(self: Stakes, stake: OperationRecord, body: Any) -> tuple[int, int]:
        got = real(self, stake, body)
        with contextlib.suppress(threading.BrokenBarrierError):
            checked.wait()
        return got

    monkeypatch.setattr(Stakes, "_check_unstake", racing)


def test_an_unstake_and_a_redelegation_at_once_take_no_more_than_the_position_holds(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ask for all 5 of a stake at the same moment (the API and the router, say):
    each check sees 5 left. Under the client's positions lock the second checks after the
    first is stored: one is accepted, the other refused CUS-1001, and only one operation takes
    from the stake (before, both were stored: 10 taken from a position of 5)."""
    c = world.new_client()
    stake_id = c.active_stake("5", "both")
    _both_checked_before_either_is_stored(monkeypatch)
    with ThreadPoolExecutor(2) as pool:
        unstake = pool.submit(c.unstake, stake_id, "5", "u-both")
        moved = pool.submit(c.redelegate, stake_id, "5", V_UNKNOWN, "r-both")
        answers = sorted((unstake.result(), moved.result()), key=lambda a: a.status_code)
    assert [a.status_code for a in answers] == [202, 422], [a.text for a in answers]
    problem(answers[1], 422, "CUS-1001")
    taking = world.operations(c.id, "unstake") + world.operations(c.id, "redelegation")
    assert len([op for op in taking if op.id.endswith("both")]) == 1


def test_one_key_at_once_with_two_bodies_is_one_operation_and_a_409(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two unstakes of one stake under one Idempotency-Key with other amounts, at the same
    moment: both pass the key's first look (nothing stored yet); the store keeps the first
    and refuses the other 409 CUS-3005, never answering it with the first's operation."""
    c = world.new_client()
    stake_id = c.active_stake("5", "kk")
    _both_checked_before_either_is_stored(monkeypatch)
    monkeypatch.setattr(Stakes, "_positions_of", lambda *_a: contextlib.nullcontext())
    with ThreadPoolExecutor(2) as pool:
        got = [pool.submit(c.unstake, stake_id, amount, "u-kk") for amount in ("1", "2")]
        answers = sorted((f.result() for f in got), key=lambda a: a.status_code)
    assert [a.status_code for a in answers] == [202, 409], [a.text for a in answers]
    problem(answers[1], 409, "CUS-3005")
    (op,) = [op for op in world.operations(c.id, "unstake") if op.id.endswith("u-kk")]
    # The stored one is the accepted one's body.
    assert op.amount == {"1": 1_000_000, "2": 2_000_000}[answers[0].json()["amount"]]


def test_a_redelegation_with_no_known_end_holds_its_destination_only_while_it_may(
    world: World,
) -> None:
    """The transitive rule without a recorded completion time (before: held for ever).
    One settled without one holds V_UNKNOWN while the chain has an entry into it, and
    not after. One recorded and never started (Temporal was down, the client never
    retried) holds it until its signing window ends: the signer refuses it after."""
    c = world.new_client(funds=30_000_000)
    first = c.active_stake("5", "nk-1")
    assert c.redelegate(first, "2", V_UNKNOWN, "nk-r1").status_code == 202
    red = f"red:{first}:nk-r1"
    assert world.authorise(red) == "allow"
    req = world.saga_input(red)
    world.acts.mark_approved(req)
    assert world.acts.broadcast(req).tx_hash is not None
    while (outcome := world.acts.outcome(req)).state == "pending":
        pass
    world.acts.settle(req, outcome.model_copy(update={"completion_time": None}))
    assert world.http.get(f"/v1/stakes/{red}", headers=c.headers()).json()["state"] == "active"

    world.node.entries[(c.delegator, V_UNKNOWN)] = [datetime.now(UTC) + timedelta(days=21)]
    problem(c.redelegate(red, "0.5", V2, "nk-held"), 409, "CUS-3009")
    world.node.entries.clear()  # the chain's entry completed
    assert c.redelegate(red, "0.5", V2, "nk-free").status_code == 202

    # An orphan into V_UNKNOWN: recorded, never started.
    world.temporal.down = True
    try:
        problem(c.redelegate(first, "1", V_UNKNOWN, "nk-orphan"), 503, "CUS-9001")
    finally:
        world.temporal.down = False
    orphan = world.platform.operations.get(f"red:{first}:nk-orphan")
    assert orphan is not None and orphan.state == "requested"
    problem(c.redelegate(red, "0.5", V2, "nk-2"), 409, "CUS-3009")
    window = timedelta(seconds=world.platform.settings.approval_ttl_seconds) + SIGNING_GRACE
    with SqlDatabase(world.platform.settings.ledger_url).tx(write=True) as conn:
        conn.run(
            "update operations set created_at = ? where id = ?",
            (conn.time(datetime.now(UTC) - window - timedelta(seconds=5)), orphan.id),
        )
    assert c.redelegate(red, "0.5", V2, "nk-3").status_code == 202


def test_a_redelegation_is_refused_before_anything_is_written(world: World) -> None:
    c, other = world.new_client(), world.new_client()
    stake_id = c.active_stake("2", "rr")
    problem(c.redelegate(stake_id, "1", V1, "x1"), 422, "CUS-3001")  # where it is already
    problem(c.redelegate(stake_id, "1", V_OFF, "x2"), 422, "CUS-3001")  # not allowed
    problem(c.redelegate(stake_id, "0", V2, "x3"), 422, "CUS-1008")
    problem(other.redelegate(stake_id, "1", V2, "x4"), 404, "CUS-3008")  # not its own
    problem(c.redelegate(stake_id, "1", V2, "x5", signer=other.key), 401, "CUS-3103")
    problem(
        c.redelegate(stake_id, "1", V2, "x6", signed_body={"amount": "1", "validator": V_UNKNOWN}),
        401,
        "CUS-3103",
    )
    pending = c.stake("1", "rp").json()["stake_id"]
    problem(c.redelegate(pending, "1", V2, "x7"), 409, "CUS-3009")  # not delegated yet
    assert world.operations(c.id, "redelegation") == []
    assert not [k for k in world.temporal.started if k.startswith(f"red:{stake_id}")]


# --- ATOM withdrawals (decision 0035): the same route and saga as BTC and ETH ----------
def test_an_atom_withdrawal_leaves_from_the_clients_address_with_its_fee(world: World) -> None:
    """The saga's input names the client's own address as the source and the fee its
    address pays (reserved with the amount); the destination is a Cosmos account of this
    chain; the whole balance is not withdrawable (the fee)."""
    c = world.new_client(funds=5_000_000)
    path = f"/v1/clients/{c.id}/withdrawals"
    out = module_address("somewhere")
    answer = c.signed(path, {"asset": "ATOM", "amount": "3", "destination": out}, "w-atom")
    assert answer.status_code == 202, answer.text
    req = world.saga_input(f"wd:{c.id}:w-atom")
    assert isinstance(req, WithdrawalInput)
    assert (req.asset, req.chain, req.amount, req.destination) == ("ATOM", "cosmos", 3_000_000, out)
    assert (req.source, req.network_fee) == (c.delegator, STAKING_FEE)
    # A retry is the same withdrawal, with the same source and fee.
    again = c.signed(path, {"asset": "ATOM", "amount": "3", "destination": out}, "w-atom")
    assert again.status_code == 200, again.text

    def refused(body: dict[str, str], key: str, status: int, code: str) -> None:
        problem(c.signed(path, {"asset": "ATOM", **body}, key), status, code)

    refused({"amount": "5", "destination": out}, "w1", 422, "CUS-1001")  # + the fee
    refused(
        {"amount": "1", "destination": module_address("v", "cosmosvaloper")}, "w2", 422, "CUS-3003"
    )
    refused({"amount": "1", "destination": module_address("x", "osmo")}, "w3", 422, "CUS-3003")
    refused(
        {"amount": "1", "destination": out[:-1] + ("q" if out[-1] != "q" else "p")},
        "w4",
        422,
        "CUS-3002",
    )
    refused({"amount": "1", "destination": c.delegator}, "w5", 422, "CUS-3011")  # its own
    assert [op.id for op in world.operations(c.id, "withdrawal")] == [f"wd:{c.id}:w-atom"]
