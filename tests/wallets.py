"""A Bitcoin wallet for the fast tiers and benchmarks: an HD wallet `w1` on simnet whose
seed a test wrapper holds (`vault`), a deposit address of its own to spend from, and a
change address on its internal chain: what a signer over it needs."""

from __future__ import annotations

from dataclasses import dataclass

from adapters.keys.hd import BipDeriver
from adapters.keys.store import SqlKeyStore
from sagas.keys import AddressAssignment
from sagas.keys.wallets import create_wallet, deposit_address
from tests.fakes import FakeKeyWrapper


@dataclass(frozen=True)
class BtcWallet:
    store: SqlKeyStore
    deriver: BipDeriver
    vault: dict[str, bytes]
    coin: AddressAssignment  # the deposit address the test's coins pay
    change: AddressAssignment  # an address on the internal chain (m/84'/1'/0'/1/i)

    def address(self, account: str) -> str:
        """Another deposit address of the wallet, for `account` (a payee, say)."""
        return deposit_address(
            self.store, self.deriver, "w1", "bitcoin", account, account, "BTC"
        ).address


def btc_wallet(url: str, change_key: str = "w1:change:op") -> BtcWallet:
    vault: dict[str, bytes] = {}
    store = SqlKeyStore(url)
    deriver = BipDeriver("simnet")
    w = create_wallet("w1", deriver, FakeKeyWrapper(vault, may_unwrap=False), store)
    coin = deposit_address(store, deriver, "w1", "bitcoin", "c1:BTC", "c1", "BTC")
    change = store.assign(
        "w1",
        "bitcoin",
        change_key,
        None,
        "BTC",
        lambda i: deriver.address(w.xpubs["bitcoin"], "bitcoin", 1, i),
        change=1,
    )
    return BtcWallet(store, deriver, vault, coin, change)
