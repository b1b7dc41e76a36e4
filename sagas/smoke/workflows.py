"""The smoke workflow: one activity, optionally a wait for an operator's release signal."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from sagas.smoke import DigestInput, ReleaseSignal, SmokeInput, SmokeResult
    from sagas.smoke.activities import SmokeActivities


@workflow.defn(name="Smoke")
class SmokeWorkflow:
    def __init__(self) -> None:
        self._released_by: str | None = None

    @workflow.signal(name="release")
    def release(self, signal: ReleaseSignal) -> None:
        self._released_by = signal.operator

    @workflow.query(name="released_by")
    def released_by(self) -> str | None:
        return self._released_by

    @workflow.run
    async def run(self, data: SmokeInput) -> SmokeResult:
        digest = await workflow.execute_activity_method(
            SmokeActivities.digest,
            DigestInput(message=data.message),
            start_to_close_timeout=timedelta(seconds=10),
        )
        if data.wait_for_release:
            await workflow.wait_condition(lambda: self._released_by is not None)
        return SmokeResult(
            message=data.message, sha256=digest.sha256, released_by=self._released_by
        )
