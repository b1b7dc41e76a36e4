"""What the signer authorises from signatures alone (sagas.signing.authority): deny by
default, a quorum of valid approvals by registered operators other than the requester,
over exactly this intent, before it expired; limits evaluated by the signer itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sagas.errors import KeyAccessDenied
from sagas.governance import StaticGovernance
from sagas.intents import Intent, RegisteredKey, sign_intent
from sagas.policy import PolicyRules, StoredPolicy
from sagas.signing.authority import authorise

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
OP = "wd:acme:k1"
KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol", "mallory")}


def intent(amount: int = 500, op: str = OP, destination: str = "0xdest") -> Intent:
    return Intent(
        kind="withdrawal",
        operation_id=op,
        client_id="acme",
        asset="ETH",
        amount=amount,
        destination=destination,
        fee_cap=10**15,
        policy_version=1,
        expires_at=NOW + timedelta(hours=1),
        payload={"requested_by": "carol"},
    )


def governance(**rules: object) -> StaticGovernance:
    policy = StoredPolicy(
        rules=PolicyRules(client_id="acme", asset="ETH", **rules),  # type: ignore[arg-type]
        version=3,
        created_by="genesis",
        created_at=NOW,
    )
    registered = [RegisteredKey.of(n, KEYS[n]) for n in ("alice", "bob", "carol")]
    return StaticGovernance(
        operator_keys={k.key_id: k for k in registered}, policies={("acme", "ETH"): policy}
    )


QUORUM = {"approval_threshold": 100, "approval_quorum": 2}


def test_two_registered_operators_authorise_the_intent_as_it_is() -> None:
    it = intent()
    approvals = [sign_intent(it, KEYS["alice"]), sign_intent(it, KEYS["bob"])]
    got = authorise(OP, it, approvals, governance(**QUORUM), NOW)
    assert (got.amount, got.destination, got.approvers) == (500, "0xdest", ("alice", "bob"))
    assert got.intent_hash == it.hash() and got.policy_version == 3


def test_below_the_threshold_no_approval_is_needed() -> None:
    assert authorise(OP, intent(50), [], governance(**QUORUM), NOW).approvers == ()


@pytest.mark.parametrize(
    "case",
    ["no_intent", "other_operation", "no_policy", "one_approval", "requester", "unregistered",
     "replayed_from_other_intent", "expired", "same_operator_twice"],
)  # fmt: skip
def test_refused(case: str) -> None:
    it = intent()
    alice, bob = sign_intent(it, KEYS["alice"]), sign_intent(it, KEYS["bob"])
    gov = governance(**QUORUM)
    approvals, now, op, given = [alice, bob], NOW, OP, it
    if case == "no_intent":
        given = None
    elif case == "other_operation":
        op = "wd:acme:other"
    elif case == "no_policy":
        gov.policies.clear()
    elif case == "one_approval":
        approvals = [alice]
    elif case == "requester":
        approvals = [alice, sign_intent(it, KEYS["carol"])]
    elif case == "unregistered":
        approvals = [alice, sign_intent(it, KEYS["mallory"])]
    elif case == "replayed_from_other_intent":
        approvals = [alice, sign_intent(intent(destination="0xelsewhere"), KEYS["bob"])]
    elif case == "expired":
        now = NOW + timedelta(hours=2)
    elif case == "same_operator_twice":
        approvals = [alice, alice]
    with pytest.raises(KeyAccessDenied):
        authorise(op, given, approvals, gov, now)


def test_an_approval_of_another_intent_does_not_authorise_this_one() -> None:
    # Two operators approved a payment to 0xdest; the record now says 0xelsewhere.
    approved = intent()
    approvals = [sign_intent(approved, KEYS["alice"]), sign_intent(approved, KEYS["bob"])]
    with pytest.raises(KeyAccessDenied, match="0 valid"):
        authorise(OP, intent(destination="0xelsewhere"), approvals, governance(**QUORUM), NOW)


@pytest.mark.parametrize(
    ("rules", "amount", "window"),
    [
        ({"per_transaction_limit": 400}, 500, 0),
        ({"daily_velocity_limit": 1000}, 500, 600),
        ({"allow_list_required": True, "allowed_destinations": frozenset({"0xother"})}, 50, 0),
    ],
)
def test_the_signer_evaluates_the_limits_itself(
    rules: dict[str, object], amount: int, window: int
) -> None:
    with pytest.raises(KeyAccessDenied):
        authorise(OP, intent(amount), [], governance(**rules), NOW, signed_in_window=window)


def test_a_re_signature_after_expiry_counts_the_approvals_as_of_the_first() -> None:
    it = intent()
    approvals = [sign_intent(it, KEYS["alice"]), sign_intent(it, KEYS["bob"])]
    later = NOW + timedelta(days=2)
    gov = governance(**QUORUM)
    with pytest.raises(KeyAccessDenied):
        authorise(OP, it, approvals, gov, later)
    got = authorise(OP, it, approvals, gov, later, first_signed_at=NOW + timedelta(minutes=5))
    assert got.approvers == ("alice", "bob")
