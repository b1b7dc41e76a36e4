"""Withdraw the Ethereum nonce reservations of migrations 0014-0016 (decision 0021):
nonces are again allocated, signed and recorded in one transaction under the sender's
nonce row lock. The table held only reservations, never a payment's record.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("drop table if exists evm_nonce_reservations")
    op.execute("drop index if exists signer_signatures_account_nonce")


def downgrade() -> None:
    pass  # the reservations are not brought back
