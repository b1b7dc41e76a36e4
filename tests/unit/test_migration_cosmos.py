"""Migration 0019 widens the chain checks of deposit addresses and the signer's record to
`cosmos`, on a database that already holds rows: on SQLite by rebuilding each table
(rows, indexes and the foreign key that names deposit_addresses kept), on PostgreSQL
(tests/integration/test_db_roles.py runs the migrations there) by swapping the check."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from adapters.ledger.migrate import upgrade


def test_0019_keeps_the_rows_and_admits_cosmos(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url, "0018")
    db = sqlite3.connect(path)
    db.execute(
        "insert into key_wallets (wallet_id, wrapped_seed, xpubs, btc_network, created_at) "
        "values ('w1', 'fake:v1:x', '{}', 'simnet', '2026-12-01T00:00:00Z')"
    )
    insert = (
        "insert into deposit_addresses (address, account_id, owner, chain, asset, wallet_id, "
        "change, address_index) values (?, ?, ?, ?, ?, 'w1', 0, ?)"
    )
    db.execute(insert, ("sb1qa", "client:c1:BTC", "c1", "bitcoin", "BTC", 0))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(insert, ("cosmos1a", "client:c1:ATOM", "c1", "cosmos", "ATOM", 0))
    db.commit()
    db.close()

    upgrade(url)
    db = sqlite3.connect(path)
    db.execute("pragma foreign_keys = on")
    db.execute(insert, ("cosmos1a", "client:c1:ATOM", "c1", "cosmos", "ATOM", 0))
    rows = db.execute("select address, chain from deposit_addresses order by address").fetchall()
    assert rows == [("cosmos1a", "cosmos"), ("sb1qa", "bitcoin")]
    # Still one address per account and per path, and only the known chains.
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(insert, ("cosmos1b", "client:c1:ATOM", "c1", "cosmos", "ATOM", 1))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(insert, ("sol1", "client:c2:SOL", "c2", "solana", "SOL", 0))
    # The foreign key from btc_utxos still names the rebuilt table.
    fks = db.execute("pragma foreign_key_list(btc_utxos)").fetchall()
    assert {fk[2] for fk in fks} == {"deposit_addresses"}
    assert db.execute("pragma foreign_key_check").fetchall() == []
    indexes = {r[1] for r in db.execute("pragma index_list(signer_signatures)").fetchall()}
    assert {
        "signer_signatures_operation",
        "signer_signatures_client",
    } <= indexes
    db.close()


def test_0020_admits_redelegations_and_keeps_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url, "0019")
    insert = (
        "insert into operations (id, kind, client_id, asset, chain, amount, request_hash, "
        "requested_by, state, created_at, updated_at) values "
        "(?, ?, 'c1', 'ATOM', 'cosmos', '5', 'h', 'u1', 'requested', 't', 't')"
    )
    tx = (
        "insert into cosmos_transactions (operation_id, kind, address, sequence, tx_hash, "
        "raw_tx, fee, state, created_at) values (?, ?, 'cosmos1a', ?, ?, '00', '1', "
        "'broadcast', 't')"
    )
    db = sqlite3.connect(path)
    db.execute(insert, ("stk-1", "stake"))
    db.execute(tx, ("stk-1", "delegate", 0, "h0"))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(insert, ("red-1", "redelegation"))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(tx, ("stk-1b", "redelegate", 1, "h1"))
    db.commit()
    db.close()

    upgrade(url)
    db = sqlite3.connect(path)
    db.execute(insert, ("red-1", "redelegation"))
    db.execute(tx, ("red-1", "redelegate", 1, "h1"))
    assert db.execute("select id, kind from operations order by id").fetchall() == [
        ("red-1", "redelegation"),
        ("stk-1", "stake"),
    ]
    # Still only the known kinds, and one transaction per sequence.
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(insert, ("x-1", "bogus"))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(tx, ("red-2", "vote", 2, "h2"))
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(tx, ("red-3", "redelegate", 1, "h3"))
