"""Slashing (issue 14): each run of the `StakingWatch` workflow (a Temporal schedule every
`staking_watch_every_seconds`) compares every client's staked position with the chain
and books what a slash took, and only that.

A position is a client's delegation to one validator (sagas/staking/positions.py): the
ledger's `staked:<client>:<validator>:ATOM` against the delegation on chain, read with
its validator at one height. A slash cuts the validator's tokens, never its delegators'
shares: the validator's rate (tokens per share) falls, and every delegation's balance
with it. Each stake's and unstake's settlement records the delegation's shares and the
rate after its block (sagas/staking/activities.py). So a loss is booked only when all
of these hold (`verdict`):

- no stake or unstake of the position is in flight (checked before the chain read,
  after it, and again when booking, with the staked account's books unchanged);
- the chain has the delegation, at a height no older than the position's last
  settlement (a lagging node is not judged), with exactly the shares the last
  settlement recorded: only the client's own transactions change shares, so other
  shares (an undelegation recorded failed that the chain included; another network)
  are no slash;
- the chain holds less than the books by more than the chain's rounding (one unit per
  stake or unstake settled at a rate below 1, plus one);
- the validator's rate fell below the highest rate recorded at the position's
  settlements, and the shortfall is at most what that fall can take from the most
  shares the position held: `ceil(max shares * (max rate - rate))` plus the rounding.

Anything else books nothing and is reported once per (books, chain): a step
`mismatch:<id>` on the position's first stake and `custody.alert.staking_mismatch.v1`.

A slash is booked once: first a step `slashing:<slash id>` (the slash, so a run that
dies after it finishes it), then staked -> omnibus (it left the chain, burnt), then each
stake's share (in proportion to what each still holds, rounded down, the remainder to
the largest) as its state `slashed` and step `slashed:<slash id>` with its event, and
one critical alert per position. The slash id is the staked account's books:
`slh:<client>:<validator>:<its last transfer's seq>`, so two runs that see one slash
book one transfer, and a later slash (after the first was booked) has another id. A
validator found jailed is reported once per jailing (its unbonding height marks it) on
the stakes delegated to it, with an alert, whether or not it cost anything yet.

Positions are checked in chunks of `CHUNK` (one activity each); a position the node
cannot answer for is skipped (transient) or reported, never the whole run. An unbonding
slashed while it unbonds is the unstake saga's (it books what the chain gives back).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from datetime import timedelta
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
        Held,
        held_positions,
        left_of,
        reduced_by,
        source_of,
        taken_from,
    )
    from sagas.steps import WITHDRAW, step
    from sagas.topics import ALERTS

WATCH_WORKFLOW = "StakingWatch"
SOURCE = "/custody/staking/watch"
CHUNK = 10  # positions per check activity: two chain reads each
# A check reads the chain for up to CHUNK positions, for at most CHECK_BUDGET_SECONDS
# (then leaves the rest to the next run): two minutes an attempt.
CHECK_BUDGET_SECONDS = 30
WATCH = dataclasses.replace(WITHDRAW, start_to_close=timedelta(seconds=120), local=None)
# The step a settlement writes (a redelegation's records its destination's position, and
# its source's under `source_position`).
SETTLED = {"stake": "active", "unstake": "unbonding", "redelegation": "active"}
log = logging.getLogger("custody.staking.watch")

Verdict = Literal[
    "agrees",
    "slash",
    "missing",
    "behind",
    "unverifiable",
    "unreadable",
    "shares_changed",
    "more_on_chain",
    "rate_unchanged",
    "over_cap",
]


def slash_id(client_id: str, validator: str, seq: int) -> str:
    return f"slh:{client_id}:{validator}:{seq}"


class Reference(BaseModel):
    """What the position's settlements and booked slashes recorded: the shares after the
    latest settlement (by height); since the last booked slash (else ever): the rate it
    left (else the highest the settlements saw), the most shares held, and how many
    settlements were at a rate below 1 (each may leave a unit of the chain's rounding)."""

    model_config = ConfigDict(frozen=True)

    shares: StrictInt | None = Field(description="None: the latest settlement recorded none")
    height: int
    rate: str = Field(description="p/q: a slash since is a fall below it")
    max_shares: StrictInt
    rounded: int

    @property
    def rounding(self) -> int:
        return self.rounded + 1


def reference(
    settlements: list[dict[str, Any]], slashes: list[dict[str, Any]] | None = None
) -> Reference | None:
    """The Reference from the settlement steps' details (each: height, and shares and rate
    if the node answered) and the booked slashes' (height, shares, rate); None if there
    are no settlements."""
    if not settlements:
        return None
    latest = max(settlements, key=lambda d: int(d["height"]))
    last = max(
        (d for d in slashes or [] if d.get("rate") and d.get("height") is not None),
        key=lambda d: int(d["height"]),
        default=None,
    )
    since = -1 if last is None else int(last["height"])
    after = [d for d in settlements if int(d["height"]) > since]
    if last is None:
        rates = [Fraction(str(d["rate"])) for d in settlements if d.get("rate")]
        rate = max(rates, default=Fraction(1))
    else:
        rate = Fraction(str(last["rate"]))
    shares = [int(d["shares"]) for d in after if d.get("shares") is not None]
    if last is not None and last.get("shares") is not None:
        shares.append(int(last["shares"]))
    return Reference(
        shares=None if latest.get("shares") is None else int(latest["shares"]),
        height=int(latest["height"]),
        rate=_ratio(rate),
        max_shares=max(shares, default=0),
        rounded=sum(1 for d in after if Fraction(str(d.get("rate") or 0)) != 1),
    )


def verdict(booked: int, view: DelegationView | None, ref: Reference | None) -> Verdict:
    """What the chain's view of a position (none of it in flight) says against the books
    and what its settlements and slashes recorded: `slash` only as the module docstring
    says."""
    if view is None:
        return "missing"
    if ref is None or ref.shares is None:
        return "unverifiable"
    if view.height < ref.height:
        return "behind"
    if view.validator_shares <= 0 or view.validator_tokens <= 0:
        return "unreadable"
    if view.shares != ref.shares:
        return "shares_changed"
    shortfall = booked - view.balance
    if shortfall < 0:
        return "more_on_chain"
    if shortfall <= ref.rounding:
        return "agrees"
    rate, before = view.rate, Fraction(ref.rate)
    if rate >= before:
        return "rate_unchanged"
    cap = math.ceil(Fraction(ref.max_shares, 10**18) * (before - rate)) + ref.rounding
    return "over_cap" if shortfall > cap else "slash"


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
    """A position a slash cut: shares as recorded, the rate fell, the chain holds less."""

    model_config = ConfigDict(frozen=True)

    slash_id: str
    client_id: str
    asset: str
    validator: str
    delegator: str
    seq: int = Field(description="the staked account's last transfer when it was checked")
    booked: StrictInt = Field(description="the staked account before the slash")
    on_chain: StrictInt = Field(description="the delegation's balance on chain")
    rate: str = Field(description="the validator's tokens per share after it, exact: p/q")
    height: int
    delegation_shares: StrictInt = Field(description="the delegation's shares (* 10**18)")
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
    detail: str | None = None


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


@dataclasses.dataclass
class _Seen:
    held: Held
    booked: int
    seq: int
    view: DelegationView | None
    found: Verdict
    detail: str | None = None


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
        """(client, validator) with a stake, unstake or redelegation in flight (a
        redelegation holds up both its source and its destination)."""
        busy = {
            (op.client_id or "", op.destination or "")
            for kind in ("stake", "unstake", "redelegation")
            for op in self._ops.of_kind(kind, IN_FLIGHT)
        }
        for op in self._ops.of_kind("redelegation", IN_FLIGHT):
            source = self._ops.get(source_of(op.id))
            if source is not None:
                busy.add((op.client_id or "", source.destination or ""))
        return busy

    def _books(self, client_id: str, validator: str, asset: str) -> tuple[int, int]:
        """(the staked account's balance, its last transfer's seq; 0 if none)."""
        account, after = accounts.staked(client_id, validator, asset), 0
        while page := self._ledger.history(account, after_seq=after, limit=500):
            after = page[-1].seq
        return self._ledger.balance(account).total, after

    @activity.defn(name="staking_watch.positions")
    def positions(self, req: WatchInput) -> list[Held]:
        """Every position the books hold (reads the database only)."""
        return held_positions(self._ops, self._ledger, req.asset)

    @activity.defn(name="staking_watch.jailings")
    def jailings(self, req: WatchInput, held: list[Held]) -> list[Jailing]:
        """The validators positions are delegated to that the chain has jailed (one read
        per validator; one the node cannot answer for is left for the next run)."""
        found = []
        for validator in sorted({h.validator for h in held}):
            try:
                state = self._delegations.validator_state(validator)
            except (CustodyError, ValueError, LookupError) as exc:
                log.warning("%s: validator not read: %s", validator, exc)
                continue
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
        """The slashes and disagreements among these positions (reads only), and any
        slash a run began booking and did not finish."""
        out = Findings()
        busy = self._busy()
        seen: list[_Seen] = []
        deadline = time.monotonic() + CHECK_BUDGET_SECONDS
        for n, h in enumerate(held):
            if time.monotonic() > deadline:  # a slow node: the rest waits for the next run
                log.warning("staking watch: %s positions left for the next run", len(held) - n)
                break
            unfinished = self._unfinished(h)
            if unfinished is not None:
                out.slashes.append(unfinished)
                continue
            booked, seq = self._books(h.client_id, h.validator, req.asset)
            if (h.client_id, h.validator) in busy or booked <= 0:
                continue
            stakes = [s for s in map(self._ops.get, h.stake_ids) if s is not None]
            try:
                view = self._delegations.delegation(h.delegator, h.validator)
            except CustodyError as exc:
                if not exc.transient:
                    raise
                log.warning("%s/%s: not read: %s", h.client_id, h.validator, exc)
                continue
            except (ValueError, LookupError) as exc:  # the node's refusal, for this one
                seen.append(_Seen(h, booked, seq, None, "unreadable", str(exc)[:300]))
                continue
            found = verdict(booked, view, self._reference(h.client_id, stakes))
            if found not in ("agrees", "behind"):
                seen.append(_Seen(h, booked, seq, view, found))
        # Anything that started or settled while the chain was read is for the next run.
        busy = self._busy()
        for one in seen:
            h = one.held
            if (h.client_id, h.validator) in busy or self._books(
                h.client_id, h.validator, req.asset
            ) != (one.booked, one.seq):
                continue
            if one.found == "slash" and one.view is not None:
                out.slashes.append(self._slash(req, h, one.booked, one.seq, one.view))
                continue
            on_chain = None if one.view is None else one.view.balance
            read = "missing" if on_chain is None else on_chain
            out.mismatches.append(
                Mismatch(
                    mismatch_id=f"mis:{h.client_id}:{h.validator}:{one.booked}:{read}",
                    client_id=h.client_id,
                    asset=req.asset,
                    validator=h.validator,
                    delegator=h.delegator,
                    stake_id=h.stake_ids[0],
                    booked=one.booked,
                    on_chain=on_chain,
                    reason=one.found,
                    rate=None if one.view is None else _ratio(one.view.rate),
                    height=None if one.view is None else one.view.height,
                    detail=one.detail,
                )
            )
        return out

    def _unfinished(self, h: Held) -> Slash | None:
        """A slash whose booking began (its `slashing:` step) and neither finished nor
        was given up."""
        timeline = self._ops.timeline(h.stake_ids[0])
        names = {s.step for s in timeline}
        for s in timeline:
            if s.step.startswith("slashing:"):
                sid = s.step.removeprefix("slashing:")
                if f"slashed:{sid}" in names:
                    continue
                slash = Slash.model_validate(s.detail)
                # The books say whether it happened, whatever a give-up step says.
                if f"unbooked:{sid}" not in names or self._transferred(slash):
                    return slash
        return None

    def _unstakes(
        self, client_id: str, stakes: list[OperationRecord]
    ) -> list[list[OperationRecord]]:
        """Each position's unstakes and redelegations out."""
        mine = [
            *self._ops.for_client(client_id, "unstake", limit=100_000),
            *self._ops.for_client(client_id, "redelegation", limit=100_000),
        ]
        return [taken_from(s.id, mine) for s in stakes]

    def _reference(self, client_id: str, stakes: list[OperationRecord]) -> Reference | None:
        """What the settlements of the position's stakes, redelegations in, unstakes and
        redelegations out recorded (a redelegation out: its source's position)."""
        taken = [u for us in self._unstakes(client_id, stakes) for u in us]  # read once
        outs = {u.id for u in taken if u.kind == "redelegation"}
        ops = [*stakes, *taken]
        settled, slashed = [], []
        for op in ops:
            for s in self._ops.timeline(op.id):
                if s.step == SETTLED[op.kind] and s.detail.get("height") is not None:
                    if op.id in outs:
                        source = s.detail.get("source_position")
                        was = source if isinstance(source, dict) else {}
                        settled.append({**was, "height": s.detail["height"]})
                    else:
                        settled.append(s.detail)
                elif s.step.startswith("slashed:") and op.id not in outs:
                    # (A redelegation out's own slashes are its destination's.)
                    slashed.append(s.detail)
        return reference(settled, slashed)

    def _slash(
        self, req: WatchInput, h: Held, booked: int, seq: int, view: DelegationView
    ) -> Slash:
        stakes = [s for s in map(self._ops.get, h.stake_ids) if s is not None]
        holdings = [
            left_of(s, unstakes, reduced_by(s, self._ops.timeline(s.id)))
            for s, unstakes in zip(stakes, self._unstakes(h.client_id, stakes), strict=True)
        ]
        losses = share_loss(booked - view.balance, holdings)
        try:
            jailed = self._delegations.validator_state(h.validator).jailed
        except (CustodyError, ValueError, LookupError):
            jailed = False
        # An id given up before (its booking began, then the position moved) is not used
        # again: the attempt after it is numbered.
        base = slash_id(h.client_id, h.validator, seq)
        given_up = sum(
            1
            for s in self._ops.timeline(h.stake_ids[0])
            if s.step == f"unbooked:{base}" or s.step.startswith(f"unbooked:{base}:")
        )
        return Slash(
            slash_id=base if given_up == 0 else f"{base}:{given_up}",
            client_id=h.client_id,
            asset=req.asset,
            validator=h.validator,
            delegator=h.delegator,
            seq=seq,
            booked=booked,
            on_chain=view.balance,
            rate=_ratio(view.rate),
            height=view.height,
            delegation_shares=view.shares,
            jailed=jailed,
            shares=[
                Share(stake_id=s.id, left=left, loss=n)
                for s, left, n in zip(stakes, holdings, losses, strict=True)
            ],
        )

    def _transferred(self, slash: Slash) -> bool:
        """The slash's transfer is in the books (a retry, or a run that died after it)."""
        account, after = accounts.staked(slash.client_id, slash.validator, slash.asset), slash.seq
        while page := self._ledger.history(account, after_seq=after, limit=500):
            if any(r.id == slash.slash_id and r.amount == slash.loss for r in page):
                return True
            after = page[-1].seq
        return False

    @activity.defn(name="staking_watch.book")
    def book(self, slash: Slash) -> str:
        """The loss out of the client's staked account (to the omnibus: it left the
        chain), each stake's share on its timeline, state `slashed`, one critical alert.
        `booked`; `unbooked` if the position moved since it was checked (a stake or
        unstake started, the staked account's books changed) or the books refused it:
        the next run looks again."""
        a, c, v = slash.asset, slash.client_id, slash.validator
        first, name = slash.shares[0].stake_id, f"slashed:{slash.slash_id}"
        if not self._transferred(slash):
            if (c, v) in self._busy() or self._books(c, v, a) != (slash.booked, slash.seq):
                log.warning("%s: the position moved since it was checked", slash.slash_id)
                return self._unbooked(slash, "the position moved since it was checked")
            self._ops.advance(
                first, f"slashing:{slash.slash_id}", detail=slash.model_dump(mode="json")
            )
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
                return self._unbooked(slash, f"the ledger refused it: {exc.detail}")
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
        # Each stake the slash cut: its share, its event, state `slashed`; the alert with
        # the first of them. The first stake's step last (even without a share): until it
        # is written the booking is unfinished.
        cut = [n for n, share in enumerate(slash.shares) if share.loss > 0]
        for n, share in reversed(list(enumerate(slash.shares))):
            if share.loss == 0 and n != 0:
                continue
            data = self._payload(slash, share)
            events = [self._event(share.stake_id, name, c, a, data)] if share.loss else []
            if cut and n == cut[0]:
                events.append(alert)
            self._ops.advance(
                share.stake_id,
                name,
                events,
                detail=data.model_dump(mode="json", exclude_none=True),
                state="slashed" if share.loss > 0 else None,
            )
        log.critical("%s: the chain slashed %s of %s", slash.slash_id, slash.loss, slash.booked)
        return "booked"

    def _unbooked(self, slash: Slash, why: str) -> str:
        """Give the slash up (the next run judges the position afresh): a step closes a
        booking that began, if one did."""
        first = slash.shares[0].stake_id
        if any(s.step == f"slashing:{slash.slash_id}" for s in self._ops.timeline(first)):
            self._ops.advance(first, f"unbooked:{slash.slash_id}", detail={"detail": why})
        return "unbooked"

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
            detail=found.detail,
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
            shares=str(slash.delegation_shares),
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
        held: list[Held] = await step(W.positions, req, profile=WATCH)
        for jailing in await step(W.jailings, req, held, profile=WATCH):
            if await step(W.jailed, jailing, profile=WATCH):
                result.jailed.append(jailing.validator)
        for start in range(0, len(held), CHUNK):
            found = await step(W.check, req, held[start : start + CHUNK], profile=WATCH)
            for slash in found.slashes:
                state = await step(W.book, slash, profile=WATCH)
                (result.booked if state == "booked" else result.unbooked).append(slash.slash_id)
            for mismatch in found.mismatches:
                if await step(W.mismatch, mismatch, profile=WATCH):
                    result.mismatched.append(mismatch.mismatch_id)
        return result
