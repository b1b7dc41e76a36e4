"""Acceptance 5 of issue 6: amounts and prices are integers, and over random trades no
unit (cent, satoshi, wei) is created or lost by rounding (sagas/trade/pricing.py)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from sagas import accounts
from sagas.ledger import BTC, ETH, EUR, Account, AccountKind, Transfer
from sagas.trade.pricing import BPS, fee, settle
from tests.fakes import InMemoryLedger
from tests.fakes_trading import FakeBank, FakeLiquidity
from tests.simulators import new_iban

sides = st.sampled_from(["buy", "sell"])
decimals = st.sampled_from([0, 2, 6, 8, 18])
prices = st.integers(min_value=1, max_value=10**12)  # cents per whole unit
quantities = st.integers(min_value=1, max_value=10**24)
fees = st.integers(min_value=0, max_value=1000)


@given(sides, quantities, prices, decimals, fees)
def test_each_trade_balances_to_the_cent(
    side: str, quantity: int, price: int, places: int, fee_bps: int
) -> None:
    s = settle(side, quantity, price, places, fee_bps)  # type: ignore[arg-type]
    assert all(isinstance(v, int) for v in (s.quantity, s.lp_notional, s.fee, s.client_fiat))
    assert s.balanced
    # The provider's rounding: at most one cent, in its own favour.
    exact = quantity * price
    scaled = s.lp_notional * 10**places
    if side == "buy":
        assert exact <= scaled < exact + 10**places
    else:
        assert exact - 10**places < scaled <= exact
    # The fee: rounded up, by less than one cent.
    if side == "buy" or s.fee < s.lp_notional:
        assert s.fee * BPS >= s.lp_notional * fee_bps > (s.fee - 1) * BPS
    assert s.client_fiat >= 0


@given(st.integers(min_value=1, max_value=10**13), fees)
def test_a_budget_buys_the_largest_notional_whose_total_fits(budget: int, fee_bps: int) -> None:
    notional = budget * BPS // (BPS + fee_bps)  # what the saga asks the provider for
    assert notional + fee(notional, fee_bps) <= budget
    assert notional + 1 + fee(notional + 1, fee_bps) > budget


trades = st.lists(
    st.tuples(
        sides,
        st.sampled_from(["BTC", "ETH"]),
        st.integers(min_value=1, max_value=3 * 10**8),  # scaled per asset below
        st.integers(min_value=-500, max_value=500),  # price move in bps
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(trades, fees, st.integers(min_value=0, max_value=200))
def test_over_random_trades_and_a_settlement_no_unit_is_created_or_lost(
    orders: list[tuple[str, str, int, int]], fee_bps: int, spread_bps: int
) -> None:
    """Random buys and sells through the provider's quotes, the bank and the ledger, then
    a net settlement: the EUR at the bank is conserved and the platform keeps exactly
    its fees; every settlement account returns to zero; what the platform holds of each
    asset is exactly what its clients own."""
    bank = FakeBank(new_iban())
    client, lp_iban = new_iban(), new_iban()
    bank.open(bank.platform_iban, amount=10**12)
    bank.open(client, amount=10**12)
    bank.open(lp_iban, amount=10**12)
    total_eur = 3 * 10**12
    ledger = InMemoryLedger()
    lp = FakeLiquidity(spread_bps=spread_bps)
    for asset in (BTC, ETH, EUR):
        ledger.register_asset(asset)
    for code in ("BTC", "ETH"):
        ledger.open_account(
            Account(id=accounts.omnibus(code), asset=code, kind=AccountKind.OMNIBUS)
        )
        ledger.open_account(
            Account(
                id=accounts.client("c", code),
                asset=code,
                kind=AccountKind.CLIENT_AVAILABLE,
                owner="c",
            )
        )
        ledger.open_account(
            Account(
                id=accounts.settlement(lp.counterparty, code),
                asset=code,
                kind=AccountKind.COUNTERPARTY_SETTLEMENT,
            )
        )
    fees_taken = 0
    net_fiat_to_lp = 0
    for side, code, raw, move in orders:
        places = 8 if code == "BTC" else 18
        quantity = raw if code == "BTC" else raw * 10**10
        pair = f"{code}-EUR"
        lp.mids[pair] = {"BTC-EUR": 6_000_000, "ETH-EUR": 300_000}[pair] * (BPS + move) // BPS
        owned = ledger.balance(accounts.client("c", code)).available
        if side == "sell":
            quantity = min(quantity, owned)
            if quantity == 0:
                continue
        q = lp.quote(pair, side, quantity=quantity)  # type: ignore[arg-type]
        fill = lp.execute(q.quote_id, uuid.uuid4().hex)
        s = settle(side, fill.quantity, fill.price, places, fee_bps)  # type: ignore[arg-type]
        assert s.lp_notional == fill.notional
        ref = fill.trade_id
        if side == "buy":
            hold = bank.hold(f"{ref}:hold", client, s.client_fiat, "EUR", 600, ref)
            bank.capture(f"{ref}:capture", hold.hold_id, s.client_fiat, bank.platform_iban, ref)
            debit, credit = accounts.settlement(lp.counterparty, code), accounts.client("c", code)
            net_fiat_to_lp += fill.notional
        else:
            bank.credit(f"{ref}:credit", client, s.client_fiat, "EUR", ref)
            debit, credit = accounts.client("c", code), accounts.settlement(lp.counterparty, code)
            net_fiat_to_lp -= fill.notional
        ledger.submit(
            [
                Transfer(
                    id=ref,
                    debit_account=debit,
                    credit_account=credit,
                    asset=code,
                    amount=fill.quantity,
                )
            ]
        )
        fees_taken += s.fee

    # Net settlement: one fiat payment, one delivery per asset.
    if net_fiat_to_lp > 0:
        bank.transfer("settle-fiat", bank.platform_iban, lp_iban, net_fiat_to_lp, "EUR", "settle")
    elif net_fiat_to_lp < 0:
        bank.transfer("settle-fiat", lp_iban, bank.platform_iban, -net_fiat_to_lp, "EUR", "settle")
    for code in ("BTC", "ETH"):
        owed = -ledger.balance(accounts.settlement(lp.counterparty, code)).total  # debit balance
        if owed:
            delivered = Transfer(
                id=f"settle-{code}",
                debit_account=accounts.omnibus(code)
                if owed > 0
                else accounts.settlement(lp.counterparty, code),
                credit_account=accounts.settlement(lp.counterparty, code)
                if owed > 0
                else accounts.omnibus(code),
                asset=code,
                amount=abs(owed),
            )
            ledger.submit([delivered])

    balances = {iban: bank.balance(iban).booked for iban in (bank.platform_iban, client, lp_iban)}
    assert sum(balances.values()) == total_eur  # no cent created or lost
    assert balances[bank.platform_iban] == 10**12 + fees_taken  # the platform keeps its fees
    for code in ("BTC", "ETH"):
        assert ledger.balance(accounts.settlement(lp.counterparty, code)).total == 0
        held = -ledger.balance(accounts.omnibus(code)).total
        assert held == ledger.balance(accounts.client("c", code)).total  # no unit lost
