"""What a saga's activities record and read back, the same for every saga: the event that
reports a step (on the events topic, its id the same on every retry of the step) and a
step recorded before (an activity retried after its step was recorded returns it
instead of acting again)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from sagas.events import Envelope
from sagas.operations import recorded_step, step_event_id
from sagas.ports import OperationStore
from sagas.topics import EVENTS


def step_event(
    operation_id: str,
    step: str,
    payload: BaseModel,
    *,
    source: str,
    event_type: Callable[[str], str],
    subject: str,
) -> tuple[str, Envelope]:
    """The event of `step` (`<kind>` or `<kind>:<detail>`: its type is the kind's) of the
    operation, with the step's payload, its empty fields left out."""
    return EVENTS.name, Envelope(
        id=step_event_id(operation_id, step),
        source=source,
        type=event_type(step.split(":", 1)[0]),
        subject=subject,
        data=payload.model_dump(mode="json", exclude_none=True),
    )


class RecordedSteps:
    """A saga's activities over its operation store: `_recorded` reads a step back."""

    _ops: OperationStore

    def _recorded(self, operation_id: str, step: str) -> dict[str, Any] | None:
        return recorded_step(self._ops.timeline(operation_id), step)
