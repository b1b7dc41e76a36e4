"""A counterparty's signed confirmation of a settlement: what the provider agrees the
platform owes it (and it owes the platform) for one settlement, signed with the
provider's own Ed25519 key.

The platform proposes the net legs of a counterparty's trades; the provider checks them
against its own fills and, if they agree, answers with this confirmation. The signer
pays one of the platform's settlement legs only if the provider's registered key
(governance: `counterparty_key_change`) signed exactly that leg: a compromised worker
or database can no longer invent a leg, change its amount, or settle one confirmation
twice. Like a matched trade confirmation (SWIFT MT304/MT300), both sides hold the same
record of what is owed.

Byte format, fixed because signatures outlive code: Ed25519 over
``CONFIRMATION_DOMAIN + RFC 8785 canonical JSON`` of the confirmation without its
`signature` member; amounts as decimal strings; the signature base64url, unpadded.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final, Literal

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field

from sagas.intents import MinorUnits, RegisteredKey, UtcSeconds, b64url, key_id, verify_signature

CONFIRMATION_VERSION: Final = "custody.settlement-confirmation.v1"
CONFIRMATION_DOMAIN = b"custody.settlement-confirmation.v1\n"


class ConfirmedLeg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    asset: str = Field(pattern=r"^[A-Z0-9]{2,12}$")
    amount: MinorUnits
    payer: Literal["provider", "platform"]
    to: str = Field(min_length=1, max_length=128)


class SettlementConfirmation(BaseModel):
    """The provider's signed agreement to one settlement's legs."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    version: Literal["custody.settlement-confirmation.v1"] = CONFIRMATION_VERSION
    counterparty: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")
    settlement_id: str = Field(min_length=1, max_length=128)
    end_to_end_id: str = Field(min_length=1, max_length=35)
    legs: list[ConfirmedLeg] = Field(min_length=1, max_length=32)
    # The provider's client order ids of the trades this settlement nets: the signer
    # settles each trade once per asset.
    orders: list[str] = Field(min_length=1, max_length=10_000)
    confirmed_at: UtcSeconds
    key_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    signature: str = Field(default="", max_length=128)

    def message(self) -> bytes:
        body = self.model_dump(mode="json", exclude={"signature"})
        return CONFIRMATION_DOMAIN + rfc8785.dumps(body)

    def leg(self, asset: str, payer: str) -> ConfirmedLeg | None:
        """The one leg of `asset` paid by `payer`; None if there is none or several."""
        found = [leg for leg in self.legs if leg.asset == asset and leg.payer == payer]
        return found[0] if len(found) == 1 else None


def sign_confirmation(
    private_key: Ed25519PrivateKey,
    counterparty: str,
    settlement_id: str,
    end_to_end_id: str,
    legs: list[ConfirmedLeg],
    orders: list[str],
    confirmed_at: datetime,
) -> SettlementConfirmation:
    """The provider's side: confirm these legs with its key."""
    unsigned = SettlementConfirmation(
        counterparty=counterparty,
        settlement_id=settlement_id,
        end_to_end_id=end_to_end_id,
        legs=list(legs),
        orders=list(orders),
        confirmed_at=confirmed_at.replace(microsecond=0),
        key_id=key_id(private_key),
    )
    return unsigned.model_copy(update={"signature": b64url(private_key.sign(unsigned.message()))})


def verify_confirmation(
    confirmation: SettlementConfirmation, keys: Mapping[str, RegisteredKey]
) -> bool:
    """Signed by a key registered to the confirmation's own counterparty."""
    registered = keys.get(confirmation.key_id)
    if registered is None or registered.owner != confirmation.counterparty:
        return False
    return verify_signature(registered.public_key, confirmation.signature, confirmation.message())
