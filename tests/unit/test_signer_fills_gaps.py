"""The gap filler the signer signs (decision 0021): a transfer of nothing from the hot
wallet to itself, at a nonce no signature holds and below the highest it signed; never a
payment, never a nonce a coming payment needs, once per nonce."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.keys.hd import BipDeriver
from adapters.keys.store import SqlKeyStore
from adapters.operations.guard import SigningGuard
from adapters.operations.intents import SqlIntentStore
from adapters.operations.store import SqlOperationStore
from adapters.sqldb import SqlDatabase
from sagas.errors import DependencyUnavailable, KeyAccessDenied
from sagas.governance import StaticGovernance
from sagas.intents import RegisteredKey, key_id
from sagas.keys.wallets import create_wallet, deposit_address
from sagas.policy import PolicyRules, StoredPolicy
from tests.fakes import FakeKeyWrapper
from tests.governed import confirmed_leg

LP = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"


@pytest.fixture
def setup(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    store = SqlKeyStore(url)
    deriver = BipDeriver("simnet")
    create_wallet("w1", deriver, FakeKeyWrapper({}, may_unwrap=False), store)
    hot = deposit_address(store, deriver, "w1", "ethereum", "treasury:ETH", None, "ETH")
    intents = SqlIntentStore(url)
    provider = Ed25519PrivateKey.generate()
    policy = StoredPolicy(
        rules=PolicyRules(
            client_id="settlement",
            asset="ETH",
            allow_list_required=True,
            allowed_destinations=frozenset({LP}),
        ),
        version=1,
        created_by="g",
        created_at=confirmed_leg(provider, "s", "lp", "ETH", 1, LP, 1).expires_at,
    )
    gov = StaticGovernance(
        policies={("settlement", "ETH"): policy},
        counterparty_key_map={key_id(provider): RegisteredKey.of("lp", provider)},
    )
    guard = SigningGuard(
        SqlOperationStore(url), url, {}, 31337, 10**11, (50_000, 100_000), 10**5, intents, gov,
        {"ETH": 18},
    )  # fmt: skip
    return guard, hot, intents, provider, url


def tx(to: str, nonce: int, value: int = 0, gas: int = 21_000, **extra: Any) -> dict[str, Any]:
    return {
        "type": 2, "chainId": 31337, "nonce": nonce, "to": to, "value": value, "gas": gas,
        "maxFeePerGas": 10**9, "maxPriorityFeePerGas": 1, **extra,
    }  # fmt: skip


def test_only_a_transfer_of_nothing_into_a_gap_is_signed(setup: Any) -> None:
    guard, hot, intents, provider, url = setup
    fill = f"fill:31337:{hot.address}:"

    def sign_fill(nonce: int, t: dict[str, Any], op: str | None = None) -> bytes:
        return guard.sign_evm(op or f"{fill}{nonce}", "w1", hot.index, hot.address, t,
                              lambda: b"filler")  # fmt: skip

    # Nothing signed yet: no nonce is a gap.
    with pytest.raises(KeyAccessDenied, match="no gap"):
        sign_fill(0, tx(hot.address, 0))
    # A payment signed at nonce 3 (nonces 0..2 were reserved by others, say).
    leg = confirmed_leg(provider, "st", "lp", "ETH", 10**15, LP, 10**18)
    intents.put_intent(leg, 0)
    guard.sign_evm(leg.operation_id, "w1", hot.index, hot.address, tx(LP, 3, 10**15),
                   lambda: b"payment")  # fmt: skip
    for bad, why in [
        (tx(LP, 1), "not a transfer of nothing"),  # to somebody else
        (tx(hot.address, 1, value=1), "not a transfer of nothing"),
        (tx(hot.address, 1, gas=30_000), "not a transfer of nothing"),
        (tx(hot.address, 1, data="0xa9059cbb"), "no data"),
        (tx(hot.address, 1, maxFeePerGas=10**12), "not a transfer of nothing"),
        (tx(hot.address, 3), "no gap"),  # the payment's own nonce
        (tx(hot.address, 4), "no gap"),  # a nonce the next payment needs
    ]:
        with pytest.raises(KeyAccessDenied, match=why):
            sign_fill(int(bad["nonce"]), bad)
    with pytest.raises(KeyAccessDenied, match="named by its account and nonce"):
        sign_fill(1, tx(hot.address, 1), op=f"{fill}2")
    assert sign_fill(1, tx(hot.address, 1)) == b"filler"
    assert sign_fill(1, tx(hot.address, 1)) == b"filler"  # the same filler again
    # The filled nonce is the filler's: a payment can no longer be signed there.
    other = confirmed_leg(provider, "st2", "lp", "ETH", 10**15, LP, 10**18)
    intents.put_intent(other, 0)
    with pytest.raises(KeyAccessDenied, match="nonce 1 was signed for fill:"):
        guard.sign_evm(other.operation_id, "w1", hot.index, hot.address, tx(LP, 1, 10**15),
                       lambda: b"x")  # fmt: skip
    with SqlDatabase(url).tx() as conn:
        payments = conn.all(
            "select payments from signer_signatures where operation_id like 'fill:%'"
        )
    assert payments and all(p[0] == "[]" for p in payments)


def test_a_payment_cannot_open_a_gap_far_ahead_and_fillers_have_a_budget(setup: Any) -> None:
    """What a compromised worker would do to burn fees: sign a real payment far above the
    highest nonce, then ask for fillers for every nonce below it."""
    guard, hot, intents, provider, _url = setup
    first = confirmed_leg(provider, "st-a", "lp", "ETH", 10**15, LP, 10**18)
    intents.put_intent(first, 0)
    # Nothing signed yet: the first nonce too is within the window (of none).
    with pytest.raises(DependencyUnavailable, match="more than 256 above none"):
        guard.sign_evm(first.operation_id, "w1", hot.index, hot.address, tx(LP, 10**6, 10**15),
                       lambda: b"far")  # fmt: skip
    guard.sign_evm(first.operation_id, "w1", hot.index, hot.address, tx(LP, 0, 10**15),
                   lambda: b"first")  # fmt: skip
    far = confirmed_leg(provider, "st-b", "lp", "ETH", 10**15, LP, 10**18)
    intents.put_intent(far, 0)
    with pytest.raises(DependencyUnavailable, match="more than 256 above 0"):
        guard.sign_evm(far.operation_id, "w1", hot.index, hot.address, tx(LP, 10**6, 10**15),
                       lambda: b"far")  # fmt: skip
    guard.sign_evm(far.operation_id, "w1", hot.index, hot.address, tx(LP, 256, 10**15),
                   lambda: b"window")  # fmt: skip
    signed = 0
    for nonce in range(1, 40):
        try:
            guard.sign_evm(f"fill:31337:{hot.address}:{nonce}", "w1", hot.index, hot.address,
                           tx(hot.address, nonce), lambda: b"filler")  # fmt: skip
            signed += 1
        except KeyAccessDenied as exc:
            assert "fillers today already" in str(exc)
    assert signed == 16
