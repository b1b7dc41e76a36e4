"""Signing as a Temporal activity served only by the signer process.

The signer process (services/signer) is the one worker polling TASK_QUEUE, and the
only process whose OpenBao role may unwrap seeds. Sagas reach it by running the
activities below on that queue; nothing else ever holds key material.

The signer is asked to sign a whole transaction, never a digest: it rebuilds what it
signs (the Bitcoin sighashes from the unsigned transaction and the outputs it spends,
the exact EIP-1559 fields) and checks it against the authorised payment.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

TASK_QUEUE = "custody-signer"


class SignEvmRequest(BaseModel):
    operation_id: str = Field(min_length=1)
    signer_queue: str = Field(default=TASK_QUEUE, description="the signer's task queue")
    wallet_id: str
    index: int = Field(ge=0)
    tx: dict[str, int | str] = Field(description="an unsigned EIP-1559 transaction")


class SignedTransaction(BaseModel):
    raw_hex: str


_HEX = r"^([0-9a-f]{2})+$"


class BtcInput(BaseModel):
    """An input with the output it spends (BIP174's witness UTXO) and the wallet key the
    caller claims for it: the signer derives that key and refuses unless its script is
    the prevout's. The prevout's value is committed to by the BIP143 sighash, so a false
    value only yields a signature the chain refuses."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    txid: str = Field(pattern=r"^[0-9a-f]{64}$")
    vout: int = Field(ge=0, le=0xFFFFFFFF)
    sequence: int = Field(ge=0, le=0xFFFFFFFF)
    value: int = Field(gt=0, le=21 * 10**14, description="sat, the prevout's value")
    script_pubkey_hex: str = Field(pattern=_HEX, description="the prevout's scriptPubKey")
    change: int = Field(ge=0, le=1, description="the claimed derivation: chain")
    index: int = Field(ge=0, lt=2**31, description="the claimed derivation: index")


class BtcOutput(BaseModel):
    """An output; `change_index` claims it pays the wallet's own internal chain
    (m/84'/c'/0'/1/change_index), which the signer checks by deriving it. In a batch
    (decision 0025) `pays` names the operation whose authorised payment the output is:
    the signer checks each such output against that operation's own authorisation."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    script_pubkey_hex: str = Field(pattern=_HEX)
    value: int = Field(ge=0, le=21 * 10**14, description="sat")
    change_index: int | None = Field(default=None, ge=0, lt=2**31)
    pays: str | None = Field(default=None, min_length=1, description="a batch member")


BATCH_PREFIX = "btc-batch:"


def fee_shares(fee: int, members: int) -> list[int]:
    """How a batch's fee is split between its members, in output order: equal shares in
    whole satoshis, the remainder one satoshi each to the first members. The signer
    holds each share to its member's fee cap; each saga books its own share, and the
    shares add up to the fee exactly."""
    if members <= 0 or fee < 0:
        raise ValueError("a batch has members and a fee of zero or more")
    base, extra = divmod(fee, members)
    return [base + (1 if n < extra else 0) for n in range(members)]


class UnsignedBtcTransaction(BaseModel):
    """A PSBT-equivalent: the unsigned transaction and, per input, what it spends."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1, le=2)
    locktime: int = Field(ge=0, le=0xFFFFFFFF)
    inputs: list[BtcInput] = Field(min_length=1)
    outputs: list[BtcOutput] = Field(min_length=1)
    not_after: AwareDatetime | None = Field(
        default=None,
        description="the signer signs nothing for this request after this instant (its "
        "own clock): the sender may then treat an unanswered request as never signed",
    )

    @property
    def fee(self) -> int:
        return sum(i.value for i in self.inputs) - sum(o.value for o in self.outputs)


class SignBtcRequest(BaseModel):
    operation_id: str = Field(min_length=1)
    signer_queue: str = Field(default=TASK_QUEUE, description="the signer's task queue")
    wallet_id: str
    tx: UnsignedBtcTransaction


class SignCosmosRequest(BaseModel):
    """A Cosmos SDK transaction to sign (SIGN_MODE_DIRECT) with the wallet's key at
    m/44'/118'/0'/0/index: the body and auth-info bytes exactly as they will be
    broadcast. The signer decodes them itself and signs only what it read."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    operation_id: str = Field(min_length=1)
    signer_queue: str = Field(default=TASK_QUEUE, description="the signer's task queue")
    wallet_id: str
    index: int = Field(ge=0, lt=2**31)
    body_bytes_hex: str = Field(pattern=_HEX, max_length=20_000)
    auth_info_bytes_hex: str = Field(pattern=_HEX, max_length=4_000)
    chain_id: str = Field(min_length=1, max_length=64)
    account_number: int = Field(ge=0, lt=2**64)


class Authorised(BaseModel):
    """The one payment an operation authorises the signer to make: every check of what
    the signer signs reads this, and only this."""

    model_config = ConfigDict(frozen=True)
    operation_id: str
    kind: Literal["withdrawal", "settlement", "stake", "unstake", "redelegate"]
    client_id: str | None
    chain: Literal["bitcoin", "ethereum", "cosmos"]
    asset: str
    amount: int = Field(gt=0)
    destination: str
    fee_cap: int = Field(gt=0, description="the most fee, in the chain's minor unit")
    intent_hash: str = Field(description="the intent that authorises it")
    velocity_limit: int | None = Field(
        default=None, description="the policy's 24 h limit, checked again under a lock"
    )
    holder: str = Field(default="", description="whose policy: the client or `settlement`")
    request_claims: tuple[str, ...] = Field(
        default=(),
        description="what this payment claims in the signer's record, so that it pays one "
        "operation only: the client's signed request, or each trade a counterparty "
        "confirmed for settlement in this asset",
    )
    source: str = Field(
        default="",
        description="an unstake's or a redelegation's position's validator, verified from "
        "the position's signed intents back to its stake",
    )
