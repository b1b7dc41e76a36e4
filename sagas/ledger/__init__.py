"""The custody ledger's domain: assets, accounts, two-phase transfers, balances.

Double-entry, per asset, amounts as integers in the asset's minor unit. Modelled
on TigerBeetle's accounts and transfers: every account carries four counters
(debits/credits, pending/posted); a pending transfer reserves, a post (full or
partial) or a void resolves it; client accounts may never have their debits
(posted + pending) exceed their posted credits. The rules that change counters
live in `sagas.ledger.rules`, shared by every implementation.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9:._/@-]{0,127}$"
# Amounts fit uint256 (the largest any supported chain has) and numeric(78, 0).
MAX_AMOUNT = 2**256 - 1


class Asset(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str = Field(pattern=r"^[A-Z][A-Z0-9]{1,11}$", examples=["BTC"])
    decimals: StrictInt = Field(ge=0, le=36, description="digits of the minor unit")


# The assets the platform knows from the start; a deployment registers its own too.
BTC = Asset(code="BTC", decimals=8)
ETH = Asset(code="ETH", decimals=18)
CTUSD = Asset(code="CTUSD", decimals=6)  # the stack's test stablecoin (infra/contracts/)
ATOM = Asset(code="ATOM", decimals=6)  # the proof-of-stake chain's staking token (uatom)
EUR = Asset(code="EUR", decimals=2)
CHF = Asset(code="CHF", decimals=2)


class AccountKind(StrEnum):
    CLIENT_AVAILABLE = "client_available"
    CLIENT_HELD = "client_held"
    STAKING_LOCKED = "staking_locked"
    OMNIBUS = "omnibus"
    IN_FLIGHT = "in_flight"
    FEES = "fees"
    COUNTERPARTY_SETTLEMENT = "counterparty_settlement"
    SUSPENSE = "suspense"

    @property
    def no_overdraft(self) -> bool:
        """Client money: debits (posted + pending) may never exceed posted credits."""
        return self in _CLIENT_KINDS


_CLIENT_KINDS = frozenset(
    {AccountKind.CLIENT_AVAILABLE, AccountKind.CLIENT_HELD, AccountKind.STAKING_LOCKED}
)


class Account(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=ID_PATTERN)
    asset: str
    kind: AccountKind
    owner: str | None = Field(default=None, description="the client id, for client accounts")


class Transfer(BaseModel):
    """Move `amount` from debit to credit account; `pending=True` only reserves it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["transfer"] = "transfer"
    id: str = Field(pattern=ID_PATTERN, description="caller-given; the idempotency key")
    debit_account: str
    credit_account: str
    asset: str
    amount: StrictInt = Field(le=MAX_AMOUNT)
    pending: bool = False
    expires_at: datetime | None = Field(default=None, description="pending only: void after")
    reference: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _expiry_only_when_pending(self) -> Transfer:
        if self.expires_at is not None and not self.pending:
            raise ValueError("expires_at applies to pending transfers only")
        if self.expires_at is not None:
            if self.expires_at.tzinfo is None:
                raise ValueError("expires_at must carry a timezone")
            # One spelling per instant, so a retry in another timezone is the same body.
            object.__setattr__(self, "expires_at", self.expires_at.astimezone(UTC))
        return self


class PostPending(BaseModel):
    """Complete a pending transfer, for its full amount or (amount given) part of it;
    the rest of the reservation is released."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["post"] = "post"
    id: str = Field(pattern=ID_PATTERN)
    pending_id: str
    amount: StrictInt | None = Field(default=None, le=MAX_AMOUNT)


class VoidPending(BaseModel):
    """Release a pending transfer's whole reservation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["void"] = "void"
    id: str = Field(pattern=ID_PATTERN)
    pending_id: str


Command = Annotated[Transfer | PostPending | VoidPending, Field(discriminator="kind")]

RecordKind = Literal["transfer", "pending", "post", "void", "expire"]
PendingState = Literal["pending", "posted", "voided", "expired"]


class TransferRecord(BaseModel):
    """A transfer as the ledger recorded it, in commit order (`seq`).

    `amount` is what moved (transfer, post) or was reserved (pending) or released
    (void, expire); `pending_amount` is the reservation a post/void/expire resolved.
    """

    model_config = ConfigDict(frozen=True)

    seq: int
    id: str
    kind: RecordKind
    debit_account: str
    credit_account: str
    asset: str
    amount: int
    pending_id: str | None = None
    pending_amount: int | None = None
    expires_at: datetime | None = None
    reference: str | None = None
    recorded_at: datetime


class Balance(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_id: str
    asset: str
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    @property
    def total(self) -> int:
        """Posted credits minus posted debits (what a client owns)."""
        return self.credits_posted - self.debits_posted

    @property
    def held(self) -> int:
        """Reserved by pending debits."""
        return self.debits_pending

    @property
    def available(self) -> int:
        """What can be spent now: total less what is held."""
        return self.total - self.debits_pending
