"""Counting the signed approvals of an operation's intent, the same for every saga that
waits for a quorum (withdrawals, stakes, unstakes): valid signatures over exactly the
intent by distinct registered operators other than the requester, before it expired
(the signer counts them again). Each newly counted operator is a step of the operation,
reported by the saga's own `approval` event."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sagas.events import Envelope
from sagas.governance import Governance
from sagas.intents import count_approvals
from sagas.ports import IntentStore, OperationStore
from sagas.withdrawal import ApprovalView
from sagas.withdrawal.intent import requester

# (step, operator, how many so far) -> the saga's event of that approval step.
ApprovalEvent = Callable[[str, str, int], tuple[str, Envelope]]


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
