"""The settlement saga's contract: net every unsettled trade per counterparty and asset,
hand the provider its instructions, then delivery versus payment.

Per counterparty: the provider's legs (crypto to the platform's settlement address,
fiat to the platform's bank account) must be confirmed first: the crypto credited by
the deposit saga once final, the fiat on the platform's bank statement. Only then are
the platform's legs released (crypto from the hot wallet or UTXO pool, fiat by bank
transfer). If the provider's legs are not all confirmed in time the settlement is
compensated: the platform sent nothing, the trades are unsettled again at both ends,
and operators are alerted. Afterwards every counterparty's settlement accounts are
reconciled against the trades still unsettled; a break is an alert naming the trades.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sagas.liquidity import SettlementLeg

WORKFLOW = "Settlement"
SCHEDULE_ID = "custody-settlement"


def leg_operation(settlement_id: str, counterparty: str, asset: str) -> str:
    """The operation id of the platform's `asset` leg to `counterparty` in a settlement
    (what the signer derives from the counterparty's signed confirmation)."""
    return f"{settlement_id}:{counterparty}:{asset}"


class SettlementInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    settlement_id: str = Field(default="", description="empty: the workflow id")
    counterparties: list[str] = Field(min_length=1)
    currency: str = "EUR"
    platform_iban: str
    leg_timeout_seconds: int = Field(default=600, ge=1)
    poll_seconds: int = Field(default=5, ge=1)
    requested_by: str = "schedule"


class CounterpartyPlan(BaseModel):
    """One counterparty's part of a settlement: its trades and their net legs."""

    counterparty: str
    trades: list[str] = Field(description="operation ids")
    orders: list[str] = Field(description="the provider's client order ids")
    legs: list[SettlementLeg]
    end_to_end_id: str
    planned_at: datetime


class Plan(BaseModel):
    settlement_id: str
    parts: list[CounterpartyPlan]


class LegsSeen(BaseModel):
    """Which of the provider's legs are confirmed, and what is still missing."""

    confirmed: bool
    missing: list[str] = Field(default_factory=list)


class Break(BaseModel):
    counterparty: str
    asset: str
    ledger: int = Field(description="the settlement account's balance")
    expected: int = Field(description="what the unsettled trades say it should be")
    trades: list[str]


class SettlementResult(BaseModel):
    settlement_id: str
    settled: list[str] = Field(default_factory=list, description="counterparties")
    compensated: list[str] = Field(default_factory=list)
    breaks: list[Break] = Field(default_factory=list)
    state: Literal["settled", "partly_settled", "compensated", "nothing_to_settle"]
    started_at: datetime | None = None
