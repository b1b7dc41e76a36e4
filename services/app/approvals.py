"""An operator's signed approval handed in over the API, checked before it is kept: the
same for every operation that waits for a quorum."""

from __future__ import annotations

from datetime import UTC, datetime

from sagas.errors import (
    ApprovalExpired,
    ApprovalOfOtherIntent,
    ApprovalRefused,
    ApprovalSignatureInvalid,
    Forbidden,
    InvalidState,
)
from sagas.intents import Approval, Refusal, count_approvals, intent_kind
from sagas.operations import OperationRecord
from sagas.withdrawal import ApprovalView
from sagas.withdrawal.intent import requester
from services.platform import Platform


def take_approval(
    platform: Platform, op: OperationRecord, approval: Approval, operator: str
) -> ApprovalView:
    """Keep an operator's approval of an operation's intent (a withdrawal's, a stake's,
    an unstake's) while it awaits approval: a valid signature by a key of the calling
    operator over exactly this intent, not the requester's, not a second one, not past
    the quorum; the tally (the saga and the signer count again)."""
    stored = platform.intents.intent(op.id, intent_kind(op.kind))
    if stored is None or op.state != "awaiting_approval":
        raise InvalidState(f"{op.id} is not awaiting approval ({op.state})")
    intent, required = stored
    now = datetime.now(UTC)
    operators = platform.verified.operators()
    asker = requester(intent)
    mine = count_approvals(intent, [approval], operators, asker, now)
    if mine.refused:
        reason = mine.refused[0].reason
        if reason is Refusal.REQUESTER:
            raise ApprovalRefused(f"{operator} requested this {op.kind}")
        if reason is Refusal.EXPIRED:
            raise ApprovalExpired(f"the intent of {op.id} expired")
        if reason is Refusal.OTHER_INTENT:
            raise ApprovalOfOtherIntent(f"not the intent of {op.id}")
        raise ApprovalSignatureInvalid(f"{reason.value}")
    if mine.counted[0].operator != operator:
        raise Forbidden("an approval is handed in by the operator whose key signed it")
    before = platform.intents.approvals(intent.hash())
    counted = count_approvals(intent, before, operators, asker, now)
    if approval not in before and operator in counted.operators:
        raise ApprovalRefused(f"{operator} has approved already")
    if counted.met(required) and approval not in before:
        raise InvalidState(f"{op.id} is approved already")
    platform.intents.add_approval(approval, operator)
    tally = count_approvals(intent, [*before, approval], operators, asker, now)
    return ApprovalView(
        required=required, approvers=sorted(tally.operators), complete=tally.met(required)
    )
