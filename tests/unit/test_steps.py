"""sagas/steps.py: a saga step's options by name, and platform errors across Temporal.

The profiles are the options the four sagas' activity calls had before they were named
(a running saga's retries and timeouts do not change), and `step` schedules the activity
with exactly them: remotely, or locally first where the call and the profile say so."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from sagas import steps
from sagas.errors import DependencyUnavailable, InvalidState
from sagas.steps import (
    PATIENT,
    PAY_FIRST,
    PAY_PATIENT,
    QUOTE,
    SEND,
    SETTLE,
    STEP,
    VENUE,
    WITHDRAW,
    code_of,
    crossing,
    detail_of,
    step,
    typed_errors,
)


def _nonretryable(policy: RetryPolicy) -> set[str]:
    return set(policy.non_retryable_error_types or [])


def test_the_profiles_are_the_options_the_sagas_had() -> None:
    refusals = {"TransferIdConflict", "InvalidState", "IdempotencyConflict"}
    withdrawal = {"KeyAccessDenied", "TransferIdConflict", "InvalidState"}
    # (start-to-close, schedule-to-close, first retry, longest, attempts, non-retryable)
    expected = {
        "STEP": (STEP, 10, None, 1, 10, 0, refusals),
        # the trade saga's _TIMEOUT/_RETRY, its quote within _QUOTE_WITHIN, the fiat leg's
        "VENUE": (VENUE, 20, None, 1, 10, 0, refusals),
        "QUOTE": (QUOTE, 20, 120, 1, 10, 0, refusals),
        "PAY_FIRST": (PAY_FIRST, 20, None, 1, 5, 4, {"IdempotencyConflict"}),
        "PAY_PATIENT": (PAY_PATIENT, 20, None, 5, 60, 0, {"IdempotencyConflict"}),
        # the settlement saga's _TIMEOUT/_RETRY
        "SETTLE": (SETTLE, 30, None, 1, 30, 0, refusals),
        # the withdrawal saga's _TIMEOUT/_RETRY, its send's 20 s; the deposit saga's
        "WITHDRAW": (WITHDRAW, 10, None, 1, 10, 0, withdrawal),
        "SEND": (SEND, 20, None, 1, 10, 0, withdrawal),
        "PATIENT": (PATIENT, 10, None, 1, 10, 0, set()),
    }
    for name, (p, stc, s2c, first, most, attempts, nonretryable) in expected.items():
        got = (
            p.start_to_close,
            p.schedule_to_close,
            p.retry.initial_interval,
            p.retry.maximum_interval,
            p.retry.backoff_coefficient,
            p.retry.maximum_attempts,
            _nonretryable(p.retry),
        )
        assert got == (
            timedelta(seconds=stc),
            None if s2c is None else timedelta(seconds=s2c),
            timedelta(seconds=first),
            timedelta(seconds=most),
            2.0,
            attempts,
            nonretryable,
        ), name
    # the withdrawal's _LOCAL_RETRY: 5 local attempts, 1 to 8 s, then remote
    local = WITHDRAW.local
    assert local is not None and (
        local.initial_interval,
        local.maximum_interval,
        local.maximum_attempts,
        _nonretryable(local),
    ) == (timedelta(seconds=1), timedelta(seconds=8), 5, withdrawal)
    assert all(p.local is None for p in (STEP, VENUE, QUOTE, SETTLE, SEND, PATIENT))


def test_a_local_step_goes_on_remotely_unless_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    failure: list[BaseException] = []

    async def local(activity: Any, **kwargs: Any) -> str:
        calls.append(f"local {kwargs['retry_policy'] is WITHDRAW.local}")
        if failure:
            raise failure[0]
        return "local"

    async def remote(activity: Any, **kwargs: Any) -> str:
        calls.append(f"remote {kwargs['retry_policy'] is WITHDRAW.retry}")
        return "remote"

    monkeypatch.setattr(workflow, "execute_local_activity_method", local)
    monkeypatch.setattr(workflow, "execute_activity_method", remote)

    class Acts:
        def one(self, a: int) -> str:
            return ""

    assert asyncio.run(step(Acts.one, 1, profile=WITHDRAW, local=True)) == "local"
    assert asyncio.run(step(Acts.one, 1, profile=WITHDRAW)) == "remote"  # not asked
    assert asyncio.run(step(Acts.one, 1, profile=STEP, local=True)) == "remote"  # no local
    failure.append(_from_activity(ApplicationError("db down", type="DependencyUnavailable")))
    assert asyncio.run(step(Acts.one, 1, profile=WITHDRAW, local=True)) == "remote"
    failure[0] = _from_activity(ApplicationError("refused", type="KeyAccessDenied"))
    with pytest.raises(ActivityError):
        asyncio.run(step(Acts.one, 1, profile=WITHDRAW, local=True))
    assert calls == [
        "local True",
        "remote True",
        "remote False",
        "local True",
        "remote True",
        "local True",
    ]


def test_a_step_schedules_its_activity_with_the_profiles_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []

    async def execute(activity: Any, **kwargs: Any) -> str:
        calls.append((activity, kwargs))
        return "done"

    monkeypatch.setattr(workflow, "execute_activity_method", execute)

    class Acts:
        def one(self, a: int) -> str:
            return ""

        def two(self, a: int, b: str) -> str:
            return ""

    assert asyncio.run(step(Acts.one, 1)) == "done"
    asyncio.run(step(Acts.two, 1, "b", profile=QUOTE))
    assert calls == [
        (
            Acts.one,
            {
                "args": [1],
                "start_to_close_timeout": timedelta(seconds=10),
                "schedule_to_close_timeout": None,
                "retry_policy": STEP.retry,
            },
        ),
        (
            Acts.two,
            {
                "args": [1, "b"],
                "start_to_close_timeout": timedelta(seconds=20),
                "schedule_to_close_timeout": timedelta(minutes=2),
                "retry_policy": QUOTE.retry,
            },
        ),
    ]


def _from_activity(err: ApplicationError) -> ActivityError:
    """As a workflow sees an activity's failure: an ActivityError caused by it."""
    failed = ActivityError(
        "activity failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="trade.pay",
        activity_id="7",
        retry_state=RetryState.MAXIMUM_ATTEMPTS_REACHED,
    )
    failed.__cause__ = err
    return failed


