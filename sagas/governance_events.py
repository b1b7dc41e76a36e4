"""Governance events: `custody.governance.<step>.v1` on the events topic, keyed by
`governance`, so every proposal, signature and decision is in the audit chain."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

SUBJECT = "governance"
SOURCE = "/custody/governance"
STEPS = ("proposed", "approved", "applied", "refused")


def event_type(step: str) -> str:
    return f"custody.governance.{step}.v1"


class GovernanceEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    proposal_id: str
    kind: str = Field(examples=["policy_change"])
    intent_hash: str = Field(description="what the operators sign")
    proposed_by: str
    client_id: str | None = None
    asset: str | None = None
    intent: str | None = Field(default=None, description="proposed: the intent, canonical JSON")
    key_id: str | None = Field(default=None, description="approved: the signing key")
    operator: str | None = Field(default=None, description="approved: whose key it is")
    approvals: int | None = Field(default=None, description="approved: valid ones so far")
    seq: int | None = Field(default=None, description="applied: the record's position")
    prev: str | None = Field(default=None, description="applied: the previous record's hash")
    reason: str | None = Field(default=None, description="refused: why it can never apply")


PAYLOADS: dict[str, type[BaseModel]] = {event_type(step): GovernanceEvent for step in STEPS}
