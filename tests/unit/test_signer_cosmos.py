"""The signer's Cosmos checks (services/signer/signer.py, adapters/operations/guard.py),
over SQLite and a fake key service: it decodes the bytes it is asked to sign and signs
only one message the intent authorises, from the client's own delegator key, to a
validator on its allow-list, for the intent's amount, on its chain, within the fee
cap, at one sequence per operation; and a claim of the client's own rewards at most
once per interval. Nothing refused is signed or recorded. (The real signer process on
the real chain: tests/redteam/test_cosmos_signing.py.)"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cosmpy.crypto.keypairs import PublicKey

from adapters.chains.cosmos.tx import (
    VALIDATOR_PREFIX,
    UnsignedCosmosTx,
    address_of,
    build,
    msg_delegate,
    msg_redelegate,
    msg_send,
    msg_undelegate,
    msg_withdraw_rewards,
    sign_doc,
)
from adapters.governance.store import LiveGovernance, SqlGovernanceStore
from adapters.keys.hd import BipDeriver
from adapters.keys.store import SqlKeyStore
from adapters.operations.guard import CosmosRules, SigningGuard
from adapters.operations.intents import SqlIntentStore
from adapters.operations.store import SqlOperationStore
from adapters.sqldb import SqlDatabase
from sagas import accounts
from sagas.errors import KeyAccessDenied
from sagas.keys.wallets import create_wallet, deposit_address
from sagas.signing import SignCosmosRequest
from services.platform import ASSETS
from services.signer.signer import Signer
from tests.fakes import FakeKeyWrapper
from tests.governed import Governed

CHAIN, DENOM = "custody-pos-1", "uatom"
VA = address_of(b"validator a", VALIDATOR_PREFIX)
VB = address_of(b"validator b", VALIDATOR_PREFIX)
VC = address_of(b"validator c", VALIDATOR_PREFIX)  # allowed, like A
THIEF = address_of(b"\x02" + hashlib.sha256(b"thief").digest())  # any 33 bytes: an address


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    store = SqlKeyStore(url)
    vault: dict[str, bytes] = {}
    deriver = BipDeriver("simnet")
    create_wallet("w1", deriver, FakeKeyWrapper(vault, may_unwrap=False), store)
    gov = Governed(url)
    gov.defaults()

    def address(account: str, owner: str | None) -> Any:
        return deposit_address(store, deriver, "w1", "cosmos", account, owner, "ATOM")

    c1, c2 = address(accounts.client("c1", "ATOM"), "c1"), address("client:c2:ATOM", "c2")
    gov.client_key("c3")
    treasury = address(accounts.treasury("ATOM"), None)
    guard = SigningGuard(
        SqlOperationStore(url, migrate=False),
        url,
        {},
        31337,
        10**11,
        (50_000, 100_000),
        10**5,
        SqlIntentStore(url, migrate=False),
        LiveGovernance(SqlGovernanceStore(url, gov.genesis_hash, migrate=False)),
        {code: asset.decimals for code, (asset, _chain) in ASSETS.items()},
        chains={code: chain for code, (_asset, chain) in ASSETS.items()},
        cosmos=CosmosRules(
            chain_id=CHAIN,
            denom=DENOM,
            validators=frozenset({VA, VC}),
            max_fee=50_000,
            claim_every=timedelta(hours=1),
        ),
    )
    signer = Signer(FakeKeyWrapper(vault, may_unwrap=True), store, deriver, guard)
    return {"url": url, "gov": gov, "signer": signer, "c1": c1, "c2": c2, "treasury": treasury,
            "pub": lambda idx: deriver.public_key(store.wallet("w1").xpubs["cosmos"],  # type: ignore[union-attr]
                                                  "cosmos", 0, idx)}  # fmt: skip


def request(
    world: dict[str, Any],
    op: str,
    messages: list[Any],
    sequence: int = 0,
    who: str = "c1",
    fee: int = 2_000,
    chain: str = CHAIN,
    memo: str = "",
    gas: int = 300_000,
) -> SignCosmosRequest:
    index = world[who].index
    u = build(messages, world["pub"](index), sequence, 7, chain, fee, DENOM, gas, memo=memo)
    return SignCosmosRequest(
        operation_id=op,
        wallet_id="w1",
        index=index,
        body_bytes_hex=u.body_bytes_hex,
        auth_info_bytes_hex=u.auth_info_bytes_hex,
        chain_id=u.chain_id,
        account_number=u.account_number,
    )


def recorded(url: str) -> int:
    with SqlDatabase(url).tx() as conn:
        return int(conn.one("select count(*) from signer_signatures where chain = 'cosmos'")[0])


def test_the_signer_signs_only_the_authorised_delegation(world: dict[str, Any]) -> None:
    gov, signer, url = world["gov"], world["signer"], world["url"]
    me, them = world["c1"].address, world["c2"].address
    gov.stake("stk-1", "c1", 5_000_000, VA)
    gov.stake("stk-b", "c1", 5_000_000, VB)  # signed by the client, but B is not allowed
    sign: Callable[[SignCosmosRequest], bytes] = signer.sign_cosmos_transaction
    attacks = {
        "a validator not allowed": request(
            world, "stk-b", [msg_delegate(me, VB, 5_000_000, DENOM)]
        ),
        "another amount": request(world, "stk-1", [msg_delegate(me, VA, 5_000_001, DENOM)]),
        "a send under a stake": request(world, "stk-1", [msg_send(me, THIEF, 5_000_000, DENOM)]),
        "a redelegation": request(world, "stk-1", [msg_redelegate(me, VA, VB, 5_000_000, DENOM)]),
        "an undelegation": request(world, "stk-1", [msg_undelegate(me, VA, 5_000_000, DENOM)]),
        "two messages": request(
            world, "stk-1",
            [msg_delegate(me, VA, 5_000_000, DENOM), msg_send(me, THIEF, 1, DENOM)],
        ),
        "another client's key": request(
            world, "stk-1", [msg_delegate(them, VA, 5_000_000, DENOM)], who="c2"
        ),
        "the treasury's key": request(
            world, "stk-1", [msg_delegate(world["treasury"].address, VA, 5_000_000, DENOM)],
            who="treasury",
        ),
        "another chain": request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)],
                                 chain="cosmoshub-4"),
        "a fee above the cap": request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)],
                                       fee=50_001),
        "a memo": request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)], memo="x"),
        "more gas than any": request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)],
                                     gas=10**7),
        "no intent": request(world, "stk-9", [msg_delegate(me, VA, 5_000_000, DENOM)]),
    }  # fmt: skip
    # Each refused for its own reason (a send or an undelegation under a stake finds no
    # withdrawal or unstake intent of that operation).
    reasons = {
        "a validator not allowed": "is not allowed",
        "another amount": "the amount is not the intent's",
        "a send under a stake": "no intent on record",
        "a redelegation": "no intent on record",  # a stake authorises no redelegation
        "an undelegation": "no intent on record",
        "two messages": "not one message",
        "another client's key": "not c1's own address",
        "the treasury's key": "not a client's delegator key",
        "another chain": "chain 'cosmoshub-4'",
        "a fee above the cap": "the fee is not at most",
        "a memo": "a memo",
        "more gas than any": "gas 10000000 outside",
        "no intent": "no intent on record",
    }
    for name, attack in attacks.items():
        with pytest.raises(KeyAccessDenied) as refused:
            sign(attack)
        assert reasons[name] in str(refused.value), name
    assert recorded(url) == 0

    good = request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)], sequence=4)
    raw = sign(good)
    # The signature is the key's over SHA-256 of the SignDoc (cosmpy verifies it).
    u = UnsignedCosmosTx(
        body_bytes_hex=good.body_bytes_hex,
        auth_info_bytes_hex=good.auth_info_bytes_hex,
        chain_id=CHAIN,
        account_number=7,
    )
    assert PublicKey(world["pub"](world["c1"].index)).verify(sign_doc(u), raw[-64:])
    assert recorded(url) == 1
    # The same transaction again (a lost answer): signed again, the same bytes.
    assert sign(good) == raw
    # At another sequence: a second delegation for one stake. Refused.
    with pytest.raises(KeyAccessDenied, match="sequence"):
        sign(request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)], sequence=5))
    # Another stake at that sequence: refused (it was signed for stk-1).
    gov.stake("stk-2", "c1", 1_000_000, VA)
    with pytest.raises(KeyAccessDenied, match="signed for stk-1"):
        sign(request(world, "stk-2", [msg_delegate(me, VA, 1_000_000, DENOM)], sequence=4))
    assert recorded(url) == 2  # the first, and the same one again


def test_an_unstake_undelegates_the_stake_and_claims_are_rationed(world: dict[str, Any]) -> None:
    gov, signer, url = world["gov"], world["signer"], world["url"]
    me = world["c1"].address
    stake = gov.stake("stk-1", "c1", 5_000_000, VA)
    signer.sign_cosmos_transaction(
        request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)], sequence=0)
    )
    gov.unstake("uns-1", stake, 2_000_000)
    with pytest.raises(KeyAccessDenied):  # more than the client signed to unstake
        signer.sign_cosmos_transaction(
            request(world, "uns-1", [msg_undelegate(me, VA, 2_000_001, DENOM)], sequence=1)
        )
    signer.sign_cosmos_transaction(
        request(world, "uns-1", [msg_undelegate(me, VA, 2_000_000, DENOM)], sequence=1)
    )
    # A claim of the client's own rewards needs no intent, once per interval.
    claim = [msg_withdraw_rewards(me, VA)]
    signer.sign_cosmos_transaction(request(world, "rw-1", claim, sequence=2))
    with pytest.raises(KeyAccessDenied, match="just now"):
        signer.sign_cosmos_transaction(request(world, "rw-2", claim, sequence=3))
    # From a validator not allowed, or with a send beside it: refused.
    for messages in ([msg_withdraw_rewards(me, VB)], [*claim, msg_send(me, THIEF, 1, DENOM)]):
        with pytest.raises(KeyAccessDenied):
            signer.sign_cosmos_transaction(request(world, "rw-3", messages, sequence=3))
    assert recorded(url) == 3


def test_a_copied_wallet_row_makes_no_key_anothers(world: dict[str, Any]) -> None:
    """Found by a hostile review: the owner of a key was looked up by (wallet, index). A
    database writer copied the wallet row under another id (the same wrapped seed and
    xpubs) and gave that wallet's index of c2's key to c3: c3's signed stake then
    delegated from c2's address. The owner is now looked up by the derived address."""
    gov, signer, url = world["gov"], world["signer"], world["url"]
    victim = world["c2"]
    with SqlDatabase(url).tx(write=True) as conn:
        conn.run(
            "insert into key_wallets (wallet_id, wrapped_seed, xpubs, btc_network, created_at) "
            "select 'w1-copy', wrapped_seed, xpubs, btc_network, created_at from key_wallets "
            "where wallet_id = 'w1'"
        )
        conn.run(
            "insert into deposit_addresses (address, account_id, owner, chain, asset, "
            "wallet_id, change, address_index) values (?, ?, ?, 'cosmos', 'ATOM', "
            "'w1-copy', 0, ?)",
            (THIEF, accounts.client("c3", "ATOM"), "c3", victim.index),
        )
    gov.stake("stk-c3", "c3", 5_000_000, VA)
    attack = request(
        world, "stk-c3", [msg_delegate(victim.address, VA, 5_000_000, DENOM)], who="c2"
    )
    attack = attack.model_copy(update={"wallet_id": "w1-copy"})
    with pytest.raises(KeyAccessDenied, match="not a client's delegator key"):
        signer.sign_cosmos_transaction(attack)
    assert recorded(url) == 0


