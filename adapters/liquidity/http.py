"""The liquidity port over a provider's HTTP API (infra/simulators/liquidity.py speaks
it), one adapter per counterparty. Executing an order is never retried here: after no
answer its fate is unknown, and the saga queries it by client order id first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from adapters.http_client import JsonHttp
from sagas.errors import (
    CustodyError,
    DependencyUnavailable,
    OrderUnknown,
    QuoteExpired,
    QuoteInvalid,
    SettlementMismatch,
    TradeRejected,
)
from sagas.liquidity import (
    Fill,
    Quote,
    SettlementInstructions,
    SettlementLeg,
    SettlementState,
    Side,
)

_REFUSALS: dict[str, type[CustodyError]] = {
    "QUOTE_EXPIRED": QuoteExpired,
    "REJECTED": TradeRejected,
    "UNKNOWN_QUOTE": QuoteExpired,
    "UNKNOWN_ORDER": OrderUnknown,
    "UNKNOWN_PAIR": QuoteInvalid,
    "AMOUNT_TOO_SMALL": QuoteInvalid,
    "MISMATCH": SettlementMismatch,
    "SETTLEMENT_ID_REUSED": SettlementMismatch,
}


def refusal(status: int, body: dict[str, Any]) -> CustodyError:
    """Only an answer the provider states is a refusal; anything else (a 5xx, a proxy's
    page, an unknown code) leaves the outcome unknown: transient, ask again."""
    code = str(body.get("code", f"HTTP {status}"))
    known = _REFUSALS.get(code)
    if known is None or status >= 500:
        return DependencyUnavailable(f"{code}: {str(body.get('detail', ''))[:200]}")
    return known(f"{code}: {body.get('detail', '')}")


class HttpLiquidity:
    def __init__(
        self, base_url: str, counterparty: str, timeout: float = 5.0, attempts: int = 2
    ) -> None:
        self.counterparty = counterparty
        self._http = JsonHttp(
            f"{base_url.rstrip('/')}/v1/lp/{counterparty}",
            f"liquidity {counterparty}",
            timeout=timeout,
            attempts=attempts,
        )

    def __repr__(self) -> str:
        return f"HttpLiquidity({self.counterparty})"

    def quote(
        self, pair: str, side: Side, quantity: int | None = None, notional: int | None = None
    ) -> Quote:
        body: dict[str, Any] = {"pair": pair, "side": side}
        body.update({"quantity": quantity} if quantity is not None else {"notional": notional})
        status, answer = self._http.call("POST", "/quotes", body)
        if status >= 400:
            raise refusal(status, answer)
        return Quote.model_validate(answer)

    def _fill(self, status: int, answer: dict[str, Any]) -> Fill:
        if status < 400 and answer.get("status") == "filled":
            return Fill.model_validate(answer)
        if answer.get("status") == "rejected":  # the order's recorded fate
            raise _REFUSALS.get(str(answer.get("code")), TradeRejected)(str(answer.get("code")))
        raise refusal(status, answer)

    def execute(self, quote_id: str, client_order_id: str) -> Fill:
        status, answer = self._http.call(
            "POST",
            "/orders",
            {"quote_id": quote_id, "client_order_id": client_order_id},
            retry=False,
        )
        return self._fill(status, answer)

    def order(self, client_order_id: str) -> Fill:
        status, answer = self._http.call("GET", f"/orders/{client_order_id}")
        return self._fill(status, answer)

    def instructions(self) -> SettlementInstructions:
        status, answer = self._http.call("GET", "/settlement-instructions")
        if status >= 400:
            raise refusal(status, answer)
        return SettlementInstructions.model_validate(answer)

    def settle(
        self,
        settlement_id: str,
        end_to_end_id: str,
        orders: Sequence[str],
        legs: Sequence[SettlementLeg],
    ) -> SettlementState:
        body = {
            "settlement_id": settlement_id,
            "end_to_end_id": end_to_end_id,
            "orders": list(orders),
            "legs": [leg.model_dump(include={"asset", "amount", "payer", "to"}) for leg in legs],
        }
        status, answer = self._http.call("POST", "/settlements", body)
        if status >= 400:
            raise refusal(status, answer)
        try:
            return SettlementState.model_validate(answer)
        except ValidationError:
            # Taken, but answered with what the platform cannot read (a confirmation in
            # another format): a refusal, so the settlement is compensated (cancelled at
            # the provider), not retried for ever with the trades held there.
            raise SettlementMismatch("the provider's answer is not a settlement") from None

    def confirmation_key(self) -> bytes:
        status, answer = self._http.call("GET", "/keys")
        if status >= 400:
            raise refusal(status, answer)
        return bytes.fromhex(str(answer["public_key"]))

    def settlement(self, settlement_id: str) -> SettlementState:
        status, answer = self._http.call("GET", f"/settlements/{settlement_id}")
        if status >= 400:
            raise refusal(status, answer)
        return SettlementState.model_validate(answer)

    def cancel_settlement(self, settlement_id: str) -> SettlementState:
        status, answer = self._http.call("POST", f"/settlements/{settlement_id}/cancel", {})
        if status >= 400:
            raise refusal(status, answer)
        return SettlementState.model_validate(answer)
