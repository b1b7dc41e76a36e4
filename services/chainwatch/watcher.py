"""The chain watcher: follows a chain block by block from its persisted position,
records deposits to platform addresses, finalises them at the confirmation depth,
and undoes what it saw on blocks a reorg removed.

Each block is one database transaction: the block's hash, its observations and
their events (into the outbox, for the relay) commit together or not at all. A
watcher killed mid-block redoes that block on restart and, with the same
observation and event ids, adds nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.ledger.migrate import upgrade
from adapters.ledger.outbox import emit
from adapters.sqldb import Conn, SqlDatabase
from sagas.chainwatch import (
    DEPOSIT_FINAL,
    DEPOSIT_REORGED,
    DEPOSIT_SEEN,
    FINAL_DEPOSIT_REORGED,
    TX_FINAL,
    TX_MINED,
    TX_REORGED,
    DepositObservation,
    OutgoingConfirmation,
    deposit_event,
    outgoing_event,
    reorg_event,
)
from sagas.ports import ChainReader, KeyStore
from sagas.topics import ALERTS, EVENTS

log = logging.getLogger("custody.chainwatch")

# Insert, or bring back a row a reorg had undone; returns a row only when something changed.
_REVIVE = (
    "on conflict (id) do update set state = 'seen', revival = {table}.revival + 1 "
    "where {table}.state = 'reorged' returning revival"
)


class _ChainMoved(Exception):
    """The block to process does not extend the stored chain: a reorg happened meanwhile."""


# Where the broadcasters record the platform's own transactions, per chain, and the
# column holding each one's id as the chain reader lists it (BlockScan.txids). A chain
# not named here has no outgoing transactions the watcher confirms: its blocks give no
# custody.chain.tx_* events (Cosmos for now: the staking saga reads its transactions'
# results from the node; naming its table here, ids in the chain's uppercase hex, makes
# the watcher confirm them too).
_OUTGOING: dict[str, tuple[str, str]] = {
    "ethereum": ("evm_transactions", "tx_hash"),
    "bitcoin": ("btc_transactions", "txid"),
}
_OUT_COLUMNS = "id, chain, operation_id, tx_hash, block_height, block_hash, state, revival"

_COLUMNS = (
    "id, chain, address, account_id, asset, amount, tx_hash, position, block_height, "
    "block_hash, state, revival"
)


class ChainWatcher:
    def __init__(
        self,
        db_url: str,
        reader: ChainReader,
        addresses: KeyStore,
        confirmations: int,
        start_height: int | None = None,
        keep_blocks: int = 256,
        migrate: bool = True,
        before_commit: Callable[[int], None] = lambda _height: None,
    ) -> None:
        if migrate:
            upgrade(db_url)
        self._db = SqlDatabase(db_url)
        self._reader = reader
        self._addresses = addresses
        self._depth = confirmations
        self._start = start_height
        self._keep = max(keep_blocks, confirmations + 1)
        self.chain = reader.chain
        self._before_commit = before_commit  # fault-injection point for crash tests

    def __repr__(self) -> str:
        return f"ChainWatcher({self.chain})"

    # --- one step ----------------------------------------------------------------
    def step(self, max_blocks: int = 50) -> int:
        """Undo a reorg if there was one, process up to `max_blocks` new blocks, finalise
        what is deep enough. Returns the number of blocks processed."""
        self._unwind_reorg()
        head = self._reader.head()
        done = moved = 0
        while done < max_blocks and moved < 3:
            last = self._last_block()
            height = (
                (self._start if self._start is not None else head) if last is None else last[0] + 1
            )
            if height > head:
                break
            try:
                self._process(height)
            except _ChainMoved:
                log.warning("%s block %d does not extend our chain: unwinding", self.chain, height)
                self._unwind_reorg()
                moved += 1
                continue
            done += 1
        self._finalise(head)
        return done

    def run_until_caught_up(self) -> None:
        while self.step() > 0:
            pass

    # --- blocks ------------------------------------------------------------------
    def _last_block(self) -> tuple[int, str] | None:
        with self._db.tx() as conn:
            row = conn.one(
                "select height, block_hash from chain_blocks where chain = ? "
                "order by height desc limit 1",
                (self.chain,),
            )
        return None if row is None else (int(row[0]), row[1])

    def _process(self, height: int) -> None:
        scan = self._reader.scan(height, self._is_ours)
        block_hash, found = scan.block_hash, scan.deposits

        def work(conn: Conn) -> None:
            # The block must sit on the one we processed below it; if not, the chain
            # reorganised since we unwound: commit nothing, and the next step unwinds.
            below = conn.one(
                "select block_hash from chain_blocks where chain = ? and height = ?",
                (self.chain, height - 1),
            )
            if below is not None and below[0] != scan.parent_hash:
                raise _ChainMoved(height)
            conn.run(
                "insert into chain_blocks (chain, height, block_hash) values (?, ?, ?) "
                "on conflict do nothing",
                (self.chain, height, block_hash),
            )
            for raw in found:
                assignment = self._addresses.lookup(raw.address)
                if assignment is None:
                    continue
                obs = DepositObservation(
                    id=DepositObservation.make_id(
                        self.chain, raw.tx_hash, raw.position, block_hash
                    ),
                    chain=self.chain,
                    address=raw.address,
                    account_id=assignment.account_id,
                    asset=raw.asset,
                    amount=str(raw.amount),
                    tx_hash=raw.tx_hash,
                    position=raw.position,
                    block_height=height,
                    block_hash=block_hash,
                    state="seen",
                )
                revival = self._insert(conn, obs)
                if revival is not None:
                    obs = obs.model_copy(update={"revival": revival})
                    emit(conn, EVENTS.name, [deposit_event(obs, DEPOSIT_SEEN)])
            conn.run(
                "delete from chain_blocks where chain = ? and height < ?",
                (self.chain, height - self._keep),
            )
            self._record_outgoing(conn, height, block_hash, scan.txids)
            if found:
                self._before_commit(height)

        self._db.write(work)
        if found:
            log.info("%s block %d: %d deposit(s)", self.chain, height, len(found))

    def _record_outgoing(self, conn: Conn, height: int, block_hash: str, txids: list[str]) -> None:
        """The platform's own transactions in this block (recorded by the broadcasters);
        none on a chain without an outgoing table."""
        if self.chain not in _OUTGOING:
            return
        table, column = _OUTGOING[self.chain]
        # A Bitcoin batch (decision 0025) is recorded under its batch id: each member's
        # operation is confirmed on its own, so that its saga hears of it.
        members = (
            (
                " left join btc_payout_queue q on q.batch_id = t.operation_id",
                "coalesce(q.operation_id, t.operation_id), q.operation_id is not null",
            )
            if self.chain == "bitcoin"
            else ("", "t.operation_id, 0 = 1")
        )
        for start in range(0, len(txids), 500):
            chunk = txids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            rows = conn.all(
                f"select distinct {members[1]}, t.{column} from {table} t{members[0]} "
                f"where t.{column} in ({marks})",
                chunk,
            )
            for operation_id, batched, tx_hash in rows:
                member = f"/{operation_id}" if batched else ""
                obs = OutgoingConfirmation(
                    id=f"{self.chain}:{tx_hash}@{block_hash}{member}",
                    chain=self.chain,
                    operation_id=operation_id,
                    tx_hash=tx_hash,
                    block_height=height,
                    block_hash=block_hash,
                    state="seen",
                )
                row = conn.one(
                    "insert into chain_outgoing (id, chain, operation_id, tx_hash, "
                    "block_height, block_hash, state) values (?, ?, ?, ?, ?, ?, ?) "
                    + _REVIVE.format(table="chain_outgoing"),
                    (
                        obs.id,
                        obs.chain,
                        obs.operation_id,
                        obs.tx_hash,
                        height,
                        block_hash,
                        obs.state,
                    ),
                )
                if row is not None:
                    obs = obs.model_copy(update={"revival": int(row[0])})
                    emit(conn, EVENTS.name, [outgoing_event(obs, TX_MINED)])

    def _is_ours(self, address: str) -> bool:
        # Client deposit addresses only: our own change (internal chain) is not a deposit.
        assignment = self._addresses.lookup(address)
        return assignment is not None and assignment.change == 0

    @staticmethod
    def _insert(conn: Conn, obs: DepositObservation) -> int | None:
        """Record a new observation, or revive one whose block came back after a reorg.
        Returns its revival count, or None if it was already there (a block seen twice)."""
        row = conn.one(
            f"insert into chain_observations ({_COLUMNS}, created_at) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) "
            + _REVIVE.format(table="chain_observations"),
            (
                obs.id,
                obs.chain,
                obs.address,
                obs.account_id,
                obs.asset,
                obs.amount,
                obs.tx_hash,
                obs.position,
                obs.block_height,
                obs.block_hash,
                obs.state,
                conn.time(datetime.now(UTC)),
            ),
        )
        return None if row is None else int(row[0])

    # --- finality ------------------------------------------------------------------
    def _finalise(self, head: int) -> None:
        deepest = head - self._depth + 1  # a block at this height has `depth` confirmations

        def work(conn: Conn) -> None:
            deep = ("state = 'seen' and block_height <= ?", (deepest,))
            for _, obs in _transition(conn, _DEPOSITS, self.chain, *deep, "final"):
                emit(conn, EVENTS.name, [deposit_event(obs, DEPOSIT_FINAL)])
            for _, out in _transition(conn, _OWN_TXS, self.chain, *deep, "final"):
                emit(conn, EVENTS.name, [outgoing_event(out, TX_FINAL)])

        self._db.write(work)

    # --- reorgs ----------------------------------------------------------------------
    def _unwind_reorg(self) -> None:
        with self._db.tx() as conn:
            stored = [
                (int(h), x)
                for h, x in conn.all(
                    "select height, block_hash from chain_blocks where chain = ? "
                    "order by height desc",
                    (self.chain,),
                )
            ]
        dropped: list[tuple[int, str]] = []
        for height, block_hash in stored:
            if self._reader.block_hash(height) == block_hash:
                break
            dropped.append((height, block_hash))
        if not dropped:
            return
        ancestor = dropped[-1][0] - 1
        dropped.reverse()

        def work(conn: Conn) -> None:
            for height, block_hash in dropped:
                in_block = ("block_hash = ? and state != 'reorged'", (block_hash,))
                for old, undone in _transition(conn, _DEPOSITS, self.chain, *in_block, "reorged"):
                    emit(conn, EVENTS.name, [deposit_event(undone, DEPOSIT_REORGED)])
                    if old.state == "final":
                        # Past the confirmation depth: credited money may be gone. People
                        # must look at this now.
                        emit(conn, ALERTS.name, [deposit_event(undone, FINAL_DEPOSIT_REORGED)])
                        log.critical("%s: FINAL deposit %s reorged out", self.chain, old.id)
                for _, out in _transition(conn, _OWN_TXS, self.chain, *in_block, "reorged"):
                    emit(conn, EVENTS.name, [outgoing_event(out, TX_REORGED)])
                conn.run(
                    "delete from chain_blocks where chain = ? and height = ?", (self.chain, height)
                )
            emit(conn, EVENTS.name, [reorg_event(self.chain, ancestor, dropped)])

        self._db.write(work)
        log.warning("%s reorg: %d block(s) above %d dropped", self.chain, len(dropped), ancestor)

    # --- queries -------------------------------------------------------------------
    def outgoing(self) -> list[OutgoingConfirmation]:
        with self._db.tx() as conn:
            return _select(conn, _OWN_TXS, self.chain, "1 = 1", ())  # type: ignore[return-value]

    def observations(self, address: str | None = None) -> list[DepositObservation]:
        with self._db.tx() as conn:
            if address is None:
                return _select(conn, _DEPOSITS, self.chain, "1 = 1", ())  # type: ignore[return-value]
            return _select(conn, _DEPOSITS, self.chain, "address = ?", (address,))  # type: ignore[return-value]


@dataclass(frozen=True)
class _Table:
    name: str
    columns: str
    parse: Callable[[tuple[object, ...]], DepositObservation | OutgoingConfirmation]


def _select(
    conn: Conn, table: _Table, chain: str, condition: str, params: tuple[object, ...]
) -> list[DepositObservation | OutgoingConfirmation]:
    rows = conn.all(
        f"select {table.columns} from {table.name} where chain = ? and "
        f"{condition} order by block_height, id",
        (chain, *params),
    )
    return [table.parse(r) for r in rows]


def _transition(
    conn: Conn, table: _Table, chain: str, condition: str, params: tuple[object, ...], state: str
) -> list[tuple[Any, Any]]:
    """Move the matching rows to `state`; (before, after) for each."""
    moved = []
    for old in _select(conn, table, chain, condition, params):
        conn.run(f"update {table.name} set state = ? where id = ?", (state, old.id))
        moved.append((old, old.model_copy(update={"state": state})))
    return moved


def _outgoing(row: tuple[object, ...]) -> OutgoingConfirmation:
    keys = [c.strip() for c in _OUT_COLUMNS.split(",")]
    values = dict(zip(keys, row, strict=True))
    values["block_height"] = int(values["block_height"])  # type: ignore[call-overload]
    values["revival"] = int(values["revival"])  # type: ignore[call-overload]
    return OutgoingConfirmation.model_validate(values)


def _observation(row: tuple[object, ...]) -> DepositObservation:
    keys = [c.strip() for c in _COLUMNS.split(",")]
    values = dict(zip(keys, row, strict=True))
    values["block_height"] = int(values["block_height"])  # type: ignore[call-overload]
    values["revival"] = int(values["revival"])  # type: ignore[call-overload]
    return DepositObservation.model_validate(values)


_DEPOSITS = _Table("chain_observations", _COLUMNS, _observation)
_OWN_TXS = _Table("chain_outgoing", _OUT_COLUMNS, _outgoing)
