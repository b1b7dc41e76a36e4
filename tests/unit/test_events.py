from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from sagas.events import Envelope


def _event(**over: object) -> Envelope:
    fields: dict[str, object] = {
        "source": "/custody/worker",
        "type": "custody.withdrawal.broadcast.v1",
        "subject": "acct-42",
        "data": {"amount": "12345", "asset": "BTC"},
    }
    fields.update(over)
    return Envelope.model_validate(fields)


def test_json_round_trip_is_exact() -> None:
    event = _event()
    assert Envelope.from_json(event.to_json()) == event


def test_cloudevents_attributes_are_present() -> None:
    body = _event().model_dump(mode="json")
    assert body["specversion"] == "1.0"
    assert body["datacontenttype"] == "application/json"
    assert {"id", "source", "type", "subject", "time", "data"} <= body.keys()


def test_partition_key_is_the_subject() -> None:
    assert _event(subject="acct-7").key() == b"acct-7"


@pytest.mark.parametrize(
    "bad_type",
    [
        "withdrawal.broadcast.v1",
        "custody.withdrawal.broadcast",
        "custody.Withdrawal.v1",
        "custody.withdrawal.v0",
        "",
    ],
)
def test_unversioned_or_foreign_types_are_refused(bad_type: str) -> None:
    with pytest.raises(ValidationError):
        _event(type=bad_type)


def test_naive_time_is_refused_and_aware_time_is_normalised_to_utc() -> None:
    with pytest.raises(ValidationError):
        _event(time=datetime(2026, 1, 1, 12, 0))
    cet = timezone(timedelta(hours=1))
    event = _event(time=datetime(2026, 1, 1, 13, 0, tzinfo=cet))
    assert event.time == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert event.time.utcoffset() == timedelta(0)


def test_unknown_attributes_are_refused() -> None:
    with pytest.raises(ValidationError):
        _event(priority="high")


def test_ids_are_unique_by_default() -> None:
    assert len({_event().id for _ in range(1000)}) == 1000
