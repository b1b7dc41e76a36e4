"""Operations as the platform shows them: a withdrawal or deposit, its state and the
timeline of steps its saga went through. Written by the sagas' activities (with the
events that report each step), read by the API and checked by the signer."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

OperationKind = Literal[
    "withdrawal", "deposit", "trade", "settlement", "stake", "unstake", "redelegation"
]

# Withdrawal states, in order; a saga ends in one of the last four.
WITHDRAWAL_STATES = (
    "requested",
    "reserved",
    "held",  # the destination was a screening hit: compliance releases or rejects it
    "awaiting_approval",
    "approved",
    "broadcast",
    "completed",
    "rejected",
    "expired",
    "failed",
)
DEPOSIT_STATES = ("seen", "credited", "quarantined", "cancelled")


def request_hash(body: dict[str, JsonValue]) -> str:
    """A digest of a request body, to tell a retry from a different request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class OperationRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    kind: OperationKind
    client_id: str | None
    asset: str
    chain: str
    amount: int
    destination: str | None = None
    request_hash: str
    requested_by: str
    state: str
    approved: bool = False
    error_code: str | None = None
    tx_hash: str | None = None
    fee: int | None = None
    created_at: datetime
    updated_at: datetime


class Step(BaseModel):
    model_config = ConfigDict(frozen=True)

    step: str = Field(examples=["reserved"])
    at: datetime
    detail: dict[str, JsonValue] = Field(default_factory=dict)


def recorded_step(timeline: list[Step], step: str) -> dict[str, Any] | None:
    """The detail of a step in an operation's timeline, if it was recorded: what an
    activity retried after its step was recorded returns instead of acting again."""
    for entry in timeline:
        if entry.step == step:
            return dict(entry.detail)
    return None


_NAMESPACE = uuid.UUID("5b0f7a53-7d0c-4c8e-9a43-0d6a4f3c2e11")


def step_event_id(operation_id: str, step: str) -> str:
    """The id of the event reporting a step: the same on every retry of the step."""
    return str(uuid.uuid5(_NAMESPACE, f"{operation_id}/{step}"))
