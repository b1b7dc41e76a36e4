"""Bitcoin payouts in batches (decision 0025): withdrawals that arrive together go out as
one transaction with an output each, every one still its own saga with its own ledger
entries and its own share of the fee.

Each withdrawal's send:
1. queues its payment (`btc_payout_queue`), idempotent by operation id;
2. waits for a batch. Once the oldest waiting payment has waited `window` seconds (or
   `max_outputs` wait), one sender forms a batch under the wallet's formation lock: it
   takes the waiting payments in queue order, selects coins for all of them (leaving the
   newest for the next batch while the coins fall short; one that cannot be paid alone
   waits while another batch holds coins it has not signed for, else is refused,
   CannotPay) and records, in one transaction, the batch's plan (members,
   coins, outputs, change, fee), each member's output position and the coins taken;
3. any member signs the batch from its recorded plan, so every retry, by any member,
   after any crash, asks the signer for exactly the same transaction; the signed
   transaction is recorded under the batch id (`btc_transactions`, as a single payment
   is under its operation id) before it is broadcast;
4. each member returns the batch's txid and its share of the fee (`fee_shares`).

A batch the signer refuses is released `hold` seconds later (longer than a signing
request can live), and only when the signer's record holds nothing for it: its members
queue again, each alone, so one member's refusal fails that member only. A member the
signer's record names as paid by another batch is never refused here: that batch may
still be broadcast, so its saga waits for operators rather than voiding.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adapters.chains.bitcoin.sender import BitcoinSender
from adapters.chains.bitcoin.tx import (
    InsufficientCoins,
    Plan,
    Utxo,
    check_outputs,
    from_request,
    select,
    to_request,
    txid,
    unsigned_txid,
)
from adapters.operations.guard import MAX_SIGNING_WINDOW
from adapters.operations.signer_record import member_claim
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import (
    CannotPay,
    DependencyUnavailable,
    KeyAccessDenied,
    TransferIdConflict,
)
from sagas.ports import BitcoinSigner
from sagas.signing import BATCH_PREFIX, fee_shares

_WAITING = (
    "select operation_id, destination, amount, solo from btc_payout_queue where "
    "wallet_id = ? and batch_id is null and refusal is null "
    "order by queued_at, operation_id limit ?"
)
# A batch holding coins without a signed transaction yet, formed in the last minutes:
# its change is still to come (an older one is stuck, and waiting on it would stall the
# wallet's queue for good).
_IN_FLIGHT = (
    "select 1 from btc_batches b where b.wallet_id = ? and b.state in ('formed', 'refused') "
    "and b.created_at > ? and not exists "
    "(select 1 from btc_transactions t where t.operation_id = b.batch_id)"
)
_IN_FLIGHT_FOR = timedelta(minutes=10)
# The signer's record holds a signature for the operation: in a batch, or alone.
_SIGNED = "select 1 from signer_claims where claim = ? or operation_id = ?"
_FORM_LOCK = 4246  # pg advisory lock space: forming a wallet's batches
log = logging.getLogger("custody.bitcoin.batches")


@dataclass(frozen=True)
class Queued:
    operation_id: str
    destination: str
    amount: int
    batch_id: str | None
    position: int | None
    refusal: str | None
    reason: str | None


@dataclass(frozen=True)
class BatchPlan:
    """What a batch pays, fixed when it is formed."""

    members: tuple[str, ...]
    plan: Plan
    keys: tuple[tuple[int, int], ...]  # each input's (change, index)
    change_address: str
    change_index: int | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "members": list(self.members),
                "inputs": [
                    [u.txid, u.vout, u.address, u.amount, c, i]
                    for u, (c, i) in zip(self.plan.inputs, self.keys, strict=True)
                ],
                "outputs": [[a, v] for a, v in self.plan.outputs],
                "change": self.plan.change,
                "fee": self.plan.fee,
                "change_address": self.change_address,
                "change_index": self.change_index,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> BatchPlan:
        data = json.loads(text)
        inputs = tuple(Utxo(t, int(v), a, int(n)) for t, v, a, n, _c, _i in data["inputs"])
        return cls(
            members=tuple(data["members"]),
            plan=Plan(
                inputs,
                tuple((str(a), int(v)) for a, v in data["outputs"]),
                int(data["change"]),
                int(data["fee"]),
            ),
            keys=tuple((int(c), int(i)) for *_u, c, i in data["inputs"]),
            change_address=data["change_address"],
            change_index=data["change_index"],
        )


class BitcoinBatches:
    def __init__(
        self,
        db_url: str,
        sender: BitcoinSender,
        signer: BitcoinSigner,
        window: float = 1.0,
        max_outputs: int = 50,
        wait: float = 8.0,
        hold: float = 45.0,
        pause: Callable[[str], None] = lambda _step: None,
        sign_within: float = 15.0,
    ) -> None:
        """`window`: how long the oldest waiting payment waits for others; `wait`: how
        long one call waits for its batch before a retry (DependencyUnavailable);
        `sign_within`: each signing request's deadline, which the signer enforces by its
        own clock; `hold`: how long a refused batch is kept before its members queue
        again (more than `sign_within` and the clocks' skew: no request for the batch
        can be signed after it); `pause`: crash tests' fault-injection point."""
        if max_outputs < 1:
            raise ValueError("a batch pays at least one output")
        if not 0 < sign_within <= MAX_SIGNING_WINDOW.total_seconds():
            raise ValueError("a signing request's deadline is within the signer's window")
        if hold < sign_within + 5:
            raise ValueError("a refused batch is held longer than a request can be signed")
        self._sign_within = timedelta(seconds=sign_within)
        self._db = SqlDatabase(db_url)
        self._sender = sender
        self._signer = signer
        self._window = window
        self._max = max_outputs
        self._wait = wait
        self._hold = hold
        self._pause = pause

    def __repr__(self) -> str:
        return f"BitcoinBatches(window={self._window}, max_outputs={self._max})"

    # --- a member's payment -------------------------------------------------------------
    def pay(
        self, operation_id: str, wallet_id: str, destination: str, amount: int, fee_rate: int
    ) -> tuple[str, int]:
        """Pay `amount` sat to `destination` in a batch; (txid, this payment's share of the
        fee). Once per operation id: a repeat returns (and sends again) its batch."""
        self._sender.sync()
        queued = self.queued(operation_id)
        if queued is None:
            check_outputs([(destination, amount)])  # CannotPay before anything is queued
            self._db.write(
                lambda conn: conn.run(
                    "insert into btc_payout_queue (operation_id, wallet_id, destination, "
                    "amount, queued_at) values (?, ?, ?, ?, ?) on conflict do nothing",
                    (operation_id, wallet_id, destination, amount, conn.time(_now())),
                )
            )
            self._pause("queued")
            queued = self.queued(operation_id)
            assert queued is not None
        if (queued.destination, queued.amount) != (destination, amount):
            raise TransferIdConflict(f"{operation_id} was queued to pay another output")
        deadline = time.monotonic() + self._wait
        while True:
            if queued.refusal == "cannot_pay":
                raise CannotPay(queued.reason or f"{operation_id} cannot be paid")
            if queued.refusal == "denied":
                raise KeyAccessDenied(queued.reason or f"the signer refused {operation_id}")
            if queued.batch_id is not None:
                assert queued.position is not None
                paid = self._paid(queued.batch_id, queued.position)
                if paid is not None:
                    return paid
            elif self._form(wallet_id, fee_rate):
                self._pause("formed")
                queued = self._reread(operation_id)
                continue
            if time.monotonic() > deadline:
                raise DependencyUnavailable(f"{operation_id} is waiting for its batch")
            time.sleep(0.1)
            queued = self._reread(operation_id)

    def queued(self, operation_id: str) -> Queued | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select operation_id, destination, amount, batch_id, position, refusal, reason "
                "from btc_payout_queue where operation_id = ?",
                (operation_id,),
            )
        if row is None:
            return None
        position = None if row[4] is None else int(row[4])
        return Queued(str(row[0]), str(row[1]), int(row[2]), row[3], position, row[5], row[6])

    def _reread(self, operation_id: str) -> Queued:
        queued = self.queued(operation_id)
        assert queued is not None
        return queued

    def batch_of(self, operation_id: str) -> tuple[str, int, int] | None:
        """The batch paying the operation: (batch id, its output position, members)."""
        with self._db.tx() as conn:
            row = conn.one(
                "select q.batch_id, q.position, (select count(*) from btc_payout_queue m "
                "where m.batch_id = q.batch_id) from btc_payout_queue q "
                "where q.operation_id = ? and q.batch_id is not null",
                (operation_id,),
            )
        return None if row is None else (str(row[0]), int(row[1]), int(row[2]))

    # --- paying a formed batch ---------------------------------------------------------
    def _paid(self, batch_id: str, position: int) -> tuple[str, int] | None:
        latest = self._sender.latest(batch_id)
        if latest is None and not self._sign(batch_id):
            return None
        txid_, fee = self._sender.send_latest(batch_id)
        members = self._members(batch_id)
        return txid_, fee_shares(fee, members)[position]

    def _members(self, batch_id: str) -> int:
        with self._db.tx() as conn:
            row = conn.one("select plan from btc_batches where batch_id = ?", (batch_id,))
        return len(BatchPlan.from_json(row[0]).members)

    def _sign(self, batch_id: str) -> bool:
        """Sign the batch's recorded plan and record the signed transaction; False if it
        is not signed now (another member is signing it, or it was refused)."""
        try:
            signed = self._db.write(lambda conn: self._sign_in(conn, batch_id))
        except KeyAccessDenied as exc:  # a refusal; a late answer is SigningDeadlinePassed
            reason = str(exc)
            self._db.write(lambda conn: self._refused(conn, batch_id, reason))
            return False
        if signed:
            self._pause("recorded")
        return signed

    def _sign_in(self, conn: Conn, batch_id: str) -> bool:
        if not self._sender.lock_payment(conn, batch_id, wait=False):
            return False  # another member is signing it
        if conn.one("select 1 from btc_transactions where operation_id = ?", (batch_id,)):
            return True
        row = conn.one(
            "select wallet_id, plan, state from btc_batches where batch_id = ?", (batch_id,)
        )
        if row[2] != "formed":
            self._release(conn, batch_id)
            return False
        wallet_id, batch = str(row[0]), BatchPlan.from_json(row[1])
        request = to_request(
            batch.plan, batch.change_address, batch.change_index, batch.keys, batch.members
        ).model_copy(update={"not_after": _now() + self._sign_within})
        raw = self._signer.sign_btc_transaction(f"{batch_id}#0", wallet_id, request)
        if txid(raw) != unsigned_txid(from_request(request)):
            raise DependencyUnavailable(f"{batch_id}: the signer answered another transaction")
        self._sender.record_signed(conn, batch_id, 0, raw, batch.plan, batch.change_address)
        return True

    def _refused(self, conn: Conn, batch_id: str, reason: str) -> None:
        conn.run(
            "update btc_batches set state = 'refused', refused_at = ?, reason = ? "
            "where batch_id = ? and state = 'formed' and not exists "
            "(select 1 from btc_transactions t where t.operation_id = ?)",
            (conn.time(_now()), reason, batch_id, batch_id),
        )

    def _release(self, conn: Conn, batch_id: str) -> None:
        """A refused batch's members queue again once `hold` has passed and the signer's
        record holds nothing for the batch (each alone; a batch of one is refused)."""
        row = conn.one(
            "select state, refused_at, reason, plan from btc_batches where batch_id = ?",
            (batch_id,),
        )
        if row is None or row[0] != "refused":
            return
        refused_at = Conn.read_time(row[1])
        assert refused_at is not None
        if (_now() - refused_at).total_seconds() < self._hold:
            return
        if conn.one("select 1 from signer_claims where operation_id = ?", (batch_id,)):
            # The signer signed it (an answer lost before it was recorded), then refused
            # it: never released. Asked again, it answers the same transaction, unless
            # what it refused for still holds: operators must look.
            log.error("%s was signed, then refused (%s): signing it again", batch_id, row[2])
            conn.run("update btc_batches set state = 'formed' where batch_id = ?", (batch_id,))
            return
        members = BatchPlan.from_json(row[3]).members
        if len(members) == 1 and conn.one(_SIGNED, (member_claim(members[0]), members[0])):
            return  # signed in another batch, or alone: that may be paid; operators decide
        conn.run("update btc_utxos set spent_by = null where spent_by = ?", (batch_id,))
        if len(members) == 1:
            conn.run(
                "update btc_payout_queue set batch_id = null, position = null, "
                "refusal = 'denied', reason = ? where batch_id = ?",
                (row[2], batch_id),
            )
        else:
            conn.run(
                "update btc_payout_queue set batch_id = null, position = null, solo = 1 "
                "where batch_id = ?",
                (batch_id,),
            )
        conn.run("update btc_batches set state = 'released' where batch_id = ?", (batch_id,))

    # --- forming a batch ---------------------------------------------------------------
    def _form(self, wallet_id: str, fee_rate: int) -> bool:
        """Form the next batch if it is due; whether one was formed (or a payment refused)."""
        with self._db.tx() as conn:
            rows = conn.all(
                "select operation_id, queued_at, solo from btc_payout_queue where "
                "wallet_id = ? and batch_id is null and refusal is null "
                "order by queued_at, operation_id limit ?",
                (wallet_id, self._max),
            )
        if not rows:
            return False
        first, queued_at, solo = str(rows[0][0]), Conn.read_time(rows[0][1]), int(rows[0][2])
        assert queued_at is not None
        waited = (_now() - queued_at).total_seconds()
        if not solo and waited < self._window and len(rows) < self._max:
            return False
        batch_id = f"{BATCH_PREFIX}{first}" + (":solo" if solo else "")
        change_address = self._sender.change_address(wallet_id, batch_id)
        return self._db.write(
            lambda conn: self._form_in(conn, batch_id, first, wallet_id, fee_rate, change_address)
        )

    def _form_in(
        self,
        conn: Conn,
        batch_id: str,
        first: str,
        wallet_id: str,
        fee_rate: int,
        change_address: str,
    ) -> bool:
        if not conn.sqlite:
            locked = conn.one(
                "select pg_try_advisory_xact_lock(hashtextextended(?, ?))",
                (wallet_id, _FORM_LOCK),
            )
            if not locked[0]:
                return False
        if conn.one("select 1 from btc_batches where batch_id = ?", (batch_id,)):
            return False
        waiting = conn.all(
            _WAITING if conn.sqlite else _WAITING + " for update", (wallet_id, self._max)
        )
        if not waiting or waiting[0][0] != first:
            return False
        members = waiting[:1] if int(waiting[0][3]) else [w for w in waiting if not int(w[3])]
        coins = self._sender.coins(conn, wallet_id, None, batch_id)
        utxos = [c[0] for c in coins.values()]
        while True:
            try:
                plan = select(utxos, [(str(m[1]), int(m[2])) for m in members], fee_rate)
                break
            except InsufficientCoins as exc:
                if len(members) == 1:
                    young = conn.time(_now() - _IN_FLIGHT_FOR)
                    if conn.one(_IN_FLIGHT, (wallet_id, young)):
                        return False  # coins come back as change: wait, not refuse
                    if conn.one(_SIGNED, (member_claim(str(members[0][0])), members[0][0])):
                        return False  # the signer signed it (another batch, alone): waits
                    conn.run(
                        "update btc_payout_queue set refusal = 'cannot_pay', reason = ? "
                        "where operation_id = ?",
                        (str(exc), members[0][0]),
                    )
                    return True
                members = members[:-1]  # the newest wait for the next batch
        change_index = (
            self._sender.change_index(conn, wallet_id, change_address) if plan.change else None
        )
        batch = BatchPlan(
            members=tuple(str(m[0]) for m in members),
            plan=plan,
            keys=tuple(coins[(u.txid, u.vout)][1:] for u in plan.inputs),
            change_address=change_address,
            change_index=change_index,
        )
        conn.run(
            "insert into btc_batches (batch_id, wallet_id, plan, state, created_at) "
            "values (?, ?, ?, 'formed', ?)",
            (batch_id, wallet_id, batch.to_json(), conn.time(_now())),
        )
        for position, member in enumerate(batch.members):
            conn.run(
                "update btc_payout_queue set batch_id = ?, position = ? where operation_id = ?",
                (batch_id, position, member),
            )
        for utxo in plan.inputs:
            conn.run(
                "update btc_utxos set spent_by = ? where txid = ? and vout = ?",
                (batch_id, utxo.txid, utxo.vout),
            )
        return True


def _now() -> datetime:
    return datetime.now(UTC)
