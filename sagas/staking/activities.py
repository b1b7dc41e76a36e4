"""The stake and unstake sagas' activities: each idempotent by operation id (ledger ids
and step names derive from it), each recording its step with the event that reports it.

Books (decision 0028; docs/staking.md): a stake reserves the amount from the client's
available balance towards `staked:<client>:<validator>:ATOM` and the fee towards the
omnibus (the client's own address pays it); once the delegation is in a block both are
posted. An unstake reserves from staked towards `unbonding:...`, posts once undelegated,
and when the chain releases it moves what came back to available; what the chain cut
while it unbonded (a slash) leaves the books as it left the chain (to the omnibus). A
redelegation reserves from staked with the source towards staked with the destination
and posts once its shares moved (decision 0033).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any

from temporalio import activity

from sagas import accounts, approvals
from sagas.errors import ChainRejected, CustodyError, DependencyUnavailable, KeyAccessDenied
from sagas.events import Envelope
from sagas.governance import Governance
from sagas.intents import Intent
from sagas.ledger import Account, AccountKind, PostPending, Transfer, VoidPending
from sagas.operations import step_event_id
from sagas.ports import Delegations, IntentStore, Ledger, OperationStore, PolicyStore
from sagas.records import RecordedSteps, step_event
from sagas.staking import (
    Broadcast,
    Decision,
    Ended,
    RedelegateInput,
    StakeInput,
    Tally,
    TxOutcome,
    UnstakeInput,
)
from sagas.staking.events import (
    FAILED_ALERT,
    StakingFailed,
    StakingStep,
    redelegation_event_type,
    stake_event_type,
    unstake_event_type,
)
from sagas.staking.intent import position_kind, redelegate_intent, stake_intent, unstake_intent
from sagas.staking.positions import settled_position
from sagas.staking.rewards import BPS, commission
from sagas.steps import typed_errors
from sagas.topics import ALERTS
from sagas.withdrawal.intent import SIGNING_GRACE

SOURCE = "/custody/staking"
log = logging.getLogger("custody.staking")
POSITION_READS = 4  # attempts at reading a settlement's position before recording none
Request = StakeInput | UnstakeInput | RedelegateInput


def event(req: Request, step: str, **data: Any) -> tuple[str, Envelope]:
    if isinstance(req, RedelegateInput):
        data["source_validator"] = req.source
    payload = StakingStep(
        operation_id=req.operation_id,
        client_id=req.client_id,
        asset=req.asset,
        amount=str(req.amount),
        validator=req.validator,
        delegator=req.delegator,
        stake_id=None if isinstance(req, StakeInput) else req.stake_id,
        **data,
    )
    return step_event(
        req.operation_id,
        step,
        payload,
        source=SOURCE,
        event_type=(
            unstake_event_type
            if isinstance(req, UnstakeInput)
            else redelegation_event_type
            if isinstance(req, RedelegateInput)
            else stake_event_type
        ),
        subject=accounts.client(req.client_id, req.asset),
    )


def reserve_id(operation_id: str) -> str:
    return f"{operation_id}:reserve"


def fee_id(operation_id: str) -> str:
    return f"{operation_id}:fee"


def _legs(req: Request) -> tuple[str, str]:
    """(from, to) of the amount: available -> staked, staked -> unbonding, or staked with
    the source -> staked with the destination."""
    c, v, a = req.client_id, req.validator, req.asset
    if isinstance(req, UnstakeInput):
        return accounts.staked(c, v, a), accounts.unbonding(c, v, a)
    if isinstance(req, RedelegateInput):
        return accounts.staked(c, req.source, a), accounts.staked(c, v, a)
    return accounts.client(c, a), accounts.staked(c, v, a)


class StakingActivities(RecordedSteps):
    def __init__(
        self,
        ledger: Ledger,
        operations: OperationStore,
        policies: PolicyStore,
        intents: IntentStore,
        governance: Governance,
        delegations: Delegations,
        fee_cap: Callable[[str], int],
        pause: Callable[[str], None] = lambda _step: None,
        *,
        commission_bps: int = 0,
    ) -> None:
        """`commission_bps`: the platform's share of the rewards a transaction pays the
        client on the way (as of a claim's: sagas/staking/rewards.py `commission`)."""
        if not 0 <= commission_bps <= BPS:
            raise ValueError(f"commission of {commission_bps} bps")
        self._commission_bps = commission_bps
        self._ledger = ledger
        self._ops = operations
        self._policies = policies
        self._intents = intents
        self._governance = governance
        self._delegations = delegations
        self._fee_cap = fee_cap
        self._pause = pause

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.reserve,
            self.decide,
            self.record_intent,
            self.count_approvals,
            self.mark_approved,
            self.broadcast,
            self.outcome,
            self.settle,
            self.unbonding_balance,
            self.release,
            self.void,
        ]

    @activity.defn(name="staking.reserve")
    def reserve(self, req: Request) -> Ended | None:
        """Reserve the amount and the fee (pending transfers): two stakes never spend one
        balance, an unstake never more than is staked with the validator. A refusal
        ends the saga with the ledger's code (None: reserved)."""
        recorded = self._recorded(req.operation_id, "rejected")
        if recorded is not None:
            return Ended(
                operation_id=req.operation_id,
                state="rejected",
                error_code=str(recorded.get("error_code")),
                detail=str(recorded.get("detail", "")),
            )
        source, target = _legs(req)
        c, v, a = req.client_id, req.validator, req.asset
        for account_id in (accounts.staked(c, v, a), accounts.unbonding(c, v, a)):
            self._ledger.open_account(
                Account(id=account_id, asset=a, kind=AccountKind.STAKING_LOCKED, owner=c)
            )
        try:
            self._ledger.submit(
                [
                    Transfer(
                        id=reserve_id(req.operation_id),
                        debit_account=source,
                        credit_account=target,
                        asset=a,
                        amount=req.amount,
                        pending=True,
                        reference=req.operation_id,
                    ),
                    Transfer(
                        id=fee_id(req.operation_id),
                        debit_account=accounts.client(c, a),
                        credit_account=accounts.omnibus(a),
                        asset=a,
                        amount=req.fee,
                        pending=True,
                        reference=req.operation_id,
                    ),
                ]
            )
        except CustodyError as exc:
            if exc.transient:
                raise
            detail = {"error_code": exc.code, "detail": exc.detail}
            self._ops.advance(
                req.operation_id,
                "rejected",
                [event(req, "rejected", **detail)],
                detail=detail,
                state="rejected",
                error_code=exc.code,
            )
            return Ended(
                operation_id=req.operation_id,
                state="rejected",
                error_code=exc.code,
                detail=exc.detail,
            )
        self._ops.advance(req.operation_id, "reserved", [event(req, "reserved")], state="reserved")
        self._pause("reserve")
        return None

    @activity.defn(name="staking.decide")
    def decide(self, req: Request) -> Decision:
        """The client's policy for the asset, as the signer applies it to a stake: above
        the per-transaction limit is denied; above the approval threshold needs the
        quorum; no policy is a denial. Once recorded it is the decision."""
        recorded = self._recorded(req.operation_id, "policy_decided")
        if recorded is not None:
            return Decision.model_validate(recorded)
        with typed_errors():
            return self._decide(req)

    def _decide(self, req: Request) -> Decision:
        policy = self._policies.current(req.client_id, req.asset)
        if policy is None:
            decision = Decision(outcome="deny", rule="no_policy", detail="no policy for ATOM")
        else:
            rules = policy.rules
            limit, threshold = rules.per_transaction_limit, rules.approval_threshold
            if limit is not None and req.amount > limit:
                decision = Decision(
                    outcome="deny",
                    rule="per_transaction_limit",
                    detail=f"above the per-transaction limit of {limit}",
                    policy_version=policy.version,
                )
            elif threshold is not None and req.amount > threshold:
                decision = Decision(
                    outcome="needs_approval",
                    rule="approval_threshold",
                    detail=f"above {threshold}: {rules.approval_quorum} approvals",
                    policy_version=policy.version,
                    approvals_required=rules.approval_quorum,
                )
            else:
                decision = Decision(
                    outcome="allow", rule="within_limits", policy_version=policy.version
                )
        detail = decision.model_dump(mode="json")
        self._ops.advance(
            req.operation_id,
            "policy_decided",
            [event(req, "policy_decided", **detail)],
            detail=detail,
        )
        return decision

    def _intent(self, req: Request, decision: Decision) -> Intent:
        expires = req.requested_at + timedelta(seconds=req.approval_ttl_seconds) + SIGNING_GRACE
        # The fee the books reserved is the most the signer may let the chain take: never
        # the signer's own (higher) cap, which the books could not post.
        cap = min(self._fee_cap(req.asset), req.fee)
        if not isinstance(req, StakeInput):
            stored = self._intents.intent(req.stake_id, position_kind(req.stake_id))
            if stored is None:
                raise KeyAccessDenied(f"{req.operation_id}: no position {req.stake_id} on record")
            if isinstance(req, RedelegateInput):
                if stored[0].destination != req.source:
                    raise KeyAccessDenied(
                        f"{req.operation_id}: the position {req.stake_id} is not with {req.source}"
                    )
                return redelegate_intent(
                    req.operation_id,
                    stored[0],
                    req.amount,
                    req.validator,
                    cap,
                    decision.policy_version,
                    expires,
                    req.requested_by,
                    req.request,
                )
            return unstake_intent(
                req.operation_id,
                stored[0],
                req.amount,
                cap,
                decision.policy_version,
                expires,
                req.requested_by,
                req.request,
            )
        return stake_intent(
            req.operation_id,
            req.client_id,
            req.asset,
            req.amount,
            req.validator,
            cap,
            decision.policy_version,
            expires,
            req.requested_by,
            req.request,
        )

    def _kind(self, req: Request) -> str:
        if isinstance(req, RedelegateInput):
            return "redelegate"
        return "unstake" if isinstance(req, UnstakeInput) else "stake"

    @activity.defn(name="staking.record_intent")
    def record_intent(self, req: Request, decision: Decision) -> str:
        """The intent (what operators approve, what the signer checks), stored once. A
        position the intent cannot name is refused (KeyAccessDenied, its code typed)."""
        with typed_errors():
            return self._record_intent(req, decision)

    def _record_intent(self, req: Request, decision: Decision) -> str:
        return approvals.record_intent(
            self._ops,
            self._intents,
            req.operation_id,
            self._kind(req),
            lambda: self._intent(req, decision),
            decision.approvals_required,
            decision.outcome == "needs_approval",
            lambda detail: event(req, "intent", **detail),
        )

    @activity.defn(name="staking.count_approvals")
    def count_approvals(self, req: Request) -> Tally:
        """The valid signed approvals over the intent by distinct registered operators
        other than the requester (the signer counts them again)."""
        with typed_errors():
            return self._tally(req)

    def _tally(self, req: Request) -> Tally:
        return approvals.tally(
            self._ops,
            self._intents,
            self._governance,
            req.operation_id,
            self._kind(req),
            lambda step, operator, n: event(req, step, operator=operator, approvals=n),
        )

    @activity.defn(name="staking.mark_approved")
    def mark_approved(self, req: Request) -> None:
        with typed_errors():
            approvals.mark_approved(self._ops, req.operation_id, event(req, "approved"))

    @activity.defn(name="staking.broadcast")
    def broadcast(self, req: Request) -> Broadcast:
        """Sign (the signer checks it against the intent) and broadcast the operation's one
        transaction; again the same bytes on a retry. A refusal before anything was
        broadcast ends the saga (the reservations are voided)."""
        op, who, to, amount, fee = (
            req.operation_id, req.delegator, req.validator, req.amount, req.fee
        )  # fmt: skip
        try:
            if isinstance(req, RedelegateInput):
                tx_hash = self._delegations.redelegate(op, who, req.source, to, amount, fee)
            elif isinstance(req, UnstakeInput):
                tx_hash = self._delegations.undelegate(op, who, to, amount, fee)
            else:
                tx_hash = self._delegations.delegate(op, who, to, amount, fee)
        except (ChainRejected, KeyAccessDenied) as exc:
            log.warning("%s: not broadcast: %s", req.operation_id, exc)
            return Broadcast(error_code=exc.code, detail=exc.detail)
        self._ops.advance(
            req.operation_id,
            "broadcast",
            [event(req, "broadcast", tx_hash=tx_hash)],
            detail={"tx_hash": tx_hash},
            state="broadcast",
            tx_hash=tx_hash,
        )
        self._pause("broadcast")
        return Broadcast(tx_hash=tx_hash)

    @activity.defn(name="staking.outcome")
    def outcome(self, req: Request) -> TxOutcome:
        return self._delegations.outcome(req.operation_id)

    @activity.defn(name="staking.settle")
    def settle(self, req: Request, outcome: TxOutcome) -> None:
        """The chain's verdict. Succeeded: post the amount and the fee (a stake is active;
        an unstake unbonding), and book the rewards the transaction paid the client's
        address on the way. Failed in its block: the chain charged the fee and moved
        nothing else: void the amount, post the fee, alert. Never in a block (refused at
        the node): void both."""
        done = outcome.state == "succeeded"
        op, c, a = req.operation_id, req.client_id, req.asset
        if not 0 <= outcome.fee <= req.fee:
            raise ValueError(f"{op}: the chain charged {outcome.fee}, {req.fee} was reserved")
        fee: PostPending | VoidPending = (
            PostPending(id=f"{fee_id(op)}:post", pending_id=fee_id(op), amount=outcome.fee)
            if outcome.fee
            else VoidPending(id=f"{fee_id(op)}:void", pending_id=fee_id(op))
        )
        commands: list[Transfer | PostPending | VoidPending] = [fee]
        cut = commission(outcome.rewards, self._commission_bps) if done else 0
        if done and outcome.rewards:
            commands.append(
                Transfer(
                    id=f"{op}:rewards",
                    debit_account=accounts.omnibus(a),
                    credit_account=accounts.client(c, a),
                    asset=a,
                    amount=outcome.rewards,
                    reference=outcome.tx_hash,
                )
            )
        if cut:  # the platform's share, as of a claim's (it stays at the client's address)
            self._ledger.open_account(
                Account(id=accounts.staking_commission(a), asset=a, kind=AccountKind.FEES)
            )
            commands.append(
                Transfer(
                    id=f"{op}:commission",
                    debit_account=accounts.client(c, a),
                    credit_account=accounts.staking_commission(a),
                    asset=a,
                    amount=cut,
                    reference=outcome.tx_hash,
                )
            )
        if done and isinstance(req, RedelegateInput):
            commands += self._redelegated(req, outcome)
        elif done:
            commands.append(
                PostPending(id=f"{req.operation_id}:post", pending_id=reserve_id(req.operation_id))
            )
        else:
            commands.append(
                VoidPending(id=f"{req.operation_id}:void", pending_id=reserve_id(req.operation_id))
            )
        self._ledger.submit(commands)
        self._pause("settle")
        unstake = isinstance(req, UnstakeInput)
        data: dict[str, Any] = {
            "tx_hash": outcome.tx_hash,
            "height": outcome.height,
            "fee": str(outcome.fee),
            "rewards": str(outcome.rewards) if outcome.rewards else None,
        }
        if cut:
            data["commission"] = str(cut)
        if done:
            step = "unbonding" if unstake else "active"
            if outcome.completion_time is not None:
                data["completion_time"] = outcome.completion_time.astimezone(UTC).isoformat()
            if isinstance(req, RedelegateInput):
                data["moved"] = str(req.amount if outcome.moved is None else outcome.moved)
            position = self._position_after(req, step, outcome.height, req.validator)
            if isinstance(req, RedelegateInput) and position:
                # The source's too: the slashing watch judges both (decision 0033).
                source = self._position_after(req, step, outcome.height, req.source)
                position["source_position"] = source
            moved = int(data.get("moved") or req.amount)
            self._ops.advance(
                req.operation_id,
                step,
                [event(req, step, **data)],
                # `held`: what the position holds at its validator (a redelegation: what
                # the chain moved there, not what was asked).
                detail={
                    **data,
                    **position,
                    **({"held": str(moved)} if moved != req.amount else {}),
                },
                state=step,
                fee=outcome.fee,
            )
            return
        data["detail"] = outcome.detail
        self._ops.advance(
            req.operation_id,
            "failed",
            [event(req, "failed", **data), self._alert(req, "CUS-4221", outcome.detail)],
            detail=data,
            state="failed",
            error_code="CUS-4221",
            fee=outcome.fee,
        )

    def _redelegated(
        self, req: RedelegateInput, outcome: TxOutcome
    ) -> list[Transfer | PostPending | VoidPending]:
        """What the chain moved to the destination is posted there; what it kept back (its
        truncation at a source rate below 1: a unit at most) leaves the books as it left
        the client's stake, from the source to the omnibus, in the same submission (and
        the position holds that much less: its step's `held`); what it moved beyond the
        amount (a validator's last delegator takes its leftover tokens) comes in from the
        omnibus."""
        op, c, a = req.operation_id, req.client_id, req.asset
        moved = req.amount if outcome.moved is None else outcome.moved
        if moved < 0:
            raise ValueError(f"{op}: the chain moved {moved} of {req.amount}")
        commands: list[Transfer | PostPending | VoidPending] = [
            PostPending(id=f"{op}:post", pending_id=reserve_id(op), amount=min(moved, req.amount))
            if moved
            else VoidPending(id=f"{op}:void", pending_id=reserve_id(op))
        ]
        if moved > req.amount:
            # The last delegator of a validator takes its leftover tokens with its shares:
            # the chain moved more than asked; the books follow it from the omnibus.
            commands.append(
                Transfer(
                    id=f"{op}:leftover",
                    debit_account=accounts.omnibus(a),
                    credit_account=accounts.staked(c, req.validator, a),
                    asset=a,
                    amount=moved - req.amount,
                    reference=outcome.tx_hash or op,
                )
            )
        if moved < req.amount:
            commands.append(
                Transfer(
                    id=f"{op}:truncated",
                    debit_account=accounts.staked(c, req.source, a),
                    credit_account=accounts.omnibus(a),
                    asset=a,
                    amount=req.amount - moved,
                    reference=outcome.tx_hash or op,
                )
            )
        return commands

    def _position_after(
        self, req: Request, step: str, height: int | None, validator: str
    ) -> dict[str, Any]:
        """The delegation's shares and its validator's rate after the transaction's block:
        what the slashing watch compares the chain with (sagas/staking/slashing.py). Read
        once (not again once the step is recorded). A node that refuses the height (behind
        it, or pruned) is asked again on the activity's next attempts; after those, empty:
        the watch then alerts instead of judging the position."""
        if height is None or any(s.step == step for s in self._ops.timeline(req.operation_id)):
            return {}
        try:
            view = self._delegations.delegation(req.delegator, validator, height)
        except (ValueError, LookupError) as exc:
            if activity.in_activity() and activity.info().attempt < POSITION_READS:
                raise DependencyUnavailable(f"no position at height {height}: {exc}") from exc
            log.warning("%s: no position at height %s: %s", req.operation_id, height, exc)
            return {}
        return settled_position(view, height)

    @activity.defn(name="staking.unbonding_balance")
    def unbonding_balance(self, req: UnstakeInput, height: int) -> int | None:
        return self._delegations.unbonding_balance(req.delegator, req.validator, height)

    @activity.defn(name="staking.release")
    def release(self, req: UnstakeInput, released: int) -> None:
        """The chain released the unbonding: what it gave back to the client's available
        balance, what it cut (a slash while it unbonded) out of the books with it."""
        c, v, a = req.client_id, req.validator, req.asset
        if not 0 <= released <= req.amount:
            raise ValueError(f"{req.operation_id}: released {released} of {req.amount}")
        commands = []
        if released:
            commands.append(
                Transfer(
                    id=f"{req.operation_id}:release",
                    debit_account=accounts.unbonding(c, v, a),
                    credit_account=accounts.client(c, a),
                    asset=a,
                    amount=released,
                    reference=req.operation_id,
                )
            )
        slashed = req.amount - released
        if slashed:
            commands.append(
                Transfer(
                    id=f"{req.operation_id}:slashed",
                    debit_account=accounts.unbonding(c, v, a),
                    credit_account=accounts.omnibus(a),
                    asset=a,
                    amount=slashed,
                    reference=req.operation_id,
                )
            )
        if commands:
            self._ledger.submit(commands)
        self._pause("release")
        data = {"released": str(released), "slashed": str(slashed)}
        self._ops.advance(
            req.operation_id,
            "completed",
            [event(req, "completed", **data)],
            detail=data,
            state="completed",
        )

    def _alert(self, req: Request, code: str | None, detail: str) -> tuple[str, Envelope]:
        alert = StakingFailed(
            operation_id=req.operation_id,
            client_id=req.client_id,
            asset=req.asset,
            amount=str(req.amount),
            validator=req.validator,
            error_code=code,
            detail=detail,
        )
        return (
            ALERTS.name,
            Envelope(
                id=step_event_id(req.operation_id, "failed_alert"),
                source=SOURCE,
                type=FAILED_ALERT,
                subject=req.operation_id,
                data=alert.model_dump(mode="json"),
            ),
        )

    @activity.defn(name="staking.void")
    def void(self, req: Request, ended: Ended) -> None:
        """End before broadcast: release both reservations, record why."""
        op = req.operation_id
        self._ledger.submit(
            [
                VoidPending(id=f"{op}:void", pending_id=reserve_id(op)),
                VoidPending(id=f"{fee_id(op)}:void", pending_id=fee_id(op)),
            ]
        )
        events = [event(req, ended.state, error_code=ended.error_code, detail=ended.detail)]
        if ended.state == "failed":
            events.append(self._alert(req, ended.error_code, ended.detail))
        self._ops.advance(
            op,
            ended.state,
            events,
            detail={"error_code": ended.error_code, "detail": ended.detail},
            state=ended.state,
            error_code=ended.error_code,
        )
