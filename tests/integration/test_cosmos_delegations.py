"""CosmosDelegations on the real stack: the stack's simd, a fresh PostgreSQL database and
the real signer in-process (its guard checks every transaction against the client's
signed stake, unstake or withdrawal intent). One signed transaction per operation: a
delegation lands exactly and once; a lost answer from the signer re-signs the same
bytes; an undelegation's completion time and its release; a failure in the block; a
refusal at CheckTx; sequence gaps and two operations of one client at once."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property

import psycopg
import pytest

from adapters.chains.cosmos.faucet import CosmosFaucet
from adapters.chains.cosmos.node import CosmosNode
from adapters.chains.cosmos.staking import (
    CosmosDelegations,
    NoAccount,
    NotOurAddress,
    SequenceBlocked,
    SequenceGap,
    TxRefused,
)
from adapters.chains.cosmos.tx import address_of, tx_hash
from adapters.ledger.migrate import upgrade
from adapters.sqldb import SqlDatabase
from sagas import accounts
from sagas.errors import ChainRejected, DependencyUnavailable, IdempotencyConflict, NotFound
from sagas.ledger import Transfer
from sagas.ports import CosmosKeySigner, Delegations
from sagas.signing import SignCosmosRequest
from sagas.staking import TxOutcome
from sagas.staking.events import MISMATCH_ALERT, SLASHED_ALERT
from sagas.staking.positions import settled_position
from sagas.staking.slashing import WatchActivities, WatchInput
from services.platform import Platform
from services.settings import PlatformSettings
from services.signer.main import build_signer
from services.worker.bootstrap import COSMOS_GAS
from tests.governed import Governed
from tests.sagas.staking_world import staked

pytestmark = pytest.mark.timeout(150)

FUNDED, AMOUNT, FEE, DENOM = 20_000_000, 3_000_000, 2_000, "uatom"
GAS = COSMOS_GAS  # the worker's
UNBONDING = timedelta(seconds=30)  # the stack's genesis (decision 0027)
# c6 holds less than one fee; c7 is never funded.
CLIENTS = {f"c{i}": FUNDED for i in (1, 2, 3, 4, 5, 8, 9, 10)} | {"c6": FEE // 2}


class CountingNode(CosmosNode):
    """The stack's node, counting broadcasts; `fail` broadcasts fail as if the worker
    died right after recording (the transaction is not sent)."""

    def __init__(self, url: str, denom: str) -> None:
        super().__init__(url, denom)
        self.broadcasts, self.fail = 0, 0

    def broadcast(self, raw: bytes) -> str:
        if self.fail > 0:
            self.fail -= 1
            raise DependencyUnavailable("the worker died before broadcasting")
        self.broadcasts += 1
        return super().broadcast(raw)


class CrashAfterSigning:
    """The real signer, whose answer is lost: it signs (and records the signature in its
    own record), then the worker dies before writing its row."""

    def __init__(self, signer: CosmosKeySigner) -> None:
        self._signer, self.signed = signer, b""

    def sign_cosmos_transaction(self, request: SignCosmosRequest) -> bytes:
        self.signed = self._signer.sign_cosmos_transaction(request)
        raise RuntimeError("the worker died before recording the signature")


@dataclass
class World:
    url: str
    settings: PlatformSettings
    governed: Governed
    node: CountingNode
    signer: CosmosKeySigner
    validator: str
    addresses: dict[str, str] = field(default_factory=dict)

    @cached_property
    def delegations(self) -> CosmosDelegations:
        return self.adapter()

    def adapter(
        self, signer: CosmosKeySigner | None = None, node: CosmosNode | None = None
    ) -> CosmosDelegations:
        p = Platform(self.settings, self.url)
        return CosmosDelegations(
            self.url,
            node or self.node,
            signer or self.signer,
            p.keys,
            self.settings.platform_wallet,
            self.settings.cosmos_chain_id,
            self.settings.cosmos_denom,
            GAS,
            deriver=p.deriver,
            migrate=False,
        )

    def sequence(self, client: str) -> int:
        account = self.node.account(self.addresses[client])
        assert account is not None
        return account[1]

    def rows(self, client: str) -> list[tuple[str, int, str, int | None]]:
        """(operation, sequence, state, height) of the client's recorded transactions."""
        with SqlDatabase(self.url).tx() as conn:
            rows = conn.all(
                "select operation_id, sequence, state, height from cosmos_transactions "
                "where address = ? order by sequence",
                (self.addresses[client],),
            )
        return [(str(r[0]), int(r[1]), str(r[2]), r[3]) for r in rows]

    def rewards_paid(self, client: str, *names: str) -> int:
        """The rewards the transactions paid the client's address on the way (a delegation
        to a validator the address is delegated to withdraws what accrued)."""
        me, paid = self.addresses[client], 0
        for name in names:
            result = self.node.tx(name)
            assert result is not None, name
            for event in result.events_of("withdraw_rewards"):
                if event.get("delegator") == me:  # a coin list: "403uatom", "0stake", ""
                    coins = (event.get("amount") or "").split(",")
                    paid += sum(int(c[: -len(DENOM)]) for c in coins if c.endswith(DENOM))
        return paid

    def signatures(self, operation: str) -> list[str]:
        """The tx hashes of the signer's own record of the operation, oldest first."""
        with SqlDatabase(self.url).tx() as conn:
            rows = conn.all(
                "select tx_hash from signer_signatures where operation_id = ? order by id",
                (operation,),
            )
        return [str(r[0]) for r in rows]


