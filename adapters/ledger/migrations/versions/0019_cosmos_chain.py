"""The proof-of-stake chain (decisions 0027, 0028): `cosmos` becomes a chain deposit
addresses and the signer's record may name, beside bitcoin and ethereum; operations may
be stakes and unstakes; `cosmos_transactions` holds each operation's one signed Cosmos
transaction (rebroadcast as it is on a retry).

PostgreSQL swaps the two check constraints; SQLite cannot alter one, so each table is
rebuilt from its own schema text with the wider check (its rows, indexes and the
foreign keys that name it unchanged; migrations run with SQLite's foreign keys off).

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from alembic import op

from adapters.ledger.migrations.checks import swap

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_TABLES = ("deposit_addresses", "signer_signatures")
_NARROW = "chain in ('bitcoin', 'ethereum')"
_WIDE = "chain in ('bitcoin', 'ethereum', 'cosmos')"
_KINDS_NARROW = "kind in ('withdrawal', 'deposit', 'trade', 'settlement')"
_KINDS_WIDE = "kind in ('withdrawal', 'deposit', 'trade', 'settlement', 'stake', 'unstake')"


def _swap(old: str, new: str, tables: tuple[str, ...] = _TABLES, column: str = "chain") -> None:
    swap(old, new, tables, column)


def upgrade() -> None:
    _swap(_NARROW, _WIDE)
    _swap(_KINDS_NARROW, _KINDS_WIDE, ("operations",), "kind")
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    # One signed transaction per operation (a stake, an unstake, a reward claim, an ATOM
    # withdrawal), and one per account sequence: what the adapter broadcasts again.
    op.execute(f"""create table cosmos_transactions (
    operation_id text primary key,
    kind text not null check (kind in ('send', 'delegate', 'undelegate', 'withdraw_rewards')),
    address text not null,
    sequence bigint not null check (sequence >= 0),
    tx_hash text not null unique,
    raw_tx text not null,
    fee text not null,
    state text not null check (state in ('broadcast', 'succeeded', 'failed')),
    height bigint,
    created_at {stamp} not null,
    unique (address, sequence)
)""")


def downgrade() -> None:
    op.execute("drop table cosmos_transactions")
    _swap(_KINDS_WIDE, _KINDS_NARROW, ("operations",), "kind")
    _swap(_WIDE, _NARROW)
