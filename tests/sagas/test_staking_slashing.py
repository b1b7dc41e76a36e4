"""Slashing in seconds: the StakingWatch workflow and its activities over fakes, on the
time-skipping test server. A position a slash cut (the validator's rate fell, the chain
holds less than the books) is booked once (staked -> omnibus), shared across its stakes
in proportion (rounded down, the remainder to the largest), each stake `slashed` with its
step and event, one critical alert; a position with an unstake in flight is left for a
later run; a jailed validator is reported once per jailing; a run again books nothing
twice. And what is no slash books nothing: a node that has lost the delegation, a
shortfall with the rate unchanged, more than the fall can take, the chain's rounding;
two runs that see one slash book it once; a position that moved is not booked."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

import pytest
from temporalio.client import Client

from sagas import accounts
from sagas.ledger import Account, AccountKind, Transfer
from sagas.operations import OperationRecord
from sagas.staking import DelegationView
from sagas.staking.events import JAILED_ALERT, MISMATCH_ALERT, SLASHED_ALERT
from sagas.staking.positions import settled_position
from sagas.staking.slashing import (
    Findings,
    Reference,
    StakingWatchWorkflow,
    WatchActivities,
    WatchInput,
    WatchResult,
    reference,
    share_loss,
    verdict,
)
from tests.fakes_chains import FakeDelegations
from tests.sagas.conftest import QUEUE, SagaServer
from tests.sagas.staking_world import FUNDED, V1, V2, available, delegator, staked, world

WATCH = WatchInput(asset="ATOM")


def test_a_loss_is_shared_in_proportion_in_integers() -> None:
    assert share_loss(800_000, [5_000_000, 3_000_000]) == [500_000, 300_000]
    assert share_loss(2, [1, 1, 1]) == [1, 1, 0]  # the remainder to the largest, earliest
    assert share_loss(7, [2, 10]) == [1, 6]
    assert share_loss(0, [5, 5]) == [0, 0]
    assert share_loss(9, [3, 4]) == [5, 4]  # holdings below the loss: the first takes it
    assert sum(share_loss(999_999, [333, 1_000_001, 7])) == 999_999
    with pytest.raises(ValueError):
        share_loss(-1, [5])


def test_the_watch_books_a_slash_once_and_waits_for_positions_in_flight(
    test_server: SagaServer,
) -> None:
    ledger, ops, chain = world()
    first = staked(ledger, ops, "acme", V1, 5_000_000, 1, chain)
    second = staked(ledger, ops, "acme", V1, 3_000_000, 2, chain)
    other = staked(ledger, ops, "acme", V2, 4_000_000, 3, chain)
    beta = staked(ledger, ops, "beta", V1, 2_000_000, 4, chain)
    # beta has an unstake of 1 ATOM broadcast but not settled: the chain already holds
    # less than the books by its amount, which is no slash.
    now = datetime.now(UTC)
    unstake = f"uns:{beta}:k1"
    ops.create(
        OperationRecord(
            id=unstake, kind="unstake", client_id="beta", asset="ATOM", chain="cosmos",
            amount=1_000_000, destination=V1, request_hash=unstake, requested_by="beta",
            state="requested", created_at=now, updated_at=now,
        ),
        [],
        {"stake_id": beta},
    )  # fmt: skip
    ops.advance(unstake, "broadcast", state="broadcast")
    chain.undelegate(unstake, delegator("beta"), V1, 1_000_000, 2000)
    # V1 is slashed 10 % and jailed.
    chain.slash(V1, Fraction(1, 10))
    chain.jailed = {V1: 150}
    acts = WatchActivities(ledger, ops, chain)
    results: list[WatchResult] = []

    async def scenario(client: Client) -> None:
        for run in ("sw:look-1", "sw:look-2"):
            results.append(
                await client.execute_workflow(
                    StakingWatchWorkflow.run, WATCH, id=run, task_queue=QUEUE
                )
            )

    test_server.run([StakingWatchWorkflow], acts.all(), scenario)

    one, two = results
    (acme_slash,) = one.booked
    assert acme_slash.startswith(f"slh:acme:{V1}:") and one.jailed == [V1]
    assert two.booked == [] and two.jailed == []  # nothing twice
    # The books: acme's V1 position equals the chain; V2 untouched; beta left alone.
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 7_200_000
    assert _on_chain(chain, "acme", V1) == 7_200_000
    assert ledger.balance(accounts.staked("acme", V2, "ATOM")).total == 4_000_000
    assert ledger.balance(accounts.staked("beta", V1, "ATOM")).total == 2_000_000
    assert available(ledger, "acme") == FUNDED - 12_000_000
    debits, credits = ledger.totals("ATOM")
    assert debits == credits
    # Each of acme's V1 stakes carries its share, and is slashed; the V2 one is not.
    shares = {}
    for stake in (first, second):
        record = ops.get(stake)
        assert record is not None and record.state == "slashed"
        steps = [s for s in ops.timeline(stake) if s.step.startswith("slashed:")]
        assert [s.step for s in steps] == [f"slashed:{acme_slash}"]
        shares[stake] = steps[0].detail["loss"]
    assert shares == {first: "500000", second: "300000"}
    assert ops.get(other).state == "active"  # type: ignore[union-attr]
    slashed = [e for _t, e in ops.outbox if e.type == "custody.stake.slashed.v1"]
    assert sorted(str(e.data["loss"]) for e in slashed) == ["300000", "500000"]
    alerts = [e for _t, e in ops.outbox if e.type == SLASHED_ALERT]
    assert [(a.data["client_id"], a.data["position_loss"]) for a in alerts] == [("acme", "800000")]
    jailed = [e for _t, e in ops.outbox if e.type == JAILED_ALERT]
    assert [(j.subject, j.data["unbonding_height"]) for j in jailed] == [(V1, 150)]

    # Booking the same slash again (a retried activity) changes nothing.
    again = WatchActivities(ledger, ops, chain)
    assert _look(again) == Findings()

    # beta's unstake settles (staked -> unbonding posted): the next look finds its loss,
    # and booking it twice (a retried activity) books it once.
    _unstake_settled(ledger, ops, chain, "beta", unstake, 1_000_000)
    (found,) = _look(again).slashes
    assert (found.client_id, found.booked, found.on_chain) == ("beta", 1_000_000, 900_000)
    # beta's one stake held 2 ATOM of which 1 is unstaking: its share is the whole loss.
    assert [(sh.stake_id, sh.left, sh.loss) for sh in found.shares] == [(beta, 1_000_000, 100_000)]
    assert again.book(found) == "booked" and again.book(found) == "booked"
    assert ledger.balance(accounts.staked("beta", V1, "ATOM")).total == 900_000
    alerts = [e for _t, e in ops.outbox if e.type == SLASHED_ALERT]
    assert [a.data["client_id"] for a in alerts] == ["acme", "beta"]
    # Its step records the rate after the slash: the reference for the next one.
    (step,) = [st for st in ops.timeline(beta) if st.step == f"slashed:{found.slash_id}"]
    assert step.detail["rate"] == "9/10"


def _unstake_settled(ledger: Any, ops: Any, chain: FakeDelegations, client: str, unstake: str,
                     amount: int) -> None:  # fmt: skip
    """The unstake saga's settlement of `unstake` (its undelegation on the fake chain):
    staked -> unbonding posted, the step with what the chain holds after its block."""
    ledger.open_account(
        Account(id=accounts.unbonding(client, V1, "ATOM"), asset="ATOM",
                kind=AccountKind.STAKING_LOCKED, owner=client)
    )  # fmt: skip
    ledger.submit(
        [
            Transfer(
                id=f"{unstake}:post",
                debit_account=accounts.staked(client, V1, "ATOM"),
                credit_account=accounts.unbonding(client, V1, "ATOM"),
                asset="ATOM",
                amount=amount,
            )
        ]
    )
    height = chain.txs[unstake].height
    after = settled_position(chain.delegation(delegator(client), V1, height), height)
    ops.advance(unstake, "unbonding", detail={"height": height, **after}, state="unbonding")


def _look(acts: WatchActivities) -> Findings:
    """One run's reads: the positions, then the check of all of them."""
    return acts.check(WATCH, acts.positions(WATCH))


