"""What the signer authorises from signatures alone (sagas.signing.authority): deny by
default, a quorum of valid approvals by registered operators other than the requester,
over exactly this intent, before it expired; limits evaluated by the signer itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sagas.confirmations import ConfirmedLeg, sign_confirmation
from sagas.errors import KeyAccessDenied
from sagas.governance import StaticGovernance
from sagas.intents import (
    Intent,
    RegisteredKey,
    SignedRequest,
    b64url,
    sign_intent,
    sign_request,
)
from sagas.money import format_units
from sagas.policy import PolicyRules, StoredPolicy
from sagas.signing.authority import authorise

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
OP = "wd:acme:k1"
KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol", "mallory")}


CLIENT_KEY = Ed25519PrivateKey.generate()
DECIMALS = {"ETH": 18}


def signed(amount: int, destination: str, key: Ed25519PrivateKey = CLIENT_KEY) -> dict[str, Any]:
    """The client's signed request for the withdrawal (amount in wei, as 18 decimals)."""
    text = format_units(amount, 18)
    body = json.dumps({"asset": "ETH", "amount": text, "destination": destination}).encode()
    target = "/v1/clients/acme/withdrawals"
    signature = sign_request(key, "POST", target, body, NOW, "n" * 16)
    request = SignedRequest(method="POST", target=target, body=b64url(body), signature=signature)
    return request.model_dump(mode="json")


def intent(
    amount: int = 500,
    op: str = OP,
    destination: str = "0xdest",
    request: dict[str, Any] | None = None,
) -> Intent:
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
        payload={
            "requested_by": "carol",
            "request": request if request is not None else signed(amount, destination),
        },
    )


def governance(**rules: object) -> StaticGovernance:
    policy = StoredPolicy(
        rules=PolicyRules(client_id="acme", asset="ETH", **rules),  # type: ignore[arg-type]
        version=3,
        created_by="genesis",
        created_at=NOW,
    )
    registered = [RegisteredKey.of(n, KEYS[n]) for n in ("alice", "bob", "carol")]
    client = RegisteredKey.of("acme", CLIENT_KEY)
    return StaticGovernance(
        operator_keys={k.key_id: k for k in registered},
        client_key_map={client.key_id: client},
        policies={("acme", "ETH"): policy},
    )


QUORUM = {"approval_threshold": 100, "approval_quorum": 2}


def test_two_registered_operators_authorise_the_intent_as_it_is() -> None:
    it = intent()
    approvals = [sign_intent(it, KEYS["alice"]), sign_intent(it, KEYS["bob"])]
    got = authorise(OP, it, approvals, governance(**QUORUM), NOW, DECIMALS)
    assert (got.amount, got.destination, got.approvers) == (500, "0xdest", ("alice", "bob"))
    assert got.intent_hash == it.hash() and got.policy_version == 3


def test_below_the_threshold_no_approval_is_needed() -> None:
    assert authorise(OP, intent(50), [], governance(**QUORUM), NOW, DECIMALS).approvers == ()


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
        authorise(op, given, approvals, gov, now, DECIMALS)


def test_an_approval_of_another_intent_does_not_authorise_this_one() -> None:
    # Two operators approved a payment to 0xdest; the record now says 0xelsewhere.
    approved = intent()
    approvals = [sign_intent(approved, KEYS["alice"]), sign_intent(approved, KEYS["bob"])]
    with pytest.raises(KeyAccessDenied, match="0 valid"):
        authorise(
            OP, intent(destination="0xelsewhere"), approvals, governance(**QUORUM), NOW, DECIMALS
        )


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
        authorise(
            OP, intent(amount), [], governance(**rules), NOW, DECIMALS, signed_in_window=window
        )


def test_a_re_signature_after_expiry_counts_the_approvals_as_of_the_first() -> None:
    it = intent()
    approvals = [sign_intent(it, KEYS["alice"]), sign_intent(it, KEYS["bob"])]
    later = NOW + timedelta(days=2)
    gov = governance(**QUORUM)
    with pytest.raises(KeyAccessDenied):
        authorise(OP, it, approvals, gov, later, DECIMALS)
    first = NOW + timedelta(minutes=5)
    got = authorise(OP, it, approvals, gov, later, DECIMALS, first_signed_at=first)
    assert got.approvers == ("alice", "bob")


