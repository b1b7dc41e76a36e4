"""A reservation's lease apart from when it was made: an attempt holds the lease while it
builds and signs; a later attempt may take it over once it lapsed, but only the attempt
that made the reservation, or any once the reservation is old enough that no earlier
attempt can still be signing, may release it (decision 0021).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    stamp = "text" if op.get_context().dialect.name == "sqlite" else "timestamptz"
    op.execute(f"alter table evm_nonce_reservations add column leased_at {stamp}")
    op.execute("update evm_nonce_reservations set leased_at = reserved_at")


def downgrade() -> None:
    op.execute("alter table evm_nonce_reservations drop column leased_at")
