"""A client's delegations on the proof-of-stake chain (decision 0028), and its reward
claims and ATOM withdrawals: each operation is one transaction from the client's own
address, signed by the signer, recorded in `cosmos_transactions`, then broadcast.

One signed transaction per operation, for ever:
- Recorded before it is broadcast. Under a lock on the address (PostgreSQL: an advisory
  lock inside the write transaction; SQLite's write transaction serialises anyway) the
  operation gets its account sequence: the one the signer already signed it at (its
  record, `signer_claims`), even if that answer was lost; else the next free one: above
  the chain's next, every recorded one and every one the signer signed for the address.
  It is built, signed, recorded and committed; the broadcast comes after the commit.
- A retry (the row exists) broadcasts the recorded bytes again, which is harmless: the
  node knows them, or they are in a block. Once final, nothing is broadcast.

A broadcast that CheckTx refuses leaves the row in one of two states, each with its
error (both documented at `delegate`):
- still `broadcast`, the operation waiting (`SequenceGap`, transient) when an earlier
  sequence of the address is not on the node: the address's recorded transactions
  from the chain's next sequence up are broadcast first, in order, and this one again;
  what is still missing then is an operation whose signature was not recorded yet (its
  retry sends it) or one still on its way;
- `failed` with no height, the operation failed for good without paying a fee
  (`TxRefused`, `SequenceBlocked`, both ChainRejected): CheckTx refused its bytes for
  another reason than the sequence (a bad fee or signature, no coins for the fee), or an
  earlier sequence is held by such a refused transaction. A sequence the account is
  already past is this operation's own transaction in a block (the signer gives a
  sequence to one operation only): the row waits for the node's index (`SequenceGap`),
  never refused. The signer signs an operation at one sequence only, and a
  sequence for one operation only, so a refused transaction's sequence is never filled:
  every later operation of the address is `SequenceBlocked` (refused before signing)
  until an operator intervenes.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cosmpy.protos.cosmos.tx.v1beta1.tx_pb2 import TxRaw

from adapters.chains.cosmos.node import (
    CosmosNode,
    CosmosTxResult,
    QueryRefused,
    SequenceMismatch,
    TxRejected,
)
from adapters.chains.cosmos.tx import (
    PlatformMsg,
    RedelegateMsg,
    UndelegateMsg,
    UnsignedCosmosTx,
    address_of,
    build,
    decode,
    module_address,
    msg_delegate,
    msg_redelegate,
    msg_send,
    msg_undelegate,
    msg_withdraw_rewards,
    tx_hash,
)
from adapters.ledger.migrate import upgrade
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import (
    ChainRejected,
    DependencyUnavailable,
    IdempotencyConflict,
    KeyAccessDenied,
    NotFound,
)
from sagas.ports import CosmosKeySigner, KeyDerivation, KeyStore
from sagas.signing import SignCosmosRequest
from sagas.staking import DelegationView, TxOutcome, ValidatorState

KINDS = ("send", "delegate", "undelegate", "redelegate", "withdraw_rewards")
_ADDRESS_LOCK = 4247  # pg advisory lock space: one Cosmos address's sequences
_INDEX_LAG = 3.0  # seconds a committed transaction may take to reach the node's tx index
log = logging.getLogger("custody.cosmos.staking")


class NoAccount(ChainRejected):
    """The chain has no account at the address (it was never funded): nothing can be
    signed for it (its account number does not exist yet)."""


class NotOurAddress(KeyAccessDenied):
    """The address is not one of the wallet's Cosmos deposit addresses: no key to sign."""


class TransitiveRedelegation(ChainRejected):
    """The chain would refuse the redelegation in its block (fee paid, nothing moved): a
    redelegation of the delegator into the source validator has not completed yet."""


class TxRefused(ChainRejected):
    """CheckTx refused the operation's one transaction (not for its sequence): it is in no
    mempool and never will be; no fee was paid. The signer signs nothing else for it."""


