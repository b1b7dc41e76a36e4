"""The event envelope: CloudEvents 1.0 attributes around a JSON payload.

Partition key is `subject` (the account, or the address for chain
observations), so events of one account stay in order.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator

EVENT_TYPE_PATTERN = r"^custody(\.[a-z][a-z0-9_]*)+\.v[1-9][0-9]*$"


def _new_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """One event, as published on Kafka (structured-mode CloudEvent, JSON)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=_new_id, min_length=1)
    source: str = Field(min_length=1, examples=["/custody/worker"])
    type: str = Field(pattern=EVENT_TYPE_PATTERN, examples=["custody.withdrawal.broadcast.v1"])
    subject: str = Field(min_length=1, description="partition key: the account or address")
    time: datetime = Field(default_factory=_now)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("event time must carry a timezone")
        return value.astimezone(UTC)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        return cls.model_validate_json(raw)

    def key(self) -> bytes:
        return self.subject.encode()

    def payload(self) -> dict[str, Any]:
        return dict(self.data)