def test_a_platform_error_crosses_with_its_class_code_and_detail() -> None:
    with pytest.raises(ApplicationError) as raised, typed_errors():
        raise DependencyUnavailable("the bank answered 503")
    err = raised.value
    assert (err.type, err.non_retryable) == ("DependencyUnavailable", False)  # retried
    assert err.message == str(DependencyUnavailable("the bank answered 503"))
    assert isinstance(err.__cause__, DependencyUnavailable)
    assert code_of(_from_activity(err)) == DependencyUnavailable.code
    assert detail_of(_from_activity(err)) == "the bank answered 503"
    refusal = crossing(InvalidState("not awaiting acceptance"), non_retryable=True)
    assert (refusal.type, refusal.non_retryable, code_of(refusal)) == (
        "InvalidState",
        True,
        InvalidState.code,
    )


def test_a_code_is_never_read_out_of_the_text() -> None:
    untyped = ApplicationError("CUS-9001 dependency unavailable: no", type="Unavailable")
    assert code_of(_from_activity(untyped)) is None
    assert detail_of(untyped) == untyped.message
    assert code_of(RuntimeError("CUS-9001")) is None and code_of(None) is None


def test_the_sagas_name_no_options_of_their_own() -> None:
    """The four sagas' workflows take every activity's options from a profile."""
    from pathlib import Path

    root = Path(steps.__file__).parent
    for saga in ("trade", "settlement", "withdrawal", "deposit"):
        text = (root / saga / "workflows.py").read_text()
        assert "execute_activity" not in text and "RetryPolicy" not in text, saga
