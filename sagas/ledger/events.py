"""The events a ledger change emits: one `custody.ledger.entry_recorded.v1` per account
touched, keyed by that account, carrying the change and the account's counters after it.

Event ids are derived from (transfer id, side), so a relay that publishes an outbox
row twice publishes the same event id twice and consumers drop the repeat.
"""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue

from sagas.events import Envelope
from sagas.ledger import Balance, RecordKind, TransferRecord
from sagas.ledger.rules import Counters

ENTRY_RECORDED = "custody.ledger.entry_recorded.v1"
BALANCE = "custody.ledger.balance.v1"
SOURCE = "/custody/ledger"
_NAMESPACE = uuid.UUID("0b6f3c1e-8f65-4c36-9a57-3c2f1f0a6d41")


class BalanceAfter(BaseModel):
    """An account's counters, as decimal strings of minor units (exact in any JSON reader)."""

    model_config = ConfigDict(frozen=True)

    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str


class EntryRecorded(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    transfer_id: str
    kind: RecordKind
    side: Literal["debit", "credit"]
    account: str
    counterparty_account: str
    asset: str
    amount: str
    pending_id: str | None
    pending_amount: str | None
    balance_after: BalanceAfter
    recorded_at: str


def entry_events(
    record: TransferRecord, debit_after: Counters, credit_after: Counters
) -> list[Envelope]:
    """The two events of a recorded transfer. The payload is built as `EntryRecorded`'s
    JSON form without the model (a ledger batch builds two per transfer; the model
    costs more than the rest of the event): tests/unit/test_ledger_events.py checks
    that it is exactly what the model gives."""
    recorded_at = record.recorded_at.isoformat()
    pending_amount = None if record.pending_amount is None else str(record.pending_amount)
    events = []
    for side, account, other, after in (
        ("debit", record.debit_account, record.credit_account, debit_after),
        ("credit", record.credit_account, record.debit_account, credit_after),
    ):
        data: dict[str, JsonValue] = {
            "seq": record.seq,
            "transfer_id": record.id,
            "kind": record.kind,
            "side": side,
            "account": account,
            "counterparty_account": other,
            "asset": record.asset,
            "amount": str(record.amount),
            "pending_id": record.pending_id,
            "pending_amount": pending_amount,
            "balance_after": {
                "debits_pending": str(after.debits_pending),
                "debits_posted": str(after.debits_posted),
                "credits_pending": str(after.credits_pending),
                "credits_posted": str(after.credits_posted),
            },
            "recorded_at": recorded_at,
        }
        events.append(
            Envelope(
                id=str(uuid.uuid5(_NAMESPACE, f"{record.id}/{side}")),
                source=SOURCE,
                type=ENTRY_RECORDED,
                subject=account,
                time=record.recorded_at,
                data=data,
            )
        )
    return events


def balance_from_event(event: Envelope) -> Balance:
    """The account's balance right after the entry an event carries."""
    entry = EntryRecorded.model_validate(event.data)
    after = entry.balance_after
    return Balance(
        account_id=entry.account,
        asset=entry.asset,
        debits_pending=int(after.debits_pending),
        debits_posted=int(after.debits_posted),
        credits_pending=int(after.credits_pending),
        credits_posted=int(after.credits_posted),
    )


class BalanceSnapshot(BaseModel):
    """Payload of `custody.ledger.balance.v1` on the compacted balances topic (latest per
    account), as rebuilt by the projector from the events topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    asset: str
    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str
    available: str
    total: str

    @classmethod
    def of(cls, balance: Balance) -> BalanceSnapshot:
        return cls(
            asset=balance.asset,
            debits_pending=str(balance.debits_pending),
            debits_posted=str(balance.debits_posted),
            credits_pending=str(balance.credits_pending),
            credits_posted=str(balance.credits_posted),
            available=str(balance.available),
            total=str(balance.total),
        )


# Published payload models by event type: the catalogue in docs/events/ is generated from it.
PAYLOADS: dict[str, type[BaseModel]] = {ENTRY_RECORDED: EntryRecorded, BALANCE: BalanceSnapshot}
