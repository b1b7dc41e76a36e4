"""The signer checks a Bitcoin batch output by output (decision 0025): every output but
the change names the operation it pays and is exactly that operation's authorised
payment; each member's share of the fee is within its own cap; one operation is paid by
one batch, for ever; a replacement pays the same members at a higher fee for each.
Every refusal leaves the signer's record as it was.

The members here are settlement legs (an authorised payment without a client request),
on SQLite with the real guard and signer."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.chains.bitcoin.tx import Plan, Utxo, to_request
from adapters.operations.guard import SigningGuard
from adapters.operations.intents import SqlIntentStore
from adapters.operations.store import SqlOperationStore
from adapters.sqldb import SqlDatabase
from sagas.errors import KeyAccessDenied, SigningDeadlinePassed
from sagas.governance import StaticGovernance
from sagas.intents import RegisteredKey, key_id
from sagas.policy import PolicyRules, StoredPolicy
from sagas.settlement import leg_operation
from sagas.signing import UnsignedBtcTransaction, fee_shares
from services.signer.signer import Signer
from tests.fakes import FakeKeyWrapper
from tests.governed import confirmed_leg
from tests.wallets import btc_wallet

COIN = 1_000_000
PAY = 10_000
CAP = 2_000  # each member's fee cap


def test_fee_shares_add_up_and_differ_by_one_at_most() -> None:
    assert fee_shares(1_000, 3) == [334, 333, 333]
    assert fee_shares(7, 7) == [1] * 7
    assert fee_shares(0, 2) == [0, 0]
    for fee in range(0, 50):
        for n in range(1, 9):
            shares = fee_shares(fee, n)
            assert sum(shares) == fee and max(shares) - min(shares) <= 1
    with pytest.raises(ValueError):
        fee_shares(10, 0)


class _Slow(FakeKeyWrapper):
    def __init__(self, vault: dict[str, bytes], delay: float) -> None:
        super().__init__(vault, may_unwrap=True)
        self._delay = delay

    def unwrap(self, ciphertext: str, operation: str | None = None) -> bytes:
        time.sleep(self._delay)
        return super().unwrap(ciphertext, operation)


class World:
    def __init__(
        self, tmp_path: Path, velocity: int | None = None, unwrap_delay: float = 0.0
    ) -> None:
        self.url = url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
        w = btc_wallet(url, "w1:change:batch")
        vault, store, deriver, self.coin, self.change = (
            w.vault,
            w.store,
            w.deriver,
            w.coin,
            w.change,
        )
        self.payees = [w.address(f"p{n}:BTC") for n in range(4)]
        intents = SqlIntentStore(url)
        provider = Ed25519PrivateKey.generate()
        self.members = []
        for n, payee in enumerate(self.payees[:3]):
            intents.put_intent(confirmed_leg(provider, f"st:{n}", "lp", "BTC", PAY, payee, CAP), 0)
            self.members.append(leg_operation(f"st:{n}", "lp", "BTC"))
        now = datetime.now(UTC).replace(microsecond=0)
        policy = StoredPolicy(
            rules=PolicyRules(
                client_id="settlement",
                asset="BTC",
                allow_list_required=True,
                allowed_destinations=frozenset(self.payees),
                daily_velocity_limit=velocity,
            ),
            version=1,
            created_by="g",
            created_at=now,
        )
        guard = SigningGuard(
            SqlOperationStore(url),
            url,
            {},
            31337,
            10**11,
            (50_000, 100_000),
            CAP,
            intents,
            StaticGovernance(
                policies={("settlement", "BTC"): policy},
                counterparty_key_map={key_id(provider): RegisteredKey.of("lp", provider)},
            ),
            {"BTC": 8},
        )
        self.signer = Signer(_Slow(vault, unwrap_delay), store, deriver, guard)

    def request(
        self,
        members: list[str] | None = None,
        fee: int = 900,
        coins: int = 1,
        amounts: list[int] | None = None,
        payees: list[str] | None = None,
    ) -> UnsignedBtcTransaction:
        members = self.members if members is None else members
        amounts = amounts or [PAY] * len(members)
        payees = payees or self.payees[: len(members)]
        inputs = tuple(Utxo(f"{n + 1:02x}" * 32, n, self.coin.address, COIN) for n in range(coins))
        outputs = tuple(zip(payees, amounts, strict=True))
        change = COIN * coins - sum(amounts) - fee
        plan = Plan(inputs, outputs, change, fee)
        return to_request(
            plan,
            self.change.address,
            self.change.index,
            [(0, self.coin.index)] * coins,
            members,
        ).model_copy(update={"not_after": datetime.now(UTC) + timedelta(seconds=10)})

    def sign(self, batch: str, tx: UnsignedBtcTransaction) -> bytes:
        return self.signer.sign_btc_transaction(batch, "w1", tx)

    def recorded(self) -> list[tuple[Any, ...]]:
        with SqlDatabase(self.url).tx() as conn:
            return conn.all("select operation_id, tx_hash, fee from signer_signatures order by id")


def test_a_batch_is_signed_with_each_member_recorded_at_its_share(tmp_path: Path) -> None:
    world = World(tmp_path)
    world.sign("btc-batch:one#0", world.request(fee=1_000))
    rows = world.recorded()
    assert [r[0] for r in rows] == world.members
    assert len({r[1] for r in rows}) == 1  # one transaction
    assert [int(r[2]) for r in rows] == [334, 333, 333]
    # The same transaction again (a lost answer) is fine.
    world.sign("btc-batch:one#0", world.request(fee=1_000))
    # A replacement: the same members, a higher fee for each, the same inputs or more.
    world.sign("btc-batch:one#1", world.request(fee=1_300, coins=2))
    assert [int(r[2]) for r in world.recorded()[-3:]] == [434, 433, 433]


@pytest.mark.parametrize(
    "attack",
    [
        "an output pays one satoshi more",
        "an output pays another member's address",
        "an output names an operation with no authorisation",
        "a member is paid twice",
        "a member is paid twice under two names",
        "the request's deadline has passed",
        "the request carries no deadline",
        "the request's deadline is minutes away",
        "an output names no operation",
        "a member's share of the fee is above its cap",
        "signed under an operation's id, not a batch's",
        "the change output names a member",
    ],
)
def test_a_batch_that_is_not_exactly_its_members_payments_is_refused(
    tmp_path: Path, attack: str
) -> None:
    world = World(tmp_path)
    m = world.members
    batch, tx = "btc-batch:one#0", world.request()
    if attack == "an output pays one satoshi more":
        tx = world.request(amounts=[PAY, PAY + 1, PAY])
    elif attack == "an output pays another member's address":
        tx = world.request(payees=[world.payees[0], world.payees[0], world.payees[2]])
    elif attack == "an output names an operation with no authorisation":
        tx = world.request(members=[m[0], m[1], "st:9:lp:BTC"])
    elif attack == "a member is paid twice":
        tx = world.request(
            members=[m[0], m[0], m[2]], payees=[world.payees[0]] * 2 + [world.payees[2]]
        )
    elif attack == "a member is paid twice under two names":  # the signer reads X#1 as X
        payees = [world.payees[0], world.payees[0], world.payees[2]]
        tx = world.request(members=[m[0], f"{m[0]}#1", m[2]], payees=payees)
    elif attack == "the request's deadline has passed":
        tx = tx.model_copy(update={"not_after": datetime.now(UTC) - timedelta(seconds=1)})
    elif attack == "the request carries no deadline":  # one replayed from history, say
        tx = tx.model_copy(update={"not_after": None})
    elif attack == "the request's deadline is minutes away":
        tx = tx.model_copy(update={"not_after": datetime.now(UTC) + timedelta(minutes=5)})
    elif attack == "an output names no operation":
        outputs = [
            o.model_copy(update={"pays": None}) if n == 1 else o for n, o in enumerate(tx.outputs)
        ]
        tx = tx.model_copy(update={"outputs": outputs})
    elif attack == "a member's share of the fee is above its cap":
        tx = world.request(fee=3 * CAP + 3)  # shares 2,001 each
    elif attack == "signed under an operation's id, not a batch's":
        batch = f"{m[0]}#0"
    elif attack == "the change output names a member":
        outputs = list(tx.outputs)
        outputs[-1] = outputs[-1].model_copy(update={"pays": m[2]})
        tx = tx.model_copy(update={"outputs": outputs})
    late = attack == "the request's deadline has passed"
    with pytest.raises(SigningDeadlinePassed if late else KeyAccessDenied):
        world.sign(batch, tx)
    assert world.recorded() == []


def test_a_signature_finished_after_the_deadline_is_not_kept(tmp_path: Path) -> None:
    """The unwrap can take long (OpenBao retried): a signature done after the request's
    deadline is refused and nothing is recorded, as if it never began."""
    world = World(tmp_path, unwrap_delay=0.6)
    tx = world.request().model_copy(
        update={"not_after": datetime.now(UTC) + timedelta(seconds=0.3)}
    )
    with pytest.raises(SigningDeadlinePassed):
        world.sign("btc-batch:one#0", tx)
    assert world.recorded() == []
    with SqlDatabase(world.url).tx() as conn:
        assert conn.all("select claim from signer_claims") == []
    world.sign("btc-batch:one#0", world.request())  # a new request, a new deadline
    assert len(world.recorded()) == 3


def test_one_operation_is_paid_by_one_batch_for_ever(tmp_path: Path) -> None:
    world = World(tmp_path)
    m = world.members
    world.sign("btc-batch:one#0", world.request(members=m[:2]))
    before = world.recorded()
    # Another batch paying a member again, from other coins: a second payment.
    fresh = world.request(members=[m[1], m[2]], payees=world.payees[1:3])
    fresh = fresh.model_copy(
        update={"inputs": [i.model_copy(update={"txid": "ee" * 32}) for i in fresh.inputs]}
    )
    with pytest.raises(KeyAccessDenied):
        world.sign("btc-batch:two#0", fresh)
    # ... or from the same coin and more: the signer's record names the member's batch.
    more = world.request(members=[m[1], m[2]], payees=world.payees[1:3], coins=2, fee=1_000)
    with pytest.raises(KeyAccessDenied, match="is paid by btc-batch:one"):
        world.sign("btc-batch:two#0", more)
    # A "replacement" of the batch that drops a member, or adds one.
    with pytest.raises(KeyAccessDenied, match="other members"):
        world.sign("btc-batch:one#1", world.request(members=m[:1], fee=2_000))
    with pytest.raises(KeyAccessDenied, match="other members"):
        world.sign("btc-batch:one#1", world.request(members=m, fee=2_000))
    # The member signed alone, outside any batch, from the batch's own coin.
    alone = world.request(members=m[:1], fee=1_500)
    alone = alone.model_copy(
        update={"outputs": [o.model_copy(update={"pays": None}) for o in alone.outputs]}
    )
    with pytest.raises(KeyAccessDenied, match="is paid by a batch"):
        world.sign(f"{m[0]}#0", alone)
    # A replacement that pays a member less fee than before.
    with pytest.raises(KeyAccessDenied, match="more than"):
        world.sign("btc-batch:one#1", world.request(members=m[:2], fee=800))
    assert world.recorded() == before


def test_members_of_one_holder_count_together_against_its_velocity(tmp_path: Path) -> None:
    world = World(tmp_path, velocity=2 * PAY)  # two legs fit in the day, three do not
    with pytest.raises(KeyAccessDenied, match="velocity"):
        world.sign("btc-batch:one#0", world.request())
    assert world.recorded() == []
    world.sign("btc-batch:one#0", world.request(members=world.members[:2]))
    assert len(world.recorded()) == 2
