"""Prices, fees and rounding of trades: integers only, every rounding named.

A price is in the fiat's minor unit (cents) per one whole unit of the asset
(1 BTC = 10**8 sat). `notional = quantity * price / 10**decimals` is rarely whole
in cents, so each side of a trade rounds in a stated direction:

- the liquidity provider rounds its notional in its own favour: up when it sells
  to the platform (the platform's buy), down when it buys (the platform's sell);
- the platform's fee is `fee_bps` basis points of the provider's notional, rounded
  up to the cent;
- a client buying pays `notional + fee`; a client selling receives
  `notional - fee`. Nothing else is rounded, so per trade
  `client_fiat == notional ± fee` exactly and the asset quantity booked to the
  client is exactly the quantity the provider delivers: no unit is created or lost.

For a buy by notional (the client names what they spend, fee included) the saga asks
the provider for the largest notional whose total with the fee fits the budget
(`budget * BPS // (BPS + fee_bps)`); the cents it leaves over are never held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Side = Literal["buy", "sell"]
BPS = 10_000


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def lp_notional(side: Side, quantity: int, price: int, decimals: int) -> int:
    """What the provider charges (platform buys) or pays (platform sells), in cents."""
    exact_times_scale = quantity * price
    scale: int = 10**decimals
    if side == "buy":
        return _ceil_div(exact_times_scale, scale)
    return exact_times_scale // scale


def fee(notional: int, fee_bps: int) -> int:
    """The platform's fee in cents: fee_bps of the notional, rounded up."""
    return _ceil_div(notional * fee_bps, BPS)


def quantity_for_proceeds(notional: int, price: int, decimals: int) -> int:
    """The smallest quantity the provider pays at least `notional` cents for (a sell by
    notional, before the platform's fee)."""
    if notional <= 0 or price <= 0:
        return 0
    scale: int = 10**decimals
    return _ceil_div(notional * scale, price)


@dataclass(frozen=True)
class Settlement:
    """What one trade moves: the asset quantity, the provider's fiat, the client's fiat
    and the platform's fee (all integers, minor units)."""

    side: Side
    quantity: int
    lp_notional: int
    fee: int
    client_fiat: int

    @property
    def balanced(self) -> bool:
        if self.side == "buy":
            return self.client_fiat == self.lp_notional + self.fee
        return self.client_fiat + self.fee == self.lp_notional


def settle(side: Side, quantity: int, price: int, decimals: int, fee_bps: int) -> Settlement:
    notional = lp_notional(side, quantity, price, decimals)
    charged = fee(notional, fee_bps)
    if side == "sell":
        charged = min(charged, notional)  # the fee never takes more than the proceeds
    client = notional + charged if side == "buy" else notional - charged
    return Settlement(side, quantity, notional, charged, client)


def within_rounding(side: Side, quantity: int, price: int, decimals: int, notional: int) -> bool:
    """Whether a provider's notional is the exact value rounded by at most one cent, in
    its stated direction: the platform checks every quote it is given."""
    return notional == lp_notional(side, quantity, price, decimals)
