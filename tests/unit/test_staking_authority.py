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
    got = authorise("uns-1", it, [], governance(), NOW, DECIMALS, sources=[of])
    assert (got.kind, got.amount, got.destination, got.asset) == ("unstake", 2_000_000, V1, "ATOM")


def test_an_unstake_is_refused_without_its_stake_or_beyond_it() -> None:
    of = stake()
    gov = governance()
    with pytest.raises(KeyAccessDenied, match="no stake"):
        authorise("uns-1", unstake(of), [], gov, NOW, DECIMALS)
    with pytest.raises(KeyAccessDenied, match="more than the stake"):
        it = unstake(of, amount=6_000_000, text="6")
        authorise("uns-1", it, [], gov, NOW, DECIMALS, sources=[of])
    # Signed for 2, the intent says 3.
    with pytest.raises(KeyAccessDenied, match="not what the client signed"):
        authorise("uns-1", unstake(of, amount=3_000_000), [], gov, NOW, DECIMALS, sources=[of])
    # The client signed the unstake of another stake.
    with pytest.raises(KeyAccessDenied, match="another request"):
        authorise("uns-1", unstake(of, stake_id="stk-9"), [], gov, NOW, DECIMALS, sources=[of])


def test_an_unstake_of_another_clients_stake_or_validator_is_refused() -> None:
    of = stake()
    it = unstake(of)
    theirs = of.model_copy(update={"client_id": "other"})
    with pytest.raises(KeyAccessDenied):
        authorise("uns-1", it, [], governance(), NOW, DECIMALS, sources=[theirs])
    moved = of.model_copy(update={"destination": V2})
    with pytest.raises(KeyAccessDenied):
        authorise("uns-1", it, [], governance(), NOW, DECIMALS, sources=[moved])
    # A stake whose own request the client never signed: refused.
    forged = stake(amount=9_000_000)
    with pytest.raises(KeyAccessDenied):
        authorise("uns-1", unstake(forged), [], governance(), NOW, DECIMALS, sources=[forged])


# --- redelegations (decision 0033) ----------------------------------------------------
V3 = "cosmosvaloper1xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"


def redelegate(
    of: Intent,
    amount: int = 2_000_000,
    text: str = "2",
    to: str = V2,
    signed_to: str = "",
    op: str = "red-1",
    key: Ed25519PrivateKey = ACME,
) -> Intent:
    from sagas.staking.intent import redelegate_intent

    target = f"/v1/stakes/{of.operation_id}/redelegate"
    req = request(target, {"amount": text, "validator": signed_to or to}, key)
    exp = NOW + timedelta(hours=1)
    return redelegate_intent(op, of, amount, to, 10**5, 3, exp, "u1", req)


def test_a_redelegation_of_the_clients_own_stake_is_authorised_from_its_validator() -> None:
    of = stake()
    got = authorise("red-1", redelegate(of), [], governance(), NOW, DECIMALS, sources=[of])
    assert (got.kind, got.amount, got.source, got.destination) == (
        "redelegate",
        2_000_000,
        V1,
        V2,
    )
    assert got.holder == "staking:acme" and got.velocity_limit is None


def test_a_redelegated_position_is_unstaked_and_redelegated_again_at_its_new_validator() -> None:
    of = stake()
    moved = redelegate(of)
    gov = governance()
    again = redelegate(moved, amount=1_000_000, text="1", to=V3, op="red-2")
    got = authorise("red-2", again, [], gov, NOW, DECIMALS, sources=[moved, of])
    assert (got.source, got.destination) == (V2, V3)
    out = unstake_intent(
        "uns-1",
        moved,
        1_000_000,
        10**5,
        3,
        NOW + timedelta(hours=1),
        "u1",
        request(f"/v1/stakes/{moved.operation_id}/unstake", {"amount": "1"}),
    )
    got = authorise("uns-1", out, [], gov, NOW, DECIMALS, sources=[moved, of])
    assert (got.kind, got.source, got.destination) == ("unstake", V2, V2)
    # Its sources must be given whole: the redelegation alone is not a stake.
    with pytest.raises(KeyAccessDenied, match="do not end at its stake"):
        authorise("uns-1", out, [], gov, NOW, DECIMALS, sources=[moved])


