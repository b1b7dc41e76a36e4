"""The signer's own record: one row per signature it produced, and the claims (a
Bitcoin outpoint, an Ethereum account's nonce) each signature took for its operation.

Written only by the signer, insert only: never updated, never deleted. In production
the signer gets its own database role, the only one with INSERT on these tables and
no role with UPDATE or DELETE (a later step of issue 12 adds the roles).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    stamp = "text" if sqlite else "timestamptz"
    ident = (
        "integer primary key autoincrement"
        if sqlite
        else "bigint generated always as identity primary key"
    )
    # inputs: [[txid, vout], ...]; payments: [[destination, amount], ...]; amounts and
    # fees as text (wei exceed bigint).
    op.execute(f"""create table signer_signatures (
    id {ident},
    operation_id text not null,
    client_id text,
    asset text not null,
    intent_hash text not null,
    chain text not null check (chain in ('bitcoin', 'ethereum')),
    wallet_id text not null,
    account text,
    nonce bigint,
    tx_hash text not null,
    inputs text not null,
    payments text not null,
    fee text not null,
    created_at {stamp} not null
)""")
    op.execute("create index signer_signatures_operation on signer_signatures (operation_id)")
    # The velocity window: what was signed for a client and asset since a moment.
    op.execute(
        "create index signer_signatures_client on signer_signatures (client_id, asset, created_at)"
    )
    # The first signature to spend an outpoint or use a nonce claims it for its operation;
    # the primary key makes the claim atomic between concurrent signers.
    op.execute(f"""create table signer_claims (
    claim text primary key,
    operation_id text not null,
    created_at {stamp} not null
)""")

    # The governance heads the signer has verified: a chain shorter than the longest, or
    # another record at a position it saw, is a rollback and refused.
    op.execute(f"""create table signer_governance_heads (
    seq integer primary key,
    head text not null,
    created_at {stamp} not null
)""")


def downgrade() -> None:
    op.execute("drop table signer_governance_heads")
    op.execute("drop table signer_claims")
    op.execute("drop table signer_signatures")