def test_an_intent_stored_under_another_kind_authorises_nothing(world: dict[str, Any]) -> None:
    """Found by a hostile review: the intent row's kind column, not the signed intent's
    own kind, chose the check. A worker stored the client's stake intent as an unstake
    and had the client's delegation undelegated without the client asking."""
    gov, signer, url = world["gov"], world["signer"], world["url"]
    me = world["c1"].address
    stake = gov.stake("stk-1", "c1", 5_000_000, VA)
    signer.sign_cosmos_transaction(
        request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)])
    )
    with SqlDatabase(url).tx(write=True) as conn:
        conn.run(
            "insert into intents (intent_hash, operation_id, kind, intent, required, "
            "created_at) values (?, 'uns-forged', 'unstake', ?, 0, ?)",
            ("f" * 64, stake.model_copy(update={"operation_id": "uns-forged"}).canonical().decode(),
             "2026-12-01T00:00:00Z"),
        )  # fmt: skip
    undelegate = [msg_undelegate(me, VA, 5_000_000, DENOM)]
    with pytest.raises(KeyAccessDenied, match="no intent on record"):
        signer.sign_cosmos_transaction(request(world, "uns-forged", undelegate, sequence=1))
    assert recorded(url) == 1


def test_a_redelegation_moves_the_position_from_its_own_validator_to_the_signed_one(
    world: dict[str, Any],
) -> None:
    """Decision 0033: MsgBeginRedelegate only under a redelegation intent, from the
    position's validator (verified back to its stake) to the intent's, which is allowed,
    for the intent's amount, from the client's own key; a redelegated position is then
    unstaked and redelegated again at its new validator."""
    gov, signer, url = world["gov"], world["signer"], world["url"]
    me, them = world["c1"].address, world["c2"].address
    sign: Callable[[SignCosmosRequest], bytes] = signer.sign_cosmos_transaction
    stake = gov.stake("stk-1", "c1", 5_000_000, VA)
    sign(request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)], sequence=0))
    moved = gov.redelegate("red-1", stake, 2_000_000, VC)
    gov.redelegate("red-b", stake, 2_000_000, VB)  # the client signed it; B is not allowed

    def red(op: str, src: str, dst: str, amount: int = 2_000_000, who: str = "c1") -> Any:
        delegator = me if who == "c1" else them
        return request(
            world, op, [msg_redelegate(delegator, src, dst, amount, DENOM)], sequence=1, who=who
        )

    attacks = {
        "to a validator not allowed": (red("red-b", VA, VB), "is not allowed"),
        "another amount": (red("red-1", VA, VC, 2_000_001), "the amount is not the intent's"),
        "from another validator": (red("red-1", VC, VC), "does not match"),
        "to another validator": (red("red-1", VA, VA), "does not match"),
        "another client's key": (red("red-1", VA, VC, who="c2"), "not c1's own address"),
        "an undelegation instead": (
            request(world, "red-1", [msg_undelegate(me, VA, 2_000_000, DENOM)], sequence=1),
            "no intent on record",
        ),
        "under the stake": (red("stk-1", VA, VC), "no intent on record"),
    }
    for name, (attack, reason) in attacks.items():
        with pytest.raises(KeyAccessDenied) as refused:
            sign(attack)
        assert reason in str(refused.value), name
    assert recorded(url) == 1
    sign(red("red-1", VA, VC))
    assert recorded(url) == 2
    # The redelegated position, at C: unstaked there (not at A), or redelegated on to A.
    gov.unstake("uns-1", moved, 1_000_000)
    with pytest.raises(KeyAccessDenied, match="does not match"):
        sign(request(world, "uns-1", [msg_undelegate(me, VA, 1_000_000, DENOM)], sequence=2))
    sign(request(world, "uns-1", [msg_undelegate(me, VC, 1_000_000, DENOM)], sequence=2))
    gov.redelegate("red-2", moved, 1_000_000, VA)
    with pytest.raises(KeyAccessDenied, match="does not match"):
        sign(request(world, "red-2", [msg_redelegate(me, VA, VC, 1_000_000, DENOM)], sequence=3))
    sign(request(world, "red-2", [msg_redelegate(me, VC, VA, 1_000_000, DENOM)], sequence=3))
    assert recorded(url) == 4


