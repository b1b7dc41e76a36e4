"""Slashing (issue 14): each run of the `StakingWatch` workflow (a Temporal schedule every
`staking_watch_every_seconds`) compares every client's staked position with the chain
and books what a slash took, and only that.

A position is a client's delegation to one validator (sagas/staking/positions.py): the
ledger's `staked:<client>:<validator>:ATOM` against the delegation on chain, read with
its validator at one height. A slash cuts the validator's tokens, not its delegators'
shares: the validator's rate (tokens per share) falls, and every delegation's balance
with it. So a loss is booked only when all of these hold (`verdict`):

- no stake or unstake of the position is in flight (checked before the chain read, after
  it, and again when booking, with the staked balance unchanged);
- the chain has the delegation (a lagging or misrouted node answering "not found" is an
  alert, never a 100 % loss);
- the chain holds less than the books by more than rounding: each stake or unstake at a
  rate other than 1 may leave one unit in the chain's truncation (`rounding`);
- the validator's rate fell below the rate at the position's last booked slash (1 if
  none): a shortfall with the rate unchanged is not a slash (an undelegation recorded
  failed that the chain included, books that are wrong): an alert;
- the shortfall is at most what the fall can take: `booked * (1 - rate / reference)`,
  rounded up, plus rounding. More is not (only) a slash: an alert.

The loss is booked, once: staked -> omnibus (it left the chain, burnt), shared across the
position's stakes in proportion to what each still holds (rounded down, the remainder to
the largest), each stake's state `slashed` with a step `slashed:<slash id>` (its share
and the rate after the slash) and its event, and one critical alert per position. The
slash id comes from the books and the chain, not the run: `slh:<client>:<validator>:
<booked>:<on chain>`, so two runs that see the same slash book one transfer and one set
of steps. A disagreement that is not a slash is reported once per (books, chain) pair:
a step `mismatch:<...>` on the position's first stake and
`custody.alert.staking_mismatch.v1`. A validator found jailed is reported once per
jailing (its unbonding height marks it) on the stakes delegated to it, with an alert,
whether or not it cost anything yet.

Positions are checked in chunks of `CHUNK` (one activity each, within a step's time),
so a run's history grows with positions / CHUNK. An unbonding slashed while it unbonds
is the unstake saga's (it books what the chain gives back, sagas/staking/workflows.py).
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt
from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from sagas import accounts
    from sagas.errors import CustodyError
    from sagas.events import Envelope
    from sagas.ledger import Transfer
    from sagas.operations import OperationRecord
    from sagas.ports import Delegations, Ledger, OperationStore
    from sagas.records import step_event
    from sagas.staking import DelegationView
    from sagas.staking.events import (
        JAILED_ALERT,
        MISMATCH_ALERT,
        SLASHED_ALERT,
        StakeSlashed,
        StakingMismatch,
        ValidatorJailed,
        stake_event_type,
    )
    from sagas.staking.positions import (
        IN_FLIGHT,
        UNDONE,
        Held,
        held_positions,
        left_of,
        slashed_from,
    )
    from sagas.steps import WITHDRAW, step
    from sagas.topics import ALERTS

WATCH_WORKFLOW = "StakingWatch"
SOURCE = "/custody/staking/watch"
CHUNK = 25  # positions per check activity: two chain reads each, well inside a step
log = logging.getLogger("custody.staking.watch")

Verdict = Literal["agrees", "slash", "missing", "more_on_chain", "rate_unchanged", "over_cap"]


def slash_id(client_id: str, validator: str, booked: int, on_chain: int) -> str:
    return f"slh:{client_id}:{validator}:{booked}:{on_chain}"


def verdict(
    booked: int, view: DelegationView | None, reference: Fraction, rounding: int
) -> Verdict:
    """What the chain's view of a position (none in flight) says against the books:
    `slash` only if the validator's rate fell below `reference` and the shortfall is
    more than `rounding` and at most what the fall can take (module docstring)."""
    if view is None:
        return "missing"
    shortfall = booked - view.balance
    if shortfall < 0:
        return "more_on_chain"
    if shortfall <= rounding:
        return "agrees"
    rate = view.rate
    if rate >= reference:
        return "rate_unchanged"
    cap = math.ceil(booked * (1 - rate / reference)) + rounding
    return "over_cap" if shortfall > cap else "slash"


def reference_rate(timelines: list[list[Any]]) -> Fraction:
    """The validator's rate at the position's last booked slash (rates only fall: the
    least recorded), 1 if it was never slashed."""
    rates = [
        Fraction(str(s.detail["rate"]))
        for timeline in timelines
        for s in timeline
        if s.step.startswith("slashed:") and s.detail.get("rate")
    ]
    return min(rates, default=Fraction(1))


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
    """A position a slash cut: the chain holds less than the books, the rate fell."""

    model_config = ConfigDict(frozen=True)

    slash_id: str
    client_id: str
    asset: str
    validator: str
    delegator: str
    booked: StrictInt = Field(description="the staked account before the slash")
    on_chain: StrictInt = Field(description="the delegation's balance on chain")
    rate: str = Field(description="the validator's tokens per share after it, exact: p/q")
    height: int
    jailed: bool
    shares: list[Share]

    @property
    def loss(self) -> int:
        return self.booked - self.on_chain


class Mismatch(BaseModel):
    """A position whose books and chain disagree in a way no slash explains."""

    model_config = ConfigDict(frozen=True)

    mismatch_id: str
    client_id: str
    asset: str
    validator: str
    delegator: str
    stake_id: str = Field(description="the position's first stake: the step goes there")
    booked: StrictInt
    on_chain: StrictInt | None
    reason: Verdict
    rate: str | None = None
    height: int | None = None


class Jailing(BaseModel):
    model_config = ConfigDict(frozen=True)

    asset: str
    validator: str
    unbonding_height: int
    stakes: list[tuple[str, str]] = Field(description="(stake id, client id) delegated to it")


class Findings(BaseModel):
    slashes: list[Slash] = []
    mismatches: list[Mismatch] = []


class WatchResult(BaseModel):
    run: str
    booked: list[str] = []
    unbooked: list[str] = []
    jailed: list[str] = []
    mismatched: list[str] = []


class WatchActivities:
    def __init__(
        self, ledger: Ledger, operations: OperationStore, delegations: Delegations
    ) -> None:
        self._ledger = ledger
        self._ops = operations
        self._delegations = delegations

    def all(self) -> list[Any]:
        return [self.positions, self.jailings, self.check, self.book, self.mismatch, self.jailed]

    def _busy(self) -> set[tuple[str, str]]:
        """(client, validator) with a stake or unstake in flight."""
        return {
            (op.client_id or "", op.destination or "")
            for kind in ("stake", "unstake")
            for op in self._ops.of_kind(kind, IN_FLIGHT)
        }

    def _staked(self, client_id: str, validator: str, asset: str) -> int:
        return self._ledger.balance(accounts.staked(client_id, validator, asset)).total

    @activity.defn(name="staking_watch.positions")
    def positions(self, req: WatchInput) -> list[Held]:
        """Every position the books hold (reads the database only)."""
        return held_positions(self._ops, self._ledger, req.asset)

    @activity.defn(name="staking_watch.jailings")
    def jailings(self, req: WatchInput, held: list[Held]) -> list[Jailing]:
        """The validators positions are delegated to that the chain has jailed (one read
        per validator)."""
        found = []
        for validator in sorted({h.validator for h in held}):
            state = self._delegations.validator_state(validator)
            if state.jailed:
                stakes = [
                    (s, h.client_id) for h in held if h.validator == validator for s in h.stake_ids
                ]
                found.append(
                    Jailing(
                        asset=req.asset,
                        validator=validator,
                        unbonding_height=state.unbonding_height,
                        stakes=stakes,
                    )
                )
        return found

    @activity.defn(name="staking_watch.check")
    def check(self, req: WatchInput, held: list[Held]) -> Findings:
        """The slashes and disagreements among these positions (reads only)."""
        busy = self._busy()
        seen: list[tuple[Held, int, DelegationView | None, Verdict, Fraction]] = []
        for h in held:
            booked = self._staked(h.client_id, h.validator, req.asset)
            if (h.client_id, h.validator) in busy or booked <= 0:
                continue
            view = self._delegations.delegation(h.delegator, h.validator)
            stakes = [s for s in map(self._ops.get, h.stake_ids) if s is not None]
            unstakes = self._unstakes(h.client_id, stakes)
            reference = reference_rate([self._ops.timeline(s.id) for s in stakes])
            rounding = len(stakes) + sum(len(u) for u in unstakes) + 1
            found = verdict(booked, view, reference, rounding)
            if found != "agrees":
                seen.append((h, booked, view, found, reference))
        # Anything that started or settled while the chain was read is for the next run.
        busy = self._busy()
        out = Findings()
        for h, booked, view, found, _reference in seen:
            if (h.client_id, h.validator) in busy or self._staked(
                h.client_id, h.validator, req.asset
            ) != booked:
                continue
            if found == "slash" and view is not None:
                out.slashes.append(self._slash(req, h, booked, view))
            else:
                on_chain = None if view is None else view.balance
                read = "missing" if on_chain is None else on_chain
                out.mismatches.append(
                    Mismatch(
                        mismatch_id=f"mis:{h.client_id}:{h.validator}:{booked}:{read}",
                        client_id=h.client_id,
                        asset=req.asset,
                        validator=h.validator,
                        delegator=h.delegator,
                        stake_id=h.stake_ids[0],
                        booked=booked,
                        on_chain=on_chain,
                        reason=found,
                        rate=None if view is None else _ratio(view.rate),
                        height=None if view is None else view.height,
                    )
                )
        return out

    def _unstakes(
        self, client_id: str, stakes: list[OperationRecord]
    ) -> list[list[OperationRecord]]:
        """Each stake's unstakes that took something (or may still)."""
        mine = self._ops.for_client(client_id, "unstake", limit=10_000)
        return [
            [u for u in mine if u.id.startswith(f"uns:{s.id}:") and u.state not in UNDONE]
            for s in stakes
        ]

    def _slash(self, req: WatchInput, h: Held, booked: int, view: DelegationView) -> Slash:
        stakes = [s for s in map(self._ops.get, h.stake_ids) if s is not None]
        holdings = [
            left_of(s, unstakes, slashed_from(self._ops.timeline(s.id)))
            for s, unstakes in zip(stakes, self._unstakes(h.client_id, stakes), strict=True)
        ]
        losses = share_loss(booked - view.balance, holdings)
        return Slash(
            slash_id=slash_id(h.client_id, h.validator, booked, view.balance),
            client_id=h.client_id,
            asset=req.asset,
            validator=h.validator,
            delegator=h.delegator,
            booked=booked,
            on_chain=view.balance,
            rate=_ratio(view.rate),
            height=view.height,
            jailed=self._delegations.validator_state(h.validator).jailed,
            shares=[
                Share(stake_id=s.id, left=left, loss=n)
                for s, left, n in zip(stakes, holdings, losses, strict=True)
            ],
        )

    @activity.defn(name="staking_watch.book")
    def book(self, slash: Slash) -> str:
        """The loss out of the client's staked account (to the omnibus: it left the
        chain), each stake's share on its timeline, state `slashed`, one critical alert.
        `booked`; `unbooked` if the position moved since it was checked (a stake or
        unstake started, the staked balance changed) or the books refused it: the next
        run looks again."""
        a, c, v = slash.asset, slash.client_id, slash.validator
        name = f"slashed:{slash.slash_id}"
        if not self._transferred(slash) and (
            (c, v) in self._busy() or self._staked(c, v, a) != slash.booked
        ):
            log.warning("%s: the position moved since it was checked; not booked", slash.slash_id)
            return "unbooked"
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

    def _transferred(self, slash: Slash) -> bool:
        """The slash's transfer is in the books already (a retry after the ledger took it
        and before the steps were written: finish the steps)."""
        account, after = accounts.staked(slash.client_id, slash.validator, slash.asset), 0
        while page := self._ledger.history(account, after_seq=after, limit=500):
            if any(r.id == slash.slash_id for r in page):
                return True
            after = page[-1].seq
        return False

    @activity.defn(name="staking_watch.mismatch")
    def mismatch(self, found: Mismatch) -> bool:
        """Report a disagreement no slash explains, once per (books, chain): a step on the
        position's first stake and the alert. Nothing is booked. True if it was new."""
        data = StakingMismatch(
            mismatch_id=found.mismatch_id,
            client_id=found.client_id,
            asset=found.asset,
            validator=found.validator,
            delegator=found.delegator,
            booked=str(found.booked),
            on_chain=None if found.on_chain is None else str(found.on_chain),
            reason=found.reason,
            rate=found.rate,
            height=found.height,
        )
        payload = data.model_dump(mode="json", exclude_none=True)
        alert = Envelope(
            id=f"{found.mismatch_id}:alert",
            source=SOURCE,
            type=MISMATCH_ALERT,
            subject=accounts.staked(found.client_id, found.validator, found.asset),
            data=payload,
        )
        new = self._ops.advance(
            found.stake_id, f"mismatch:{found.mismatch_id}", [(ALERTS.name, alert)], detail=payload
        )
        if new:
            log.error("%s: books and chain disagree (%s)", found.mismatch_id, found.reason)
        return bool(new)

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
            events = [self._event(stake_id, name, client_id, jailing.asset, data)]
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
            rate=slash.rate,
            height=slash.height,
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


def _ratio(rate: Fraction) -> str:
    return f"{rate.numerator}/{rate.denominator}"


@workflow.defn(name=WATCH_WORKFLOW)
class StakingWatchWorkflow:
    """One look: the jailings reported, the slashes booked, the disagreements alerted."""

    @workflow.run
    async def run(self, req: WatchInput) -> WatchResult:
        W = WatchActivities
        result = WatchResult(run=workflow.info().workflow_id)
        held: list[Held] = await step(W.positions, req, profile=WITHDRAW)
        for jailing in await step(W.jailings, req, held, profile=WITHDRAW):
            if await step(W.jailed, jailing, profile=WITHDRAW):
                result.jailed.append(jailing.validator)
        for start in range(0, len(held), CHUNK):
            found = await step(W.check, req, held[start : start + CHUNK], profile=WITHDRAW)
            for slash in found.slashes:
                state = await step(W.book, slash, profile=WITHDRAW)
                (result.booked if state == "booked" else result.unbooked).append(slash.slash_id)
            for mismatch in found.mismatches:
                if await step(W.mismatch, mismatch, profile=WITHDRAW):
                    result.mismatched.append(mismatch.mismatch_id)
        return result
