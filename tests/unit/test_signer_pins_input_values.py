"""Found by a hostile review: BIP143 commits each input's signature to its own value
only. Two signatures of one transaction, each claiming another input at 1 sat, could be
paired into a transaction that burns almost both coins in fee while each request's
claimed fee was under the cap. An input's value is pinned at its first signature: the
second request is refused (on the code before the fix both were signed and the paired
witnesses verified, burning 1,001,000 sat against a cap of 2,000)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.chains.bitcoin.tx import Plan, Utxo, from_request, to_request
from adapters.operations.guard import SigningGuard
from adapters.operations.intents import SqlIntentStore
from adapters.operations.store import SqlOperationStore
from sagas.errors import KeyAccessDenied
from sagas.governance import StaticGovernance
from sagas.intents import RegisteredKey, key_id
from sagas.keys.wallets import deposit_address
from sagas.policy import PolicyRules, StoredPolicy
from services.signer.signer import Signer
from tests.fakes import FakeKeyWrapper
from tests.governed import confirmed_leg
from tests.wallets import btc_wallet


def test_two_signatures_of_one_txid_with_lied_values_combine(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    w = btc_wallet(url)
    vault, store, deriver, coin, change = w.vault, w.store, w.deriver, w.coin, w.change
    payee = deposit_address(store, deriver, "w1", "bitcoin", "c2:BTC", "c2", "BTC")
    ops = SqlOperationStore(url)
    intents = SqlIntentStore(url)
    now = datetime.now(UTC).replace(microsecond=0)
    # a settlement leg (no client request needed) to an allow-listed address: any
    # authorised small payment would do.
    provider = Ed25519PrivateKey.generate()
    it = confirmed_leg(provider, "st:1", "lp", "BTC", 10_000, payee.address, 2_000)
    intents.put_intent(it, 0)
    pol = StoredPolicy(
        rules=PolicyRules(
            client_id="settlement",
            asset="BTC",
            allow_list_required=True,
            allowed_destinations=frozenset({payee.address}),
        ),
        version=1,
        created_by="g",
        created_at=now,
    )
    guard = SigningGuard(
        ops,
        url,
        {},
        31337,
        10**11,
        (50_000, 100_000),
        2_000,
        intents,
        StaticGovernance(
            policies={("settlement", "BTC"): pol},
            counterparty_key_map={key_id(provider): RegisteredKey.of("lp", provider)},
        ),
        {"BTC": 8},
    )
    signer = Signer(FakeKeyWrapper(vault, may_unwrap=True), store, deriver, guard)
    TRUE = 1_000_000  # two real coins of 0.01 BTC each

    # outputs: 10_000 payment + 989_000 change = 999_000; claimed fee 1_000 both times
    def req(values):  # type: ignore[no-untyped-def]
        plan = Plan(
            (
                Utxo("11" * 32, 0, coin.address, values[0]),
                Utxo("22" * 32, 1, coin.address, values[1]),
            ),
            ((payee.address, 10_000),),
            989_000,
            1_000,
        )
        return to_request(plan, change.address, change.index, [(0, coin.index)] * 2)

    r1, r2 = req((TRUE, 1)), req((1, TRUE))  # each lies about the other coin (1 sat)
    assert r1.fee == r2.fee == 1001 and from_request(r1).GetTxid() == from_request(r2).GetTxid()
    signer.sign_btc_transaction("st:1:lp:BTC", "w1", r1)
    with pytest.raises(KeyAccessDenied, match="was signed at 1000000 sat, not 1"):
        signer.sign_btc_transaction("st:1:lp:BTC", "w1", r2)
