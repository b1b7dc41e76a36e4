"""CoreBanking contract: the fake and the HTTP adapter against the real bank simulator
hold, capture (partially), release, pay and report the same way, idempotently."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from adapters.core_banking.http import HttpCoreBanking
from sagas.errors import (
    BankAccountUnknown,
    BankInsufficientFunds,
    DependencyUnavailable,
    HoldNotActive,
    IbanInvalid,
    IdempotencyConflict,
    PaymentUnknown,
)
from sagas.ports import CoreBanking
from services.settings import PlatformSettings
from tests.fakes_trading import FakeBank
from tests.simulators import cash_in, new_iban, open_bank_account, own_simulator, set_faults

Open = Callable[[int], str]  # opens a fresh EUR account with a balance, returns its IBAN


def key() -> str:
    return uuid.uuid4().hex


class CoreBankingContract:
    @pytest.fixture
    def bank(self) -> CoreBanking:
        raise NotImplementedError

    @pytest.fixture
    def open_account(self) -> Open:
        raise NotImplementedError

    def test_is_core_banking(self, bank: CoreBanking) -> None:
        assert isinstance(bank, CoreBanking)

    def test_partial_capture_pays_and_releases_the_rest(
        self, bank: CoreBanking, open_account: Open
    ) -> None:
        client, merchant = open_account(10_000), open_account(0)
        hold = bank.hold(key(), client, 6_000, "EUR", 600, "e2e-1", "buy BTC")
        assert hold.status == "active" and hold.amount == 6_000
        assert bank.balance(client).available == 4_000
        assert bank.balance(client).held == 6_000
        paid = bank.capture(key(), hold.hold_id, 5_500, merchant, "e2e-1", "buy BTC")
        assert (paid.amount, paid.released) == (5_500, 500)
        assert bank.balance(client).booked == 4_500 and bank.balance(client).available == 4_500
        assert bank.balance(merchant).booked == 5_500
        assert bank.get_hold(hold.hold_id).status == "captured"
        entries = bank.statement(merchant)
        assert [(e.indicator, e.amount, e.end_to_end_id) for e in entries] == [
            ("CRDT", 5_500, "e2e-1")
        ]
        assert entries[0].counterparty_iban == client and entries[0].remittance_info == "buy BTC"

    def test_every_instruction_is_idempotent_by_key(
        self, bank: CoreBanking, open_account: Open
    ) -> None:
        client, other = open_account(10_000), open_account(0)
        k = key()
        first = bank.hold(k, client, 3_000, "EUR", 600, "e2e-2")
        again = bank.hold(k, client, 3_000, "EUR", 600, "e2e-2")
        assert again.hold_id == first.hold_id
        assert bank.balance(client).held == 3_000
        with pytest.raises(IdempotencyConflict):
            bank.hold(k, client, 3_001, "EUR", 600, "e2e-2")
        k = key()
        pay = bank.transfer(k, client, other, 1_000, "EUR", "e2e-3")
        assert bank.transfer(k, client, other, 1_000, "EUR", "e2e-3").payment_id == pay.payment_id
        assert bank.balance(other).booked == 1_000
        # A refusal is remembered too: the same key refuses again even once it could pass.
        k = key()
        with pytest.raises(BankInsufficientFunds):
            bank.transfer(k, other, client, 5_000, "EUR", "e2e-4")

    def test_release_gives_the_hold_back_and_a_captured_hold_stays_captured(
        self, bank: CoreBanking, open_account: Open
    ) -> None:
        client, merchant = open_account(5_000), open_account(0)
        hold = bank.hold(key(), client, 5_000, "EUR", 600, "e2e-5")
        with pytest.raises(BankInsufficientFunds):
            bank.hold(key(), client, 1, "EUR", 600, "e2e-6")
        released = bank.release(key(), hold.hold_id)
        assert released.status == "released" and bank.balance(client).available == 5_000
        with pytest.raises(HoldNotActive):
            bank.capture(key(), hold.hold_id, 1, merchant, "e2e-5")
        hold = bank.hold(key(), client, 2_000, "EUR", 600, "e2e-7")
        bank.capture(key(), hold.hold_id, 2_000, merchant, "e2e-7")
        with pytest.raises(HoldNotActive):
            bank.release(key(), hold.hold_id)
        with pytest.raises(HoldNotActive):
            bank.capture(
                key(), bank.hold(key(), client, 100, "EUR", 600, "e").hold_id, 101, merchant, "e"
            )

    def test_a_hold_expires_and_its_money_is_available_again(
        self, bank: CoreBanking, open_account: Open
    ) -> None:
        import time

        client, merchant = open_account(1_000), open_account(0)
        hold = bank.hold(key(), client, 1_000, "EUR", 1, "e2e-8")
        time.sleep(1.5)
        assert bank.get_hold(hold.hold_id).status == "expired"
        assert bank.balance(client).available == 1_000
        with pytest.raises(HoldNotActive):
            bank.capture(key(), hold.hold_id, 1_000, merchant, "e2e-8")
        assert bank.release(key(), hold.hold_id).status == "expired"

    def test_unknown_and_malformed_accounts(self, bank: CoreBanking, open_account: Open) -> None:
        client = open_account(1_000)
        with pytest.raises(BankAccountUnknown):
            bank.transfer(key(), client, new_iban(), 1, "EUR", "e2e-9")
        with pytest.raises(IbanInvalid):
            bank.hold(key(), "DE89370400440532013001", 1, "EUR", 60, "e2e-10")
        assert bank.balance(client).booked == 1_000

    def test_credit_pays_from_the_platform_account(
        self, bank: CoreBanking, open_account: Open, platform_iban: str
    ) -> None:
        client = open_account(0)
        before = bank.balance(platform_iban).booked
        bank.credit(key(), client, 700, "EUR", "e2e-11", "sale of ETH")
        assert bank.balance(client).booked == 700
        assert bank.balance(platform_iban).booked == before - 700

    def test_a_payment_is_found_by_its_key_without_paying_again(
        self, bank: CoreBanking, open_account: Open
    ) -> None:
        client, other = open_account(10_000), open_account(0)
        with pytest.raises(PaymentUnknown):
            bank.payment(key())  # never sent: sending it now cannot pay twice
        k = key()
        paid = bank.transfer(k, client, other, 1_200, "EUR", "e2e-12", "proceeds")
        found = bank.payment(k)
        assert (found.payment_id, found.amount, found.end_to_end_id) == (
            paid.payment_id,
            1_200,
            "e2e-12",
        )
        assert (found.debtor_iban, found.creditor_iban) == (client, other)
        assert bank.balance(other).booked == 1_200  # asking moved nothing
        hold = bank.hold(k2 := key(), client, 500, "EUR", 600, "e2e-13")
        captured = bank.capture(k3 := key(), hold.hold_id, 400, other, "e2e-13")
        assert bank.payment(k3).payment_id == captured.payment_id
        with pytest.raises(PaymentUnknown):
            bank.payment(k2)  # a hold is not a payment
        # A refusal is remembered under its key: the query says so, it never pays there.
        k = key()
        with pytest.raises(BankInsufficientFunds):
            bank.transfer(k, other, client, 1_000_000, "EUR", "e2e-14")
        with pytest.raises(BankInsufficientFunds):
            bank.payment(k)
        assert bank.balance(other).booked == 1_600


class TestFakeBank(CoreBankingContract):
    @pytest.fixture
    def fake(self) -> FakeBank:
        bank = FakeBank(new_iban())
        bank.open(bank.platform_iban, amount=1_000_000)
        return bank

    @pytest.fixture
    def bank(self, fake: FakeBank) -> CoreBanking:
        return fake

    @pytest.fixture
    def platform_iban(self, fake: FakeBank) -> str:
        return fake.platform_iban

    @pytest.fixture
    def open_account(self, fake: FakeBank) -> Open:
        def make(amount: int) -> str:
            iban = new_iban()
            fake.open(iban, amount=amount)
            return iban

        return make


@pytest.fixture(scope="module")
def bank_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The bank simulator of this checkout (the stack's may be an older one)."""
    with own_simulator("infra.simulators.bank", tmp_path_factory.mktemp("bank")) as url:
        yield url