@pytest.fixture(scope="module")
def world(stack_settings: PlatformSettings) -> Iterator[World]:
    """One fresh database (module-wide: each test has its own clients, so its own
    addresses), governance with the default policies, the platform wallet, the real
    signer, and every client's ATOM address funded by the faucet."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    base = stack_settings.postgres_url.rsplit("/", 1)[0]
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = f"{base}/{name}"
    try:
        upgrade(url)
        governed = Governed(url)
        governed.defaults()
        with pytest.MonkeyPatch.context() as env:
            env.setenv("CUSTODY_GOVERNANCE_GENESIS_HASH", governed.genesis_hash)
            settings = PlatformSettings.load()
        platform = Platform(settings, url)
        platform.create_wallet()
        node = CountingNode(settings.cosmos_grpc_url, settings.cosmos_denom)
        signer = build_signer(settings, url)
        w = World(url, settings, governed, node, signer, settings.allowed_validators()[0])
        for client in [*CLIENTS, "c7"]:
            w.addresses[client] = platform.client_address(client, "ATOM").address
        assert settings.cosmos_faucet is not None
        faucet, payments = CosmosFaucet(node, settings.cosmos_faucet), list(CLIENTS.items())
        for i in range(0, len(payments), 4):  # the faucet's gas limit takes ~7 new accounts
            faucet.fund(*((w.addresses[c], amount) for c, amount in payments[i : i + 4]))
        yield w
        node.close()
    finally:
        with psycopg.connect(base + "/postgres", autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def _op(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


def _final(d: Delegations, operation: str, timeout: float = 20.0) -> TxOutcome:
    deadline = time.monotonic() + timeout
    while (outcome := d.outcome(operation)).state == "pending":
        if time.monotonic() > deadline:
            pytest.fail(f"{operation} still pending after {timeout} s: {outcome.detail}")
        time.sleep(0.3)
    return outcome


def test_the_port_is_implemented(world: World) -> None:
    assert isinstance(world.delegations, Delegations)


def test_a_delegation_lands_exactly_once(world: World) -> None:
    w, d, a = world, world.delegations, world.validator
    me, op = w.addresses["c1"], _op("stk")
    w.governed.stake(op, "c1", AMOUNT, a)
    name = d.delegate(op, me, a, AMOUNT, FEE)
    first = d.outcome(op)  # the block is a second away
    assert (first.state, first.tx_hash, first.height) == ("pending", name, None)
    assert d.delegate(op, me, a, AMOUNT, FEE) == name  # while pending: the same bytes again

    done = _final(d, op)
    assert (done.state, done.tx_hash, done.fee, done.completion_time) == (
        "succeeded",
        name,
        FEE,
        None,
    )
    assert done.height is not None and w.node.tx(name) is not None
    assert w.node.delegation(me, a) == AMOUNT
    assert w.node.balance(me) == FUNDED - AMOUNT - FEE
    assert w.rows("c1") == [(op, 0, "succeeded", done.height)]

    # Final: a retry broadcasts nothing and signs nothing; the chain is unchanged.
    sent = w.node.broadcasts
    assert d.delegate(op, me, a, AMOUNT, FEE) == name
    assert w.node.broadcasts == sent
    assert w.signatures(op) == [name]
    assert w.sequence("c1") == 1
    assert w.node.delegation(me, a) == AMOUNT
    assert w.node.balance(me) == FUNDED - AMOUNT - FEE
    with pytest.raises(IdempotencyConflict):
        d.delegate(op, me, a, AMOUNT + 1, FEE)


def test_a_lost_answer_re_signs_the_same_transaction_at_its_sequence(world: World) -> None:
    w, d, a = world, world.delegations, world.validator
    me, op_a, op_b = w.addresses["c2"], _op("stk"), _op("stk")
    w.governed.stake(op_a, "c2", AMOUNT, a)
    w.governed.stake(op_b, "c2", AMOUNT, a)
    lost = CrashAfterSigning(w.signer)
    with pytest.raises(RuntimeError, match="before recording"):
        w.adapter(signer=lost).delegate(op_a, me, a, AMOUNT, FEE)
    assert lost.signed and w.signatures(op_a) == [tx_hash(lost.signed)]
    assert w.rows("c2") == [] and w.node.tx(tx_hash(lost.signed)) is None
    assert w.sequence("c2") == 0

    # Another operation meanwhile: sequence 0 is op_a's (the signer's record), so op_b
    # takes 1 and waits for 0 (transient), recorded.
    with pytest.raises(SequenceGap, match=op_a) as waiting:
        d.delegate(op_b, me, a, AMOUNT, FEE)
    assert waiting.value.transient
    assert w.rows("c2") == [(op_b, 1, "broadcast", None)]
    pending = d.outcome(op_b)
    assert pending.state == "pending" and op_a in pending.detail

    # op_a's retry: signed again at sequence 0, the very same bytes.
    name_a = d.delegate(op_a, me, a, AMOUNT, FEE)
    assert name_a == tx_hash(lost.signed)
    assert w.signatures(op_a) == [name_a, name_a]
    assert _final(d, op_a).state == "succeeded"
    done_b = _final(d, op_b)  # its outcome broadcast it again
    assert done_b.state == "succeeded" and done_b.tx_hash is not None
    assert [(op, seq, state) for op, seq, state, _h in w.rows("c2")] == [
        (op_a, 0, "succeeded"),
        (op_b, 1, "succeeded"),
    ]
    assert w.node.delegation(me, a) == 2 * AMOUNT
    rewards = w.rewards_paid("c2", name_a, done_b.tx_hash)
    assert w.node.balance(me) == FUNDED - 2 * (AMOUNT + FEE) + rewards


def test_an_undelegation_completes_and_is_released(world: World) -> None:
    w, d, a = world, world.delegations, world.validator
    me, op_s, op_u = w.addresses["c3"], _op("stk"), _op("uns")
    stake = w.governed.stake(op_s, "c3", AMOUNT, a)
    d.delegate(op_s, me, a, AMOUNT, FEE)
    assert _final(d, op_s).state == "succeeded"
    w.governed.unstake(op_u, stake, AMOUNT)
    name = d.undelegate(op_u, me, a, AMOUNT, FEE)
    done = _final(d, op_u)
    assert (done.state, done.tx_hash, done.fee) == ("succeeded", name, FEE)
    assert done.height is not None and done.completion_time is not None

    # The unbonding entry the transaction created, and its `unbond` event: one instant,
    # the event's to the second.
    result = w.node.tx(name)
    assert result is not None and result.timestamp is not None
    [entry] = w.node.unbonding(me, a)
    assert entry.creation_height == done.height == result.height
    assert entry.completion_time == done.completion_time
    [event] = result.events_of("unbond")
    announced = datetime.fromisoformat(event.get("completion_time") or "")
    assert announced == done.completion_time.replace(microsecond=0)
    assert UNBONDING <= done.completion_time - result.timestamp < UNBONDING + timedelta(seconds=1)
    assert d.unbonding_balance(me, a, done.height) == AMOUNT
    assert d.unbonding_balance(me, a, done.height - 1) is None
    assert w.node.delegation(me, a) == 0

    before = w.node.balance(me)
    time.sleep(max(0.0, (done.completion_time - datetime.now(UTC)).total_seconds()))
    deadline = time.monotonic() + 15
    while d.unbonding_balance(me, a, done.height) is not None:
        assert time.monotonic() < deadline, "not released 15 s after its completion time"
        time.sleep(0.3)
    assert w.node.balance(me) == before + AMOUNT
    # Released: the entry is gone, the event's time (to the second) stands in.
    again = d.outcome(op_u)
    assert again.state == "succeeded" and again.completion_time == announced


def test_a_delegation_that_fails_in_its_block_pays_its_fee(world: World) -> None:
    w, d, a = world, world.delegations, world.validator
    me, op = w.addresses["c4"], _op("stk")
    w.governed.stake(op, "c4", 2 * FUNDED, a)  # more than the balance: CheckTx has the fee
    name = d.delegate(op, me, a, 2 * FUNDED, FEE)
    failed = _final(d, op)
    assert (failed.state, failed.tx_hash, failed.fee) == ("failed", name, FEE)
    assert failed.height is not None and "insufficient funds" in failed.detail
    assert "code 5" in failed.detail
    assert w.node.balance(me) == FUNDED - FEE and w.node.delegation(me, a) == 0
    assert w.rows("c4") == [(op, 0, "failed", failed.height)]
    sent = w.node.broadcasts
    assert d.delegate(op, me, a, 2 * FUNDED, FEE) == name  # final: nothing sent again
    assert w.node.broadcasts == sent


def test_two_operations_of_one_client_at_once_take_consecutive_sequences(
    world: World,
) -> None:
    w, d, a = world, world.delegations, world.validator
    me, ops = w.addresses["c5"], [_op("stk"), _op("stk")]
    for op in ops:
        w.governed.stake(op, "c5", AMOUNT, a)
    start = threading.Barrier(len(ops))
    names: dict[str, str] = {}
    errors: list[BaseException] = []

    def stake(op: str) -> None:
        start.wait()
        try:
            names[op] = d.delegate(op, me, a, AMOUNT, FEE)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stake, args=(op,)) for op in ops]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(names) == 2
    assert sorted(seq for _op_, seq, _s, _h in w.rows("c5")) == [0, 1]
    assert [_final(d, op).state for op in ops] == ["succeeded", "succeeded"]
    assert w.sequence("c5") == 2
    assert w.node.delegation(me, a) == 2 * AMOUNT
    rewards = w.rewards_paid("c5", *names.values())
    assert w.node.balance(me) == FUNDED - 2 * (AMOUNT + FEE) + rewards


def test_a_recorded_transaction_never_broadcast_is_sent_before_the_next(world: World) -> None:
    """A worker died between recording op_a and broadcasting it; op_b, at the next
    sequence, is refused by CheckTx (sequence mismatch) and sends op_a's bytes first."""
    w, d, a = world, world.delegations, world.validator
    me, op_a, op_b = w.addresses["c8"], _op("stk"), _op("stk")
    w.governed.stake(op_a, "c8", AMOUNT, a)
    w.governed.stake(op_b, "c8", AMOUNT, a)
    dying = CountingNode(w.settings.cosmos_grpc_url, w.settings.cosmos_denom)
    dying.fail = 1
    with pytest.raises(DependencyUnavailable):
        w.adapter(node=dying).delegate(op_a, me, a, AMOUNT, FEE)
    dying.close()
    assert w.rows("c8") == [(op_a, 0, "broadcast", None)]
    sent = w.node.broadcasts
    name_b = d.delegate(op_b, me, a, AMOUNT, FEE)
    assert w.node.broadcasts - sent == 3  # op_b (refused: sequence 1), op_a, op_b
    outcomes = [_final(d, op) for op in (op_a, op_b)]
    assert [o.state for o in outcomes] == ["succeeded", "succeeded"]
    assert outcomes[1].tx_hash == name_b
    assert [seq for _op_, seq, _s, _h in w.rows("c8")] == [0, 1]
    assert w.node.delegation(me, a) == 2 * AMOUNT
    rewards = w.rewards_paid("c8", *(o.tx_hash or "" for o in outcomes))
    assert w.node.balance(me) == FUNDED - 2 * (AMOUNT + FEE) + rewards


