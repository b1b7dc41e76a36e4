"""Activities of the smoke saga: hashing is work, so it is an activity, not workflow code."""

from __future__ import annotations

import hashlib

from temporalio import activity

from sagas.smoke import DigestInput, DigestResult


class SmokeActivities:
    @activity.defn(name="smoke.digest")
    async def digest(self, data: DigestInput) -> DigestResult:
        return DigestResult(sha256=hashlib.sha256(data.message.encode()).hexdigest())
