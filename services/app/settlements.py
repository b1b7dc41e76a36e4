"""Starting settlements (the API on demand; the worker's schedule uses the same input)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from sagas.errors import IdempotencyKeyMissing
from sagas.settlement import SettlementInput
from sagas.settlement.workflows import SettlementWorkflow
from services.app.withdrawals import KEY_PATTERN
from services.platform import Platform


def settlement_input(
    platform: Platform, requested_by: str = "schedule", settlement_id: str = ""
) -> SettlementInput:
    s = platform.settings
    return SettlementInput(
        settlement_id=settlement_id,
        counterparties=s.counterparties(),
        currency=s.trade_currency,
        platform_iban=s.bank_platform_iban,
        leg_timeout_seconds=s.settlement_leg_timeout_seconds,
        poll_seconds=s.settlement_poll_seconds,
        requested_by=requested_by,
    )


def settlement_id(key: str) -> str:
    if not KEY_PATTERN.fullmatch(key):
        raise IdempotencyKeyMissing(f"{key!r}")
    return f"st:{key}"


async def start_settlement(
    platform: Platform,
    temporal: Client,
    key: str,
    requested_by: str,
    leg_timeout_seconds: int | None = None,
) -> tuple[str, bool]:
    """Start the settlement named by the key: (its id, whether this call started it; a
    repeat finds the one started). Does not wait for the saga's first step."""
    sid = settlement_id(key)
    req = settlement_input(platform, requested_by, sid)
    if leg_timeout_seconds is not None:
        req = req.model_copy(update={"leg_timeout_seconds": leg_timeout_seconds})
    try:
        await temporal.start_workflow(
            SettlementWorkflow.run,
            req,
            id=sid,
            task_queue=platform.settings.saga_task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            memo={"requested_by": requested_by},  # the API shows it before the plan
        )
    except WorkflowAlreadyStartedError:
        return sid, False
    return sid, True
