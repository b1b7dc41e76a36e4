"""The ledger's entry events are built without their payload model (for speed): they
must be exactly what the model gives, and valid envelopes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sagas.events import Envelope
from sagas.ledger import TransferRecord
from sagas.ledger.events import BalanceAfter, EntryRecorded, balance_from_event, entry_events
from sagas.ledger.rules import Counters

NOW = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    "record",
    [
        TransferRecord(
            seq=7,
            id="t-1",
            kind="transfer",
            debit_account="omni",
            credit_account="alice",
            asset="ETH",
            amount=10**30 + 1,
            recorded_at=NOW,
        ),
        TransferRecord(
            seq=9,
            id="t-2-post",
            kind="post",
            debit_account="alice",
            credit_account="in-flight",
            asset="BTC",
            amount=5,
            pending_id="t-2",
            pending_amount=8,
            reference="w-1",
            recorded_at=NOW.astimezone(UTC) + timedelta(hours=1),
        ),
    ],
)
def test_entry_events_are_what_the_payload_model_gives(record: TransferRecord) -> None:
    debit, credit = Counters(1, 2, 3, 4), Counters(0, 0, 5, 10**25)
    events = entry_events(record, debit, credit)
    assert [e.data["side"] for e in events] == ["debit", "credit"]
    for event, side, account, other, after in (
        (events[0], "debit", record.debit_account, record.credit_account, debit),
        (events[1], "credit", record.credit_account, record.debit_account, credit),
    ):
        model = EntryRecorded(
            seq=record.seq,
            transfer_id=record.id,
            kind=record.kind,
            side=side,  # type: ignore[arg-type]
            account=account,
            counterparty_account=other,
            asset=record.asset,
            amount=str(record.amount),
            pending_id=record.pending_id,
            pending_amount=None if record.pending_amount is None else str(record.pending_amount),
            balance_after=BalanceAfter(**{k: str(v) for k, v in vars(after).items()}),
            recorded_at=record.recorded_at.isoformat(),
        )
        assert event.data == model.model_dump(mode="json")
        assert EntryRecorded.model_validate(event.data) == model
        assert Envelope.from_json(event.to_json()) == event
        assert event.subject == account and event.time == record.recorded_at
        assert balance_from_event(event).total == after.credits_posted - after.debits_posted
    # The ids are derived, so a republished outbox row is recognisably the same event.
    assert [e.id for e in entry_events(record, debit, credit)] == [e.id for e in events]
    assert len({e.id for e in events}) == 2