def _on_chain(chain: FakeDelegations, client: str, validator: str) -> int:
    view = chain.delegation(delegator(client), validator)
    assert view is not None
    return view.balance


V3 = "cosmosvaloper1vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvxxxxxx"


def _view(balance: int, rate: Fraction, shares: int = 1_000 * 10**18) -> DelegationView:
    return DelegationView(
        height=10,
        shares=shares,
        balance=balance,
        validator_tokens=rate.numerator * 10**6,
        validator_shares=rate.denominator * 10**24,
    )


def _ref(shares: int = 1_000 * 10**18, rate: str = "1/1", rounded: int = 1) -> Reference:
    return Reference(shares=shares, height=10, max_shares=shares, rate=rate, rounded=rounded)


def test_the_verdict_books_only_what_a_fall_of_the_rate_can_take() -> None:
    ninety, ref = Fraction(9, 10), _ref()  # rounding: 2
    assert verdict(1_000, None, ref) == "missing"
    assert verdict(1_000, _view(900, ninety), None) == "unverifiable"
    assert verdict(1_000, _view(900, ninety), ref.model_copy(update={"height": 11})) == "behind"
    assert verdict(1_000, _view(900, ninety, 999 * 10**18), ref) == "shares_changed"
    assert verdict(1_000, _view(1_001, Fraction(1)), ref) == "more_on_chain"
    assert verdict(1_000, _view(998, ninety), ref) == "agrees"  # rounding
    assert verdict(1_000, _view(900, Fraction(1)), ref) == "rate_unchanged"
    assert verdict(1_000, _view(900, ninety), _ref(rate="9/10")) == "rate_unchanged"
    assert verdict(1_000, _view(900, ninety), ref) == "slash"
    assert verdict(1_000, _view(898, ninety), ref) == "slash"  # 100 + rounding
    assert verdict(1_000, _view(897, ninety), ref) == "over_cap"
    zero = DelegationView(height=10, shares=ref.shares or 0, balance=0, validator_tokens=0,
                          validator_shares=0)  # fmt: skip
    assert verdict(1_000, zero, ref) == "unreadable"  # never a 100 % loss
    # A second slash, measured from the rate the first left.
    assert verdict(900, _view(810, Fraction(81, 100)), _ref(rate="9/10")) == "slash"
    assert verdict(900, _view(700, Fraction(81, 100)), _ref(rate="9/10")) == "over_cap"


