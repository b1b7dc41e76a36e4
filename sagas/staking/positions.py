"""Staked positions as the books hold them (issue 14), for the rewards and slashing
schedules and the API: a client's delegation to one validator is the positions it holds
there (its stakes to it and its redelegations into it, decision 0033) that still hold a
delegation, and its `staked:<client>:<validator>:<asset>` account.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from sagas import accounts
from sagas.operations import OperationRecord, Step, recorded_step
from sagas.ports import Ledger, OperationStore
from sagas.staking import DelegationView

# The operation kinds that make a position (a stake; a redelegation, once its shares
# moved, is a position at its destination).
POSITION_OPS = ("stake", "redelegation")
# A stake, unstake or redelegation that may be on chain and is not settled: the chain and
# the books may disagree by its amount, so its position is not compared until it
# settles. Before it is approved (requested, reserved, awaiting approval for up to its
# TTL) it has touched neither the chain nor the posted books (its reservations are
# pending), so it does not hold the position up; one that moves on while the chain is
# read is caught by the checks after the read (in flight then, or the books changed).
IN_FLIGHT = ("approved", "broadcast")
HOLDING = ("active", "slashed")  # a position's states while it holds a delegation
# An unstake or a redelegation out of a position that took nothing from it.
UNDONE = frozenset({"rejected", "expired", "failed"})


class Held(BaseModel):
    """A client's delegation to one validator: its delegator address (from the first
    position's request) and its positions holding a delegation (stakes and redelegations
    in; `stake_ids`, the name kept), oldest first."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    asset: str
    validator: str
    delegator: str
    stake_ids: list[str]


def held_positions(ops: OperationStore, ledger: Ledger, asset: str) -> list[Held]:
    """Every position in `asset` with stakes or redelegations holding a delegation and a
    posted balance in its staked account, in the order of their oldest."""
    stakes: dict[tuple[str, str], list[OperationRecord]] = {}
    made = [op for kind in POSITION_OPS for op in ops.of_kind(kind, HOLDING)]
    for stake in sorted(made, key=lambda op: op.created_at):
        if stake.asset == asset and stake.client_id and stake.destination:
            stakes.setdefault((stake.client_id, stake.destination), []).append(stake)
    held = []
    for (client_id, validator), mine in stakes.items():
        if ledger.balance(accounts.staked(client_id, validator, asset)).total <= 0:
            continue
        first = recorded_step(ops.timeline(mine[0].id), "requested") or {}
        delegator = str(first.get("delegator") or "")
        if delegator:
            held.append(
                Held(
                    client_id=client_id,
                    asset=asset,
                    validator=validator,
                    delegator=delegator,
                    stake_ids=[s.id for s in mine],
                )
            )
    return held


def settled_position(view: DelegationView | None, height: int) -> dict[str, Any]:
    """What a stake's or unstake's settlement records of the delegation after its block
    (the slashing watch's reference): its shares and the validator's rate there."""
    if view is None:
        return {"shares": "0", "shares_height": height}
    rate = view.rate
    return {
        "shares": str(view.shares),
        "shares_height": height,
        "rate": f"{rate.numerator}/{rate.denominator}",
    }


def slashed_from(timeline: list[Step]) -> int:
    """What slashes took from a stake: the losses its `slashed:` steps booked."""
    return sum(int(str(s.detail.get("loss", 0))) for s in timeline if s.step.startswith("slashed:"))


def reduced_by(op: OperationRecord, timeline: list[Step]) -> int:
    """What a position holds less than its amount without any unstake: the slashes its
    timeline booked, and for a redelegation the chain moved less than asked (its `active`
    step's `held`: a unit kept back at a source rate below 1; negative if it moved more)."""
    held = next((s.detail.get("held") for s in timeline if s.step == "active"), None)
    kept = 0 if held is None or op.kind != "redelegation" else op.amount - int(str(held))
    return slashed_from(timeline) + kept


def source_of(redelegation_id: str) -> str:
    """The position a redelegation moves from: its id is `red:<position>:<key>` (keys
    have no ':')."""
    return redelegation_id.removeprefix("red:").rsplit(":", 1)[0]


def taken_from(position_id: str, ops: list[OperationRecord]) -> list[OperationRecord]:
    """The unstakes of a position and its redelegations out, among `ops`, oldest first."""
    mine = [
        op
        for op in ops
        if (op.kind == "unstake" and op.id.startswith(f"uns:{position_id}:"))
        or (op.kind == "redelegation" and op.id.startswith(f"red:{position_id}:"))
    ]
    return sorted(mine, key=lambda op: op.created_at)


def left_of(stake: OperationRecord, unstakes: list[OperationRecord], slashed: int) -> int:
    """What of a position is still staked: its amount less its unstakes and redelegations
    out that did not end rejected, expired or failed (those in progress count) and less
    what slashes took."""
    return max(0, stake.amount - sum(u.amount for u in unstakes if u.state not in UNDONE) - slashed)
