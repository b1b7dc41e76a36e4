"""Rewards on a schedule (issue 14): each run of the `StakingRewards` workflow (started by
a Temporal schedule every `staking_rewards_every_seconds`) reads every client's pending
rewards from the chain, claims them where they are worth a claim, and books what the
chain paid.

Per client with an active delegation: the rewards outstanding with every validator it
is staked with (whole units of the denom: the least a claim pays) -> if at least
`min_claim`, one claim transaction from the client's own delegator address, signed by
the signer (which allows one claim per address per `claim_every`) -> in a block ->
booked, all or nothing: the gross reward the chain paid (from the transaction's events)
omnibus -> client, the network fee client -> omnibus, and the platform's commission
client -> `fees:staking:<asset>`. The commission is `gross * commission_bps // 10_000`:
rounded down, in the client's favour. The booking is a step of the client's oldest
active stake (`rewards:<claim id>`), with its event.

A worker that dies anywhere re-runs only the step it was in: the pending read and the
claim's broadcast are in the workflow's history, a claim is one transaction per claim
id for ever, and the booking's transfer ids and step are the claim's.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from sagas import accounts
    from sagas.errors import ChainRejected, CustodyError, KeyAccessDenied
    from sagas.events import Envelope
    from sagas.ledger import Account, AccountKind, Transfer
    from sagas.ports import Delegations, Ledger, OperationStore
    from sagas.records import step_event
    from sagas.staking import Broadcast, TxOutcome
    from sagas.staking.events import (
        REWARDS_SKIPPED,
        StakingRewards,
        stake_event_type,
    )
    from sagas.staking.positions import held_positions
    from sagas.steps import SEND, WITHDRAW, step
    from sagas.topics import ALERTS

REWARDS_WORKFLOW = "StakingRewards"
SOURCE = "/custody/staking/rewards"
BPS = 10_000
log = logging.getLogger("custody.staking.rewards")


def commission(gross: int, bps: int) -> int:
    """The platform's commission on `gross` rewards: `bps` basis points, rounded down (in
    the client's favour). Integers only."""
    if gross < 0 or not 0 <= bps <= BPS:
        raise ValueError(f"commission of {gross} at {bps} bps")
    return gross * bps // BPS


def claim_id(client_id: str, run: str) -> str:
    """One claim per client per run of the schedule."""
    return f"rwd:{client_id}:{run}"


class RewardsInput(BaseModel):
    """A run's terms, from settings (the schedule's action carries them)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    asset: str = "ATOM"
    commission_bps: StrictInt = Field(ge=0, le=BPS, description="the platform's share")
    claim_fee: StrictInt = Field(gt=0, description="the network fee a claim offers")
    min_claim: StrictInt = Field(gt=0, description="claim only if at least this is pending")
    poll_seconds: int = Field(default=5, ge=1)


class RewardsPosition(BaseModel):
    """A client's delegations with rewards to claim: from its own delegator address, to
    every validator it has ATOM staked with; booked on its oldest active stake."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    delegator: str
    validators: list[str]
    stake_id: str


class Booked(BaseModel):
    client_id: str
    claim_id: str
    gross: StrictInt = 0
    fee: StrictInt = 0
    commission: StrictInt = 0
    state: str = Field(description="booked, failed (the fee only), skipped, refused")


class RewardsResult(BaseModel):
    run: str
    claims: list[Booked] = []