def test_the_reference_starts_again_at_each_booked_slash() -> None:
    one = {"height": 5, "shares": str(1_000 * 10**18), "rate": "1/1"}
    two = {"height": 9, "shares": str(1_500 * 10**18), "rate": "9/10"}
    assert reference([]) is None
    first = reference([one, two])
    assert first is not None and (first.shares, first.height, first.rate) == (
        1_500 * 10**18, 9, "1/1"
    )  # fmt: skip
    assert (first.max_shares, first.rounding) == (1_500 * 10**18, 2)
    slash = {"height": 12, "shares": str(1_500 * 10**18), "rate": "81/100"}
    after = reference([one, two], [slash])
    assert after is not None and (after.rate, after.max_shares, after.rounding) == (
        "81/100", 1_500 * 10**18, 1
    )  # fmt: skip
    assert reference([{"height": 3}]).shares is None  # type: ignore[union-attr]


def test_what_no_slash_explains_books_nothing_and_alerts_once() -> None:
    ledger, ops, chain = world()
    lost = staked(ledger, ops, "acme", V1, 5_000_000, 1, chain)
    gone = staked(ledger, ops, "beta", V1, 4_000_000, 2, chain)
    over = staked(ledger, ops, "gamma", V2, 6_000_000, 3, chain)
    same = staked(ledger, ops, "acme", V3, 3_000_000, 4, chain)
    # gamma's and acme's V3 books hold 2 and 1 ATOM more than was delegated (a delegation
    # recorded succeeded that the chain never made).
    for client, validator, extra in (("gamma", V2, 2_000_000), ("acme", V3, 1_000_000)):
        ledger.submit(
            [
                Transfer(
                    id=f"wrong:{client}",
                    debit_account=accounts.client(client, "ATOM"),
                    credit_account=accounts.staked(client, validator, "ATOM"),
                    asset="ATOM",
                    amount=extra,
                )
            ]
        )
    acts = WatchActivities(ledger, ops, chain)
    pairs = (("acme", V1), ("beta", V1), ("gamma", V2), ("acme", V3))
    before = {p: ledger.balance(accounts.staked(*p, "ATOM")).total for p in pairs}
    # A lagging node answers "no such delegation" for acme's V1; beta's lost 1 ATOM to an
    # undelegation the books never saw (recorded failed, included after all); V2 was
    # slashed 1 % but gamma's books are 2 ATOM more than that can explain; V3 was never
    # slashed, so acme's missing ATOM there is no slash either.
    chain.missing.add((delegator("acme"), V1))
    chain.undelegate("uns:beta:ghost", delegator("beta"), V1, 1_000_000, 2000)
    chain.slash(V2, Fraction(1, 100))
    expected = {
        ("acme", V1, "missing"),
        ("beta", V1, "shares_changed"),
        ("gamma", V2, "over_cap"),
        ("acme", V3, "rate_unchanged"),
    }
    for _run in range(2):
        found = _look(acts)
        assert found.slashes == []
        assert {(m.client_id, m.validator, m.reason) for m in found.mismatches} == expected
        for m in found.mismatches:
            acts.mismatch(m)
    assert {p: ledger.balance(accounts.staked(*p, "ATOM")).total for p in pairs} == before
    for stake in (lost, gone, over, same):
        record = ops.get(stake)
        assert record is not None and record.state == "active"
    alerts = [e for _t, e in ops.outbox if e.type == MISMATCH_ALERT]
    assert sorted((a.data["client_id"], a.data["reason"]) for a in alerts) == sorted(
        (c, r) for c, _v, r in expected
    )  # once each over two runs
    assert not [e for _t, e in ops.outbox if e.type == SLASHED_ALERT]


