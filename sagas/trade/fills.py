"""Whether a provider's fill is the trade the client accepted.

The provider's reply is its own word: the platform books only a fill that is the
accepted quote, on the order it sent. Counterparty, quote, pair (so the asset), side,
quantity and client order id must match exactly; the notional and the price may each
differ by at most `tolerance_bps` basis points of the quoted ones (a provider's rounding or a price
improvement), and never so far that the platform's fee would go negative (the client
pays or gets exactly what they accepted; the fee absorbs what the tolerance lets
through).
"""

from __future__ import annotations

from sagas.liquidity import Fill, Quote
from sagas.trade.pricing import BPS


def fill_differences(
    quote: Quote, fill: Fill, client_order_id: str, client_fiat: int, tolerance_bps: int
) -> list[str]:
    """What makes the fill other than the accepted quote; empty if it may be booked."""
    out = [
        f"{name} {getattr(fill, name)!r}, quoted {getattr(quote, name)!r}"
        for name in ("counterparty", "quote_id", "pair", "side", "quantity")
        if getattr(fill, name) != getattr(quote, name)
    ]
    if fill.client_order_id != client_order_id:
        out.append(f"client order id {fill.client_order_id!r}, sent {client_order_id!r}")
    for name in ("notional", "price"):
        got, quoted = getattr(fill, name), getattr(quote, name)
        if abs(got - quoted) * BPS > tolerance_bps * quoted:
            out.append(f"{name} {got}, quoted {quoted} (more than {tolerance_bps} bps apart)")
    fee = client_fiat - fill.notional if quote.side == "buy" else fill.notional - client_fiat
    if fee < 0:
        out.append(f"the platform's fee would be {fee}")
    return out
