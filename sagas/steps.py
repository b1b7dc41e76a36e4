"""A saga's step: one activity with its options chosen here, once, by name.

`await step(A.hold, req, priced, profile=VENUE)` schedules the activity `A.hold` with the
profile's timeouts and retry policy (`workflow.execute_activity_method`, its arguments
as `args`: the same command as a single positional argument). A profile only says how
long a step may take and how it is retried; which activity runs, in which order and with
which arguments stays at the call site, so a workflow reads as its business process.

Every step is a remote activity. Running one as a local activity changes the commands a
workflow sends: it needs a `workflow.patched` guard (the withdrawal's `local-steps`,
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
from temporalio.exceptions import ApplicationError, TemporalError

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


async def step(activity: Callable[[Any, *Ts], R], *args: *Ts, profile: Profile = STEP) -> R:
    """Run one step of the saga: the activity (an activity method of the saga's
    activities class) with these arguments, with the profile's options."""
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