def test_a_refusal_at_checktx_fails_the_operation_and_blocks_the_address(world: World) -> None:
    """c6 holds less than the fee: CheckTx refuses the delegation (no fee paid). The
    operation failed for good; sequence 0 is its for ever (the signer's record), so the
    address can send nothing more: the next operation is refused before it is signed."""
    w, d, a = world, world.delegations, world.validator
    me, op, later = w.addresses["c6"], _op("stk"), _op("stk")
    w.governed.stake(op, "c6", 100, a)
    w.governed.stake(later, "c6", 100, a)
    with pytest.raises(TxRefused, match="insufficient funds") as refused:
        d.delegate(op, me, a, 100, FEE)
    assert isinstance(refused.value, ChainRejected) and not refused.value.transient
    assert w.rows("c6") == [(op, 0, "failed", None)]
    failed = d.outcome(op)
    assert (failed.state, failed.fee, failed.height) == ("failed", 0, None)
    with pytest.raises(TxRefused):
        d.delegate(op, me, a, 100, FEE)
    with pytest.raises(SequenceBlocked, match=op):
        d.delegate(later, me, a, 100, FEE)
    assert w.signatures(later) == []
    assert w.node.balance(me) == FEE // 2 and w.sequence("c6") == 0


def test_addresses_that_cannot_sign(world: World) -> None:
    w, d, a = world, world.delegations, world.validator
    op = _op("stk")
    w.governed.stake(op, "c7", AMOUNT, a)
    with pytest.raises(NoAccount):  # c7's address was never funded
        d.delegate(op, w.addresses["c7"], a, AMOUNT, FEE)
    stranger = address_of(b"\x02" + hashlib.sha256(b"stranger").digest())
    with pytest.raises(NotOurAddress):
        d.delegate(op, stranger, a, AMOUNT, FEE)
    assert w.signatures(op) == []
    with pytest.raises(NotFound):
        d.outcome(op)


