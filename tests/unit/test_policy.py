"""The policy engine: each rule fires on its own, denials before approvals, the requester
never counts towards the quorum."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from sagas.errors import ApprovalRefused
from sagas.policy import ApprovalTally, PolicyRules, StoredPolicy, WithdrawalRequest, evaluate

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
BTC = 100_000_000


def _policy(**rules: object) -> StoredPolicy:
    return StoredPolicy(
        rules=PolicyRules(client_id="c1", asset="BTC", **rules),  # type: ignore[arg-type]
        version=3,
        created_by="risk-officer",
        created_at=NOW,
    )


def _request(amount: int, destination: str = "bc1qdest", at: datetime = NOW) -> WithdrawalRequest:
    return WithdrawalRequest(
        client_id="c1",
        asset="BTC",
        amount=amount,
        destination=destination,
        requested_by="alice",
        at=at,
    )


def test_no_rules_allows_and_names_the_version() -> None:
    d = evaluate(_policy(), _request(BTC), [])
    assert (d.outcome, d.rule, d.policy_version, d.screening_required) == (
        "allow",
        "within_policy",
        3,
        True,
    )


def test_per_transaction_limit() -> None:
    policy = _policy(per_transaction_limit=BTC)
    assert evaluate(policy, _request(BTC), []).outcome == "allow"
    d = evaluate(policy, _request(BTC + 1), [])
    assert (d.outcome, d.rule) == ("deny", "per_transaction_limit")


def test_rolling_24h_velocity_counts_only_the_window() -> None:
    policy = _policy(daily_velocity_limit=3 * BTC)
    recent = [
        (NOW - timedelta(hours=25), 5 * BTC),  # outside the window
        (NOW - timedelta(hours=23), BTC),
        (NOW - timedelta(minutes=5), BTC),
    ]
    assert evaluate(policy, _request(BTC), recent).outcome == "allow"  # 3 in 24 h: at the limit
    d = evaluate(policy, _request(BTC + 1), recent)
    assert (d.outcome, d.rule) == ("deny", "daily_velocity_limit")
    later = NOW + timedelta(hours=2)  # the 23 h-old one has left the window
    assert evaluate(policy, _request(2 * BTC, at=later), recent).outcome == "allow"


def test_allow_list() -> None:
    policy = _policy(allow_list_required=True, allowed_destinations=frozenset({"bc1qok"}))
    assert evaluate(policy, _request(1, "bc1qok"), []).outcome == "allow"
    d = evaluate(policy, _request(1, "bc1qother"), [])
    assert (d.outcome, d.rule) == ("deny", "destination_not_allowed")


def test_approval_threshold_asks_for_the_quorum() -> None:
    policy = _policy(approval_threshold=BTC, approval_quorum=2)
    assert evaluate(policy, _request(BTC), []).outcome == "allow"
    d = evaluate(policy, _request(BTC + 1), [])
    assert (d.outcome, d.rule, d.approvals_required) == ("needs_approval", "approval_threshold", 2)


def test_a_denial_wins_over_an_approval() -> None:
    policy = _policy(per_transaction_limit=BTC, approval_threshold=BTC // 2)
    assert evaluate(policy, _request(2 * BTC), []).rule == "per_transaction_limit"


def test_quorum_of_distinct_operators_and_never_the_requester() -> None:
    tally = ApprovalTally(required=2, requester="alice")
    with pytest.raises(ApprovalRefused) as info:
        tally.approve("alice")
    assert info.value.code == "CUS-2002"
    tally = tally.approve("op-1")
    with pytest.raises(ApprovalRefused):
        tally.approve("op-1")
    assert not tally.complete
    assert tally.approve("op-2").complete


def test_rules_are_validated() -> None:
    with pytest.raises(ValidationError):
        PolicyRules(client_id="c1", asset="BTC", per_transaction_limit=0)
    with pytest.raises(ValidationError):
        PolicyRules(client_id="c1", asset="BTC", per_transaction_limit=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="different"):
        evaluate(_policy(), _request(1).model_copy(update={"client_id": "c2"}), [])
