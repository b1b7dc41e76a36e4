"""Paying a fiat leg once, whatever the bank's answers and its statements say.

Each leg of money (a sale's proceeds, a lapsed hold's collection, a settlement's fiat
leg) has one stable idempotency key, `<leg>:1`. Before an attempt sends it, it asks the
bank what became of that key (`CoreBanking.payment`): a payment found is the leg paid
(an earlier attempt's answer was lost); PaymentUnknown means the bank never took it, so
sending it now cannot pay twice (a repeat under the same key is idempotent). Nothing
relies on a statement, which may lag behind the books.

The bank remembers a refusal under its key (AM04 insufficient funds, AC01 unknown
account...): sent again, that key is refused for ever, even once the cause is fixed. So
a refusal the bank stated is recorded in the operation's timeline
(`payment_refused:<leg>:<n>`) and the next attempt uses the next key, `<leg>:<n+1>`. A
new key is used only after the bank has stated the refusal of the previous one, so at
most one key of a leg can ever pay; an unclear outcome (no answer, 5xx) never moves to
a new key, it asks about the same one again.
"""

from __future__ import annotations

from collections.abc import Callable

from sagas.banking import BankPayment
from sagas.errors import BankAccountUnknown, BankInsufficientFunds, BankRefused, PaymentUnknown
from sagas.ports import CoreBanking, OperationStore

# What the bank states and remembers under a key; anything else is not a refusal of it.
REMEMBERED_REFUSALS = (BankInsufficientFunds, BankAccountUnknown, BankRefused)


def refused_step(leg: str, n: int) -> str:
    return f"payment_refused:{leg}:{n}"


def current_key(ops: OperationStore, operation_id: str, leg: str, base_key: str) -> str:
    """The key of the leg's current try: `<base>:<n>`, n one more than the refusals the
    bank stated for it so far."""
    refused = sum(
        1 for s in ops.timeline(operation_id) if s.step.startswith(f"payment_refused:{leg}:")
    )
    return f"{base_key}:{refused + 1}"


def pay_once(
    bank: CoreBanking,
    ops: OperationStore,
    operation_id: str,
    leg: str,
    base_key: str,
    send: Callable[[str], BankPayment],
) -> BankPayment:
    """The leg's payment: found under its current key, or sent under it. A refusal the
    bank states is recorded (the next call tries the next key) and raised."""
    key = current_key(ops, operation_id, leg, base_key)
    try:
        return bank.payment(key)  # made by an attempt whose answer was lost
    except PaymentUnknown:
        pass
    except REMEMBERED_REFUSALS as exc:
        # Only the bank's own answer about this key moves the leg to a new key: a
        # refusal raised by a send, or by a query that failed, may hide a payment that
        # was made (an answer lost, a gateway's 4xx), and a new key would pay it again.
        n = int(key.rsplit(":", 1)[1])
        ops.advance(operation_id, refused_step(leg, n), detail={"key": key, "error_code": exc.code})
        raise
    return send(key)  # refused? The next attempt asks, and records it if the bank says so
