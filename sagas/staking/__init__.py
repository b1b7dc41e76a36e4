"""Staking on the proof-of-stake chain (issue 14): the stake and unstake sagas' contract.

A stake delegates a client's ATOM from the client's own delegator address (decision
0028) to a validator on the platform's allow-list: reserve in the ledger -> policy
decision -> (approvals) -> delegate (signed by the signer, which checks the message
against the client's signed intent) -> confirmed in a block -> the amount moves from
the client's available balance to its staked account, the fee to the network.

An unstake undelegates (part of) a stake: policy -> (approvals) -> undelegate ->
confirmed -> the amount moves from staked to unbonding -> a durable timer until the
chain's completion time -> the chain released it -> unbonding back to available.

A redelegation moves (part of) a position to another allowed validator at once
(decision 0033): policy -> (approvals) -> begin-redelegate -> confirmed -> the amount
moves from staked with the source to staked with the destination, and the redelegation
is a position of its own there (the chain keeps its entry until the completion time:
nothing is redelegated from it before then).
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from sagas.intents import SignedRequest
from sagas.withdrawal import ApprovalView

# The approvals counted so far (sagas/approvals.py): the withdrawal's view, the same.
Tally = ApprovalView

STAKE_WORKFLOW = "Stake"
UNSTAKE_WORKFLOW = "Unstake"
REDELEGATE_WORKFLOW = "Redelegate"

# A position's states (close to the custodians' staking APIs): a stake is `pending`
# until delegated, then `active`; `unbonding` while any of it unbonds, `withdrawable`
# never lasts here (the release is booked at once), `withdrawn` when all of it came
# back; `slashed` once the chain cut it; `failed` if it never delegated.
PositionState = Literal[
    "pending", "active", "unbonding", "withdrawable", "withdrawn", "slashed", "failed"
]
StakeEnding = Literal["active", "rejected", "expired", "failed"]
UnstakeEnding = Literal["completed", "rejected", "expired", "failed"]
RedelegateEnding = Literal["active", "rejected", "expired", "failed"]


class StakeInput(BaseModel):
    """A validated stake: delegate `amount` (minor units) to an allowed validator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operation_id: str = Field(description="the workflow id: stk:<client>:<idempotency key>")
    client_id: str
    asset: str
    amount: StrictInt = Field(gt=0)
    validator: str
    delegator: str = Field(description="the client's own delegator (ATOM deposit) address")
    requested_by: str
    requested_at: datetime
    fee: StrictInt = Field(gt=0, description="the network fee offered, minor units")
    approval_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    poll_seconds: int = Field(default=5, ge=1)
    request: SignedRequest | None = None


class UnstakeInput(BaseModel):
    """A validated unstake of (part of) a stake that is active."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operation_id: str = Field(description="the workflow id: uns:<stake>:<idempotency key>")
    stake_id: str
    client_id: str
    asset: str
    amount: StrictInt = Field(gt=0)
    validator: str
    delegator: str
    requested_by: str
    requested_at: datetime
    fee: StrictInt = Field(gt=0)
    approval_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    poll_seconds: int = Field(default=5, ge=1)
    release_margin_seconds: int = Field(
        default=2, ge=0, description="after the chain's completion time, before checking"
    )
    request: SignedRequest | None = None


class RedelegateInput(BaseModel):
    """A validated redelegation of (part of) a position to another allowed validator:
    `source` is the position's validator (from its own record, never the request),
    `validator` the destination."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operation_id: str = Field(description="the workflow id: red:<position>:<idempotency key>")
    stake_id: str = Field(description="the position moved from: a stake or a redelegation")
    client_id: str
    asset: str
    amount: StrictInt = Field(gt=0)
    source: str
    validator: str
    delegator: str
    requested_by: str
    requested_at: datetime
    fee: StrictInt = Field(gt=0)
    approval_ttl_seconds: int = Field(default=24 * 3600, ge=1)
    poll_seconds: int = Field(default=5, ge=1)
    request: SignedRequest | None = None


class Decision(BaseModel):
    outcome: Literal["allow", "deny", "needs_approval"]
    rule: str
    detail: str = ""
    policy_version: int = 0
    approvals_required: int = 0


class Broadcast(BaseModel):
    """A delegation's (or undelegation's) transaction handed to the chain, or why not."""

    tx_hash: str | None = None
    error_code: str | None = None
    detail: str = ""


class TxOutcome(BaseModel):
    """The chain's verdict on the operation's transaction."""

    state: Literal["pending", "succeeded", "failed"]
    tx_hash: str | None = None
    height: int | None = None
    fee: StrictInt = 0
    detail: str = ""
    completion_time: datetime | None = Field(
        default=None,
        description="an undelegation's: when the chain releases it; a redelegation's: when "
        "the chain's redelegation entry ends",
    )
    rewards: StrictInt = Field(
        default=0,
        ge=0,
        description="rewards the chain paid the delegator's address in the same transaction "
        "(a delegation or undelegation with the validator withdraws them first)",
    )
    moved: StrictInt | None = Field(
        default=None,
        ge=0,
        description="a redelegation's: the tokens the chain delegated to the destination (the "
        "amount, or a unit less when the source's rate is below 1: the chain truncates); "
        "None if the chain does not say (booked as the amount)",
    )


class ValidatorState(BaseModel):
    """A validator as the chain reports it now: jailed for downtime or double signing, its
    bond status, and the height its current unbonding began (a jailing's mark)."""

    model_config = ConfigDict(frozen=True)

    operator: str
    jailed: bool
    status: str = Field(description="BOND_STATUS_BONDED, _UNBONDING or _UNBONDED")
    tokens: StrictInt = 0
    unbonding_height: int = 0


class DelegationView(BaseModel):
    """A delegation as the chain reports it at one height, with its validator's exchange
    rate read at the same height. A slash cuts the validator's tokens, not the delegators'
    shares: the rate (tokens per share) falls, and with it every delegation's balance."""

    model_config = ConfigDict(frozen=True)

    height: int
    shares: StrictInt = Field(
        description="the delegation's shares: the sdk.Dec's integer (value * 10**18); only "
        "the delegator's own delegations and undelegations change them, never a slash"
    )
    balance: StrictInt = Field(description="the delegation's shares at the rate, truncated")
    validator_tokens: StrictInt
    validator_shares: StrictInt = Field(
        description="the validator's delegator shares: the sdk.Dec's integer (value * 10**18)"
    )

    @property
    def rate(self) -> Fraction:
        """Tokens per share, exact (1 until the validator is first slashed)."""
        if self.validator_shares <= 0:
            return Fraction(0)
        return Fraction(self.validator_tokens * 10**18, self.validator_shares)


class Release(BaseModel):
    """An unbonding's release: what the chain gave back (less than unbonded if slashed)."""

    released: bool
    amount: StrictInt = 0


class Ended(BaseModel):
    operation_id: str
    state: Literal["rejected", "expired", "failed"]
    error_code: str | None = None
    detail: str = ""


class StakeResult(BaseModel):
    operation_id: str
    state: StakeEnding
    error_code: str | None = None
    detail: str = ""
    tx_hash: str | None = None
    fee: StrictInt | None = None


class UnstakeResult(BaseModel):
    operation_id: str
    state: UnstakeEnding
    error_code: str | None = None
    detail: str = ""
    tx_hash: str | None = None
    fee: StrictInt | None = None
    released: StrictInt | None = None


class RedelegateResult(BaseModel):
    operation_id: str
    state: RedelegateEnding
    error_code: str | None = None
    detail: str = ""
    tx_hash: str | None = None
    fee: StrictInt | None = None
    completion_time: datetime | None = None