@pytest.mark.parametrize(
    "case", ["none", "other_client_key", "other_amount", "other_destination", "tampered_body"]
)
def test_the_client_signed_exactly_this_withdrawal(case: str) -> None:
    """Below the approval threshold the client's signature is all that authorises a
    payment: an intent a database writer made up, or changed, is refused."""
    request = signed(50, "0xdest")
    if case == "none":
        it = intent(50, request={})
    elif case == "other_client_key":
        it = intent(50, request=signed(50, "0xdest", Ed25519PrivateKey.generate()))
    elif case == "other_amount":
        it = intent(50, request=signed(49, "0xdest"))
    elif case == "other_destination":
        it = intent(50, request=signed(50, "0xelsewhere"))
    else:
        body = json.dumps({"asset": "ETH", "amount": "0.0000000000000005", "destination": "0xdest"})
        it = intent(50, request={**request, "body": b64url(body.encode())})
    with pytest.raises(KeyAccessDenied):
        authorise(OP, it, [], governance(**QUORUM), NOW, DECIMALS)


def test_a_client_request_the_signer_never_paid_does_not_stay_payable() -> None:
    """A refused or voided request, re-wrapped in a new intent a day later: refused."""
    it = intent(50)
    later = NOW + timedelta(hours=27)
    fresh = it.model_copy(update={"expires_at": later + timedelta(hours=1)})
    with pytest.raises(KeyAccessDenied, match="too old"):
        authorise(OP, fresh, [], governance(**QUORUM), later, DECIMALS)
    # Its own fee bump long after the first signature is still signed (the same intent).
    assert authorise(OP, fresh, [], governance(**QUORUM), later, DECIMALS, first_signed_at=NOW)


# --- the platform's settlement legs: the counterparty's signed confirmation ----------

LP_KEY = Ed25519PrivateKey.generate()
LP_ADDRESS = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"
SID = "settle-1"
LEG_OP = f"{SID}:lp-alpha:ETH"


def confirmation(
    amount: int = 700,
    to: str = LP_ADDRESS,
    counterparty: str = "lp-alpha",
    settlement_id: str = SID,
    key: Ed25519PrivateKey = LP_KEY,
    at: datetime = NOW,
    orders: tuple[str, ...] = ("o-1", "o-2"),
) -> dict[str, Any]:
    legs = [
        ConfirmedLeg(asset="ETH", amount=amount, payer="platform", to=to),
        ConfirmedLeg(asset="EUR", amount=90_000, payer="provider", to="DE89370400440532013000"),
    ]
    signed_ = sign_confirmation(key, counterparty, settlement_id, "STL1", legs, orders, at)
    return signed_.model_dump(mode="json")


def leg_intent(
    amount: int = 700, to: str = LP_ADDRESS, op: str = LEG_OP, conf: Any = ...
) -> Intent:
    return Intent(
        kind="settlement_leg",
        operation_id=op,
        client_id=None,
        asset="ETH",
        amount=amount,
        destination=to,
        fee_cap=10**15,
        policy_version=0,
        expires_at=NOW + timedelta(hours=1),
        payload={
            "counterparty": "lp-alpha",
            "chain": "ethereum",
            "confirmation": confirmation() if conf is ... else conf,
        },
    )


def settlement_governance(**rules: object) -> StaticGovernance:
    gov = governance()
    gov.policies[("settlement", "ETH")] = StoredPolicy(
        rules=PolicyRules(
            client_id="settlement",
            asset="ETH",
            allow_list_required=True,
            allowed_destinations=frozenset({LP_ADDRESS, "0xelsewhere"}),
            **rules,  # type: ignore[arg-type]
        ),
        version=2,
        created_by="genesis",
        created_at=NOW,
    )
    lp = RegisteredKey.of("lp-alpha", LP_KEY)
    gov.counterparty_key_map[lp.key_id] = lp
    return gov


