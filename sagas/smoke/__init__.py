"""A trivial saga that proves the Temporal path end to end (stack smoke test and demo).

The workflow calls one activity, and can wait for a `release` signal so a test
can leave it running across a restart of the Temporal server.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

TASK_QUEUE = "custody-smoke"


class SmokeInput(BaseModel):
    message: str = Field(min_length=1, max_length=1_000)
    wait_for_release: bool = False


class SmokeResult(BaseModel):
    message: str
    sha256: str
    released_by: str | None = None


class DigestInput(BaseModel):
    message: str


class DigestResult(BaseModel):
    sha256: str


class ReleaseSignal(BaseModel):
    operator: str = Field(min_length=1)
