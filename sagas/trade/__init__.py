"""The trade saga's contract: a client buys or sells an asset against fiat at the bank.

Buy: quote (best of the providers) -> the client accepts (update, or auto-accept)
within the quote's life -> fiat hold at the bank -> execute with the provider (by
client order id) -> book the asset to the client against the provider's settlement
account -> capture the fiat into the platform's account. Sell mirrors it: reserve the
asset -> execute -> post the reservation -> pay the proceeds to the client's account.

Before execution every failure releases what was held (the bank hold, the ledger
reservation). Execution is the irreversible step: after it the saga never
compensates; it finds out (query by client order id) and completes, retrying the
fiat leg and alerting an operator while it cannot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from sagas.liquidity import Fill, Quote, Side

WORKFLOW = "Trade"
# An auto-accepted trade whose quote went stale before execution (a slow bank, a worker
# restarted) releases what it held and is quoted again, this many rounds at most.
MAX_ROUNDS = 3


def suffix(round_: int) -> str:
    """Steps, keys and client order ids of a re-quoted round: `held:2`, `<op>:hold:2`."""
    return "" if round_ == 1 else f":{round_}"


Ending = Literal["completed", "rejected", "expired"]

# States an operator sees, in order; a saga ends in one of the last three.
TRADE_STATES = (
    "requested",
    "quoted",
    "accepted",
    "held",
    "reserved",
    "executed",
    "booked",
    "payment_delayed",
    "completed",
    "rejected",
    "expired",
)


class TradeInput(BaseModel):
    """A validated trade request. Exactly one of quantity (asset minor units) and budget
    (buy only: fiat minor units to spend, fee included)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    operation_id: str = Field(description="the workflow id: tr:<client>:<idempotency key>")
    client_id: str
    side: Side
    asset: str
    decimals: int
    currency: str = "EUR"
    quantity: StrictInt | None = Field(default=None, gt=0)
    budget: StrictInt | None = Field(default=None, gt=0)
    client_iban: str
    platform_iban: str
    counterparties: list[str] = Field(min_length=1)
    fee_bps: int = Field(ge=0, le=1000)
    auto_accept: bool = False
    accept_seconds: int = Field(default=30, ge=1)
    hold_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    requested_by: str
    requested_at: datetime

    @model_validator(mode="after")
    def _one_amount(self) -> TradeInput:
        if (self.quantity is None) == (self.budget is None):
            raise ValueError("give exactly one of quantity and budget")
        if self.side == "sell" and self.budget is not None:
            raise ValueError("a sale is for a quantity of the asset")
        return self


class Priced(BaseModel):
    """The quote the client is offered: the provider's quote and the platform's fee."""

    quote: Quote | None = None
    fee: StrictInt = 0
    client_fiat: StrictInt = Field(default=0, description="buy: pays; sell: receives")
    error_code: str | None = None
    detail: str = ""
    round: int = Field(default=1, ge=1, description="auto-accepted trades re-quote when stale")


class Acceptance(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    accepted_by: str = Field(min_length=1)


class Held(BaseModel):
    """A bank hold (buy) or a ledger reservation (sell), or why there is none."""

    hold_id: str | None = None
    error_code: str | None = None
    detail: str = ""


class Executed(BaseModel):
    fill: Fill | None = None
    error_code: str | None = None
    detail: str = ""


class Paid(BaseModel):
    """The fiat leg: captured (buy) or credited (sell)."""

    payment_id: str | None = None
    amount: StrictInt = 0
    error_code: str | None = None
    detail: str = ""


class PaymentFailure(BaseModel):
    """Why the fiat leg's first attempts failed, for the payment alert: the failure's text
    for operators and its platform code as the activity raised it (None without one)."""

    detail: str
    error_code: str | None = None


class Ended(BaseModel):
    operation_id: str
    state: Ending
    error_code: str | None = None
    detail: str = ""
    hold_id: str | None = None
    round: int = 1


class TradeView(BaseModel):
    """What the saga's `view` query answers."""

    stage: str
    quote: Quote | None = None
    fee: StrictInt = 0
    client_fiat: StrictInt = 0
    accept_by: datetime | None = None


class TradeResult(BaseModel):
    operation_id: str
    state: Ending
    error_code: str | None = None
    detail: str = ""
    trade_id: str | None = None
    quantity: StrictInt | None = None
    client_fiat: StrictInt | None = None


class TradeRecord(BaseModel):
    """An executed trade as the platform booked it: what settlement nets per provider."""

    model_config = ConfigDict(frozen=True)

    operation_id: str
    client_id: str
    side: Side
    asset: str
    currency: str
    counterparty: str
    client_order_id: str
    quote_id: str
    trade_id: str
    price: StrictInt
    quantity: StrictInt
    lp_notional: StrictInt
    fee: StrictInt
    client_fiat: StrictInt
    executed_at: datetime
    settlement_id: str | None = None