def test_the_chains_rounding_is_no_slash() -> None:
    ledger, ops, chain = world()
    # V1 was slashed before acme delegated: at 9/10 a share, 1.000001 ATOM delegated
    # reads back one unit short (the chain truncates shares, then tokens).
    chain.slash(V1, Fraction(1, 10))
    staked(ledger, ops, "acme", V1, 1_000_001, 1, chain)
    staked(ledger, ops, "acme", V1, 2_000_003, 2, chain)
    assert _on_chain(chain, "acme", V1) < 3_000_004
    acts = WatchActivities(ledger, ops, chain)
    assert _look(acts) == Findings()
    # Then V1 is slashed again: the loss is booked, rounding and all (books equal chain).
    chain.slash(V1, Fraction(1, 20))
    (slash,) = _look(acts).slashes
    assert acts.book(slash) == "booked"
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == _on_chain(chain, "acme", V1)
    assert _look(acts) == Findings()


def test_two_runs_that_see_one_slash_book_it_once_and_a_moved_position_not_at_all() -> None:
    ledger, ops, chain = world()
    first_stake = staked(ledger, ops, "acme", V1, 3_800_000, 1, chain)
    beta = staked(ledger, ops, "beta", V1, 2_000_000, 2, chain)
    chain.slash(V1, Fraction(1, 20))
    acts = WatchActivities(ledger, ops, chain)
    first, second = _look(acts), _look(acts)  # two runs, both before either books
    assert {s.slash_id for s in first.slashes} == {s.slash_id for s in second.slashes}
    for slash in (*first.slashes, *second.slashes):
        if slash.client_id == "acme":
            assert acts.book(slash) == "booked"
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 3_610_000
    assert len([e for _t, e in ops.outbox if e.type == SLASHED_ALERT]) == 1
    # beta's position moves (an unstake starts) between the check and the booking.
    now = datetime.now(UTC)
    ops.create(
        OperationRecord(
            id=f"uns:{beta}:k1", kind="unstake", client_id="beta", asset="ATOM",
            chain="cosmos", amount=500_000, destination=V1, request_hash="h",
            requested_by="beta", state="requested", created_at=now, updated_at=now,
        ),
        [],
        {"stake_id": beta},
    )  # fmt: skip
    ops.advance(f"uns:{beta}:k1", "approved", state="approved")  # it may be on chain now
    (beta_slash,) = [s for s in first.slashes if s.client_id == "beta"]
    assert acts.book(beta_slash) == "unbooked"
    assert ledger.balance(accounts.staked("beta", V1, "ATOM")).total == 2_000_000
    assert ops.get(beta).state == "active"  # type: ignore[union-attr]
    assert len([e for _t, e in ops.outbox if e.type == SLASHED_ALERT]) == 1

    # acme tops up 190,000 at 19/20 (exact), V1 is slashed 5 % again: the books and the
    # loss are what they were at the first slash, yet it is a new slash with a new id,
    # booked.
    staked(ledger, ops, "acme", V1, 190_000, 3, chain)
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 3_800_000
    chain.slash(V1, Fraction(1, 20))
    (again,) = [s for s in _look(acts).slashes if s.client_id == "acme"]
    assert again.slash_id not in {s.slash_id for s in first.slashes}
    assert acts.book(again) == "booked"
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == _on_chain(chain, "acme", V1)
    steps = [st.step for st in ops.timeline(first_stake) if st.step.startswith("slashed:")]
    assert len(steps) == 2


