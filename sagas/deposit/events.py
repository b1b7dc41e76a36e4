"""The deposit saga's events, `custody.deposit.<step>.v1` on the events topic, keyed by
the credited (or addressed) account; and the quarantine alert."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STEPS = ("seen", "credited", "quarantined", "cancelled")
QUARANTINED_ALERT = "custody.alert.deposit_quarantined.v1"


def event_type(step: str) -> str:
    return f"custody.deposit.{step}.v1"


class DepositStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation_id: str = Field(examples=["deposit:bitcoin:<txid>:vout0"])
    client_id: str | None = Field(description="None for the platform's own (treasury) address")
    chain: str
    tx_hash: str
    position: str = Field(
        description="within the transaction: vout<n> (BTC), value (ETH the transaction "
        "carries), log<i> (ERC-20: the i-th log of its receipt), msg<i> (ATOM: the i-th "
        "message's send) or msg<i>.out<j> (ATOM: the j-th output of a multi-send); "
        "unchanged if a reorg moves the transaction to another block or index"
    )
    address: str
    asset: str
    amount: str = Field(description="minor units")
    account: str | None = Field(default=None, description="credited: the ledger account")
    reason: str | None = Field(default=None, description="quarantined: why")


class DepositQuarantined(BaseModel):
    """Alert: a deposit was booked to quarantine instead of the client."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str
    account: str
    reason: str


PAYLOADS: dict[str, type[BaseModel]] = {
    **{event_type(step): DepositStep for step in STEPS},
    QUARANTINED_ALERT: DepositQuarantined,
}
