"""The staking sagas' events: `custody.stake.<step>.v1`, `custody.unstake.<step>.v1` and
`custody.redelegation.<step>.v1` on the events topic, keyed by the client's ATOM account,
one payload model for every step (the catalogue in docs/events documents it), a
deterministic id per operation and step.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STAKE_STEPS = (
    "reserved",
    "rejected",
    "policy_decided",
    "intent",
    "approval",
    "approved",
    "broadcast",
    "active",
    "failed",
    "expired",
    "rewards",
    "slashed",
    "jailed",
)
UNSTAKE_STEPS = (
    "reserved",
    "rejected",
    "policy_decided",
    "intent",
    "approval",
    "approved",
    "broadcast",
    "unbonding",
    "completed",
    "failed",
    "expired",
)
REDELEGATION_STEPS = (
    "reserved",
    "rejected",
    "policy_decided",
    "intent",
    "approval",
    "approved",
    "broadcast",
    "active",
    "failed",
    "expired",
)
FAILED_ALERT = "custody.alert.staking_failed.v1"
# A rewards claim whose booking is not the usual one: failed on chain (the fee only), or
# refused by the books (an operator's case).
REWARDS_SKIPPED = "custody.alert.staking_rewards_unbooked.v1"
# Critical: the chain slashed a client's position (the loss is booked); a validator
# clients are delegated to was jailed.
SLASHED_ALERT = "custody.alert.staking_slashed.v1"
JAILED_ALERT = "custody.alert.validator_jailed.v1"
# A staked position whose books and chain disagree in a way no slash explains (nothing
# booked: an operator reconciles it).
MISMATCH_ALERT = "custody.alert.staking_mismatch.v1"


def stake_event_type(step: str) -> str:
    return f"custody.stake.{step}.v1"


def unstake_event_type(step: str) -> str:
    return f"custody.unstake.{step}.v1"


def redelegation_event_type(step: str) -> str:
    return f"custody.redelegation.{step}.v1"


class StakingStep(BaseModel):
    """What a stake, unstake or redelegation step reports. Amounts are integer strings in
    minor units."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str = Field(examples=["stk:acme-treasury:2026-12-stake-1"])
    client_id: str
    asset: str
    amount: str = Field(description="minor units", examples=["25000000"])
    validator: str = Field(
        description="the validator delegated to (a redelegation's: its destination)"
    )
    delegator: str = Field(description="the client's own delegator address")
    stake_id: str | None = Field(
        default=None,
        description="an unstake's or a redelegation's position (a stake or a redelegation)",
    )
    source_validator: str | None = Field(
        default=None, description="a redelegation's: the validator the position moves from"
    )
    error_code: str | None = Field(default=None, description="rejected, expired, failed")
    detail: str | None = None
    outcome: str | None = Field(default=None, description="policy_decided")
    rule: str | None = Field(default=None, description="policy_decided")
    policy_version: int | None = Field(default=None, description="policy_decided")
    approvals_required: int | None = None
    operator: str | None = Field(default=None, description="approval")
    approvals: int | None = Field(default=None, description="approval: how many so far")
    intent_hash: str | None = Field(default=None, description="intent: what approvals sign")
    tx_hash: str | None = Field(default=None, description="broadcast, active, unbonding, failed")
    height: int | None = Field(default=None, description="the block of the transaction")
    fee: str | None = Field(default=None, description="active, unbonding, failed: fee paid")
    completion_time: str | None = Field(
        default=None,
        description="unbonding: when the chain releases it; a redelegation's active: when "
        "the chain's redelegation entry ends, before which nothing is redelegated from it "
        "(RFC 3339)",
    )
    rewards: str | None = Field(
        default=None,
        description="active, unbonding: rewards the transaction paid the client on the way "
        "(booked to its available balance)",
    )
    commission: str | None = Field(
        default=None,
        description="active, unbonding: the platform's commission on those rewards (the "
        "claims' rate, rounded down), booked from the client to the commission account",
    )
    released: str | None = Field(
        default=None, description="completed: what the chain gave back (minor units)"
    )
    slashed: str | None = Field(
        default=None, description="completed: what the chain cut while it unbonded"
    )
    moved: str | None = Field(
        default=None,
        description="a redelegation's active: what the chain delegated to the destination "
        "(the amount, or a unit less at a source rate below 1: that unit leaves the books)",
    )