def test_a_slash_found_after_an_unstake_settled_is_booked_whole() -> None:
    """The watch skips a position while an unstake is in flight; the unstake settles at
    the rate after the slash (it takes more shares for its tokens): the rest of the
    position carries the whole loss, and it is booked."""
    ledger, ops, chain = world()
    stake = staked(ledger, ops, "acme", V1, 2_000_000, 1, chain)
    chain.slash(V1, Fraction(1, 20))
    unstake = f"uns:{stake}:k1"
    chain.undelegate(unstake, delegator("acme"), V1, 1_000_000, 2000)
    now = datetime.now(UTC)
    ops.create(
        OperationRecord(
            id=unstake, kind="unstake", client_id="acme", asset="ATOM", chain="cosmos",
            amount=1_000_000, destination=V1, request_hash=unstake, requested_by="acme",
            state="requested", created_at=now, updated_at=now,
        ),
        [],
        {"stake_id": stake},
    )  # fmt: skip
    _unstake_settled(ledger, ops, chain, "acme", unstake, 1_000_000)
    acts = WatchActivities(ledger, ops, chain)
    (slash,) = _look(acts).slashes
    assert slash.booked == 1_000_000 and slash.loss == 1_000_000 - _on_chain(chain, "acme", V1)
    assert 99_000 <= slash.loss <= 100_001
    assert acts.book(slash) == "booked"
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == _on_chain(chain, "acme", V1)


class _DiesAt:
    """The books, with the worker dying once at `submit`: before it changes anything, or
    after it committed."""

    def __init__(self, ledger: Any, after: bool) -> None:
        self._ledger, self._after = ledger, after

    def submit(self, commands: Any) -> Any:
        if self._after:
            self._ledger.submit(commands)
        raise RuntimeError("the worker died")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)


