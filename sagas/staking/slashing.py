"""Slashing (issue 14): each run of the `StakingWatch` workflow (a Temporal schedule every
`staking_watch_every_seconds`) compares every client's staked position with the chain
and books what the chain took.

A position is a client's delegation to one validator: the ledger's
`staked:<client>:<validator>:ATOM` against the delegation's balance on chain (its shares
at the validator's exchange rate, truncated). Delegations only change by the client's
own stakes and unstakes, or by a slash; so with none of the client's stakes or unstakes
to that validator in flight (between requested and settled), the chain holding less
than the books is a slash. The loss is booked, once: staked -> omnibus (it left the
chain, burnt), shared across the position's stakes in proportion to what each still
holds (rounded down, the remainder to the largest), each stake's state `slashed` with a
step `slashed:<slash id>` and its event, and one critical alert per position. A
validator found jailed is reported once per jailing (its unbonding height marks it) on
the stakes delegated to it, with an alert, whether or not it cost anything yet.

The scan only reads; a worker that dies after it scans again. A slash found is named by
the run (`slh:<client>:<validator>:<run>`): the ledger's transfer and the steps carry
that id, so the booking is one transfer and one set of steps however often it retries.
An unbonding slashed while it unbonds is the unstake saga's (it books what the chain
gives back, sagas/staking/workflows.py).
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from sagas import accounts
    from sagas.errors import CustodyError
    from sagas.events import Envelope
    from sagas.ledger import Transfer
    from sagas.operations import OperationRecord, Step, recorded_step
    from sagas.ports import Delegations, Ledger, OperationStore
    from sagas.records import step_event
    from sagas.staking.events import (
        JAILED_ALERT,
        SLASHED_ALERT,
        StakeSlashed,
        ValidatorJailed,
        stake_event_type,
    )
    from sagas.steps import WITHDRAW, step
    from sagas.topics import ALERTS

WATCH_WORKFLOW = "StakingWatch"
SOURCE = "/custody/staking/watch"
# A stake or unstake between its request and its settlement: the chain and the books may
# disagree by its amount, so its position is not compared until it settles.
IN_FLIGHT = ("requested", "reserved", "awaiting_approval", "approved", "broadcast")
HOLDING = ("active", "slashed")  # a stake's states while it holds a delegation
UNDONE = frozenset({"rejected", "expired", "failed"})  # an unstake that took nothing
log = logging.getLogger("custody.staking.watch")


def slash_id(client_id: str, validator: str, run: str) -> str:
    return f"slh:{client_id}:{validator}:{run}"


def slashed_from(timeline: list[Step]) -> int:
    """What slashes took from a stake: the losses its `slashed:` steps booked."""
    return sum(int(str(s.detail.get("loss", 0))) for s in timeline if s.step.startswith("slashed:"))


def left_of(stake: OperationRecord, unstakes: list[OperationRecord], slashed: int) -> int:
    """What of a stake is still staked: its amount less its unstakes that did not end
    rejected, expired or failed (those in progress count) and less what slashes took."""
    return max(0, stake.amount - sum(u.amount for u in unstakes if u.state not in UNDONE) - slashed)


def share_loss(loss: int, holdings: list[int]) -> list[int]:
    """`loss` split across holdings in proportion, rounded down, the remainder one unit at
    a time to the largest holdings first (ties: the earliest). Integers; the parts sum to
    `loss`, none above its holding unless the holdings are less than the loss (then the
    excess is the first's)."""
    if loss < 0 or any(h < 0 for h in holdings) or not holdings:
        raise ValueError(f"sharing {loss} over {holdings}")
    total = sum(holdings)
    if total <= loss:
        return [holdings[0] + loss - total, *holdings[1:]]
    parts = [loss * h // total for h in holdings]
    order = sorted(range(len(holdings)), key=lambda i: (-holdings[i], i))
    for i in order[: loss - sum(parts)]:
        parts[i] += 1
    return parts


class WatchInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    asset: str = "ATOM"


class Share(BaseModel):
    stake_id: str
    left: StrictInt = Field(description="what the stake held before the slash")
    loss: StrictInt


class Slash(BaseModel):
    """A position the chain holds less of than the books."""

    model_config = ConfigDict(frozen=True)

    slash_id: str
    client_id: str
    asset: str
    validator: str
    delegator: str
    booked: StrictInt = Field(description="the staked account before the slash")
    on_chain: StrictInt = Field(description="the delegation's balance on chain")
    jailed: bool
    shares: list[Share]

    @property
    def loss(self) -> int:
        return self.booked - self.on_chain


class Jailing(BaseModel):
    model_config = ConfigDict(frozen=True)

    validator: str
    unbonding_height: int
    stakes: list[tuple[str, str]] = Field(description="(stake id, client id) delegated to it")


class Scan(BaseModel):
    slashes: list[Slash] = []
    jailings: list[Jailing] = []


class WatchResult(BaseModel):
    run: str
    booked: list[str] = []
    unbooked: list[str] = []
    jailed: list[str] = []


class WatchActivities:
    def __init__(
        self, ledger: Ledger, operations: OperationStore, delegations: Delegations
    ) -> None:
        self._ledger = ledger
        self._ops = operations
        self._delegations = delegations

    def all(self) -> list[Any]:
        return [self.scan, self.book, self.jailed]

    def _busy(self) -> set[tuple[str, str]]:
        """(client, validator) with a stake or unstake in flight."""
        return {
            (op.client_id or "", op.destination or "")
            for kind in ("stake", "unstake")
            for op in self._ops.of_kind(kind, IN_FLIGHT)
        }

    def _staked(self, client_id: str, validator: str, asset: str) -> int:
        return self._ledger.balance(accounts.staked(client_id, validator, asset)).total

    @activity.defn(name="staking_watch.scan")
    def scan(self, req: WatchInput, run: str) -> Scan:
        """Every position the chain holds less of than the books (none in flight), and
        every jailed validator with stakes delegated to it. Reads only."""
        positions: dict[tuple[str, str], list[OperationRecord]] = {}
        for stake in self._ops.of_kind("stake", HOLDING):
            if stake.asset == req.asset and stake.client_id and stake.destination:
                positions.setdefault((stake.client_id, stake.destination), []).append(stake)
        states = {v: self._delegations.validator_state(v) for _c, v in positions}
        busy = self._busy()
        found: list[tuple[tuple[str, str], int, Slash]] = []
        for (c, v), stakes in positions.items():
            booked = self._staked(c, v, req.asset)
            if (c, v) in busy or booked <= 0:
                continue
            first = recorded_step(self._ops.timeline(stakes[0].id), "requested") or {}
            delegator = str(first.get("delegator") or "")
            if not delegator:
                continue
            on_chain = self._delegations.delegation(delegator, v)
            if on_chain >= booked:
                continue
            jailed = states[v].jailed
            slash = self._slash(req, run, c, v, delegator, stakes, booked, on_chain, jailed)
            found.append(((c, v), booked, slash))
        # Anything that started or settled while the chain was read is for the next run.
        busy = self._busy()
        slashes = [
            s
            for pair, booked, s in found
            if pair not in busy and self._staked(*pair, req.asset) == booked
        ]
        jailings = [
            Jailing(
                validator=v,
                unbonding_height=state.unbonding_height,
                stakes=[(s.id, c) for (c, w), held in positions.items() if w == v for s in held],
            )
            for v, state in states.items()
            if state.jailed
        ]
        return Scan(slashes=slashes, jailings=jailings)

    def _slash(
        self,
        req: WatchInput,
        run: str,
        client_id: str,
        validator: str,
        delegator: str,
        stakes: list[OperationRecord],
        booked: int,
        on_chain: int,
        jailed: bool,
    ) -> Slash:
        unstakes = self._ops.for_client(client_id, "unstake", limit=10_000)
        holdings = [
            left_of(
                s,
                [u for u in unstakes if u.id.startswith(f"uns:{s.id}:")],
                slashed_from(self._ops.timeline(s.id)),
            )
            for s in stakes
        ]
        losses = share_loss(booked - on_chain, holdings)
        return Slash(
            slash_id=slash_id(client_id, validator, run),
            client_id=client_id,
            asset=req.asset,
            validator=validator,
            delegator=delegator,
            booked=booked,
            on_chain=on_chain,
            jailed=jailed,
            shares=[
                Share(stake_id=s.id, left=h, loss=n)
                for s, h, n in zip(stakes, holdings, losses, strict=True)
            ],
        )

    @activity.defn(name="staking_watch.book")
    def book(self, slash: Slash) -> str:
        """The loss out of the client's staked account (to the omnibus: it left the
        chain), each stake's share on its timeline, state `slashed`, one critical alert.
        `booked`; `unbooked` if the books refused it (a reservation took the balance
        meanwhile: the next run finds it again)."""
        a, c, v = slash.asset, slash.client_id, slash.validator
        try:
            self._ledger.submit(
                [
                    Transfer(
                        id=slash.slash_id,
                        debit_account=accounts.staked(c, v, a),
                        credit_account=accounts.omnibus(a),
                        asset=a,
                        amount=slash.loss,
                        reference=slash.slash_id,
                    )
                ]
            )
        except CustodyError as exc:
            if exc.transient:
                raise
            log.error("%s: the ledger refused the slash: %s", slash.slash_id, exc.detail)
            return "unbooked"
        alert: tuple[str, Envelope] = (
            ALERTS.name,
            Envelope(
                id=f"{slash.slash_id}:alert",
                source=SOURCE,
                type=SLASHED_ALERT,
                subject=accounts.staked(c, v, a),
                data=self._payload(slash, None).model_dump(mode="json", exclude_none=True),
            ),
        )
        for n, share in enumerate(slash.shares):
            data = self._payload(slash, share)
            name = f"slashed:{slash.slash_id}"
            events = [self._event(share.stake_id, name, c, a, data)]
            if n == 0:
                events.append(alert)
            self._ops.advance(
                share.stake_id,
                name,
                events,
                detail=data.model_dump(mode="json", exclude_none=True),
                state="slashed",
            )
        log.critical("%s: the chain slashed %s of %s", slash.slash_id, slash.loss, slash.booked)
        return "booked"

    @activity.defn(name="staking_watch.jailed")
    def jailed(self, jailing: Jailing) -> bool:
        """Report a jailing once: a step on each stake delegated to the validator, the
        alert with the first. True if it was new."""
        name = f"jailed:{jailing.validator}:{jailing.unbonding_height}"
        new = False
        for n, (stake_id, client_id) in enumerate(jailing.stakes):
            data = ValidatorJailed(
                validator=jailing.validator,
                unbonding_height=jailing.unbonding_height,
                stake_id=stake_id,
                client_id=client_id,
            )
            events = [self._event(stake_id, name, client_id, "ATOM", data)]
            if n == 0:
                events.append(
                    (
                        ALERTS.name,
                        Envelope(
                            id=f"{name}:alert",
                            source=SOURCE,
                            type=JAILED_ALERT,
                            subject=jailing.validator,
                            data=data.model_dump(mode="json", exclude_none=True),
                        ),
                    )
                )
            if self._ops.advance(
                stake_id, name, events, detail=data.model_dump(mode="json", exclude_none=True)
            ):
                new = True
        return new

    @staticmethod
    def _payload(slash: Slash, share: Share | None) -> StakeSlashed:
        return StakeSlashed(
            slash_id=slash.slash_id,
            stake_id=None if share is None else share.stake_id,
            client_id=slash.client_id,
            asset=slash.asset,
            validator=slash.validator,
            delegator=slash.delegator,
            booked=str(slash.booked),
            on_chain=str(slash.on_chain),
            position_loss=str(slash.loss),
            loss=None if share is None else str(share.loss),
            left=None if share is None else str(share.left - share.loss),
            jailed=slash.jailed,
        )

    @staticmethod
    def _event(
        stake_id: str, name: str, client_id: str, asset: str, data: BaseModel
    ) -> tuple[str, Envelope]:
        return step_event(
            stake_id,
            name,
            data,
            source=SOURCE,
            event_type=stake_event_type,
            subject=accounts.client(client_id, asset),
        )


@workflow.defn(name=WATCH_WORKFLOW)
class StakingWatchWorkflow:
    """One look: the positions the chain cut booked, the jailings reported."""

    @workflow.run
    async def run(self, req: WatchInput) -> WatchResult:
        W = WatchActivities
        result = WatchResult(run=workflow.info().workflow_id)
        found: Scan = await step(W.scan, req, result.run, profile=WITHDRAW)
        for jailing in found.jailings:
            if await step(W.jailed, jailing, profile=WITHDRAW):
                result.jailed.append(jailing.validator)
        for slash in found.slashes:
            state = await step(W.book, slash, profile=WITHDRAW)
            (result.booked if state == "booked" else result.unbooked).append(slash.slash_id)
        return result