@pytest.mark.parametrize(
    ("case", "build"),
    [
        ("no position", lambda of: (redelegate(of), [])),
        ("to its own validator", lambda of: (redelegate(of, to=V1), [of])),
        ("more than the stake", lambda of: (redelegate(of, 6_000_000, "6"), [of])),
        ("signed another validator", lambda of: (redelegate(of, signed_to=V3), [of])),
        ("signed another amount", lambda of: (redelegate(of, amount=3_000_000), [of])),
        ("signed by another client", lambda of: (redelegate(of, key=OTHER), [of])),
        (
            "a stake the client never signed",
            lambda of: (redelegate(stake(amount=9_000_000)), [stake(amount=9_000_000)]),
        ),
        (
            "another client's stake",
            lambda of: (redelegate(of), [of.model_copy(update={"client_id": "other"})]),
        ),
        (
            "a stake moved to another validator",
            lambda of: (redelegate(of), [of.model_copy(update={"destination": V3})]),
        ),
        (
            "a withdrawal as its stake",
            lambda of: (redelegate(of), [of.model_copy(update={"kind": "unstake"})]),
        ),
    ],
)
def test_a_redelegation_other_than_the_client_signed_or_of_no_position_is_refused(
    case: str, build: object
) -> None:
    it, sources = build(stake())  # type: ignore[operator]
    with pytest.raises(KeyAccessDenied):
        authorise("red-1", it, [], governance(), NOW, DECIMALS, sources=sources)


def test_a_chain_of_positions_with_a_forged_or_missing_link_is_refused() -> None:
    of = stake()
    moved = redelegate(of)
    again = redelegate(moved, amount=1_000_000, text="1", to=V3, op="red-2")
    gov = governance()
    # A link that moves more than its own source, forged by a writer of the rows.
    bigger = moved.model_copy(update={"amount": 6_000_000})
    with pytest.raises(KeyAccessDenied):
        authorise("red-2", again, [], gov, NOW, DECIMALS, sources=[bigger, of])
    # The links out of order, or one left out.
    with pytest.raises(KeyAccessDenied):
        authorise("red-2", again, [], gov, NOW, DECIMALS, sources=[of, moved])
    with pytest.raises(KeyAccessDenied):
        authorise("red-2", again, [], gov, NOW, DECIMALS, sources=[of])
    # A source validator other than the link's source says (the request names V2).
    swapped = moved.model_copy(update={"destination": V3})
    with pytest.raises(KeyAccessDenied):
        authorise("red-2", again, [], gov, NOW, DECIMALS, sources=[swapped, of])


def test_more_links_than_the_signer_walks_are_refused() -> None:
    from sagas.signing.authority import MAX_POSITION_LINKS

    chain = [stake()]
    for n in range(MAX_POSITION_LINKS):
        to = (V2, V3, V1)[n % 3]
        chain.insert(0, redelegate(chain[0], amount=1_000_000, text="1", to=to, op=f"red-{n}"))
    last = chain[0]
    tail = redelegate(
        last, amount=1_000_000, text="1", to=V2 if last.destination != V2 else V3, op="red-x"
    )
    with pytest.raises(KeyAccessDenied, match="more than"):
        authorise("red-x", tail, [], governance(), NOW, DECIMALS, sources=chain)
    # One link fewer is walked (every link verified).
    inner = redelegate(
        chain[1],
        amount=1_000_000,
        text="1",
        to=V2 if chain[1].destination != V2 else V3,
        op="red-y",
    )
    got = authorise("red-y", inner, [], governance(), NOW, DECIMALS, sources=chain[1:])
    assert got.source == chain[1].destination