@pytest.mark.parametrize("after", [False, True], ids=["before-the-transfer", "after-it"])
def test_a_booking_the_worker_died_in_is_finished_by_the_next_run(after: bool) -> None:
    ledger, ops, chain = world()
    first = staked(ledger, ops, "acme", V1, 5_000_000, 1, chain)
    second = staked(ledger, ops, "acme", V1, 3_000_000, 2, chain)
    chain.slash(V1, Fraction(1, 10))
    dying = WatchActivities(_DiesAt(ledger, after), ops, chain)  # type: ignore[arg-type]
    (slash,) = _look(dying).slashes
    with pytest.raises(RuntimeError):
        dying.book(slash)
    # The run ends there (its timeout), and V1 is slashed again meanwhile: the next run
    # finishes the booking it began (that slash, not a new look), the one after books the
    # second slash.
    chain.slash(V1, Fraction(1, 10))
    acts = WatchActivities(ledger, ops, chain)
    (again,) = _look(acts).slashes
    assert again == slash
    assert acts.book(again) == "booked"
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 7_200_000
    (later,) = _look(acts).slashes
    assert later.slash_id != slash.slash_id and acts.book(later) == "booked"
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 6_480_000
    for stake in (first, second):
        assert ops.get(stake).state == "slashed"  # type: ignore[union-attr]
    assert len([e for _t, e in ops.outbox if e.type == SLASHED_ALERT]) == 2
    assert _look(acts) == Findings()
    debits, credits = ledger.totals("ATOM")
    assert debits == credits


def test_a_books_error_after_a_booked_slash_is_no_slash() -> None:
    """V1 slashed 10 % and booked; then a stake recorded as delegated that the chain never
    made (its settlement read the old shares): the rate did not fall since the slash, so
    the books' extra 0.4 ATOM is no slash."""
    ledger, ops, chain = world()
    staked(ledger, ops, "acme", V1, 5_000_000, 1, chain)
    chain.slash(V1, Fraction(1, 10))
    acts = WatchActivities(ledger, ops, chain)
    (slash,) = _look(acts).slashes
    assert acts.book(slash) == "booked"
    height = chain._height
    view = chain.delegation(delegator("acme"), V1, height)
    staked(ledger, ops, "acme", V1, 400_000, 2, None,
           settled={"height": height, **settled_position(view, height)})  # fmt: skip
    found = _look(acts)
    assert found.slashes == []
    assert [m.reason for m in found.mismatches] == ["rate_unchanged"]
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 4_900_000


def test_a_slash_given_up_is_not_booked_again_under_its_id() -> None:
    """A booking began, died before the transfer, and was given up (the position moved,
    then came back: a stake refused at reserve): the next attempt has another id, and a
    crash after its transfer is still finished by the run after."""
    ledger, ops, chain = world()
    stake = staked(ledger, ops, "acme", V1, 5_000_000, 1, chain)
    chain.slash(V1, Fraction(1, 10))
    (slash,) = _look(WatchActivities(ledger, ops, chain)).slashes
    with pytest.raises(RuntimeError):
        WatchActivities(_DiesAt(ledger, False), ops, chain).book(slash)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    pending = "stk:acme:late"
    ops.create(
        OperationRecord(
            id=pending, kind="stake", client_id="acme", asset="ATOM", chain="cosmos",
            amount=1, destination=V1, request_hash="h", requested_by="acme",
            state="requested", created_at=now, updated_at=now,
        ),
        [],
        {},
    )  # fmt: skip
    ops.advance(pending, "approved", state="approved")
    acts = WatchActivities(ledger, ops, chain)
    (unfinished,) = _look(acts).slashes
    assert unfinished == slash and acts.book(unfinished) == "unbooked"  # it moved
    ops.advance(pending, "failed", state="failed")  # refused at broadcast: books unchanged
    (retry,) = _look(acts).slashes
    assert retry.slash_id == f"{slash.slash_id}:1"
    with pytest.raises(RuntimeError):
        WatchActivities(_DiesAt(ledger, True), ops, chain).book(retry)  # type: ignore[arg-type]
    (finish,) = _look(acts).slashes
    assert finish == retry and acts.book(finish) == "booked"
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 4_500_000
    assert ops.get(stake).state == "slashed"  # type: ignore[union-attr]
    assert _look(acts) == Findings()


def test_a_stake_awaiting_approval_does_not_hold_the_position_up() -> None:
    """Before it is approved a stake has touched neither the chain nor the posted books:
    a slash of the position is booked while it waits (up to its approval TTL)."""
    ledger, ops, chain = world()
    staked(ledger, ops, "acme", V1, 5_000_000, 1, chain)
    now = datetime.now(UTC)
    ops.create(
        OperationRecord(
            id="stk:acme:waits", kind="stake", client_id="acme", asset="ATOM",
            chain="cosmos", amount=1_000_000, destination=V1, request_hash="w",
            requested_by="acme", state="requested", created_at=now, updated_at=now,
        ),
        [],
        {},
    )  # fmt: skip
    ops.advance("stk:acme:waits", "policy_decided", state="awaiting_approval")
    chain.slash(V1, Fraction(1, 10))
    acts = WatchActivities(ledger, ops, chain)
    (slash,) = _look(acts).slashes
    assert acts.book(slash) == "booked"
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 4_500_000


