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
