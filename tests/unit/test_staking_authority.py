"""What the signer authorises for a stake and an unstake (sagas.signing.authority): the
client's own signed request for exactly this asset, amount and validator, under the
client's policy (limit and approvals); an unstake only of the client's own stake, at
its validator, for no more than was staked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sagas.errors import KeyAccessDenied
from sagas.governance import StaticGovernance
from sagas.intents import Intent, RegisteredKey, SignedRequest, b64url, sign_intent, sign_request
from sagas.policy import PolicyRules, StoredPolicy
from sagas.signing.authority import authorise
from sagas.staking.intent import stake_intent, unstake_intent

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
ACME, OTHER = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
OPS = {n: Ed25519PrivateKey.generate() for n in ("alice", "bob")}
V1 = "cosmosvaloper1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqlxklzq"
V2 = "cosmosvaloper1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzq2rqcn"
DECIMALS = {"ATOM": 6}


def request(target: str, body: dict[str, str], key: Ed25519PrivateKey = ACME) -> SignedRequest:
    raw = json.dumps(body).encode()
    sig = sign_request(key, "POST", target, raw, NOW, "n" * 16 + target[-6:].replace("/", "_"))
    return SignedRequest(method="POST", target=target, body=b64url(raw), signature=sig)


def stake(amount: int = 5_000_000, validator: str = V1, **signed: str) -> Intent:
    body = {"asset": "ATOM", "amount": "5", "validator": V1, **signed}
    req = request("/v1/clients/acme/stakes", body)
    exp = NOW + timedelta(hours=1)
    return stake_intent("stk-1", "acme", "ATOM", amount, validator, 10**5, 3, exp, "u1", req)


def unstake(of: Intent, amount: int = 2_000_000, text: str = "2", stake_id: str = "") -> Intent:
    target = f"/v1/stakes/{stake_id or of.operation_id}/unstake"
    req = request(target, {"amount": text})
    exp = NOW + timedelta(hours=1)
    return unstake_intent("uns-1", of, amount, 10**5, 3, exp, "u1", req)


def governance(**rules: object) -> StaticGovernance:
    policy = StoredPolicy(
        rules=PolicyRules(client_id="acme", asset="ATOM", **rules),  # type: ignore[arg-type]
        version=3,
        created_by="genesis",
        created_at=NOW,
    )
    operators = [RegisteredKey.of(n, k) for n, k in OPS.items()]
    clients = [RegisteredKey.of("acme", ACME), RegisteredKey.of("other", OTHER)]
    return StaticGovernance(
        operator_keys={k.key_id: k for k in operators},
        client_key_map={k.key_id: k for k in clients},
        policies={("acme", "ATOM"): policy},
    )


def test_a_stake_the_client_signed_is_authorised_apart_from_its_withdrawals() -> None:
    got = authorise("stk-1", stake(), [], governance(daily_velocity_limit=1), NOW, DECIMALS)
    assert (got.kind, got.amount, got.destination) == ("stake", 5_000_000, V1)
    # Not in the client's withdrawal velocity window, and none applies to it.
    assert got.holder == "staking:acme" and got.velocity_limit is None
    assert got.request_claims and got.request_claims[0].startswith("request:")


def test_a_stake_above_the_threshold_needs_the_quorum() -> None:
    gov = governance(approval_threshold=1_000_000, approval_quorum=2)
    it = stake()
    with pytest.raises(KeyAccessDenied, match="approval"):
        authorise("stk-1", it, [], gov, NOW, DECIMALS)
    approvals = [sign_intent(it, k) for k in OPS.values()]
    assert authorise("stk-1", it, approvals, gov, NOW, DECIMALS).approvers == ("alice", "bob")


@pytest.mark.parametrize(
    ("case", "intent"),
    [
        ("more than signed", lambda: stake(amount=6_000_000)),
        ("another validator than signed", lambda: stake(validator=V2)),
        ("signed for another asset", lambda: stake(asset="ETH")),
    ],
)
def test_a_stake_other_than_the_client_signed_is_refused(case: str, intent: object) -> None:
    with pytest.raises(KeyAccessDenied):
        authorise("stk-1", intent(), [], governance(), NOW, DECIMALS)  # type: ignore[operator]


def test_a_stake_above_the_per_transaction_limit_is_refused() -> None:
    with pytest.raises(KeyAccessDenied, match="per-transaction"):
        authorise("stk-1", stake(), [], governance(per_transaction_limit=1), NOW, DECIMALS)


def test_an_unstake_of_the_clients_own_stake_is_authorised() -> None:
    of = stake()
    it = unstake(of)
    got = authorise("uns-1", it, [], governance(), NOW, DECIMALS, stake=of)
    assert (got.kind, got.amount, got.destination, got.asset) == ("unstake", 2_000_000, V1, "ATOM")


def test_an_unstake_is_refused_without_its_stake_or_beyond_it() -> None:
    of = stake()
    gov = governance()
    with pytest.raises(KeyAccessDenied, match="no stake"):
        authorise("uns-1", unstake(of), [], gov, NOW, DECIMALS)
    with pytest.raises(KeyAccessDenied, match="more than the stake"):
        it = unstake(of, amount=6_000_000, text="6")
        authorise("uns-1", it, [], gov, NOW, DECIMALS, stake=of)
    # Signed for 2, the intent says 3.
    with pytest.raises(KeyAccessDenied, match="not what the client signed"):
        authorise("uns-1", unstake(of, amount=3_000_000), [], gov, NOW, DECIMALS, stake=of)
    # The client signed the unstake of another stake.
    with pytest.raises(KeyAccessDenied, match="another request"):
        authorise("uns-1", unstake(of, stake_id="stk-9"), [], gov, NOW, DECIMALS, stake=of)


def test_an_unstake_of_another_clients_stake_or_validator_is_refused() -> None:
    of = stake()
    it = unstake(of)
    theirs = of.model_copy(update={"client_id": "other"})
    with pytest.raises(KeyAccessDenied):
        authorise("uns-1", it, [], governance(), NOW, DECIMALS, stake=theirs)
    moved = of.model_copy(update={"destination": V2})
    with pytest.raises(KeyAccessDenied):
        authorise("uns-1", it, [], governance(), NOW, DECIMALS, stake=moved)
    # A stake whose own request the client never signed: refused.
    forged = stake(amount=9_000_000)
    with pytest.raises(KeyAccessDenied):
        authorise("uns-1", unstake(forged), [], governance(), NOW, DECIMALS, stake=forged)
