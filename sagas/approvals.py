"""An operation's intent and its signed approvals, the same for every saga that waits
for a quorum (withdrawals, stakes, unstakes): the intent is stored once and recorded as
the `intent` step; approvals count when they are valid signatures over exactly the
intent by distinct registered operators other than the requester, before it expired
(the signer counts them again). Each newly counted operator is a step of the operation,
reported by the saga's own `approval` event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sagas.events import Envelope
from sagas.governance import Governance
from sagas.intents import Intent, count_approvals
from sagas.ports import IntentStore, OperationStore
from sagas.withdrawal import ApprovalView
from sagas.withdrawal.intent import requester

# (step, operator, how many so far) -> the saga's event of that approval step.
ApprovalEvent = Callable[[str, str, int], tuple[str, Envelope]]
# The `intent` step's detail -> the saga's `intent` event.
IntentEvent = Callable[[dict[str, Any]], tuple[str, Envelope]]


def record_intent(
    ops: OperationStore,
    intents: IntentStore,
    operation_id: str,
    kind: str,
    build: Callable[[], Intent],
    required: int,
    waits: bool,
    event: IntentEvent,
) -> str:
    """The operation's intent of `kind` (what operators sign, what the signer checks),
    built and stored once with the approvals it needs, and recorded as the `intent`
    step (the operation awaiting approval if `waits`); its hash. A retry after the
    intent was stored records the stored one: its step is recorded once."""
    stored = intents.intent(operation_id, kind)
    if stored is None:
        intent = build()
        intents.put_intent(intent, required)
    else:
        intent = stored[0]
    digest = intent.hash()
    detail = {"intent_hash": digest, "approvals_required": required}
    ops.advance(
        operation_id,
        "intent",
        [event(detail)],
        detail=detail,
        state="awaiting_approval" if waits else None,
    )
    return digest


def mark_approved(ops: OperationStore, operation_id: str, event: tuple[str, Envelope]) -> None:
    """The quorum is met: from here the signer will sign the operation (it checks this
    record)."""
    ops.advance(operation_id, "approved", [event], state="approved", approved=True)


def tally(
    ops: OperationStore,
    intents: IntentStore,
    governance: Governance,
    operation_id: str,
    kind: str,
    event: ApprovalEvent,
) -> ApprovalView:
    """The approvals counted for the operation's intent of `kind`, each recorded once."""
    stored = intents.intent(operation_id, kind)
    if stored is None:
        return ApprovalView(required=1, approvers=[], complete=False)
    intent, required = stored
    quorum = count_approvals(
        intent,
        intents.approvals(intent.hash()),
        governance.operators(),
        requester(intent),
        datetime.now(UTC),
    )
    approvers = sorted(quorum.operators)
    for n, operator in enumerate(approvers, 1):
        step = f"approval:{operator}"
        ops.advance(
            operation_id,
            step,
            [event(step, operator, n)],
            detail={"operator": operator, "approvals": n},
        )
    return ApprovalView(required=required, approvers=approvers, complete=quorum.met(required))
