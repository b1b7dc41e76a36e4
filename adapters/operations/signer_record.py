"""The signer's own record of every signature it produced (migration 0011).

Insert only: nothing here updates or deletes a row, and in production only the
signer's database role may insert (no role may update or delete). The signer checks
what it is asked to sign against this record, never against the tables the
payment adapters write (`btc_transactions`, `evm_transactions`, `btc_utxos`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters.sqldb import Conn
from sagas.errors import KeyAccessDenied


@dataclass(frozen=True)
class RecordedSignature:
    operation_id: str
    chain: str
    wallet_id: str
    tx_hash: str  # Bitcoin: the txid; Ethereum: the transaction hash
    inputs: tuple[tuple[str, int], ...]  # Bitcoin: the outpoints spent
    payments: tuple[tuple[str, int], ...]  # (destination, amount)
    fee: int  # Bitcoin: inputs minus outputs; Ethereum: the most it may pay (gas x max fee)
    account: str | None = None  # Ethereum: the sending key, wallet/index
    nonce: int | None = None
    client_id: str | None = None  # the policy holder: a client, or `settlement`
    asset: str = ""
    intent_hash: str = ""
    input_values: tuple[int, ...] = ()  # Bitcoin: the value claimed for each input


def evm_claim(chain_id: int, account: str, nonce: int) -> str:
    """What a signature at `nonce` from `account` (checksum address) claims."""
    return f"evm:{chain_id}:{account}:{nonce}"


def btc_claim(txid: str, vout: int) -> str:
    """What a signature spending the outpoint claims."""
    return f"btc:{txid}:{vout}"


def member_claim(operation_id: str) -> str:
    """What a batch's signature claims for each operation it pays: one operation is paid
    by one batch (and replacements of it), for ever."""
    return f"btc-member:{operation_id}"


def batch_members(conn: Conn, batch_id: str) -> set[str]:
    """The operations a batch's signatures claimed (empty: the batch was never signed)."""
    rows = conn.all(
        "select claim from signer_claims where operation_id = ? and claim like ?",
        (batch_id, "btc-member:%"),
    )
    return {str(r[0]).removeprefix("btc-member:") for r in rows}


def signed_evm(conn: Conn, operation_id: str, chain_id: int) -> tuple[str, int] | None:
    """The (account, nonce) the signer signed the operation's payment with, from any of
    the hot wallet's lanes: an operation stays on the lane and nonce of its first
    signature, even when the worker lost the signer's answer."""
    row = conn.one(
        "select claim from signer_claims where operation_id = ? and claim like ?",
        (operation_id, f"evm:{chain_id}:%"),
    )
    if row is None:
        return None
    account, nonce = str(row[0]).split(":")[2:4]
    return account, int(nonce)


def claimed_by_other(conn: Conn, claim_: str, operation_id: str) -> bool:
    """Whether another operation's signature holds `claim_` (a nonce, an outpoint)."""
    row = conn.one(
        "select 1 from signer_claims where claim = ? and operation_id <> ?",
        (claim_, operation_id),
    )
    return row is not None


def lock(conn: Conn, operation_id: str) -> None:
    """Serialise the signatures of one operation to the end of the transaction (SQLite's
    write transaction already serialises everything)."""
    if not conn.sqlite:
        conn.one("select pg_advisory_xact_lock(hashtextextended(?, 4244))", (operation_id,))


def signatures(conn: Conn, operation_id: str) -> list[RecordedSignature]:
    """Every signature recorded for the operation, oldest first."""
    rows = conn.all(
        "select operation_id, chain, wallet_id, tx_hash, inputs, payments, fee, account, "
        "nonce, client_id, asset, intent_hash from signer_signatures where operation_id = ? "
        "order by id",
        (operation_id,),
    )
    return [
        RecordedSignature(
            r[0],
            r[1],
            r[2],
            r[3],
            tuple((str(i[0]), int(i[1])) for i in json.loads(r[4])),
            tuple((str(d), int(a)) for d, a in json.loads(r[5])),
            int(r[6]),
            r[7],
            None if r[8] is None else int(r[8]),
            r[9],
            r[10],
            r[11],
            tuple(int(i[2]) for i in json.loads(r[4]) if len(i) > 2),
        )
        for r in rows
    ]


