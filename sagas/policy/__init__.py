"""The withdrawal policy engine: declarative rules per client and asset, versioned, and
a decision that names the rule that fired.

Rules are data (stored by a PolicyStore, each change a new version); evaluation is
a pure function of the rules, the request and the client's recent withdrawals, so a
saga can run it deterministically and the decision (with rule and version) can go
into the audit chain as it is.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from sagas.errors import ApprovalRefused

Outcome = Literal["allow", "deny", "needs_approval"]
VELOCITY_WINDOW = timedelta(hours=24)


class PolicyRules(BaseModel):
    """One client's rules for one asset. Amounts in the asset's minor unit; None = no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1)
    asset: str = Field(min_length=1)
    per_transaction_limit: StrictInt | None = Field(default=None, gt=0)
    daily_velocity_limit: StrictInt | None = Field(
        default=None, gt=0, description="rolling 24 h, this one included"
    )
    allow_list_required: bool = False
    allowed_destinations: frozenset[str] = frozenset()
    approval_threshold: StrictInt | None = Field(
        default=None, ge=0, description="above this, operators must approve"
    )
    approval_quorum: StrictInt = Field(default=2, ge=1, le=10)
    screening_required: bool = True


class StoredPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    rules: PolicyRules
    version: int = Field(ge=1)
    created_by: str
    created_at: datetime


class WithdrawalRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str
    asset: str
    amount: StrictInt = Field(gt=0)
    destination: str
    requested_by: str = Field(description="who asked: a client user or an operator")
    at: datetime


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    rule: str = Field(description="the rule that decided, e.g. per_transaction_limit")
    detail: str
    policy_version: int
    approvals_required: int = 0
    screening_required: bool = True


def evaluate(
    policy: StoredPolicy, request: WithdrawalRequest, recent: Iterable[tuple[datetime, int]]
) -> Decision:
    """Decide a withdrawal. `recent` is the client's earlier withdrawals of the asset that
    were not refused: (when, amount). Denials come before approvals, in a fixed order."""
    rules, version = policy.rules, policy.version
    if (rules.client_id, rules.asset) != (request.client_id, request.asset):
        raise ValueError("policy and request are for different clients or assets")

    def decide(outcome: Outcome, rule: str, detail: str, approvals: int = 0) -> Decision:
        return Decision(
            outcome=outcome,
            rule=rule,
            detail=detail,
            policy_version=version,
            approvals_required=approvals,
            screening_required=rules.screening_required,
        )

    limit = rules.per_transaction_limit
    if limit is not None and request.amount > limit:
        return decide("deny", "per_transaction_limit", f"{request.amount} > {limit}")
    if rules.daily_velocity_limit is not None:
        since = request.at - VELOCITY_WINDOW
        used = sum(amount for at, amount in recent if since < at <= request.at)
        if used + request.amount > rules.daily_velocity_limit:
            return decide(
                "deny",
                "daily_velocity_limit",
                f"{used} already in 24 h + {request.amount} > {rules.daily_velocity_limit}",
            )
    if rules.allow_list_required and request.destination not in rules.allowed_destinations:
        return decide(
            "deny",
            "destination_not_allowed",
            f"{request.destination} is not on the client's allow-list",
        )
    threshold = rules.approval_threshold
    if threshold is not None and request.amount > threshold:
        return decide(
            "needs_approval",
            "approval_threshold",
            f"{request.amount} > {threshold}: {rules.approval_quorum} operator(s)",
            approvals=rules.approval_quorum,
        )
    return decide("allow", "within_policy", "no rule requires more")


class ApprovalTally(BaseModel):
    """Operators' approvals of one withdrawal: distinct operators, the requester never."""

    required: int
    requester: str
    approvers: tuple[str, ...] = ()

    def approve(self, operator: str) -> ApprovalTally:
        """The tally with this approval counted. ApprovalRefused if the operator is the
        requester or has approved already."""
        if operator == self.requester:
            raise ApprovalRefused(f"{operator} requested this withdrawal")
        if operator in self.approvers:
            raise ApprovalRefused(f"{operator} has approved already")
        return self.model_copy(update={"approvers": (*self.approvers, operator)})

    @property
    def complete(self) -> bool:
        return len(self.approvers) >= self.required