def test_a_leg_the_counterparty_confirmed_is_paid_without_approvals() -> None:
    got = authorise(LEG_OP, leg_intent(), [], settlement_governance(), NOW, DECIMALS)
    assert (got.amount, got.destination, got.holder) == (700, LP_ADDRESS, "settlement")
    assert got.request_claims == ("settled:lp-alpha:o-1:ETH", "settled:lp-alpha:o-2:ETH")


@pytest.mark.parametrize(
    "case, why",
    [
        ("no_confirmation", "no settlement confirmation"),
        ("garbled", "no settlement confirmation"),
        ("more_than_confirmed", "not what the counterparty confirmed"),
        ("elsewhere", "not what the counterparty confirmed"),
        ("unregistered_key", "signature does not hold"),
        ("another_counterparty_signed", "signature does not hold"),
        ("tampered_after_signing", "signature does not hold"),
        ("another_settlement", "the confirmation is for"),
        ("too_old", "too old"),
        ("dated_in_the_future", "in the future"),
        ("provider_leg_as_platform", "not what the counterparty confirmed"),
    ],
)
def test_a_leg_the_counterparty_did_not_confirm_is_refused(case: str, why: str) -> None:
    gov = settlement_governance()
    it, now = leg_intent(), NOW
    if case == "no_confirmation":
        it = leg_intent(conf=None)
    elif case == "garbled":
        it = leg_intent(conf={"counterparty": "lp-alpha"})
    elif case == "more_than_confirmed":
        it = leg_intent(amount=7_000)
    elif case == "elsewhere":
        it = leg_intent(to="0xelsewhere")  # on the allow-list, but not what was confirmed
    elif case == "unregistered_key":
        it = leg_intent(conf=confirmation(key=Ed25519PrivateKey.generate()))
    elif case == "another_counterparty_signed":
        beta = Ed25519PrivateKey.generate()
        gov.counterparty_key_map[RegisteredKey.of("lp-beta", beta).key_id] = RegisteredKey.of(
            "lp-beta", beta
        )
        it = leg_intent(conf=confirmation(key=beta))  # lp-beta's key vouching for lp-alpha
    elif case == "tampered_after_signing":
        conf = confirmation()
        conf["legs"][0]["amount"] = "7000"
        it = leg_intent(amount=7_000, conf=conf)
    elif case == "another_settlement":
        it = leg_intent(conf=confirmation(settlement_id="settle-0"))
    elif case == "dated_in_the_future":
        it = leg_intent(conf=confirmation(at=NOW + timedelta(days=365)))
    elif case == "too_old":
        now = NOW + timedelta(days=8)
        it = leg_intent().model_copy(update={"expires_at": now + timedelta(hours=1)})
    elif case == "provider_leg_as_platform":
        conf = confirmation()
        legs = [
            ConfirmedLeg(asset="ETH", amount=700, payer="provider", to=LP_ADDRESS),
        ]
        conf = sign_confirmation(LP_KEY, "lp-alpha", SID, "STL1", legs, ["o-1"], NOW).model_dump(
            mode="json"
        )
        it = leg_intent(conf=conf)
    with pytest.raises(KeyAccessDenied, match=why):
        authorise(it.operation_id, it, [], gov, now, DECIMALS)