class TestHttpBank(CoreBankingContract):
    """Against the bank simulator, on fresh accounts of its own."""

    @pytest.fixture
    def bank(self, stack_settings: PlatformSettings, bank_url: str) -> CoreBanking:
        return HttpCoreBanking(bank_url, stack_settings.bank_platform_iban)

    @pytest.fixture
    def platform_iban(self, stack_settings: PlatformSettings, bank_url: str) -> str:
        iban = stack_settings.bank_platform_iban
        open_bank_account(bank_url, iban, "Custody platform client money")
        cash_in(bank_url, iban, 10_000)
        return iban

    @pytest.fixture
    def open_account(self, bank_url: str) -> Open:
        def make(amount: int) -> str:
            iban = new_iban()
            open_bank_account(bank_url, iban)
            if amount:
                cash_in(bank_url, iban, amount)
            return iban

        return make


def test_a_query_the_bank_refuses_is_no_refusal_of_the_key(
    stack_settings: PlatformSettings, bank_url: str
) -> None:
    """A 4xx with a code on the query itself (here the simulator's reject switch; in life a
    gateway, a 429, a 401) says nothing about the payment: transient, never the
    remembered refusal that would move a leg to a new key and pay it twice."""
    bank = HttpCoreBanking(bank_url, stack_settings.bank_platform_iban)
    set_faults(bank_url, reject_next=1, operations=["payment_query"])
    try:
        with pytest.raises(DependencyUnavailable):
            bank.payment(f"k-{uuid.uuid4().hex}")
    finally:
        set_faults(bank_url)
    with pytest.raises(PaymentUnknown):  # and then the bank's own word
        bank.payment(f"k-{uuid.uuid4().hex}")
