"""Liquidity providers as the liquidity port speaks them: firm quotes that expire, fills
by client order id, settlement instructions. Sides are the platform's (`buy`: the
platform buys the asset from the provider). Prices are integer cents per whole unit
of the asset; quantities are the asset's minor unit; notionals are cents."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from sagas.confirmations import SettlementConfirmation

Side = Literal["buy", "sell"]


class Quote(BaseModel):
    model_config = ConfigDict(frozen=True)

    quote_id: str
    counterparty: str
    pair: str = Field(examples=["BTC-EUR"])
    side: Side
    price: StrictInt = Field(description="cents per whole unit of the asset")
    quantity: StrictInt = Field(description="asset minor units")
    notional: StrictInt = Field(description="cents, rounded in the provider's favour")
    expires_at: datetime


class Fill(BaseModel):
    """An executed order (a trade with the provider)."""

    model_config = ConfigDict(frozen=True)

    trade_id: str
    counterparty: str
    client_order_id: str
    quote_id: str
    pair: str
    side: Side
    price: StrictInt
    quantity: StrictInt
    notional: StrictInt
    executed_at: datetime


class SettlementInstructions(BaseModel):
    """Where a provider takes and pays each leg: its IBAN and its address per asset."""

    model_config = ConfigDict(frozen=True)

    counterparty: str
    iban: str
    bic: str
    addresses: dict[str, str] = Field(default_factory=dict)


def pair(asset: str, currency: str) -> str:
    return f"{asset}-{currency}"


class SettlementLeg(BaseModel):
    """One net leg of a settlement: who pays, what, to where (an address or an IBAN);
    `reference` is the delivery's transaction hash or payment id once delivered."""

    model_config = ConfigDict(frozen=True)

    asset: str
    amount: StrictInt = Field(gt=0)
    payer: Literal["provider", "platform"]
    to: str
    status: str = "pending"
    reference: str | None = None


class SettlementState(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str = Field(examples=["accepted"])
    legs: list[SettlementLeg]
    # The provider's signed agreement to the legs (what the signer pays the platform's
    # legs from); None from a provider that sent none.
    confirmation: SettlementConfirmation | None = None