def test_a_reward_claim_and_a_send(world: World) -> None:
    w, d, a = world, world.delegations, world.validator
    me, op_s = w.addresses["c9"], _op("stk")
    w.governed.stake(op_s, "c9", AMOUNT, a)
    d.delegate(op_s, me, a, AMOUNT, FEE)
    assert _final(d, op_s).state == "succeeded"
    deadline = time.monotonic() + 15
    while w.node.rewards(me, a) == 0:
        assert time.monotonic() < deadline, "no reward within 15 s"
        time.sleep(0.3)

    before, op_c = w.node.balance(me), _op("claim")
    name = d.claim_rewards(op_c, me, [a], FEE)
    claimed = _final(d, op_c)
    assert (claimed.state, claimed.fee) == ("succeeded", FEE)
    paid = w.rewards_paid("c9", name)
    assert paid > 0 and w.node.balance(me) == before + paid - FEE

    to = address_of(b"\x03" + hashlib.sha256(uuid.uuid4().bytes).digest())
    op_w, before = _op("wdr"), w.node.balance(me)
    w.governed.withdrawal(op_w, "c9", "ATOM", 1_000, to, 10**6)
    d.send(op_w, me, to, 1_000, FEE)
    assert _final(d, op_w).state == "succeeded"
    assert w.node.balance(to) == 1_000 and w.node.balance(me) == before - 1_000 - FEE
    assert [seq for _op_, seq, _s, _h in w.rows("c9")] == [0, 1, 2]