def test_the_settlement_policy_still_binds_a_confirmed_leg() -> None:
    """The allow-list and limits of governance's settlement policy, and its quorum above
    the threshold, hold even for what the counterparty confirmed."""
    it = leg_intent()
    with pytest.raises(KeyAccessDenied, match="per-transaction limit"):
        authorise(LEG_OP, it, [], settlement_governance(per_transaction_limit=500), NOW, DECIMALS)
    gated = settlement_governance(approval_threshold=100, approval_quorum=2)
    with pytest.raises(KeyAccessDenied, match="0 valid approval"):
        authorise(LEG_OP, it, [], gated, NOW, DECIMALS)
    approvals = [sign_intent(it, KEYS["alice"]), sign_intent(it, KEYS["bob"])]
    assert authorise(LEG_OP, it, approvals, gated, NOW, DECIMALS).approvers == ("alice", "bob")
    off_list = settlement_governance()
    off_list.policies[("settlement", "ETH")] = off_list.policies[("settlement", "ETH")].model_copy(
        update={
            "rules": off_list.policies[("settlement", "ETH")].rules.model_copy(
                update={"allowed_destinations": frozenset({"0xelsewhere"})}
            )
        }
    )
    with pytest.raises(KeyAccessDenied, match="allow-list"):
        authorise(LEG_OP, it, [], off_list, NOW, DECIMALS)


def test_the_user_the_client_signed_as_requester_does_not_approve() -> None:
    """The client system names the bank's user who asked in the body it signs: that
    user's approval does not count, whatever the unsigned `requested_by` says (a
    compromised API or command producer could name anyone there)."""
    text = format_units(500, 18)
    body = json.dumps(
        {"asset": "ETH", "amount": text, "destination": "0xdest", "requested_by": "alice"}
    ).encode()
    target = "/v1/clients/acme/withdrawals"
    signature = sign_request(CLIENT_KEY, "POST", target, body, NOW, "r" * 16)
    request = SignedRequest(method="POST", target=target, body=b64url(body), signature=signature)
    it = intent(request=request.model_dump(mode="json"))
    assert it.payload is not None and it.payload["requested_by"] == "carol"  # unsigned
    alice, bob, carol = (sign_intent(it, KEYS[n]) for n in ("alice", "bob", "carol"))
    with pytest.raises(KeyAccessDenied, match="1 valid approval"):
        authorise(OP, it, [alice, bob], governance(**QUORUM), NOW, DECIMALS)
    with pytest.raises(KeyAccessDenied, match="1 valid approval"):
        authorise(OP, it, [carol, bob], governance(**QUORUM), NOW, DECIMALS)
    mallory = RegisteredKey.of("mallory", KEYS["mallory"])
    gov = governance(**QUORUM)
    gov.operator_keys[mallory.key_id] = mallory
    got = authorise(OP, it, [bob, sign_intent(it, KEYS["mallory"])], gov, NOW, DECIMALS)
    assert got.approvers == ("bob", "mallory")


def test_the_settlement_saga_checks_a_confirmation_as_the_signer_will() -> None:
    """Before the provider delivers: a confirmation the signer would refuse (no key, other
    legs or trades, another settlement) is a refusal the saga compensates."""
    from sagas.confirmations import SettlementConfirmation
    from sagas.liquidity import SettlementLeg
    from sagas.settlement import CounterpartyPlan
    from sagas.settlement.activities import confirmation_problem

    part = CounterpartyPlan(
        counterparty="lp-alpha",
        trades=["t1", "t2"],
        orders=["o-1", "o-2"],
        legs=[
            SettlementLeg(asset="ETH", amount=700, payer="platform", to=LP_ADDRESS),
            SettlementLeg(
                asset="EUR", amount=90_000, payer="provider", to="DE89370400440532013000"
            ),
        ],
        end_to_end_id="STL1",
        planned_at=NOW,
    )
    keys = settlement_governance().counterparty_keys()
    good = SettlementConfirmation.model_validate(confirmation(), strict=False)
    assert confirmation_problem(good, SID, part, keys) is None
    assert "no signed confirmation" in str(confirmation_problem(None, SID, part, keys))
    assert "registered key" in str(confirmation_problem(good, SID, part, {}))
    assert "another settlement" in str(confirmation_problem(good, "settle-2", part, keys))
    fewer = part.model_copy(update={"orders": ["o-1"]})
    assert "other legs or trades" in str(confirmation_problem(good, SID, fewer, keys))
    more = SettlementConfirmation.model_validate(confirmation(amount=701), strict=False)
    assert "other legs or trades" in str(confirmation_problem(more, SID, part, keys))