def _redelegated(ledger: Any, ops: Any, chain: FakeDelegations, client: str, position: str,
                 source: str, to: str, amount: int) -> str:  # fmt: skip
    """A redelegation as its saga leaves it: the shares moved on the fake chain, staked
    with the source -> staked with the destination posted, its settlement recording both
    positions after its block."""
    red = f"red:{position}:k1"
    chain.redelegate(red, delegator(client), source, to, amount, 2000)
    now = datetime.now(UTC)
    ops.create(
        OperationRecord(
            id=red, kind="redelegation", client_id=client, asset="ATOM", chain="cosmos",
            amount=amount, destination=to, request_hash=red, requested_by=client,
            state="requested", created_at=now, updated_at=now,
        ),
        [],
        {"stake_id": position, "source": source, "delegator": delegator(client)},
    )  # fmt: skip
    ledger.open_account(
        Account(id=accounts.staked(client, to, "ATOM"), asset="ATOM",
                kind=AccountKind.STAKING_LOCKED, owner=client)
    )  # fmt: skip
    ledger.submit(
        [
            Transfer(
                id=f"{red}:post",
                debit_account=accounts.staked(client, source, "ATOM"),
                credit_account=accounts.staked(client, to, "ATOM"),
                asset="ATOM",
                amount=amount,
            )
        ]
    )
    height = chain.txs[red].height
    at = settled_position(chain.delegation(delegator(client), to, height), height)
    was = settled_position(chain.delegation(delegator(client), source, height), height)
    detail = {"height": height, **at, "source_position": was}
    ops.advance(red, "active", detail=detail, state="active")
    return red


def test_a_redelegation_is_watched_at_both_validators() -> None:
    """Stake 5 with V1, redelegate 2 of it to V2: both positions agree with the chain (the
    source's reference is what the redelegation recorded of it). A slash at V2 is booked
    on the redelegation alone; one at V1 on what is left of the stake there, 3."""
    ledger, ops, chain = world()
    stake = staked(ledger, ops, "acme", V1, 5_000_000, 1, chain)
    red = _redelegated(ledger, ops, chain, "acme", stake, V1, V2, 2_000_000)
    acts = WatchActivities(ledger, ops, chain)
    quiet = _look(acts)
    assert (quiet.slashes, quiet.mismatches) == ([], [])
    held = {h.validator: h.stake_ids for h in acts.positions(WATCH)}
    assert held == {V1: [stake], V2: [red]}

    chain.slash(V2, Fraction(1, 20))
    (at_v2,) = _look(acts).slashes
    assert (at_v2.validator, at_v2.booked) == (V2, 2_000_000)
    assert at_v2.loss == 2_000_000 - _on_chain(chain, "acme", V2) and at_v2.loss >= 99_000
    assert acts.book(at_v2) == "booked"
    assert ledger.balance(accounts.staked("acme", V2, "ATOM")).total == _on_chain(chain, "acme", V2)
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == 3_000_000

    chain.slash(V1, Fraction(1, 10))
    (at_v1,) = _look(acts).slashes
    assert (at_v1.validator, at_v1.booked) == (V1, 3_000_000)
    assert at_v1.loss == 3_000_000 - _on_chain(chain, "acme", V1)
    assert [(s.stake_id, s.loss) for s in at_v1.shares] == [(stake, at_v1.loss)]
    assert acts.book(at_v1) == "booked"
    assert ledger.balance(accounts.staked("acme", V1, "ATOM")).total == _on_chain(chain, "acme", V1)
    assert (_look(acts).slashes, _look(acts).mismatches) == ([], [])
