"""The deposit saga's contract. Started by the first observation of an output (workflow
id from chain, transaction and output), it waits for finality, screens the source,
then credits the client or quarantines the funds and alerts. A reorg before finality
cancels it; the same output mined again later starts it anew, and the credit's
transfer id (one per chain, transaction and output) means it is credited once."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

WORKFLOW = "Deposit"

DepositState = Literal["seen", "final", "reorged", "unknown"]


def workflow_id(chain: str, tx_hash: str, position: str) -> str:
    return f"deposit:{chain}:{tx_hash}:{position}"


class DepositInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    chain: str
    tx_hash: str
    position: str
    address: str
    account_id: str
    asset: str
    amount: StrictInt
    poll_seconds: int = 15
    history_limit: int = Field(
        default=5000,
        ge=50,
        description="events in one run before the wait for finality goes on in a new run",
    )
    resumed: bool = Field(default=False, description="set by the saga: a new run of its wait")

    @property
    def operation_id(self) -> str:
        return workflow_id(self.chain, self.tx_hash, self.position)


class DepositNudge(BaseModel):
    """From the event router: the watcher's deposit_final / deposit_reorged."""

    state: DepositState


class DepositResult(BaseModel):
    operation_id: str
    state: Literal["credited", "quarantined", "cancelled"]
    account: str | None = None
    reason: str = ""
