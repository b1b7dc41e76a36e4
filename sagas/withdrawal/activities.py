"""The withdrawal saga's activities: each idempotent by operation id, each recording its
step (with the events that report it) in the operation store.

`pause` is a fault-injection point for crash tests (services/worker --pause-at): it is
called with a step's name after the step's effect and before the activity returns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from sagas import accounts, approvals
from sagas.errors import CannotPay, ChainRejected, CustodyError, InvalidState, KeyAccessDenied
from sagas.events import Envelope
from sagas.governance import Governance
from sagas.ledger import PostPending, Transfer, VoidPending
from sagas.operations import step_event_id
from sagas.policy import VELOCITY_WINDOW, WithdrawalRequest, evaluate
from sagas.ports import IntentStore, Ledger, OperationStore, Payouts, PolicyStore, Screening
from sagas.records import RecordedSteps, step_event
from sagas.topics import ALERTS
from sagas.withdrawal import (
    Approval,
    ApprovalView,
    ChainStatus,
    Completion,
    Ended,
    OperatorDecision,
    PolicyOutcome,
    ReserveOutcome,
    ScreenOutcome,
    SendOutcome,
    WithdrawalInput,
)
from sagas.withdrawal.events import (
    FAILED_ALERT,
    SCREENED_ALERT,
    STUCK_ALERT,
    WithdrawalFailed,
    WithdrawalScreened,
    WithdrawalStep,
    WithdrawalStuck,
    event_type,
)
from sagas.withdrawal.intent import withdrawal_intent

SOURCE = "/custody/withdrawal"
log = logging.getLogger("custody.withdrawal")


def event(req: WithdrawalInput, step: str, **data: Any) -> tuple[str, Envelope]:
    """custody.withdrawal.<step>.v1 on the events topic, keyed by the client's account."""
    payload = WithdrawalStep(
        operation_id=req.operation_id,
        client_id=req.client_id,
        asset=req.asset,
        amount=str(req.amount),
        destination=req.destination,
        **data,
    )
    subject = accounts.client(req.client_id, req.asset)
    return step_event(
        req.operation_id, step, payload, source=SOURCE, event_type=event_type, subject=subject
    )


def reserve_id(operation_id: str) -> str:
    return f"{operation_id}:reserve"


def network_fee_id(operation_id: str) -> str:
    """The reservation of the network fee a client's own address pays (ATOM)."""
    return f"{operation_id}:netfee"


def client_pays_fee(chain: str) -> bool:
    """The chains whose withdrawals leave from the client's own address, which pays the
    network fee from the client's balance (Cosmos: decision 0035); elsewhere the platform's
    wallet pays and the fee is the platform's."""
    return chain == "cosmos"