def test_a_position_row_copied_under_another_id_is_no_position(world: dict[str, Any]) -> None:
    """Found by review: the rows are any writer's. A genuine signed redelegation (stk-2's,
    A to C) copied in as a `redelegate` row of stk-1 would have the client's unstake of
    stk-1 undelegate at C; a stake the signer never signed (at B) copied in as a `stake`
    row of red-1 would have red-1's redelegation start from B. Neither is a position: the
    signer follows only links it signed itself, under that id, with that intent."""
    gov, signer, url = world["gov"], world["signer"], world["url"]
    me = world["c1"].address
    sign: Callable[[SignCosmosRequest], bytes] = signer.sign_cosmos_transaction
    intents = SqlIntentStore(url, migrate=False)
    s1 = gov.stake("stk-1", "c1", 5_000_000, VA)
    s2 = gov.stake("stk-2", "c1", 5_000_000, VA)
    sb = gov.stake("stk-b", "c1", 5_000_000, VB)  # the client signed it; never signed here
    sign(request(world, "stk-1", [msg_delegate(me, VA, 5_000_000, DENOM)], sequence=0))
    sign(request(world, "stk-2", [msg_delegate(me, VA, 5_000_000, DENOM)], sequence=1))
    red = gov.redelegate("red-x", s2, 5_000_000, VC)
    sign(request(world, "red-x", [msg_redelegate(me, VA, VC, 5_000_000, DENOM)], sequence=2))
    # A: the signed redelegation re-homed under stk-1.
    rehomed = red.model_copy(update={"operation_id": "stk-1"})
    intents.put_intent(rehomed, 0)
    gov.unstake("uns-1", rehomed, 5_000_000)
    with pytest.raises(KeyAccessDenied):
        sign(request(world, "uns-1", [msg_undelegate(me, VC, 5_000_000, DENOM)], sequence=3))
    # B: an unsigned stake re-homed under a real redelegation's id.
    red1 = gov.redelegate("red-1", s1, 5_000_000, VC)
    sign(request(world, "red-1", [msg_redelegate(me, VA, VC, 5_000_000, DENOM)], sequence=3))
    forged = sb.model_copy(update={"operation_id": "red-1"})
    intents.put_intent(forged, 0)
    gov.redelegate("red-2", forged, 5_000_000, VA)
    with pytest.raises(KeyAccessDenied):
        sign(request(world, "red-2", [msg_redelegate(me, VB, VA, 5_000_000, DENOM)], sequence=4))
    # The genuine position (red-1, at C) is still unstaked at C.
    gov.unstake("uns-2", red1, 5_000_000)
    sign(request(world, "uns-2", [msg_undelegate(me, VC, 5_000_000, DENOM)], sequence=4))
    assert recorded(url) == 5
