"""A saga's step: one activity with its options chosen here, once, by name.

`await step(A.hold, req, priced, profile=VENUE)` schedules the activity `A.hold` with the
profile's timeouts and retry policy (`workflow.execute_activity_method`, its arguments
as `args`: the same command as a single positional argument). A profile only says how
long a step may take and how it is retried; which activity runs, in which order and with
which arguments stays at the call site, so a workflow reads as its business process.

A step is a remote activity unless the call says `local=True` and its profile has local
attempts: then it runs as a local activity first (no activity task through the server
and back) and goes on remotely if those attempts fail for a reason retrying could help.
Running a step locally changes the commands a workflow sends: the caller decides it
behind a `workflow.patched` guard (the withdrawal's `local-steps`,
docs/decisions/0022-fast-saga-steps-as-local-activities.md).

Errors cross the Temporal boundary typed: `crossing(err)` turns a platform error into an
ApplicationError whose type is the error's class and whose details are its code and
detail; `code_of` and `detail_of` read them back, never from the message's text.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any, TypeVar, TypeVarTuple, cast

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TemporalError,
)
from temporalio.exceptions import TimeoutError as ActivityTimeout

from sagas.errors import CustodyError

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

# Errors that say retrying cannot help: an id used before with another body, an
# operation in a state that does not allow the step. Every other error is retried.
REFUSALS = ("TransferIdConflict", "InvalidState", "IdempotencyConflict")


def retry(
    first: float,
    most: float,
    attempts: int = 0,
    refusals: tuple[str, ...] = REFUSALS,
) -> RetryPolicy:
    """Retried after `first` seconds, doubling up to `most`; `attempts` at most (0: until
    it succeeds), never on one of `refusals`."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=first),
        maximum_interval=timedelta(seconds=most),
        maximum_attempts=attempts,
        non_retryable_error_types=list(refusals),
    )


@dataclasses.dataclass(frozen=True)
class Profile:
    """How long one attempt may take, how it is retried, and (optionally) how long the
    step may take over all its attempts."""

    start_to_close: timedelta
    retry: RetryPolicy
    schedule_to_close: timedelta | None = None
    local: RetryPolicy | None = None  # a local step's attempts before it goes remote


# A step that is one database transaction: 10 s an attempt, retried every 1 to 10 s.
STEP = Profile(timedelta(seconds=10), retry(1, 10))
# The trade's steps call a provider or the bank through an adapter: 20 s, above an
# adapter's timeout times its attempts.
VENUE = Profile(timedelta(seconds=20), retry(1, 10))
# A quote: as VENUE, but within 2 minutes in all (never trade long after the request).
QUOTE = dataclasses.replace(VENUE, schedule_to_close=timedelta(minutes=2))
# The fiat leg after execution: a few quick tries (then the saga alerts operators),
# then patiently for ever. Only a reused idempotency key stops it.
PAY_FIRST = Profile(timedelta(seconds=20), retry(1, 5, 4, refusals=("IdempotencyConflict",)))
PAY_PATIENT = Profile(timedelta(seconds=20), retry(5, 60, refusals=("IdempotencyConflict",)))
# The settlement's steps: providers' instructions and confirmations, chain sends and
# the books, 30 s an attempt, retried every 1 to 30 s.
SETTLE = Profile(timedelta(seconds=30), retry(1, 30))
# The withdrawal's steps: database writes and reads, the chain's status; a signer's
# refusal is final too. Locally about 15 s of attempts (5), then remotely for ever.
WITHDRAWAL_REFUSALS = ("KeyAccessDenied", "TransferIdConflict", "InvalidState")
WITHDRAW = Profile(
    timedelta(seconds=10),
    retry(1, 10, refusals=WITHDRAWAL_REFUSALS),
    local=retry(1, 8, 5, refusals=WITHDRAWAL_REFUSALS),
)
# Its payment: build, sign through the signer's queue, record, broadcast.
SEND = dataclasses.replace(WITHDRAW, start_to_close=timedelta(seconds=20), local=None)
# The deposit's steps: retried until they succeed, whatever the error (a deposit on
# chain is credited in the end, or an operator sees the saga retrying).
PATIENT = Profile(timedelta(seconds=10), retry(1, 10, refusals=()))


async def step(
    activity: Callable[[Any, *Ts], R], *args: *Ts, profile: Profile = STEP, local: bool = False
) -> R:
    """Run one step of the saga: the activity (an activity method of the saga's
    activities class) with these arguments, with the profile's options; `local`: as a
    local activity first, if the profile has local attempts."""
    if local and profile.local is not None:
        try:
            local_result = await workflow.execute_local_activity_method(
                cast(Callable[..., Any], activity),
                args=[*args],
                start_to_close_timeout=profile.start_to_close,
                # A local activity retries inside the workflow task, which heartbeats into
                # the history: one that keeps failing (a database or a node down) goes on
                # as a remote activity, whose retries add nothing to it.
                retry_policy=profile.local,
            )
            return cast(R, local_result)
        except (ActivityError, ApplicationError, ActivityTimeout) as err:
            # The SDK raises a local activity's last failure itself, or wrapped. A
            # refusal ends as from a remote activity, a cancellation too; any other
            # failure (an error retrying could help, a timeout) goes on remotely.
            cause = err.cause if isinstance(err, ActivityError) else err
            refusals = profile.local.non_retryable_error_types or ()
            if isinstance(cause, CancelledError) or (
                isinstance(cause, ApplicationError)
                and (cause.non_retryable or cause.type in refusals)
            ):
                raise
    result = await workflow.execute_activity_method(
        cast(Callable[..., Any], activity),
        args=[*args],
        start_to_close_timeout=profile.start_to_close,
        schedule_to_close_timeout=profile.schedule_to_close,
        retry_policy=profile.retry,
    )
    return cast(R, result)


# --- errors across the Temporal boundary ------------------------------------------------
def crossing(err: CustodyError, non_retryable: bool = False) -> ApplicationError:
    """The platform error as Temporal carries it: the error's class as its type (what the
    retry policies name), its code and detail as details, its text as the message."""
    return ApplicationError(
        str(err), err.code, err.detail, type=type(err).__name__, non_retryable=non_retryable
    )


@contextlib.contextmanager
def typed_errors() -> Iterator[None]:
    """In an activity: a platform error raised inside leaves it as `crossing` makes it
    (retried as before: its type is the class's name, as Temporal names any error)."""
    try:
        yield
    except CustodyError as exc:
        raise crossing(exc) from exc


def _application_error(err: BaseException | None) -> ApplicationError | None:
    """The ApplicationError an activity's or a workflow's failure carries, if any."""
    while err is not None and not isinstance(err, ApplicationError):
        err = err.__cause__ if isinstance(err, TemporalError) else None
    return err


def code_of(err: BaseException | None) -> str | None:
    """The platform's error code a failure carries in its details (`crossing`)."""
    app = _application_error(err)
    if app is not None and app.details and isinstance(app.details[0], str):
        return app.details[0]
    return None


def detail_of(err: BaseException | None) -> str:
    """The detail a failure carries (`crossing`), else its message."""
    app = _application_error(err)
    if app is not None and len(app.details) > 1 and isinstance(app.details[1], str):
        return app.details[1]
    if app is not None:
        return app.message
    return "" if err is None else str(getattr(err, "message", err))