class WithdrawalActivities(RecordedSteps):
    def __init__(
        self,
        ledger: Ledger,
        operations: OperationStore,
        policies: PolicyStore,
        payouts: Payouts,
        intents: IntentStore,
        governance: Governance,
        fee_cap: Callable[[str], int],
        screening: Screening,
        pause: Callable[[str], None] = lambda _step: None,
    ) -> None:
        """`fee_cap`: asset -> the most its network fee may be, in the fee asset's minor
        unit (what the intent states and the signer enforces)."""
        self._intents = intents
        self._screening = screening
        self._governance = governance
        self._fee_cap = fee_cap
        self._ledger = ledger
        self._ops = operations
        self._policies = policies
        self._payouts = payouts
        self._pause = pause

    def all(self) -> list[Callable[..., Any]]:
        """Every activity of the saga, as a worker registers them."""
        return [
            self.reserve,
            self.decide,
            self.record_approval,
            self.screen,
            self.compliance,
            self.record_intent,
            self.count_approvals,
            self.mark_approved,
            self.send,
            self.chain_status,
            self.rebroadcast,
            self.alert_stuck,
            self.act_on_decision,
            self.complete,
            self.void,
        ]

    @activity.defn(name="withdrawal.reserve")
    def reserve(self, req: WithdrawalInput) -> ReserveOutcome:
        """Reserve the amount (a pending transfer): concurrent withdrawals can never spend
        the same balance. A refusal ends the saga with the ledger's code."""
        recorded = self._recorded(req.operation_id, "rejected")
        if recorded is not None:  # a retry after the refusal was recorded: it stands
            return ReserveOutcome(
                reserved=False,
                error_code=str(recorded.get("error_code")),
                detail=str(recorded.get("detail", "")),
            )
        try:
            # The amount, and with it (or neither) the fee a client's own address pays.
            holds = [(reserve_id(req.operation_id), req.amount)]
            if client_pays_fee(req.chain):
                if req.network_fee <= 0 or not req.source:  # refused: nothing is reserved
                    raise InvalidState(f"{req.operation_id}: no source address or network fee")
                holds.append((network_fee_id(req.operation_id), req.network_fee))
            reserved = [
                Transfer(
                    id=hold,
                    debit_account=accounts.client(req.client_id, req.asset),
                    credit_account=accounts.omnibus(req.asset),
                    asset=req.asset,
                    amount=amount,
                    pending=True,
                    reference=req.operation_id,
                )
                for hold, amount in holds
            ]
            self._ledger.submit(reserved)
        except CustodyError as exc:
            if exc.transient:
                raise
            self._ops.advance(
                req.operation_id,
                "rejected",
                [event(req, "rejected", error_code=exc.code, detail=exc.detail)],
                detail={"error_code": exc.code, "detail": exc.detail},
                state="rejected",
                error_code=exc.code,
            )
            return ReserveOutcome(reserved=False, error_code=exc.code, detail=exc.detail)
        self._ops.advance(req.operation_id, "reserved", [event(req, "reserved")], state="reserved")
        self._pause("reserve")
        return ReserveOutcome(reserved=True)

    @activity.defn(name="withdrawal.decide")
    def decide(self, req: WithdrawalInput) -> PolicyOutcome:
        """The policy decision, recorded as an event (and so in the audit chain). Once
        recorded it is the decision: a retry returns it, not a new evaluation."""
        recorded = self._recorded(req.operation_id, "policy_decided")
        if recorded is not None:
            return PolicyOutcome.model_validate(recorded)
        policy = self._policies.current(req.client_id, req.asset)
        if policy is None:  # deny by default (the signer would refuse it too)
            outcome = PolicyOutcome(
                outcome="deny",
                rule="no_policy",
                detail="no policy for this client and asset, and no default for the asset",
                policy_version=0,
            )
        else:
            # Concurrent withdrawals requested after this one count too (at this one's time).
            recent = [
                (min(at, req.requested_at), amount)
                for at, amount in self._ops.recent_withdrawals(
                    req.client_id, req.asset, req.requested_at - VELOCITY_WINDOW, req.operation_id
                )
            ]
            if policy.rules.client_id != req.client_id:  # governance's default rules
                rules = policy.rules.model_copy(update={"client_id": req.client_id})
                policy = policy.model_copy(update={"rules": rules})
            decision = evaluate(
                policy,
                WithdrawalRequest(
                    client_id=req.client_id,
                    asset=req.asset,
                    amount=req.amount,
                    destination=req.destination,
                    requested_by=req.requested_by,
                    at=req.requested_at,
                ),
                recent,
            )
            outcome = PolicyOutcome(
                outcome=decision.outcome,
                rule=decision.rule,
                detail=decision.detail,
                policy_version=decision.policy_version,
                approvals_required=decision.approvals_required,
                screening_required=decision.screening_required,
                approval_quorum=policy.rules.approval_quorum,
            )
        detail = outcome.model_dump(mode="json")
        # `awaiting_approval` comes with the intent (record_intent): never a state in
        # which there is nothing to sign yet.
        self._ops.advance(
            req.operation_id,
            "policy_decided",
            [event(req, "policy_decided", **detail)],
            detail=detail,
        )
        return outcome

    @activity.defn(name="withdrawal.screen")
    def screen(self, req: WithdrawalInput) -> ScreenOutcome:
        """Screen the destination (the policy's screening_required): a hit holds the
        withdrawal for compliance review, with an alert. Once recorded it stands."""
        held = self._recorded(req.operation_id, "held")
        if held is not None:
            return ScreenOutcome(hit=str(held.get("detail", "screening hit")))
        if self._recorded(req.operation_id, "screened") is not None:
            return ScreenOutcome()
        hit = self._screening.check(req.chain, [req.destination])
        if hit is None:
            self._ops.advance(req.operation_id, "screened", [event(req, "screened")])
            return ScreenOutcome()
        alert = Envelope(
            id=step_event_id(req.operation_id, "screened_alert"),
            source=SOURCE,
            type=SCREENED_ALERT,
            subject=req.operation_id,
            data=WithdrawalScreened(
                operation_id=req.operation_id,
                client_id=req.client_id,
                asset=req.asset,
                amount=str(req.amount),
                destination=req.destination,
                detail=hit,
            ).model_dump(mode="json"),
        )
        self._ops.advance(
            req.operation_id,
            "held",
            [event(req, "held", detail=hit), (ALERTS.name, alert)],
            detail={"detail": hit},
            state="held",
        )
        return ScreenOutcome(hit=hit)

    @activity.defn(name="withdrawal.compliance")
    def compliance(self, req: WithdrawalInput, decision: OperatorDecision) -> bool:
        """Record compliance's decision on a held withdrawal: True if released."""
        released = decision.action == "release"
        step = "released" if released else "compliance_rejected"
        self._ops.advance(
            req.operation_id,
            step,
            [event(req, step, operator=decision.operator)],
            detail={"operator": decision.operator},
            # Released: it waits for a quorum's signatures over its intent (recorded next).
            state="reserved" if released else None,
        )
        return released

    @activity.defn(name="withdrawal.record_intent")
    def record_intent(self, req: WithdrawalInput, decision: PolicyOutcome) -> str:
        """The withdrawal's intent (what operators sign, what the signer pays), stored once
        with the approvals the policy asks for; its hash."""
        return approvals.record_intent(
            self._ops,
            self._intents,
            req.operation_id,
            "withdrawal",
            lambda: withdrawal_intent(req, decision.policy_version, self._intent_fee_cap(req)),
            decision.approvals_required,
            decision.outcome == "needs_approval",
            lambda detail: event(req, "intent", **detail),
        )

    def _intent_fee_cap(self, req: WithdrawalInput) -> int:
        """The most fee the intent lets the signer sign: the fee reserved from the client
        where its own address pays (ATOM: never more than the books can post), else the
        asset's cap (the platform's wallet pays)."""
        cap = self._fee_cap(req.asset)
        return min(cap, req.network_fee) if client_pays_fee(req.chain) else cap

    @activity.defn(name="withdrawal.record_approval")
    def record_approval(self, req: WithdrawalInput, approval: Approval, count: int) -> None:
        """Sagas started before signed approvals only (an approval by name)."""
        step = f"approval:{approval.operator}"
        self._ops.advance(
            req.operation_id,
            step,
            [event(req, step, operator=approval.operator, approvals=count)],
            detail={"operator": approval.operator, "approvals": count},
        )

    @activity.defn(name="withdrawal.count_approvals")
    def count_approvals(self, req: WithdrawalInput) -> ApprovalView:
        """Count the signed approvals handed in: valid signatures over this intent by
        distinct registered operators other than the requester (the signer counts them
        again). Each newly counted operator is a step and an event."""
        return approvals.tally(
            self._ops,
            self._intents,
            self._governance,
            req.operation_id,
            "withdrawal",
            lambda step, operator, n: event(req, step, operator=operator, approvals=n),
        )

    @activity.defn(name="withdrawal.mark_approved")
    def mark_approved(self, req: WithdrawalInput) -> None:
        """From here the signer will sign this operation (it checks this record)."""
        approvals.mark_approved(self._ops, req.operation_id, event(req, "approved"))

    @activity.defn(name="withdrawal.send")
    def send(self, req: WithdrawalInput) -> SendOutcome:
        """Build, sign (signer queue), record, broadcast: once per operation id."""
        try:
            tx_hash = self._payouts.send(
                req.operation_id,
                req.asset,
                req.destination,
                req.amount,
                source=req.source,
                fee=req.network_fee,
            )
        except (ChainRejected, KeyAccessDenied, CannotPay) as exc:
            # Nothing left the platform (the payouts checked that no attempt is recorded):
            # the saga voids the reservation, and the failure is alerted. A payment that
            # cannot be built (no coins, a gas cap) is not retried for ever.
            log.warning("withdrawal %s not sent: %s", req.operation_id, exc)
            return SendOutcome(error_code=exc.code, detail=exc.detail)
        self._pause("broadcast")
        self._ops.advance(
            req.operation_id,
            "broadcast",
            [event(req, "broadcast", tx_hash=tx_hash)],
            detail={"tx_hash": tx_hash},
            state="broadcast",
            tx_hash=tx_hash,
        )
        return SendOutcome(tx_hash=tx_hash)

    @activity.defn(name="withdrawal.chain_status")
    def chain_status(self, req: WithdrawalInput) -> ChainStatus:
        return self._payouts.status(req.operation_id, req.asset)

    @activity.defn(name="withdrawal.rebroadcast")
    def rebroadcast(self, req: WithdrawalInput) -> None:
        self._payouts.rebroadcast(req.operation_id)

    @activity.defn(name="withdrawal.alert_stuck")
    def alert_stuck(self, req: WithdrawalInput) -> None:
        alert = Envelope(
            id=step_event_id(req.operation_id, "stuck_alert"),
            source=SOURCE,
            type=STUCK_ALERT,
            subject=req.operation_id,
            data=WithdrawalStuck(
                operation_id=req.operation_id,
                client_id=req.client_id,
                asset=req.asset,
                stuck_after_seconds=req.stuck_after_seconds,
                action="POST /v1/withdrawals/{id}/decisions: rebroadcast, bump or keep_waiting",
            ).model_dump(mode="json"),
        )
        self._ops.advance(
            req.operation_id,
            "stuck_alert",
            [(ALERTS.name, alert), event(req, "stuck_alert")],
        )

    @activity.defn(name="withdrawal.act_on_decision")
    def act_on_decision(self, req: WithdrawalInput, decision: OperatorDecision) -> None:
        info = activity.info()
        step = f"operator_decision:{decision.operator}:{info.workflow_run_id}:{info.activity_id}"
        # A retry of a decision already acted on (or refused) does nothing again: a bump
        # retried after its replacement was sent would bump the bump.
        done = (self._recorded(req.operation_id, s) for s in (step, f"{step}:refused"))
        if any(d is not None for d in done):
            return
        if decision.action == "rebroadcast":
            self._payouts.rebroadcast(req.operation_id)
        elif (
            decision.action == "bump" and self._recorded(req.operation_id, f"{step}:bumped") is None
        ):
            try:
                tx_hash = self._payouts.bump(
                    req.operation_id, req.asset, req.destination, req.amount, decision.fee_percent
                )
            except (ChainRejected, KeyAccessDenied, CannotPay) as exc:
                # The chain kept the original, or the signer refused the replacement (a
                # fee above its cap): say so, and wait for the next decision rather than
                # failing the saga with the payment out and the reservation held.
                self._ops.advance(
                    req.operation_id,
                    f"{step}:refused",
                    [event(req, f"{step}:refused", error_code=exc.code, detail=exc.detail)],
                    detail={"error_code": exc.code, "detail": exc.detail},
                )
                return
            self._ops.advance(req.operation_id, f"{step}:bumped", tx_hash=tx_hash)
        self._ops.advance(
            req.operation_id,
            step,
            [event(req, step, **decision.model_dump(mode="json", exclude={"decision_id"}))],
            detail=decision.model_dump(mode="json"),
        )

    @activity.defn(name="withdrawal.complete")
    def complete(self, done: Completion) -> None:
        """Post the reservation and book the network fee: the platform pays it from its
        fee account (ATOM: the client's address paid it, and its reservation is posted
        for what the chain charged). A transaction that reverted moved nothing but the
        fee: void instead."""
        self._pause("post")
        op = self._ops.get(done.operation_id)
        assert op is not None and op.client_id is not None
        status = done.status
        commands: list[Transfer | PostPending | VoidPending] = []
        if status.state == "final":
            commands.append(
                PostPending(id=f"{op.id}:post", pending_id=reserve_id(op.id), amount=None)
            )
        else:
            commands.append(VoidPending(id=f"{op.id}:void", pending_id=reserve_id(op.id)))
        if client_pays_fee(op.chain):
            # The client's own address paid it (in a block, succeeded or not): the client's.
            commands.append(
                PostPending(
                    id=f"{network_fee_id(op.id)}:post",
                    pending_id=network_fee_id(op.id),
                    amount=status.fee,
                )
                if status.fee > 0
                else VoidPending(
                    id=f"{network_fee_id(op.id)}:void", pending_id=network_fee_id(op.id)
                )
            )
        elif status.fee > 0:
            commands.append(
                Transfer(
                    id=f"{op.id}:fee",
                    debit_account=accounts.network_fees(status.fee_asset),
                    credit_account=accounts.omnibus(status.fee_asset),
                    asset=status.fee_asset,
                    amount=status.fee,
                    reference=status.tx_hash,
                )
            )
        self._ledger.submit(commands)
        state = "completed" if status.state == "final" else "failed"
        req = _input_of(op)
        self._ops.advance(
            op.id,
            state,
            [
                event(
                    req,
                    state,
                    tx_hash=status.tx_hash,
                    fee=str(status.fee),
                    fee_asset=status.fee_asset,
                    confirmations=status.confirmations,
                )
            ],
            detail={"tx_hash": status.tx_hash, "fee": str(status.fee)},
            state=state,
            tx_hash=status.tx_hash,
            fee=status.fee,
            error_code=None if state == "completed" else ChainRejected.code,
        )

    @activity.defn(name="withdrawal.void")
    def void(self, ended: Ended) -> None:
        """End before broadcast: release the reservation, record why."""
        op = self._ops.get(ended.operation_id)
        assert op is not None
        voids = [VoidPending(id=f"{op.id}:void", pending_id=reserve_id(op.id))]
        if client_pays_fee(op.chain):
            voids.append(
                VoidPending(id=f"{network_fee_id(op.id)}:void", pending_id=network_fee_id(op.id))
            )
        self._ledger.submit(voids)
        events = [
            event(_input_of(op), ended.state, error_code=ended.error_code, detail=ended.detail)
        ]
        if ended.state == "failed":  # the desk hears of a payment that could not be made
            alert = WithdrawalFailed(
                operation_id=op.id,
                client_id=op.client_id or "",
                asset=op.asset,
                amount=str(op.amount),
                error_code=ended.error_code,
                detail=ended.detail,
            )
            events.append(
                (
                    ALERTS.name,
                    Envelope(
                        id=step_event_id(op.id, "failed_alert"),
                        source=SOURCE,
                        type=FAILED_ALERT,
                        subject=op.id,
                        data=alert.model_dump(mode="json"),
                    ),
                )
            )
        self._ops.advance(
            op.id,
            ended.state,
            events,
            detail={"error_code": ended.error_code, "detail": ended.detail},
            state=ended.state,
            error_code=ended.error_code,
        )


def _input_of(op: Any) -> WithdrawalInput:
    """Enough of the request to label an event (from the stored operation)."""
    return WithdrawalInput(
        operation_id=op.id,
        client_id=op.client_id,
        asset=op.asset,
        chain=op.chain,
        amount=op.amount,
        destination=op.destination or "",
        requested_by=op.requested_by,
        requested_at=op.created_at or datetime.now(UTC),
    )