class StakingRewards(BaseModel):
    """A rewards claim booked (sagas/staking/rewards.py): a step `rewards:<claim id>` of
    the client's oldest active stake. Amounts are integer strings in minor units."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str = Field(description="the claim's id: rwd:<client>:<schedule run>")
    stake_id: str = Field(description="the stake whose timeline records it")
    client_id: str
    asset: str
    delegator: str = Field(description="the client's own delegator address")
    validators: list[str] = Field(description="the validators the claim withdrew from")
    state: str = Field(description="booked; failed: on chain, only the fee; unbooked")
    gross: str = Field(description="what the chain paid the delegator", examples=["1234"])
    fee: str = Field(description="the claim's network fee, paid by the client")
    commission: str = Field(
        description="the platform's commission: gross * commission_bps // 10000 (rounded down)"
    )
    net: str | None = Field(default=None, description="booked: gross - fee - commission")
    tx_hash: str | None = None
    height: int | None = None
    detail: str | None = None


class StakeSlashed(BaseModel):
    """A slash booked (sagas/staking/slashing.py): the step `slashed:<slash id>` of each
    stake of the position (its share), and the critical alert (the position's loss).
    Amounts are integer strings in minor units."""

    model_config = ConfigDict(extra="forbid")

    slash_id: str = Field(
        description="slh:<client>:<validator>:<seq of the staked account's last transfer>"
    )
    stake_id: str | None = Field(default=None, description="the stake's share (not in the alert)")
    client_id: str
    asset: str
    validator: str
    delegator: str = Field(description="the client's own delegator address")
    booked: str = Field(description="the position's staked balance before the slash")
    on_chain: str = Field(description="the delegation's balance on chain after it")
    position_loss: str = Field(description="booked - on_chain: what the chain took")
    loss: str | None = Field(default=None, description="this stake's share of the loss")
    left: str | None = Field(default=None, description="what this stake still holds")
    rate: str | None = Field(
        default=None,
        description="the validator's tokens per share after the slash, exact (p/q): the "
        "reference the next slash of the position is measured from",
    )
    height: int | None = Field(default=None, description="the block the chain was read at")
    shares: str | None = Field(
        default=None, description="the delegation's shares then (an sdk.Dec's integer)"
    )
    jailed: bool = Field(description="the validator was jailed when it was seen")


class StakingMismatch(BaseModel):
    """Alert: a staked position (none of its stakes or unstakes in flight) whose books
    and chain disagree in a way no slash explains; nothing was booked. `reason`:
    `missing` (the node has no such delegation), `unverifiable` (the position's last
    settlement recorded no shares), `unreadable` (the node refused the read or answered
    nonsense), `shares_changed` (the delegation's shares are not those the last
    settlement recorded: a transaction the books do not know), `more_on_chain`,
    `rate_unchanged` (less on chain but the validator's rate did not fall), `over_cap`
    (less than the fall of the rate could take). Once per (booked, on_chain)."""

    model_config = ConfigDict(extra="forbid")

    mismatch_id: str = Field(description="mis:<client>:<validator>:<booked>:<on_chain>")
    client_id: str
    asset: str
    validator: str
    delegator: str
    booked: str = Field(description="the position's staked balance")
    on_chain: str | None = Field(default=None, description="the delegation's balance, if any")
    reason: str
    rate: str | None = Field(default=None, description="the validator's tokens per share")
    height: int | None = None
    detail: str | None = Field(default=None, description="the node's refusal, if it refused")


class ValidatorJailed(BaseModel):
    """A validator the client's stake is delegated to was found jailed: the step
    `jailed:<validator>:<unbonding height>` of each such stake, and the alert (once)."""

    model_config = ConfigDict(extra="forbid")

    validator: str
    unbonding_height: int = Field(description="where the jailing's unbonding began")
    stake_id: str
    client_id: str


class StakingFailed(BaseModel):
    """Alert: a stake or unstake could not be made, or failed on chain."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str
    client_id: str
    asset: str
    amount: str
    validator: str
    error_code: str | None = None
    detail: str | None = None


PAYLOADS: dict[str, type[BaseModel]] = {
    **{
        stake_event_type(step): StakingStep
        for step in STAKE_STEPS
        if step not in ("rewards", "slashed", "jailed")
    },
    stake_event_type("rewards"): StakingRewards,
    stake_event_type("slashed"): StakeSlashed,
    stake_event_type("jailed"): ValidatorJailed,
    SLASHED_ALERT: StakeSlashed,
    JAILED_ALERT: ValidatorJailed,
    MISMATCH_ALERT: StakingMismatch,
    **{unstake_event_type(step): StakingStep for step in UNSTAKE_STEPS},
    **{redelegation_event_type(step): StakingStep for step in REDELEGATION_STEPS},
    FAILED_ALERT: StakingFailed,
    REWARDS_SKIPPED: StakingRewards,
}
