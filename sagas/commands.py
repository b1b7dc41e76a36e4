"""Commands bank systems put on `custody.commands.v1`, and the answers the platform puts
on `custody.events.v1` (keyed by the command's subject, correlated by its id)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from sagas.intents import SignedRequest

CREATE_WITHDRAWAL = "custody.command.withdrawal.create.v1"
CREATE_STAKE = "custody.command.stake.create.v1"
CREATE_UNSTAKE = "custody.command.unstake.create.v1"
CREATE_REDELEGATION = "custody.command.redelegation.create.v1"
ACCEPTED = "custody.command.accepted.v1"
REJECTED = "custody.command.rejected.v1"
# The router could not handle the command (an unexpected error, again and again): its
# outcome is unknown. Not a refusal: send it again with the same idempotency key.
FAILED = "custody.command.failed.v1"


class CreateWithdrawalCommand(BaseModel):
    """The data of a withdrawal command: the API's body, plus who asks and the key."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=64)
    idempotency_key: str = Field(
        min_length=1, max_length=64, description="names the saga, as the HTTP header does"
    )
    requested_by: str = Field(min_length=1, max_length=128)
    asset: str = Field(examples=["ETH"])
    amount: str = Field(description="a decimal string in the asset's unit", examples=["0.25"])
    destination: str
    request: SignedRequest | None = Field(
        default=None,
        description="the client's signed request (required): the signature over "
        "POST /v1/clients/{client_id}/withdrawals and the body {asset, amount, destination, "
        "requested_by?} "
        "exactly as signed; the router checks it as the API does, the signer again",
    )


class CreateStakeCommand(BaseModel):
    """The data of a stake command: the API's body, plus who asks and the key."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=64)
    idempotency_key: str = Field(
        min_length=1, max_length=64, description="names the saga, as the HTTP header does"
    )
    requested_by: str = Field(min_length=1, max_length=128)
    asset: str = Field(examples=["ATOM"])
    amount: str = Field(description="a decimal string in the asset's unit", examples=["12.5"])
    validator: str = Field(description="a validator's operator address on the allow-list")
    request: SignedRequest | None = Field(
        default=None,
        description="the client's signed request (required): the signature over "
        "POST /v1/clients/{client_id}/stakes and the body {asset, amount, validator} exactly "
        "as signed; the router checks it as the API does, the signer again",
    )


class CreateUnstakeCommand(BaseModel):
    """The data of an unstake command: the API's body, plus the stake, who asks, the key."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=64, description="the stake's client")
    stake_id: str = Field(min_length=1, max_length=200)
    idempotency_key: str = Field(min_length=1, max_length=64)
    requested_by: str = Field(min_length=1, max_length=128)
    amount: str = Field(description="a decimal string in the stake's asset", examples=["2.5"])
    request: SignedRequest | None = Field(
        default=None,
        description="the client's signed request (required): the signature over "
        "POST /v1/stakes/{stake_id}/unstake and the body {amount} exactly as signed",
    )


class CreateRedelegationCommand(BaseModel):
    """The data of a redelegation command: the API's body, plus the position, who asks,
    the key."""

    model_config = ConfigDict(extra="forbid")

    client_id: str = Field(min_length=1, max_length=64, description="the position's client")
    stake_id: str = Field(
        min_length=1, max_length=1000, description="the position: a stake or a redelegation"
    )
    idempotency_key: str = Field(min_length=1, max_length=64)
    requested_by: str = Field(min_length=1, max_length=128)
    amount: str = Field(description="a decimal string in the position's asset", examples=["2.5"])
    validator: str = Field(description="another validator on the allow-list")
    request: SignedRequest | None = Field(
        default=None,
        description="the client's signed request (required): the signature over "
        "POST /v1/stakes/{stake_id}/redelegate and the body {amount, validator} exactly as "
        "signed",
    )


class CommandAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    correlation_id: str = Field(description="the command's CloudEvent id")
    operation_id: str | None = Field(default=None, description="accepted: the saga")
    state: str | None = Field(default=None, description="accepted: the saga's state now")
    error_code: str | None = None
    code: str | None = Field(default=None, description="rejected: the stable error code")
    title: str | None = None
    detail: str | None = None


PAYLOADS: dict[str, type[BaseModel]] = {
    CREATE_WITHDRAWAL: CreateWithdrawalCommand,
    CREATE_STAKE: CreateStakeCommand,
    CREATE_UNSTAKE: CreateUnstakeCommand,
    CREATE_REDELEGATION: CreateRedelegationCommand,
    ACCEPTED: CommandAnswer,
    REJECTED: CommandAnswer,
    FAILED: CommandAnswer,
}