def test_the_watch_books_no_loss_the_chain_took_without_a_slash(world: World) -> None:
    """An attack on the slashing watch, on the real chain: the client's delegation
    shrinks by an undelegation the books never saw (recorded failed, included after
    all). Its shares are not those the stake's settlement recorded, and the validator's
    rate did not fall: no slash explains it, so the watch books nothing and alerts,
    once."""
    w, d, a, client = world, world.delegations, world.validator, "c10"
    me, p = w.addresses[client], Platform(w.settings, w.url)
    p.open_books()
    p.open_client_accounts(client)
    p.ledger.submit(
        [
            Transfer(
                id=f"deposit:{client}",
                debit_account=accounts.omnibus("ATOM"),
                credit_account=accounts.client(client, "ATOM"),
                asset="ATOM",
                amount=AMOUNT,
            )
        ]
    )
    op = _op("stk")
    intent = w.governed.stake(op, client, AMOUNT, a)
    d.delegate(op, me, a, AMOUNT, FEE)
    done = _final(d, op)
    assert done.state == "succeeded" and done.height is not None
    # What the stake saga's settlement records: the shares and rate after its block.
    after = d.delegation(me, a, done.height)
    assert after is not None and after.height == done.height
    settled = {"height": done.height, **settled_position(after, done.height)}
    stake = staked(p.ledger, p.operations, client, a, AMOUNT, 1, address=me, settled=settled)
    ghost = _op("uns")
    w.governed.unstake(ghost, intent, AMOUNT // 4)
    d.undelegate(ghost, me, a, AMOUNT // 4, FEE)
    assert _final(d, ghost).state == "succeeded"
    view = d.delegation(me, a)
    assert view is not None and view.balance == AMOUNT - AMOUNT // 4 and view.rate == 1

    watch, position = WatchActivities(p.ledger, p.operations, d), accounts.staked(client, a, "ATOM")
    mine = [h for h in watch.positions(WatchInput()) if h.client_id == client]
    for run in range(2):
        found = watch.check(WatchInput(), mine)
        assert found.slashes == []
        (mismatch,) = found.mismatches
        assert (mismatch.reason, mismatch.booked, mismatch.on_chain) == (
            "shares_changed",
            AMOUNT,
            AMOUNT - AMOUNT // 4,
        )
        assert watch.mismatch(mismatch) is (run == 0)  # reported once
    assert p.ledger.balance(position).total == AMOUNT  # nothing moved
    record = p.operations.get(stake)
    assert record is not None and record.state == "active"
    debits, credits = p.ledger.totals("ATOM")
    assert debits == credits
    with SqlDatabase(w.url).tx() as conn:
        rows = conn.all("select event_id, payload from ledger_outbox", ())
    mine = [str(payload) for event_id, payload in rows if f":{client}:" in str(event_id)]
    assert sum(MISMATCH_ALERT in e for e in mine) == 1
    assert not any(SLASHED_ALERT in e for e in mine)
