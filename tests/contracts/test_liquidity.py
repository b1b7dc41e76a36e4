"""Liquidity contract: the fake and the HTTP adapter against the real provider simulator
quote with the stated rounding, fill once per client order id, refuse stale quotes, and
answer queries by client order id."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from adapters.liquidity.http import HttpLiquidity
from sagas.confirmations import verify_confirmation
from sagas.errors import OrderUnknown, QuoteExpired, QuoteInvalid, SettlementMismatch
from sagas.intents import RegisteredKey
from sagas.liquidity import SettlementLeg
from sagas.ports import Liquidity
from sagas.trade.pricing import lp_notional
from services.settings import PlatformSettings
from tests.fakes_trading import FakeLiquidity
from tests.simulators import set_faults


def coid() -> str:
    return f"o-{uuid.uuid4().hex}"


class LiquidityContract:
    @pytest.fixture
    def lp(self) -> Liquidity:
        raise NotImplementedError

    def test_is_a_liquidity_provider(self, lp: Liquidity) -> None:
        assert isinstance(lp, Liquidity)

    @pytest.mark.parametrize("side", ["buy", "sell"])
    def test_quotes_round_in_the_providers_favour(self, lp: Liquidity, side: str) -> None:
        q = lp.quote("BTC-EUR", side, quantity=12_345_678)  # type: ignore[arg-type]
        assert q.quantity == 12_345_678 and q.counterparty == lp.counterparty
        assert q.notional == lp_notional(side, q.quantity, q.price, 8)  # type: ignore[arg-type]
        exact = q.quantity * q.price
        assert (q.notional * 10**8 >= exact) if side == "buy" else (q.notional * 10**8 <= exact)
        by_notional = lp.quote("ETH-EUR", "buy", notional=100_000)
        assert by_notional.notional <= 100_000 and by_notional.quantity > 0
        bid = lp.quote("BTC-EUR", "sell", quantity=10**8).price
        ask = lp.quote("BTC-EUR", "buy", quantity=10**8).price
        assert bid < ask  # the spread

    def test_an_order_fills_once_per_client_order_id(self, lp: Liquidity) -> None:
        q = lp.quote("BTC-EUR", "buy", quantity=1_000_000)
        order = coid()
        with pytest.raises(OrderUnknown):
            lp.order(order)
        fill = lp.execute(q.quote_id, order)
        assert (fill.quantity, fill.notional, fill.price) == (q.quantity, q.notional, q.price)
        assert lp.execute(q.quote_id, order).trade_id == fill.trade_id
        assert lp.order(order).trade_id == fill.trade_id

    def test_unknown_pairs_and_stale_quotes_are_refused(self, lp: Liquidity) -> None:
        with pytest.raises(QuoteInvalid):
            lp.quote("DOGE-EUR", "buy", quantity=1)
        with pytest.raises(QuoteExpired):
            lp.execute("q-never-issued", coid())

    def test_a_settlement_must_match_the_providers_net(self, lp: Liquidity) -> None:
        """Withheld delivery (HTTP): only the hand-over and its reconciliation are checked."""
        buy = lp.execute(lp.quote("BTC-EUR", "buy", quantity=2_000).quote_id, coid())
        sell = lp.execute(lp.quote("BTC-EUR", "sell", quantity=500).quote_id, coid())
        orders = [buy.client_order_id, sell.client_order_id]
        sid = f"st-{uuid.uuid4().hex[:8]}"
        iban = lp.instructions().iban
        legs = [
            SettlementLeg(asset="BTC", amount=1_500, payer="provider", to="sb1qplatform"),
            SettlementLeg(
                asset="EUR", amount=buy.notional - sell.notional, payer="platform", to=iban
            ),
        ]
        wrong = [legs[0].model_copy(update={"amount": 1_501}), legs[1]]
        with pytest.raises(SettlementMismatch):
            lp.settle(sid, "E2E1", orders, wrong)
        # It confirms what it is paid only to its own instructions, each leg once.
        elsewhere = [legs[0], legs[1].model_copy(update={"to": "DE89370400440532013000"})]
        with pytest.raises(SettlementMismatch):
            lp.settle(sid, "E2E1", orders, elsewhere)
        with pytest.raises(SettlementMismatch):
            lp.settle(sid, "E2E1", orders, [*legs, legs[0]])
        with pytest.raises(SettlementMismatch):
            lp.settle(sid, "E2E1", [*orders, orders[0]], legs)
        state = lp.settle(sid, "E2E1", orders, legs)
        assert state.status == "accepted" and len(state.legs) == 2
        again = lp.settle(sid, "E2E1", orders, legs)
        assert again.status == "accepted"  # idempotent, with the same confirmation
        # The provider confirms exactly these legs with the key it publishes.
        confirmation = state.confirmation
        assert confirmation is not None and again.confirmation == confirmation
        assert (confirmation.counterparty, confirmation.settlement_id) == (lp.counterparty, sid)
        assert {(x.asset, x.amount, x.payer, x.to) for x in confirmation.legs} == {
            (x.asset, x.amount, x.payer, x.to) for x in legs
        }
        assert confirmation.orders == orders
        published = {
            k.key_id: k for k in [RegisteredKey.of(lp.counterparty, lp.confirmation_key())]
        }
        assert verify_confirmation(confirmation, published)
        assert not verify_confirmation(
            confirmation.model_copy(update={"settlement_id": f"{sid}-x"}), published
        )
        assert lp.settlement(sid).confirmation == confirmation
        with pytest.raises(SettlementMismatch):  # the fills are taken
            lp.settle(f"{sid}-again", "E2E2", orders, legs)
        assert lp.cancel_settlement(sid).status == "cancelled"

    def test_instructions_name_an_iban(self, lp: Liquidity) -> None:
        ssi = lp.instructions()
        assert ssi.counterparty == lp.counterparty and ssi.iban.startswith("DE")


class TestFakeLiquidity(LiquidityContract):
    @pytest.fixture
    def lp(self) -> Liquidity:
        return FakeLiquidity()

    def test_a_quote_expires(self) -> None:
        lp = FakeLiquidity(ttl_seconds=1)
        q = lp.quote("BTC-EUR", "buy", quantity=1_000)
        time.sleep(1.2)
        order = coid()
        with pytest.raises(QuoteExpired):
            lp.execute(q.quote_id, order)
        with pytest.raises(QuoteExpired):
            lp.order(order)  # the refusal is the order's fate


class TestHttpLiquidity(LiquidityContract):
    @pytest.fixture
    def lp(self, stack_settings: PlatformSettings) -> Iterator[Liquidity]:
        # A counterparty of its own, its deliveries withheld: nothing moves on the chains.
        name = f"lp-c{uuid.uuid4().hex[:6]}"
        httpx.put(f"{stack_settings.lp_url}/admin/counterparties/{name}", json={}, timeout=10)
        set_faults(stack_settings.lp_url, reject_next=100, operations=["deliver"])
        yield HttpLiquidity(stack_settings.lp_url, name)
        set_faults(stack_settings.lp_url)

    def test_a_quote_expires(self, stack_settings: PlatformSettings) -> None:
        name = f"lp-t{uuid.uuid4().hex[:6]}"
        reply = httpx.put(
            f"{stack_settings.lp_url}/admin/counterparties/{name}",
            json={"quote_ttl_seconds": 1},
            timeout=10,
        )
        assert reply.status_code == 200, reply.text
        lp = HttpLiquidity(stack_settings.lp_url, name)
        q = lp.quote("BTC-EUR", "buy", quantity=1_000)
        time.sleep(1.2)
        order = coid()
        with pytest.raises(QuoteExpired):
            lp.execute(q.quote_id, order)
        with pytest.raises(QuoteExpired):
            lp.order(order)