class SequenceBlocked(ChainRejected):
    """An earlier sequence of the address is held by an operation whose transaction the
    chain refused: no later transaction of the address can be in a block."""


class SequenceGap(DependencyUnavailable):
    """An earlier sequence of the address has no transaction on the node yet (its
    operation's answer from the signer was lost and its retry will send it, or it is on
    its way): transient, the recorded transaction waits for it."""


class _Conflict(Exception):
    pass


@dataclass(frozen=True)
class _Row:
    operation_id: str
    kind: str
    address: str
    sequence: int
    tx_hash: str
    raw: bytes
    fee: int
    state: str  # broadcast, succeeded, failed
    height: int | None

    @property
    def refused(self) -> bool:
        """Failed without being in a block: the fee was not paid."""
        return self.state == "failed" and self.height is None

    @property
    def final(self) -> bool:
        return self.state != "broadcast"


class CosmosDelegations:
    """`sagas.ports.Delegations` on a Cosmos SDK chain, plus reward claims and sends.

    `gas` is the gas limit per kind of transaction (send, delegate, undelegate,
    withdraw_rewards; a claim's whatever validators it names): fixed, since the chain's
    simulation undercounts staking messages. `deriver` gives the public key each
    transaction names (the wallet's xpub, no secret)."""

    def __init__(
        self,
        db_url: str,
        node: CosmosNode,
        signer: CosmosKeySigner,
        keys: KeyStore,
        wallet_id: str,
        chain_id: str,
        denom: str,
        gas: dict[str, int],
        *,
        deriver: KeyDerivation,
        migrate: bool = True,
    ) -> None:
        missing = [k for k in KINDS if gas.get(k, 0) <= 0]
        if missing:
            raise ValueError(f"no gas limit for {', '.join(missing)}")
        if migrate:
            upgrade(db_url)
        self._db = SqlDatabase(db_url, on_integrity=lambda exc: _Conflict(str(exc)))
        self._node, self._signer, self._keys, self._deriver = node, signer, keys, deriver
        self._wallet_id, self._chain_id, self._denom = wallet_id, chain_id, denom
        self._gas = dict(gas)

    def __repr__(self) -> str:
        return f"CosmosDelegations(chain_id={self._chain_id}, wallet={self._wallet_id})"

    # --- the port ---------------------------------------------------------------------
    def delegate(
        self, operation_id: str, delegator: str, validator: str, amount: int, fee: int
    ) -> str:
        """Broadcast the operation's MsgDelegate (signed once, recorded, then sent; a
        retry sends the same bytes); its transaction hash. Permanent: KeyAccessDenied
        (the signer refused; NotOurAddress), IdempotencyConflict (the operation has
        another transaction), NoAccount, TxRefused, SequenceBlocked (the
        operation failed for good, no fee paid: `outcome` says failed). Transient:
        SequenceGap (recorded, waiting for an earlier sequence; `outcome` says pending),
        DependencyUnavailable (the node or the signer did not answer)."""
        msg = msg_delegate(delegator, validator, amount, self._denom)
        return self._transact(operation_id, "delegate", delegator, [msg], fee)

    def undelegate(
        self, operation_id: str, delegator: str, validator: str, amount: int, fee: int
    ) -> str:
        """Broadcast the operation's MsgUndelegate; its transaction hash (errors as
        `delegate`'s)."""
        msg = msg_undelegate(delegator, validator, amount, self._denom)
        return self._transact(operation_id, "undelegate", delegator, [msg], fee)

    def redelegate(
        self,
        operation_id: str,
        delegator: str,
        source: str,
        validator: str,
        amount: int,
        fee: int,
    ) -> str:
        """Broadcast the operation's MsgBeginRedelegate of `amount` from `source` to
        `validator`; its transaction hash (errors as `delegate`'s)."""
        msg = msg_redelegate(delegator, source, validator, amount, self._denom)
        return self._transact(operation_id, "redelegate", delegator, [msg], fee)

    def claim_rewards(
        self, operation_id: str, delegator: str, validators: Sequence[str], fee: int
    ) -> str:
        """Broadcast one MsgWithdrawDelegatorReward per validator, in one transaction
        (the signer rations claims per address); its hash (errors as `delegate`'s)."""
        if not validators:
            raise ValueError("a claim names at least one validator")
        messages = [msg_withdraw_rewards(delegator, v) for v in validators]
        return self._transact(operation_id, "withdraw_rewards", delegator, messages, fee)

    def pending_rewards(self, delegator: str, validator: str) -> int:
        return self._node.rewards(delegator, validator)

    def delegation(
        self, delegator: str, validator: str, height: int | None = None
    ) -> DelegationView | None:
        found = self._node.position(delegator, validator, height)
        if found is None:
            return None
        return DelegationView(
            height=found.height,
            shares=found.shares,
            balance=found.balance,
            validator_tokens=found.validator_tokens,
            validator_shares=found.validator_shares,
        )

    def validator_state(self, validator: str) -> ValidatorState:
        v = self._node.validator(validator)
        return ValidatorState(
            operator=v.operator,
            jailed=v.jailed,
            status=v.status,
            tokens=v.tokens,
            unbonding_height=v.unbonding_height,
        )

    def send(self, operation_id: str, from_address: str, to: str, amount: int, fee: int) -> str:
        """Broadcast the operation's MsgSend of `amount` from a client's address (an ATOM
        withdrawal, authorised by its intent); its hash (errors as `delegate`'s)."""
        msg = msg_send(from_address, to, amount, self._denom)
        return self._transact(operation_id, "send", from_address, [msg], fee)

    def recorded(self, operation_id: str) -> str | None:
        """The hash of the operation's recorded (signed) transaction, if there is one."""
        row = self._row(operation_id)
        return None if row is None else row.tx_hash

    def outcome(self, operation_id: str) -> TxOutcome:
        """The chain's verdict on the operation's transaction: pending (not in a block
        yet: its bytes, and any missing earlier sequence's, are broadcast again),
        succeeded (height, the fee offered, which the chain charges whole, and an
        undelegation's completion time) or failed: in a block with a non-zero code (the
        fee paid, the chain's log) or never in one (fee 0). The row keeps the final state.
        NotFound (permanent) if nothing is recorded: call delegate (again)."""
        row = self._row(operation_id)
        if row is None:
            raise NotFound(f"no Cosmos transaction recorded for {operation_id}")
        result = self._node.tx(row.tx_hash)
        if result is None and not row.final:
            try:
                self._send(row)
            except SequenceGap as exc:
                return TxOutcome(state="pending", tx_hash=row.tx_hash, detail=exc.detail)
            except ChainRejected:
                row = self._row(operation_id) or row  # refused now: failed, below
            result = self._node.tx(row.tx_hash)
        if result is not None:
            self._settle(row, result)
            height, code = result.height, result.code
            detail = f"{result.codespace} code {result.code}: {result.raw_log}"
        elif row.refused:
            return TxOutcome(
                state="failed",
                tx_hash=row.tx_hash,
                fee=0,
                detail="never in a block: the node refused it (no fee paid)",
            )
        elif row.final and row.height is not None:
            # Settled before, and the node's index no longer has it: the record's word.
            height, code = row.height, 0 if row.state == "succeeded" else -1
            detail = "failed in its block (the node's index no longer has it)"
        else:
            return TxOutcome(state="pending", tx_hash=row.tx_hash)
        if code != 0:
            return TxOutcome(
                state="failed", tx_hash=row.tx_hash, height=height, fee=row.fee, detail=detail
            )
        completion, moved = None, None
        if row.kind == "undelegate":
            completion = self._completion_time(row, height, result)
        elif row.kind == "redelegate":
            if result is not None:
                completion = self._redelegation_completes(row, result)
            moved = self._moved(row, height, result)
        return TxOutcome(
            state="succeeded",
            tx_hash=row.tx_hash,
            height=height,
            fee=row.fee,
            completion_time=completion,
            moved=moved,
            rewards=0 if result is None else self._rewards_paid(result, row.address),
        )

    def _rewards_paid(self, result: CosmosTxResult, delegator: str) -> int:
        """The rewards the transaction paid `delegator` (its `withdraw_rewards` events, in
        this denom): a delegation or undelegation with a validator withdraws them first,
        so they land in the client's address with it and must be booked with it."""
        paid = 0
        for event in result.events_of("withdraw_rewards"):
            if event.get("delegator") not in (None, delegator):
                continue
            for coin in (event.get("amount") or "").split(","):
                if coin.endswith(self._denom) and coin[: -len(self._denom)].isdigit():
                    paid += int(coin[: -len(self._denom)])
        return paid

    def unbonding_balance(self, delegator: str, validator: str, height: int) -> int | None:
        """What the unbonding the chain created at `height` still holds (less than it
        started with if the validator was slashed since); None once released. (Two
        undelegations of one delegator from one validator in one block share an entry:
        the sum of both.)"""
        entries = [
            e for e in self._node.unbonding(delegator, validator) if e.creation_height == height
        ]
        return sum(e.balance for e in entries) if entries else None

    # --- recording ----------------------------------------------------------------------
    def _transact(
        self,
        operation_id: str,
        kind: str,
        address: str,
        messages: Sequence[PlatformMsg],
        fee: int,
    ) -> str:
        row = self._row(operation_id)
        if row is None:
            assignment = self._keys.lookup(address)
            if (
                assignment is None
                or assignment.chain != "cosmos"
                or assignment.wallet_id != self._wallet_id
                or assignment.change != 0
            ):
                raise NotOurAddress(f"{address} is not a Cosmos address of {self._wallet_id}")
            public_key = self._public_key(assignment.index, address)
            row = self._db.write(
                lambda c: self._record(
                    c, operation_id, kind, address, assignment.index, public_key, messages, fee
                ),
                retry_on=(_Conflict,),
            )
        self._check_same(row, kind, address, messages, fee)
        if row.final:
            if row.refused and self._node.tx(row.tx_hash) is None:
                raise TxRefused(f"{operation_id}: its transaction {row.tx_hash} was refused")
            return row.tx_hash
        return self._send(row)

    def _public_key(self, index: int, address: str) -> bytes:
        wallet = self._keys.wallet(self._wallet_id)
        if wallet is None or "cosmos" not in wallet.xpubs:
            raise NotOurAddress(f"wallet {self._wallet_id} has no Cosmos key")
        public_key = self._deriver.public_key(wallet.xpubs["cosmos"], "cosmos", 0, index)
        if address_of(public_key, self._deriver.cosmos_prefix) != address:
            raise NotOurAddress(f"{address} is not the key at 0/{index} of {self._wallet_id}")
        return public_key

    @staticmethod
    def _one_undelegation_per_block(conn: Conn, address: str, operation_id: str) -> None:
        """An undelegation is signed only once the address's earlier ones are in a block:
        the chain merges two undelegations of one delegator from one validator in one
        block into one unbonding entry, which would make each unstake's release (and a
        slash of it) unattributable. SequenceGap (transient) until then."""
        row = conn.one(
            "select operation_id from cosmos_transactions where address = ? and "
            "kind = 'undelegate' and state = 'broadcast' and operation_id <> ?",
            (address, operation_id),
        )
        if row is not None:
            raise SequenceGap(
                f"{operation_id} waits for {row[0]}'s undelegation from {address} to be in a "
                "block (one unbonding entry per undelegation)"
            )

    def _not_transitive(self, messages: Sequence[PlatformMsg], operation_id: str) -> None:
        """Before a redelegation is signed: the chain still holds an entry of the
        delegator's into its source (another position's redelegation landed while this
        one waited for approval): TransitiveRedelegation, nothing signed, no fee paid."""
        [msg] = messages
        assert isinstance(msg, RedelegateMsg)
        now = datetime.now(UTC)
        pending = [
            e for e in self._node.redelegations_into(msg.delegator, msg.src_validator) if e > now
        ]
        if pending:
            raise TransitiveRedelegation(
                f"{operation_id}: a redelegation into {msg.src_validator} completes at "
                f"{max(pending).isoformat()}; the chain refuses one from it until then"
            )

    def _record(
        self,
        conn: Conn,
        operation_id: str,
        kind: str,
        address: str,
        index: int,
        public_key: bytes,
        messages: Sequence[PlatformMsg],
        fee: int,
    ) -> _Row:
        if not conn.sqlite:
            conn.one(
                "select pg_advisory_xact_lock(hashtextextended(?, ?))", (address, _ADDRESS_LOCK)
            )
        recorded = self._row_in(conn, operation_id)
        if recorded is not None:  # another attempt recorded it while this one waited
            return recorded
        account = self._node.account(address)
        if account is None:
            raise NoAccount(f"{address} has no account on {self._chain_id}: never funded")
        number, next_sequence = account
        signed = self._signed_at(conn, operation_id)
        if signed is not None:
            # The signer pins the operation to its first sequence (its answer may have
            # been lost before this row was written): the same bytes again.
            signed_address, sequence = signed
            if signed_address != address:
                raise IdempotencyConflict(f"{operation_id} was signed for {signed_address}")
        else:
            self._not_blocked(conn, address, next_sequence)
            if kind == "undelegate":
                self._one_undelegation_per_block(conn, address, operation_id)
            if kind == "redelegate":
                self._not_transitive(messages, operation_id)
            sequence = max(
                next_sequence,
                1 + self._highest_recorded(conn, address),
                # A sequence signed for an operation whose row was lost stays that
                # operation's (the signer gives it to no other): its retry sends it.
                1 + max(self._claims(conn, address), default=-1),
            )
        unsigned = build(
            messages,
            public_key,
            sequence,
            number,
            self._chain_id,
            fee,
            self._denom,
            self._gas[kind],
        )
        raw = self._signer.sign_cosmos_transaction(
            SignCosmosRequest(
                operation_id=operation_id,
                wallet_id=self._wallet_id,
                index=index,
                body_bytes_hex=unsigned.body_bytes_hex,
                auth_info_bytes_hex=unsigned.auth_info_bytes_hex,
                chain_id=unsigned.chain_id,
                account_number=unsigned.account_number,
            )
        )
        row = _Row(operation_id, kind, address, sequence, tx_hash(raw), raw, fee, "broadcast", None)
        conn.run(
            "insert into cosmos_transactions (operation_id, kind, address, sequence, tx_hash, "
            "raw_tx, fee, state, height, created_at) "
            "values (?, ?, ?, ?, ?, ?, ?, 'broadcast', null, ?)",
            (
                operation_id,
                kind,
                address,
                sequence,
                row.tx_hash,
                raw.hex(),
                str(fee),
                conn.time(datetime.now(UTC)),
            ),
        )
        return row

    def _claim_prefix(self, address: str = "") -> str:
        # The signer's claim on a sequence (adapters/operations/guard.py _claim_sequence).
        return f"cosmos:{self._chain_id}:{address}"

    def _signed_at(self, conn: Conn, operation_id: str) -> tuple[str, int] | None:
        """The (address, sequence) the signer signed the operation at, if it did."""
        prefix = self._claim_prefix()
        rows = conn.all(
            "select claim from signer_claims where operation_id = ? and claim like ?",
            (operation_id, prefix + "%"),
        )
        for (claim,) in rows:
            address, _, sequence = str(claim).removeprefix(prefix).rpartition(":")
            if str(claim).startswith(prefix) and address and sequence.isdigit():
                return address, int(sequence)
        return None

    def _claims(self, conn: Conn, address: str) -> dict[int, str]:
        """Sequence -> the operation the signer signed it for, at this address."""
        prefix = self._claim_prefix(address) + ":"
        rows = conn.all(
            "select claim, operation_id from signer_claims where claim like ?", (prefix + "%",)
        )
        claims = {}
        for claim, operation in rows:
            rest = str(claim).removeprefix(prefix)
            if str(claim).startswith(prefix) and rest.isdigit():
                claims[int(rest)] = str(operation)
        return claims

    @staticmethod
    def _highest_recorded(conn: Conn, address: str) -> int:
        row = conn.one(
            "select max(sequence) from cosmos_transactions where address = ?", (address,)
        )
        return -1 if row is None or row[0] is None else int(row[0])

    @staticmethod
    def _not_blocked(conn: Conn, address: str, next_sequence: int) -> None:
        row = conn.one(
            "select operation_id, sequence from cosmos_transactions where address = ? and "
            "state = 'failed' and height is null and sequence >= ? order by sequence limit 1",
            (address, next_sequence),
        )
        if row is not None:
            raise SequenceBlocked(
                f"{address}: sequence {row[1]} is {row[0]}'s, whose transaction was refused"
            )

    def _check_same(
        self, row: _Row, kind: str, address: str, messages: Sequence[PlatformMsg], fee: int
    ) -> None:
        same = (row.kind, row.address, row.fee) == (kind, address, fee)
        if not same or self._messages(row) != tuple(messages):
            raise IdempotencyConflict(f"{row.operation_id} has another transaction")

    def _messages(self, row: _Row) -> tuple[PlatformMsg, ...]:
        raw = TxRaw()
        raw.ParseFromString(row.raw)
        unsigned = UnsignedCosmosTx(
            body_bytes_hex=bytes(raw.body_bytes).hex(),
            auth_info_bytes_hex=bytes(raw.auth_info_bytes).hex(),
            chain_id=self._chain_id,
            account_number=0,  # not in the TxRaw; decode reads nothing from it
        )
        return decode(unsigned).messages

    # --- broadcasting -------------------------------------------------------------------
    def _send(self, row: _Row) -> str:
        """Broadcast the row's bytes; after a sequence mismatch, the address's recorded
        transactions from the chain's next sequence up first. See the module docstring."""
        next_sequence = self._push(row)
        if next_sequence is None:
            return row.tx_hash
        with self._db.tx() as conn:
            earlier = {
                r.sequence: r for r in self._rows_of(conn, row.address, next_sequence, row.sequence)
            }
            claims = self._claims(conn, row.address)
        for sequence in range(next_sequence, row.sequence):
            pred = earlier.get(sequence)
            if pred is None:
                holder = claims.get(sequence)
                raise SequenceGap(
                    f"{row.operation_id} waits for sequence {sequence} of {row.address}: "
                    + (
                        f"signed for {holder}, not recorded yet"
                        if holder
                        else "nothing recorded or signed"
                    )
                )
            if pred.refused:
                self._refuse(row)
                raise SequenceBlocked(
                    f"{row.address}: sequence {sequence} is {pred.operation_id}'s, refused"
                )
            if pred.final:
                continue
            try:
                if self._push(pred) is not None:
                    raise SequenceGap(f"sequence {sequence} of {row.address} is not accepted yet")
            except TxRefused as exc:  # the sequence stays empty for good
                self._refuse(row)
                raise SequenceBlocked(
                    f"{row.address}: sequence {sequence} is {pred.operation_id}'s: {exc.detail}"
                ) from exc
        if (still := self._push(row)) is not None:
            raise SequenceGap(
                f"{row.operation_id} at sequence {row.sequence} of {row.address}: the node "
                f"expects another transaction first (the chain's next is {still})"
            )
        return row.tx_hash

    def _push(self, row: _Row) -> int | None:
        """Broadcast one recorded transaction: None if the node has it (or it is in a
        block); the chain's next sequence if it is ahead of the chain (an earlier one
        missing). TxRefused (the row marked refused) if it never can be in a block;
        SequenceGap if the account is past its sequence but the node does not index it
        yet; DependencyUnavailable if the node did not answer."""
        try:
            self._node.broadcast(row.raw)
            return None
        except SequenceMismatch as exc:
            if self._landed(row, wait=False):
                return None
            account = self._node.account(row.address)
            next_sequence = 0 if account is None else account[1]
            if row.sequence >= next_sequence:
                return next_sequence
            if self._landed(row, wait=True):  # the tx index may lag the account's state
                return None
            # The account is past this sequence and the signer signs each (address,
            # sequence) for one operation only, with deterministic signatures: the
            # transaction at it can only be this one. It landed; the node's index lags
            # (or is pruned). Never refused on that: a refusal would void the books of
            # a delegation the chain made. Transient: `outcome` says pending meanwhile.
            raise SequenceGap(
                f"{row.operation_id}: sequence {row.sequence} of {row.address} is used and "
                f"the node does not index its transaction yet ({exc.log})"
            ) from exc
        except TxRejected as exc:
            self._refuse(row)
            raise TxRefused(f"{row.operation_id}: {exc.detail}") from exc

    def _landed(self, row: _Row, wait: bool) -> bool:
        deadline = time.monotonic() + (_INDEX_LAG if wait else 0.0)
        while True:
            if self._node.tx(row.tx_hash) is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.3)

    def _refuse(self, row: _Row) -> None:
        log.warning("%s: transaction %s refused, never in a block", row.operation_id, row.tx_hash)

        def work(conn: Conn) -> None:
            conn.run(
                "update cosmos_transactions set state = 'failed' where operation_id = ? "
                "and state = 'broadcast'",
                (row.operation_id,),
            )

        self._db.write(work)

    def _settle(self, row: _Row, result: CosmosTxResult) -> None:
        """The chain's verdict, kept (also over a refusal this adapter inferred wrongly:
        the chain has the last word)."""
        state = "succeeded" if result.succeeded else "failed"
        if (row.state, row.height) == (state, result.height):
            return

        def work(conn: Conn) -> None:
            conn.run(
                "update cosmos_transactions set state = ?, height = ? where operation_id = ?",
                (state, result.height, row.operation_id),
            )

        self._db.write(work)

    def _completion_time(
        self, row: _Row, height: int, result: CosmosTxResult | None
    ) -> datetime | None:
        """When the chain releases the undelegation: its unbonding entry's completion time
        (exact) while it is on chain, else the `unbond` event's (the SDK formats it to the
        second: the same instant truncated, and by then past)."""
        [msg] = self._messages(row)
        assert isinstance(msg, UndelegateMsg)
        announced = None
        for event in result.events_of("unbond") if result is not None else ():
            text = event.get("completion_time")
            if event.get("validator") == msg.validator and text:
                announced = datetime.fromisoformat(text).astimezone(UTC)
        entries = [
            e
            for e in self._node.unbonding(msg.delegator, msg.validator)
            if e.creation_height == height
        ]
        if not entries:
            return announced
        exact = entries[0].completion_time
        if announced is not None and exact.replace(microsecond=0) != announced:
            log.warning("%s: unbond event says %s, entry %s", row.operation_id, announced, exact)
        return exact

    def _redelegation_completes(self, row: _Row, result: CosmosTxResult) -> datetime | None:
        """When the redelegation's entry completes (the `redelegate` event's time, to the
        second): until then the moved stake answers for the source validator's earlier
        faults, and nothing may be redelegated on from its destination."""
        [msg] = self._messages(row)
        assert isinstance(msg, RedelegateMsg)
        for event in result.events_of("redelegate"):
            text = event.get("completion_time")
            if event.get("source_validator") == msg.src_validator and text:
                return datetime.fromisoformat(text).astimezone(UTC)
        return None

    def _moved(self, row: _Row, height: int, result: CosmosTxResult | None) -> int | None:
        """What the redelegation delegated to its destination (`redelegated`), from its
        entry read at its height and its events."""
        [msg] = self._messages(row)
        assert isinstance(msg, RedelegateMsg)
        try:
            entries = new_entries(
                *(
                    self._node.redelegation_entries(
                        msg.delegator, msg.src_validator, msg.dst_validator, h
                    )
                    for h in (height - 1, height)
                )
            )
        except QueryRefused as exc:  # pruned, or a height the node will not answer at
            log.warning("%s: no redelegation entry at %s: %s", row.operation_id, height, exc)
            entries = []
        prefix = self._deriver.cosmos_prefix
        paid = [] if result is None else pool_payments(result, self._denom, prefix)
        moved = redelegated(msg.amount, entries, paid)
        if moved is None:
            log.warning("%s: the chain does not say what it redelegated", row.operation_id)
        return moved

    # --- reading ----------------------------------------------------------------------
    def _row(self, operation_id: str) -> _Row | None:
        with self._db.tx() as conn:
            return self._row_in(conn, operation_id)

    @staticmethod
    def _row_in(conn: Conn, operation_id: str) -> _Row | None:
        found = conn.one(
            "select operation_id, kind, address, sequence, tx_hash, raw_tx, fee, state, height "
            "from cosmos_transactions where operation_id = ?",
            (operation_id,),
        )
        return None if found is None else _row_of(found)

    @staticmethod
    def _rows_of(conn: Conn, address: str, low: int, high: int) -> list[_Row]:
        rows = conn.all(
            "select operation_id, kind, address, sequence, tx_hash, raw_tx, fee, state, height "
            "from cosmos_transactions where address = ? and sequence >= ? and sequence < ? "
            "order by sequence",
            (address, low, high),
        )
        return [_row_of(r) for r in rows]


