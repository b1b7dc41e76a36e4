"""The withdrawal saga's contract: what starts it, what its steps exchange, how it ends.

Validate -> reserve in the ledger -> policy decision -> (approval wait) -> build, sign
(signer queue), record, broadcast -> await confirmations -> post the reservation and
book the network fee. Before broadcast any failure voids the reservation; after
broadcast the saga only ever checks the chain, rebroadcasts, or fee-bumps.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from sagas.intents import SignedRequest
from sagas.keys import Chain

# The task queue the platform's sagas and their activities run on (services/worker).
TASK_QUEUE = "custody-sagas"
WORKFLOW = "Withdrawal"

Ending = Literal["completed", "rejected", "expired", "failed"]


class WithdrawalInput(BaseModel):
    """A validated withdrawal: amount in minor units, destination checked for the network."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operation_id: str = Field(description="the workflow id: wd:<client>:<idempotency key>")
    client_id: str
    asset: str
    chain: Chain
    amount: StrictInt = Field(gt=0)
    destination: str
    requested_by: str
    requested_at: datetime
    approval_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    poll_seconds: int = Field(default=15, ge=1, description="chain polling fallback period")
    stuck_after_seconds: int = Field(default=3600, ge=1, description="then alert an operator")
    request: SignedRequest | None = Field(
        default=None, description="the client's signed request, passed through to the signer"
    )
    source: str | None = Field(
        default=None,
        description="ATOM: the client's own address the payment leaves from (the platform's "
        "wallet pays BTC, ETH and tokens)",
    )
    network_fee: StrictInt = Field(
        default=0,
        ge=0,
        description="ATOM: the network fee the client's address pays, reserved with the amount "
        "from the client's available balance (0: the platform pays its own fees)",
    )
    history_limit: int = Field(
        default=5000,
        ge=50,
        description="events in one run of the saga before its wait for finality goes on in "
        "a new run (continue-as-new): a payment stuck for days stays far from Temporal's "
        "history limits",
    )
    resume: FinalityWait | None = Field(
        default=None, description="set by the saga itself: a new run of a finality wait"
    )


class FinalityWait(BaseModel):
    """Where a broadcast withdrawal's wait for finality stood when the saga went on in a
    new run: what the new run needs not to alert twice or drop an operator's decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    started_at: datetime
    alerted: bool
    mined: bool
    decisions: list[OperatorDecision] = Field(default_factory=list)
    decision_ids: list[str] = Field(default_factory=list)


class ReserveOutcome(BaseModel):
    reserved: bool
    error_code: str | None = None
    detail: str = ""


class PolicyOutcome(BaseModel):
    outcome: Literal["allow", "deny", "needs_approval"]
    rule: str
    detail: str
    policy_version: int
    approvals_required: int = 0
    screening_required: bool = False
    approval_quorum: int = Field(default=2, description="the policy's quorum")


class ScreenOutcome(BaseModel):
    """The destination screened on the way out: None, or why it was a hit."""

    hit: str | None = None


class Approval(BaseModel):
    """An operator's approval, as the update/signal carries it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operator: str = Field(min_length=1)


class ApprovalView(BaseModel):
    required: int
    approvers: list[str]
    complete: bool


class SendOutcome(BaseModel):
    tx_hash: str | None = None
    error_code: str | None = None
    detail: str = ""


class ChainStatus(BaseModel):
    state: Literal["pending", "mined", "final", "reverted", "missing"]
    tx_hash: str | None = None
    confirmations: int = 0
    fee: StrictInt = 0
    fee_asset: str


class ChainNudge(BaseModel):
    """From the event router: the chain watcher saw one of this operation's transactions."""

    event_type: str
    tx_hash: str


class OperatorDecision(BaseModel):
    """What an operator decided for a stuck withdrawal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operator: str = Field(min_length=1)
    action: Literal["rebroadcast", "bump", "keep_waiting", "release", "reject"] = Field(
        description="release/reject: a withdrawal held by screening (compliance review)"
    )
    fee_percent: int = Field(default=130, gt=110, le=1000, description="bump only")
    decision_id: str | None = Field(
        default=None, max_length=200, description="one decision per id (the request's key)"
    )


class Ended(BaseModel):
    """How a step before broadcast ended the saga (the reservation is voided)."""

    operation_id: str
    state: Ending
    error_code: str | None = None
    detail: str = ""


class Completion(BaseModel):
    operation_id: str
    status: ChainStatus


class WithdrawalResult(BaseModel):
    operation_id: str
    state: Ending
    error_code: str | None = None
    detail: str = ""
    tx_hash: str | None = None
    fee: StrictInt | None = None
    fee_asset: str | None = None