class RewardsActivities:
    def __init__(
        self, ledger: Ledger, operations: OperationStore, delegations: Delegations
    ) -> None:
        self._ledger = ledger
        self._ops = operations
        self._delegations = delegations

    def all(self) -> list[Any]:
        return [self.positions, self.pending, self.claim, self.claim_outcome, self.book]

    @activity.defn(name="staking_rewards.positions")
    def positions(self, req: RewardsInput) -> list[RewardsPosition]:
        """Each client with ATOM staked (a posted balance in a `staked:` account of an
        active stake), its delegator and validators, oldest stake first."""
        by_client: dict[str, RewardsPosition] = {}
        for held in held_positions(self._ops, self._ledger, req.asset):
            known = by_client.get(held.client_id)
            if known is None:
                by_client[held.client_id] = RewardsPosition(
                    client_id=held.client_id,
                    delegator=held.delegator,
                    validators=[held.validator],
                    stake_id=held.stake_ids[0],
                )
            else:
                known.validators.append(held.validator)
        return list(by_client.values())

    @activity.defn(name="staking_rewards.pending")
    def pending(self, position: RewardsPosition) -> int:
        return sum(
            self._delegations.pending_rewards(position.delegator, v) for v in position.validators
        )

    @activity.defn(name="staking_rewards.claim")
    def claim(self, req: RewardsInput, position: RewardsPosition, claim: str) -> Broadcast:
        """Broadcast the claim (once per claim id: a retry hands the chain the same
        bytes). The signer's refusal (one claim per address per period) or the chain's
        is an answer, not an error: nothing was paid."""
        try:
            tx_hash = self._delegations.claim_rewards(
                claim, position.delegator, position.validators, req.claim_fee
            )
        except (KeyAccessDenied, ChainRejected) as exc:
            log.warning("%s: claim refused: %s", claim, exc.detail)
            return Broadcast(error_code=exc.code, detail=exc.detail)
        return Broadcast(tx_hash=tx_hash)

    @activity.defn(name="staking_rewards.claim_outcome")
    def claim_outcome(self, claim: str) -> TxOutcome:
        return self._delegations.outcome(claim)

    @activity.defn(name="staking_rewards.book")
    def book(
        self, req: RewardsInput, position: RewardsPosition, claim: str, outcome: TxOutcome
    ) -> Booked:
        """What the claim's transaction did, in the books: succeeded, the gross reward in,
        the fee and the commission out; failed in its block, the fee only (and an alert);
        never in a block, nothing. Once: the transfers' ids and the step are the claim's."""
        a, c = req.asset, position.client_id
        if outcome.state == "pending":
            raise ValueError(f"{claim}: booked before it is in a block")
        if not 0 <= outcome.fee <= req.claim_fee:
            raise ValueError(f"{claim}: the chain charged {outcome.fee}, {req.claim_fee} offered")
        gross = outcome.rewards if outcome.state == "succeeded" else 0
        cut = commission(gross, req.commission_bps)
        self._ledger.open_account(
            Account(id=accounts.staking_commission(a), asset=a, kind=AccountKind.FEES)
        )
        moves = [
            (f"{claim}:rewards", accounts.omnibus(a), accounts.client(c, a), gross),
            (f"{claim}:fee", accounts.client(c, a), accounts.omnibus(a), outcome.fee),
            (f"{claim}:commission", accounts.client(c, a), accounts.staking_commission(a), cut),
        ]
        commands = [
            Transfer(id=i, debit_account=d, credit_account=k, asset=a, amount=n, reference=claim)
            for i, d, k, n in moves
            if n > 0
        ]
        state = "booked" if outcome.state == "succeeded" else "failed"
        try:
            if commands:
                self._ledger.submit(commands)
        except CustodyError as exc:
            if exc.transient:
                raise
            state = "unbooked"  # the books refused what the chain did: an operator's case
            log.error("%s: the ledger refused the claim's booking: %s", claim, exc.detail)
        data = StakingRewards(
            operation_id=claim,
            stake_id=position.stake_id,
            client_id=c,
            asset=a,
            delegator=position.delegator,
            validators=position.validators,
            state=state,
            gross=str(gross),
            fee=str(outcome.fee),
            commission=str(cut),
            net=str(gross - outcome.fee - cut) if state == "booked" else None,
            tx_hash=outcome.tx_hash,
            height=outcome.height,
            detail=outcome.detail or None,
        )
        step = f"rewards:{claim}"
        events = [_event(position, step, data)]
        if state != "booked":
            events.append(
                (
                    ALERTS.name,
                    Envelope(
                        id=f"{claim}:alert",
                        source=SOURCE,
                        type=REWARDS_SKIPPED,
                        subject=claim,
                        data=data.model_dump(mode="json", exclude_none=True),
                    ),
                )
            )
        self._ops.advance(position.stake_id, step, events, detail=data.model_dump(mode="json"))
        return Booked(
            client_id=c, claim_id=claim, gross=gross, fee=outcome.fee, commission=cut, state=state
        )


def _event(position: RewardsPosition, step: str, data: StakingRewards) -> tuple[str, Envelope]:
    return step_event(
        position.stake_id,
        step,
        data,
        source=SOURCE,
        event_type=stake_event_type,
        subject=accounts.client(position.client_id, data.asset),
    )


@workflow.defn(name=REWARDS_WORKFLOW)
class StakingRewardsWorkflow:
    """One sweep: every client's rewards claimed (if worth a claim) and booked. Its
    history grows by a few events per client: a sweep over many thousands of clients
    would continue as new (not needed at this scale)."""

    @workflow.run
    async def run(self, req: RewardsInput) -> RewardsResult:
        run = workflow.info().workflow_id
        R = RewardsActivities
        result = RewardsResult(run=run)
        for p in await step(R.positions, req, profile=WITHDRAW):
            claim = claim_id(p.client_id, run)
            if await step(R.pending, p, profile=WITHDRAW) < req.min_claim:
                result.claims.append(Booked(client_id=p.client_id, claim_id=claim, state="skipped"))
                continue
            sent: Broadcast = await step(R.claim, req, p, claim, profile=SEND)
            if sent.tx_hash is None:
                result.claims.append(Booked(client_id=p.client_id, claim_id=claim, state="refused"))
                continue
            while True:
                outcome: TxOutcome = await step(R.claim_outcome, claim, profile=WITHDRAW)
                if outcome.state != "pending":
                    break
                await workflow.sleep(timedelta(seconds=req.poll_seconds))
            result.claims.append(await step(R.book, req, p, claim, outcome, profile=WITHDRAW))
        return result
