"""The settlement saga's events: `custody.settlement.<step>.v1` on the events topic, keyed
by the settlement; alerts on the alerts topic."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STEPS = ("planned", "instructed", "counterparty_delivered", "settled", "compensated", "reconciled")
FAILED_ALERT = "custody.alert.settlement_failed.v1"
BREAK_ALERT = "custody.alert.reconciliation_break.v1"


def event_type(step: str) -> str:
    return f"custody.settlement.{step}.v1"


class SettlementLegView(BaseModel):
    model_config = ConfigDict(extra="forbid")

    asset: str
    amount: str = Field(description="minor units")
    payer: str = Field(examples=["provider"])
    to: str
    reference: str | None = None


class SettlementStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    settlement_id: str
    counterparty: str | None = None
    trades: int | None = Field(default=None, description="how many trades are netted")
    legs: list[SettlementLegView] | None = None
    end_to_end_id: str | None = None
    detail: str | None = None
    breaks: int | None = None


class SettlementFailed(BaseModel):
    """Alert: a counterparty's legs did not arrive in time; nothing was released."""

    model_config = ConfigDict(extra="forbid")

    settlement_id: str
    counterparty: str
    missing: list[str]
    trades: list[str] = Field(description="unsettled again; the next settlement takes them")


class ReconciliationBreak(BaseModel):
    """Alert: a settlement account disagrees with the trades still unsettled."""

    model_config = ConfigDict(extra="forbid")

    settlement_id: str
    counterparty: str
    asset: str
    ledger: str
    expected: str
    trades: list[str]


PAYLOADS: dict[str, type[BaseModel]] = {
    **{event_type(step): SettlementStep for step in STEPS},
    FAILED_ALERT: SettlementFailed,
    BREAK_ALERT: ReconciliationBreak,
}
