"""The trade saga's events: `custody.trade.<step>.v1` on the events topic, keyed by the
client's account in the asset, one payload model for every step. Amounts are integer
strings: quantities in the asset's minor unit, fiat in cents."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

STEPS = (
    "requested",
    "quoted",
    "accepted",
    "held",
    "reserved",
    "executed",
    "booked",
    "released",
    "payment_delayed",
    "completed",
    "rejected",
    "expired",
)
PAYMENT_ALERT = "custody.alert.trade_payment_delayed.v1"
FILL_ALERT = "custody.alert.trade_fill_mismatch.v1"


def event_type(step: str) -> str:
    return f"custody.trade.{step}.v1"


class TradeStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operation_id: str = Field(examples=["tr:acme-treasury:order-0001"])
    client_id: str
    side: str = Field(examples=["buy"])
    asset: str = Field(examples=["BTC"])
    currency: str = Field(examples=["EUR"])
    quantity: str | None = Field(default=None, description="asset minor units")
    budget: str | None = Field(default=None, description="requested: fiat to spend, cents")
    requested_by: str | None = None
    counterparty: str | None = Field(default=None, description="quoted and after")
    quote_id: str | None = None
    price: str | None = Field(default=None, description="cents per whole unit of the asset")
    lp_notional: str | None = Field(default=None, description="cents the provider charges/pays")
    fee: str | None = Field(default=None, description="the platform's fee, cents")
    client_fiat: str | None = Field(default=None, description="cents the client pays/receives")
    expires_at: str | None = None
    accepted_by: str | None = None
    hold_id: str | None = Field(default=None, description="buy: the bank hold")
    trade_id: str | None = Field(default=None, description="the provider's trade id")
    payment_id: str | None = Field(default=None, description="the bank's payment id")
    end_to_end_id: str | None = None
    error_code: str | None = None
    detail: str | None = None


class TradePaymentDelayed(BaseModel):
    """Alert: a trade was executed but its fiat leg keeps failing; the saga keeps trying."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str
    client_id: str
    side: str
    amount: str = Field(description="cents to capture (buy) or pay (sell)")
    error_code: str | None = None
    detail: str
    action: str


class TradeFillMismatch(BaseModel):
    """Alert: a provider filled an order other than the accepted quote (beyond the
    tolerance). Nothing was booked or charged to the client; the provider's trade
    stands at the provider until an operator resolves it with them."""

    model_config = ConfigDict(extra="forbid")

    operation_id: str
    client_id: str
    counterparty: str = Field(description="the provider the order went to")
    client_order_id: str
    trade_id: str = Field(description="the provider's trade id")
    side: str
    asset: str
    quoted_quantity: str = Field(description="asset minor units")
    filled_quantity: str
    quoted_notional: str = Field(description="cents")
    filled_notional: str
    differences: list[str]
    action: str


PAYLOADS: dict[str, type[BaseModel]] = {
    **{event_type(step): TradeStep for step in STEPS},
    PAYMENT_ALERT: TradePaymentDelayed,
    FILL_ALERT: TradeFillMismatch,
}
