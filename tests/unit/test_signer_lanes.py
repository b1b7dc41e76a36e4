"""Found by a hostile review of decision 0026: a payment the signer signed on a lane
that was then dropped from its setting (CUSTODY_ETH_HOT_LANES lowered) could never be
signed again, so its lost answer became a refusal and the withdrawal was voided while
the signed payment could still be broadcast. The signer now signs again, from a key it
signed the operation from before, that same payment at that same nonce (a fee bump, a
lost answer), and nothing else from it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.keys.hd import BipDeriver
from adapters.keys.store import SqlKeyStore
from adapters.operations.guard import SigningGuard
from adapters.operations.intents import SqlIntentStore
from adapters.operations.store import SqlOperationStore
from sagas import accounts
from sagas.errors import KeyAccessDenied
from sagas.governance import StaticGovernance
from sagas.intents import RegisteredKey, key_id
from sagas.keys.wallets import create_wallet, deposit_address
from sagas.policy import PolicyRules, StoredPolicy
from tests.fakes import FakeKeyWrapper
from tests.governed import confirmed_leg

A = "0x52908400098527886E0F7030069857D2E4169EE7"


def test_a_dropped_lane_signs_only_its_own_payment_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    store = SqlKeyStore(url)
    deriver = BipDeriver("simnet")
    create_wallet("w1", deriver, FakeKeyWrapper({}, may_unwrap=False), store)
    lane = [
        deposit_address(store, deriver, "w1", "ethereum", accounts.hot_lane(n), None, "ETH")
        for n in range(2)
    ]
    intents = SqlIntentStore(url)
    now = datetime.now(UTC).replace(microsecond=0)
    rules = PolicyRules(
        client_id="settlement",
        asset="ETH",
        allow_list_required=True,
        allowed_destinations=frozenset({A}),
    )
    provider = Ed25519PrivateKey.generate()
    gov = StaticGovernance(
        policies={
            ("settlement", "ETH"): StoredPolicy(
                rules=rules, version=1, created_by="g", created_at=now
            )
        },
        counterparty_key_map={key_id(provider): RegisteredKey.of("lp", provider)},
    )

    def guard(lanes: int) -> SigningGuard:
        return SigningGuard(
            SqlOperationStore(url),
            url,
            {},
            31337,
            10**11,
            (50_000, 100_000),
            10**5,
            intents,
            gov,
            {"ETH": 18},
            hot_lanes=lanes,
        )

    def tx(nonce: int, fee: int) -> dict[str, object]:
        return {
            "type": 2,
            "chainId": 31337,
            "nonce": nonce,
            "to": A,
            "value": 10**15,
            "gas": 21_000,
            "maxFeePerGas": fee,
            "maxPriorityFeePerGas": 1,
        }

    first, other = "st:s1:lp:ETH", "st:s2:lp:ETH"
    for op in (first, other):
        leg = confirmed_leg(provider, op.rsplit(":", 2)[0], "lp", "ETH", 10**15, A, 10**18)
        intents.put_intent(leg, 0)
    two, one = guard(2), guard(1)
    assert two.sign_evm(first, "w1", lane[1].index, lane[1].address, tx(3, 10**9), lambda: b"a")
    # The second lane dropped: its payment again, at its nonce, with a higher fee: signed.
    bumped = one.sign_evm(
        first, "w1", lane[1].index, lane[1].address, tx(3, 2 * 10**9), lambda: b"b"
    )
    assert bumped == b"b"
    # At another nonce from it: refused (a second payment).
    with pytest.raises(KeyAccessDenied, match="was signed with nonce 3"):
        one.sign_evm(first, "w1", lane[1].index, lane[1].address, tx(4, 10**9), lambda: b"c")
    # Another operation from the dropped lane: refused; from the first lane: signed.
    with pytest.raises(KeyAccessDenied, match="not the hot wallet's key"):
        one.sign_evm(other, "w1", lane[1].index, lane[1].address, tx(5, 10**9), lambda: b"d")
    assert one.sign_evm(other, "w1", lane[0].index, lane[0].address, tx(0, 10**9), lambda: b"e")
