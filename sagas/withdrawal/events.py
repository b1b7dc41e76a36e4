"""The withdrawal saga's events: one payload model for every step, so the catalogue
(docs/events) documents them and a typo in a field fails a test, not a bank's parser.

Each step is `custody.withdrawal.<step>.v1` on the events topic, keyed by the
client's account (`client:<id>:<asset>`), with a deterministic id per operation and
step: a retried activity never publishes a step twice with different ids.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STEPS = (
    "requested",
    "reserved",
    "rejected",
    "policy_decided",
    "screened",
    "held",
    "released",
    "compliance_rejected",
    "intent",
    "approval",
    "approved",
    "broadcast",
    "stuck_alert",
    "operator_decision",
    "completed",
    "failed",
    "expired",
)
STUCK_ALERT = "custody.alert.withdrawal_stuck.v1"
FAILED_ALERT = "custody.alert.withdrawal_failed.v1"
SCREENED_ALERT = "custody.alert.withdrawal_screened.v1"


def event_type(step: str) -> str:
    return f"custody.withdrawal.{step}.v1"


class WithdrawalStep(BaseModel):
    """What a withdrawal step reports. Amounts are integer strings in minor units."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str = Field(examples=["wd:acme-treasury:inv-2026-0042"])
    client_id: str
    asset: str
    amount: str = Field(description="minor units", examples=["25000000"])
    destination: str
    requested_by: str | None = Field(default=None, description="requested: who asked")
    error_code: str | None = Field(default=None, description="rejected, expired, failed")
    detail: str | None = None
    outcome: str | None = Field(default=None, description="policy_decided: allow, deny, ...")
    rule: str | None = Field(default=None, description="policy_decided: the rule that decided")
    policy_version: int | None = Field(default=None, description="policy_decided; 0 = none")
    approvals_required: int | None = None
    screening_required: bool | None = Field(
        default=None, description="policy_decided: the destination is screened"
    )
    approval_quorum: int | None = Field(default=None, description="policy_decided")
    operator: str | None = Field(default=None, description="approval, operator_decision")
    approvals: int | None = Field(default=None, description="approval: how many so far")
    intent_hash: str | None = Field(default=None, description="intent: what approvals sign")
    action: str | None = Field(default=None, description="operator_decision")
    fee_percent: int | None = None
    tx_hash: str | None = Field(default=None, description="broadcast, completed, failed")
    fee: str | None = Field(default=None, description="completed, failed: network fee paid")
    fee_asset: str | None = None
    confirmations: int | None = None


class WithdrawalStuck(BaseModel):
    """Alert: broadcast but not final after the deadline; an operator decides."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str
    client_id: str
    asset: str
    stuck_after_seconds: int
    action: str = Field(description="what an operator can do")


class WithdrawalFailed(BaseModel):
    """Alert: the payment could not be made (no coins to pay it, a destination that needs
    more gas than the cap, a refusal by the chain or the signer) and nothing was sent;
    the reservation was voided and the client's balance is whole again."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str
    client_id: str
    asset: str
    amount: str = Field(description="minor units")
    error_code: str | None = None
    detail: str


class WithdrawalScreened(BaseModel):
    """Alert: the destination of a withdrawal was a screening hit; it is held (the
    reservation kept) until compliance releases or rejects it (POST .../decisions)."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str
    client_id: str
    asset: str
    amount: str = Field(description="minor units")
    destination: str
    detail: str


PAYLOADS: dict[str, type[BaseModel]] = {
    **{event_type(step): WithdrawalStep for step in STEPS if step != "stuck_alert"},
    event_type("stuck_alert"): WithdrawalStep,
    STUCK_ALERT: WithdrawalStuck,
    FAILED_ALERT: WithdrawalFailed,
    SCREENED_ALERT: WithdrawalScreened,
}