def claim(conn: Conn, what: str, operation_id: str) -> str:
    """Claim `what` (an outpoint, an account's nonce) for the operation if nobody has;
    the operation that holds it. Atomic between concurrent signers (primary key)."""
    conn.run(
        "insert into signer_claims (claim, operation_id, created_at) values (?, ?, ?) "
        "on conflict do nothing",
        (what, operation_id, conn.time(datetime.now(UTC))),
    )
    return str(conn.one("select operation_id from signer_claims where claim = ?", (what,))[0])


def insert(conn: Conn, sig: RecordedSignature) -> None:
    conn.run(
        "insert into signer_signatures (operation_id, client_id, asset, intent_hash, chain, "
        "wallet_id, account, nonce, tx_hash, inputs, payments, fee, created_at) "
        "values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sig.operation_id,
            sig.client_id,
            sig.asset,
            sig.intent_hash,
            sig.chain,
            sig.wallet_id,
            sig.account,
            sig.nonce,
            sig.tx_hash,
            json.dumps(
                [[t, v, *sig.input_values[n : n + 1]] for n, (t, v) in enumerate(sig.inputs)]
            ),
            json.dumps([[d, str(a)] for d, a in sig.payments]),
            str(sig.fee),
            conn.time(datetime.now(UTC)),
        ),
    )


def first_signed_at(conn: Conn, operation_id: str, intent_hash: str) -> datetime | None:
    """When the signer first signed this intent of the operation (None: never)."""
    row = conn.one(
        "select min(created_at) from signer_signatures where operation_id = ? and intent_hash = ?",
        (operation_id, intent_hash),
    )
    return None if row is None else Conn.read_time(row[0])


def lock_velocity(conn: Conn, client_id: str, asset: str) -> None:
    """Serialise the signatures of one client and asset (the velocity window's sum)."""
    if not conn.sqlite:
        conn.one(
            "select pg_advisory_xact_lock(hashtextextended(?, 4245))", (f"{client_id}/{asset}",)
        )


def signed_since(
    conn: Conn, client_id: str, asset: str, since: datetime, exclude: str | Collection[str]
) -> int:
    """What the signer signed for the client and asset since `since`, other operations
    than `exclude` (one, or a batch's members): each operation's payments once (a fee
    bump re-signs the same ones)."""
    excluded = {exclude} if isinstance(exclude, str) else set(exclude)
    rows = conn.all(
        "select operation_id, payments from signer_signatures where client_id = ? and "
        "asset = ? and created_at > ?",
        (client_id, asset, conn.time(since)),
    )
    per_operation = {
        op: sum(int(a) for _d, a in json.loads(p)) for op, p in rows if op not in excluded
    }
    return sum(per_operation.values())


def check_governance_head(
    conn: Conn, seq: int, head: str, record_hash: Callable[[int], str | None]
) -> None:
    """KeyAccessDenied unless governance at (seq, head) extends every head the signer
    verified before (a database writer deleting the newest records would bring back
    revoked keys, removed operators and older policies); then remember this head."""
    row = conn.one("select seq, head from signer_governance_heads order by seq desc limit 1")
    if row is not None:
        known_seq, known_head = int(row[0]), str(row[1])
        if seq < known_seq:
            raise KeyAccessDenied(
                f"governance is at record {seq}; the signer verified {known_seq}: a rollback"
            )
        if (head if seq == known_seq else record_hash(known_seq)) != known_head:
            raise KeyAccessDenied(f"governance record {known_seq} is not the one verified")
        if seq == known_seq:
            return
    conn.run(
        "insert into signer_governance_heads (seq, head, created_at) values (?, ?, ?) "
        "on conflict do nothing",
        (seq, head, conn.time(datetime.now(UTC))),
    )
