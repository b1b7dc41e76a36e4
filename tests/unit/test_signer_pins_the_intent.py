"""Found by a hostile review: once an operation was signed, a database writer could swap
its intent (another destination, 5000 times the amount) and have it re-signed at the
same nonce, replacing the payment waiting to confirm (the guard compared only account
and nonce with its record). An operation is pinned to the first intent signed for it."""

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
from adapters.sqldb import SqlDatabase
from sagas.errors import KeyAccessDenied
from sagas.governance import StaticGovernance
from sagas.intents import Intent, RegisteredKey, key_id
from sagas.keys.wallets import create_wallet, deposit_address
from sagas.policy import PolicyRules, StoredPolicy
from tests.fakes import FakeKeyWrapper
from tests.governed import confirmed_leg

A = "0x52908400098527886E0F7030069857D2E4169EE7"  # stands in for the client's destination
LP = "0x8617E340B3D01FA5F11F306F4090FD50E238070D"  # an allow-listed counterparty


def test_swapped_intent_resigned_at_same_nonce(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    store = SqlKeyStore(url)
    deriver = BipDeriver("simnet")
    create_wallet("w1", deriver, FakeKeyWrapper({}, may_unwrap=False), store)
    hot = deposit_address(store, deriver, "w1", "ethereum", "treasury:ETH", None, "ETH")
    intents = SqlIntentStore(url)
    ops = SqlOperationStore(url)
    now = datetime.now(UTC).replace(microsecond=0)
    policy = StoredPolicy(
        rules=PolicyRules(
            client_id="settlement",
            asset="ETH",
            allow_list_required=True,
            allowed_destinations=frozenset({A, LP}),
        ),
        version=1,
        created_by="g",
        created_at=now,
    )
    provider = Ed25519PrivateKey.generate()
    gov = StaticGovernance(
        policies={("settlement", "ETH"): policy},
        counterparty_key_map={key_id(provider): RegisteredKey.of("lp", provider)},
    )
    guard = SigningGuard(
        ops, url, {}, 31337, 10**11, (50_000, 100_000), 10**5, intents, gov, {"ETH": 18}
    )
    op = "st:s1:lp:ETH"

    def leg(dest: str, amount: int) -> Intent:
        # Each confirmed by the counterparty: what refuses the swap is the pin.
        return confirmed_leg(provider, "st:s1", "lp", "ETH", amount, dest, 10**18)

    def tx(to: str, value: int, fee: int) -> dict[str, object]:
        return {
            "type": 2,
            "chainId": 31337,
            "nonce": 7,
            "to": to,
            "value": value,
            "gas": 21_000,
            "maxFeePerGas": fee,
            "maxPriorityFeePerGas": 1,
        }

    # The same intent object throughout: built again, its confirmation's timestamp (to the
    # second) could differ and make it another intent (a flake seen in CI).
    first = leg(A, 10**15)
    intents.put_intent(first, 0)
    guard.sign_evm(op, "w1", hot.index, hot.address, tx(A, 10**15, 10**9), lambda: b"first")
    # a database writer rewrites the intent row of the signed operation
    with SqlDatabase(url).tx(write=True) as conn:
        conn.run("delete from intents where operation_id = ?", (op,))
    intents.put_intent(leg(LP, 5 * 10**18), 0)
    with pytest.raises(KeyAccessDenied, match="signed for another intent"):
        guard.sign_evm(
            op, "w1", hot.index, hot.address, tx(LP, 5 * 10**18, 2 * 10**9), lambda: b"second"
        )
    # The first intent's own fee bump is still signed.
    with SqlDatabase(url).tx(write=True) as conn:
        conn.run("delete from intents where operation_id = ?", (op,))
    intents.put_intent(first, 0)
    assert (
        guard.sign_evm(op, "w1", hot.index, hot.address, tx(A, 10**15, 2 * 10**9), lambda: b"bump")
        == b"bump"
    )