def _row_of(r: Sequence[object]) -> _Row:
    return _Row(
        operation_id=str(r[0]),
        kind=str(r[1]),
        address=str(r[2]),
        sequence=int(str(r[3])),
        tx_hash=str(r[4]),
        raw=bytes.fromhex(str(r[5])),
        fee=int(str(r[6])),
        state=str(r[7]),
        height=None if r[8] is None else int(str(r[8])),
    )


def new_entries(
    before: Sequence[tuple[int, datetime, int, int]],
    after: Sequence[tuple[int, datetime, int, int]],
) -> list[int]:
    """The initial balances of the entries the chain held after a block and not before it
    (read at the block's height and the one before): the block's redelegations of that
    pair. (An entry's creation height is not enough: from a source that is unbonding it
    is the source's unbonding height.)"""
    left = Counter(before)
    made = []
    for entry in after:
        if left[entry] > 0:
            left[entry] -= 1
        else:
            made.append(entry[2])
    return made


def redelegated(amount: int, entries: Sequence[int], pool_paid: Sequence[int]) -> int | None:
    """What a redelegation of `amount` delegated to its destination: the one entry its
    block made for the pair (`entries`); for a source already unbonded (no entry: it
    completes at once), the not-bonded pool's one payment to the bonded pool in its events
    (a bonded destination). The amount, or a unit less (the SDK truncates at a source
    rate below 1), or more (a validator's last delegator takes its leftover tokens).
    None if that is not known: several of the pair's in one block, or no entry and no
    payment (the settlement then books the amount)."""
    if len(entries) == 1:
        return entries[0]
    if entries:
        return None
    if len(pool_paid) == 1 and amount - 1 <= pool_paid[0] <= amount:
        return pool_paid[0]
    return None


def pool_payments(result: CosmosTxResult, denom: str, prefix: str) -> list[int]:
    """The transaction's transfers from the not-bonded pool to the bonded pool in `denom`
    (the module accounts' addresses as the SDK makes them)."""
    pools = (
        module_address("not_bonded_tokens_pool", prefix),
        module_address("bonded_tokens_pool", prefix),
    )
    paid = []
    for event in result.events_of("transfer"):
        if (event.get("sender"), event.get("recipient")) != pools:
            continue
        coin = event.get("amount") or ""
        if coin.endswith(denom) and coin[: -len(denom)].isdigit():
            paid.append(int(coin[: -len(denom)]))
    return paid
