"""In-memory core banking and liquidity provider for unit tests of the core. Each passes
the same contract suite as its HTTP adapter against the real simulator
(tests/contracts/test_core_banking.py, test_liquidity.py)."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sagas.banking import BankBalance, BankHold, BankPayment, StatementEntry, iban_valid
from sagas.confirmations import ConfirmedLeg, sign_confirmation
from sagas.errors import (
    BankAccountUnknown,
    BankInsufficientFunds,
    BankRefused,
    CustodyError,
    DependencyUnavailable,
    HoldNotActive,
    IbanInvalid,
    IdempotencyConflict,
    NotFound,
    OrderUnknown,
    PaymentUnknown,
    QuoteExpired,
    QuoteInvalid,
    SettlementMismatch,
    TradeRejected,
)
from sagas.intents import raw_public_key
from sagas.liquidity import (
    Fill,
    Quote,
    SettlementInstructions,
    SettlementLeg,
    SettlementState,
    Side,
)
from sagas.trade.pricing import lp_notional, quantity_for_proceeds


def _now() -> datetime:
    return datetime.now(UTC)


class FakeBank:
    def __init__(self, platform_iban: str) -> None:
        self.platform_iban = platform_iban
        self._lock = threading.RLock()
        self.accounts: dict[str, tuple[str, int]] = {}  # iban -> (currency, booked)
        self.holds: dict[str, dict[str, Any]] = {}
        self.entries: list[tuple[str, StatementEntry]] = []
        self._answers: dict[str, tuple[str, Any]] = {}
        self._operations: dict[str, str] = {}  # key -> what was asked under it

    # test set-up
    def open(self, iban: str, currency: str = "EUR", amount: int = 0) -> None:
        with self._lock:
            self.accounts.setdefault(iban, (currency, 0))
            if amount:
                self._book(None, iban, amount, currency, f"cash-{uuid.uuid4().hex[:8]}", "")

    def _once(self, key: str, request: dict[str, Any], work: Any) -> Any:
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        with self._lock:
            if key in self._answers:
                first_digest, first = self._answers[key]
                if first_digest != digest:
                    raise IdempotencyConflict(key)
                if isinstance(first, CustodyError):
                    raise first
                return first
            try:
                result = work()
            except CustodyError as exc:
                self._answers[key] = (digest, exc)
                self._operations[key] = str(request["op"])
                raise
            self._answers[key] = (digest, result)
            self._operations[key] = str(request["op"])
            return result

    def payment(self, key: str) -> BankPayment:
        with self._lock:
            operation = self._operations.get(key, "")
            if key not in self._answers or not operation.startswith(("payment", "capture ")):
                raise PaymentUnknown(f"no payment instruction under {key}")
            first = self._answers[key][1]
            if isinstance(first, CustodyError):
                raise first
            assert isinstance(first, BankPayment)
            return first

    def _account(self, iban: str) -> tuple[str, int]:
        if not iban_valid(iban):
            raise IbanInvalid(iban)
        if iban not in self.accounts:
            raise BankAccountUnknown(f"AC01: {iban}")
        return self.accounts[iban]

    def _expire(self) -> None:
        for h in self.holds.values():
            if h["status"] == "active" and h["expires_at"] <= _now():
                h["status"] = "expired"

    def _held(self, iban: str) -> int:
        self._expire()
        return sum(
            h["amount"]
            for h in self.holds.values()
            if h["iban"] == iban and h["status"] == "active"
        )

    def _book(
        self, debtor: str | None, creditor: str, amount: int, currency: str, e2e: str, info: str
    ) -> BankPayment:
        if debtor is not None:
            cur, booked = self.accounts[debtor]
            self.accounts[debtor] = (cur, booked - amount)
            self._entry(debtor, amount, currency, "DBIT", e2e, creditor, info)
        cur, booked = self.accounts[creditor]
        self.accounts[creditor] = (cur, booked + amount)
        self._entry(creditor, amount, currency, "CRDT", e2e, debtor, info)
        return BankPayment(
            payment_id=f"pmt-{uuid.uuid4().hex[:16]}",
            end_to_end_id=e2e,
            debtor_iban=debtor or "",
            creditor_iban=creditor,
            amount=amount,
            currency=currency,
            remittance_info=info,
        )

    def _entry(
        self, iban: str, amount: int, ccy: str, ind: Any, e2e: str, cp: Any, info: str
    ) -> None:
        self.entries.append(
            (
                iban,
                StatementEntry(
                    entry_id=len(self.entries) + 1,
                    booked_at=_now(),
                    amount=amount,
                    currency=ccy,
                    indicator=ind,
                    end_to_end_id=e2e,
                    counterparty_iban=cp,
                    remittance_info=info,
                ),
            )
        )

    def _hold_view(self, hold_id: str) -> BankHold:
        self._expire()
        if hold_id not in self.holds:
            raise NotFound(hold_id)
        return BankHold.model_validate(self.holds[hold_id])

    def hold(
        self,
        key: str,
        iban: str,
        amount: int,
        currency: str,
        ttl_seconds: int,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankHold:
        def work() -> BankHold:
            cur, booked = self._account(iban)
            if cur != currency:
                raise BankRefused("AM03")
            if booked - self._held(iban) < amount:
                raise BankInsufficientFunds(f"AM04: {iban}")
            hold_id = f"hold-{uuid.uuid4().hex[:16]}"
            self.holds[hold_id] = {
                "hold_id": hold_id,
                "iban": iban,
                "amount": amount,
                "currency": currency,
                "status": "active",
                "captured": 0,
                "expires_at": _now() + timedelta(seconds=ttl_seconds),
                "end_to_end_id": end_to_end_id,
            }
            return self._hold_view(hold_id)

        request = {
            "op": "hold",
            "iban": iban,
            "amount": amount,
            "ccy": currency,
            "ttl": ttl_seconds,
        }
        return self._once(key, {**request, "e2e": end_to_end_id, "info": remittance_info}, work)  # type: ignore[no-any-return]

    def capture(
        self,
        key: str,
        hold_id: str,
        amount: int,
        creditor_iban: str,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankPayment:
        def work() -> BankPayment:
            h = self._hold_view(hold_id)
            if h.status != "active" or amount > h.amount:
                raise HoldNotActive(f"{hold_id} is {h.status}")
            cur, _ = self._account(creditor_iban)
            self.holds[hold_id].update(status="captured", captured=amount)
            payment = self._book(h.iban, creditor_iban, amount, cur, end_to_end_id, remittance_info)
            return payment.model_copy(update={"released": h.amount - amount})

        request = {"op": f"capture {hold_id}", "amount": amount, "to": creditor_iban}
        return self._once(key, {**request, "e2e": end_to_end_id, "info": remittance_info}, work)  # type: ignore[no-any-return]

    def release(self, key: str, hold_id: str) -> BankHold:
        def work() -> BankHold:
            h = self._hold_view(hold_id)
            if h.status == "captured":
                raise HoldNotActive(f"{hold_id} was captured")
            if h.status == "active":
                self.holds[hold_id]["status"] = "released"
            return self._hold_view(hold_id)

        return self._once(key, {"op": f"release {hold_id}"}, work)  # type: ignore[no-any-return]

    def transfer(
        self,
        key: str,
        debtor_iban: str,
        creditor_iban: str,
        amount: int,
        currency: str,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankPayment:
        def work() -> BankPayment:
            cur_d, booked = self._account(debtor_iban)
            cur_c, _ = self._account(creditor_iban)
            if debtor_iban == creditor_iban or not cur_d == cur_c == currency:
                raise BankRefused("AM03/AM09")
            if booked - self._held(debtor_iban) < amount:
                raise BankInsufficientFunds(f"AM04: {debtor_iban}")
            return self._book(
                debtor_iban, creditor_iban, amount, currency, end_to_end_id, remittance_info
            )

        request = {"op": "payment", "from": debtor_iban, "to": creditor_iban, "amount": amount}
        return self._once(key, {**request, "e2e": end_to_end_id, "info": remittance_info}, work)  # type: ignore[no-any-return]

    def credit(
        self,
        key: str,
        creditor_iban: str,
        amount: int,
        currency: str,
        end_to_end_id: str,
        remittance_info: str = "",
    ) -> BankPayment:
        return self.transfer(
            key, self.platform_iban, creditor_iban, amount, currency, end_to_end_id, remittance_info
        )

    def get_hold(self, hold_id: str) -> BankHold:
        with self._lock:
            return self._hold_view(hold_id)

    def balance(self, iban: str) -> BankBalance:
        with self._lock:
            cur, booked = self._account(iban)
            held = self._held(iban)
            return BankBalance(
                iban=iban, currency=cur, booked=booked, held=held, available=booked - held
            )

    def statement(
        self, iban: str, after: int = 0, end_to_end_id: str | None = None
    ) -> list[StatementEntry]:
        with self._lock:
            self._account(iban)
            return [
                e
                for i, e in self.entries
                if i == iban and e.entry_id > after and end_to_end_id in (None, e.end_to_end_id)
            ]


DECIMALS = {"BTC": 8, "ETH": 18}


class FakeLiquidity:
    def __init__(
        self,
        counterparty: str = "lp-fake",
        mids: dict[str, int] | None = None,
        spread_bps: int = 20,
        ttl_seconds: int = 10,
        iban: str = "DE88500105179900000001",
        addresses: dict[str, str] | None = None,
    ) -> None:
        """`iban`, `addresses`: its settlement instructions (an address per asset the
        platform may deliver to it), as the simulator is configured with them."""
        self.counterparty = counterparty
        self.iban = iban
        self.addresses = dict(addresses or {})
        self.mids = mids or {"BTC-EUR": 6_000_000, "ETH-EUR": 300_000}
        self.spread_bps = spread_bps
        self.ttl = timedelta(seconds=ttl_seconds)
        self.quotes: dict[str, Quote] = {}
        self.orders: dict[str, Fill | CustodyError] = {}
        self.settlements: dict[str, SettlementState] = {}
        self.settled: set[str] = set()
        self.reject_next = 0
        self.lose_next = 0
        self._lock = threading.Lock()
        self.signing_key = Ed25519PrivateKey.generate()  # the provider's own

    def confirmation_key(self) -> bytes:
        return raw_public_key(self.signing_key)

    def quote(
        self, pair: str, side: Side, quantity: int | None = None, notional: int | None = None
    ) -> Quote:
        if pair not in self.mids:
            raise QuoteInvalid(f"UNKNOWN_PAIR: {pair}")
        decimals = DECIMALS[pair.split("-")[0]]
        mid = self.mids[pair]
        half = -(-mid * self.spread_bps // 10_000)
        price = mid + half if side == "buy" else mid - half
        if quantity is None:
            assert notional is not None
            if side == "buy":
                quantity = notional * 10**decimals // price
            else:
                quantity = quantity_for_proceeds(notional, price, decimals)
        if quantity <= 0:
            raise QuoteInvalid("AMOUNT_TOO_SMALL")
        q = Quote(
            quote_id=f"q-{uuid.uuid4().hex[:16]}",
            counterparty=self.counterparty,
            pair=pair,
            side=side,
            price=price,
            quantity=quantity,
            notional=lp_notional(side, quantity, price, decimals),
            expires_at=_now() + self.ttl,
        )
        self.quotes[q.quote_id] = q
        return q

    def execute(self, quote_id: str, client_order_id: str) -> Fill:
        with self._lock:
            if client_order_id not in self.orders:
                q = self.quotes.get(quote_id)
                if q is None or q.expires_at <= _now():
                    self.orders[client_order_id] = QuoteExpired(f"QUOTE_EXPIRED: {quote_id}")
                elif self.reject_next:
                    self.reject_next -= 1
                    self.orders[client_order_id] = TradeRejected("REJECTED")
                else:
                    self.orders[client_order_id] = Fill(
                        trade_id=f"t-{uuid.uuid4().hex[:16]}",
                        client_order_id=client_order_id,
                        executed_at=_now(),
                        **q.model_dump(
                            include={
                                "counterparty",
                                "quote_id",
                                "pair",
                                "side",
                                "price",
                                "quantity",
                                "notional",
                            }
                        ),
                    )
                    if self.lose_next:
                        self.lose_next -= 1
                        raise DependencyUnavailable("response lost")
            return self.order(client_order_id)

    def order(self, client_order_id: str) -> Fill:
        found = self.orders.get(client_order_id)
        if found is None:
            raise OrderUnknown(client_order_id)
        if isinstance(found, CustodyError):
            raise found
        return found

    def fills(self) -> list[Fill]:
        return [f for f in self.orders.values() if isinstance(f, Fill)]

    def instructions(self) -> SettlementInstructions:
        return SettlementInstructions(
            counterparty=self.counterparty,
            iban=self.iban,
            bic="SIMULPXXXXX",
            addresses=self.addresses,
        )

    def settle(
        self,
        settlement_id: str,
        end_to_end_id: str,
        orders: Sequence[str],
        legs: Sequence[SettlementLeg],
    ) -> SettlementState:
        with self._lock:
            if settlement_id in self.settlements:
                return self.settlements[settlement_id]
            totals: dict[str, int] = {}
            for order in orders:
                fill = self.orders.get(order)
                if not isinstance(fill, Fill) or order in self.settled:
                    raise SettlementMismatch(f"{order} is not an unsettled fill")
                base, fiat = fill.pair.split("-")
                sign = 1 if fill.side == "buy" else -1
                totals[base] = totals.get(base, 0) + sign * fill.quantity
                totals[fiat] = totals.get(fiat, 0) - sign * fill.notional
            expected = {
                (a, "provider" if n > 0 else "platform"): abs(n) for a, n in totals.items() if n
            }
            given = {(leg.asset, leg.payer): leg.amount for leg in legs}
            if len(given) != len(legs) or len(set(orders)) != len(orders):
                raise SettlementMismatch("a leg or an order is given twice")
            if expected != given:
                raise SettlementMismatch(f"the fills net to {sorted(expected.items())}")
            own = self.instructions()
            for leg in legs:
                if leg.payer == "platform" and leg.to not in (
                    own.addresses.get(leg.asset),
                    own.iban,
                ):
                    raise SettlementMismatch(f"{leg.asset} is not paid to {leg.to}")
            self.settled.update(orders)
            confirmation = sign_confirmation(
                self.signing_key,
                self.counterparty,
                settlement_id,
                end_to_end_id,
                [
                    ConfirmedLeg(asset=leg.asset, amount=leg.amount, payer=leg.payer, to=leg.to)
                    for leg in legs
                ],
                list(orders),
                _now(),
            )
            state = SettlementState(status="accepted", legs=list(legs), confirmation=confirmation)
            self.settlements[settlement_id] = state
            return state

    def settlement(self, settlement_id: str) -> SettlementState:
        return self.settlements[settlement_id]

    def cancel_settlement(self, settlement_id: str) -> SettlementState:
        state = self.settlements[settlement_id].model_copy(update={"status": "cancelled"})
        self.settlements[settlement_id] = state
        return state
