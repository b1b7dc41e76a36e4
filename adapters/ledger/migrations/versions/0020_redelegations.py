"""Redelegations (decision 0033): operations may be redelegations, and a Cosmos
transaction may be a MsgBeginRedelegate (`redelegate`).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from adapters.ledger.migrations.checks import swap

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_OPS_NARROW = "kind in ('withdrawal', 'deposit', 'trade', 'settlement', 'stake', 'unstake')"
_OPS_WIDE = (
    "kind in ('withdrawal', 'deposit', 'trade', 'settlement', 'stake', 'unstake', 'redelegation')"
)
_TX_NARROW = "kind in ('send', 'delegate', 'undelegate', 'withdraw_rewards')"
_TX_WIDE = "kind in ('send', 'delegate', 'undelegate', 'withdraw_rewards', 'redelegate')"


def upgrade() -> None:
    swap(_OPS_NARROW, _OPS_WIDE, ("operations",), "kind")
    swap(_TX_NARROW, _TX_WIDE, ("cosmos_transactions",), "kind")


def downgrade() -> None:
    swap(_TX_WIDE, _TX_NARROW, ("cosmos_transactions",), "kind")
    swap(_OPS_WIDE, _OPS_NARROW, ("operations",), "kind")
