"""The highest nonce the signer signed from an account, found by index (the signer reads
it before each first signature of an Ethereum payment and each gap filler).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "create index signer_signatures_account_nonce on signer_signatures (account, nonce) "
        "where account is not null"
    )


def downgrade() -> None:
    op.execute("drop index signer_signatures_account_nonce")
