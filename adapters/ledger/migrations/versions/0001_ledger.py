"""Ledger: assets, accounts with four counters, the transfer log.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_KINDS = (
    "'client_available', 'client_held', 'staking_locked', 'omnibus', 'in_flight', 'fees', "
    "'counterparty_settlement', 'suspense'"
)
_COUNTERS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
# The same in both dialects.
_ASSETS = """create table ledger_assets (
    code text primary key,
    decimals integer not null check (decimals between 0 and 36)
)"""


def _postgres() -> list[str]:
    counters = ",\n".join(f"    {c} numeric(78, 0) not null default 0" for c in _COUNTERS)
    return [
        _ASSETS,
        f"""create table ledger_accounts (
    id text primary key,
    asset text not null references ledger_assets (code),
    kind text not null check (kind in ({_KINDS})),
    owner text,
    no_overdraft boolean not null,
{counters},
    created_at timestamptz not null default now(),
    constraint ledger_counters_non_negative check (
        debits_pending >= 0 and debits_posted >= 0
        and credits_pending >= 0 and credits_posted >= 0),
    constraint ledger_no_overdraft check (
        not no_overdraft or credits_posted >= debits_posted + debits_pending)
)""",
        """create table ledger_transfers (
    seq bigint generated always as identity primary key,
    id text not null unique,
    kind text not null check (kind in ('transfer', 'pending', 'post', 'void', 'expire')),
    debit_account text not null references ledger_accounts (id),
    credit_account text not null references ledger_accounts (id),
    asset text not null references ledger_assets (code),
    amount numeric(78, 0) not null check (amount > 0),
    pending_id text references ledger_transfers (id),
    pending_amount numeric(78, 0),
    pending_state text check (pending_state in ('pending', 'posted', 'voided', 'expired')),
    expires_at timestamptz,
    reference text,
    body text not null,
    recorded_at timestamptz not null,
    constraint ledger_resolution_names_pending check (
        (kind in ('post', 'void', 'expire')) = (pending_id is not null)),
    constraint ledger_state_only_on_pending check (
        (kind = 'pending') = (pending_state is not null))
)""",
    ]


def _sqlite() -> list[str]:
    counters = ",\n".join(
        f"    {c} text not null default '0' check (ledger_amount_ok({c}))" for c in _COUNTERS
    )
    return [
        _ASSETS,
        f"""create table ledger_accounts (
    id text primary key,
    asset text not null references ledger_assets (code),
    kind text not null check (kind in ({_KINDS})),
    owner text,
    no_overdraft integer not null check (no_overdraft in (0, 1)),
{counters},
    created_at text not null default current_timestamp,
    constraint ledger_no_overdraft check (
        not no_overdraft or ledger_covers(credits_posted, debits_posted, debits_pending))
)""",
        """create table ledger_transfers (
    seq integer primary key autoincrement,
    id text not null unique,
    kind text not null check (kind in ('transfer', 'pending', 'post', 'void', 'expire')),
    debit_account text not null references ledger_accounts (id),
    credit_account text not null references ledger_accounts (id),
    asset text not null references ledger_assets (code),
    amount text not null check (ledger_positive(amount)),
    pending_id text references ledger_transfers (id),
    pending_amount text check (pending_amount is null or ledger_positive(pending_amount)),
    pending_state text check (pending_state in ('pending', 'posted', 'voided', 'expired')),
    expires_at text,
    reference text,
    body text not null,
    recorded_at text not null,
    constraint ledger_resolution_names_pending check (
        (kind in ('post', 'void', 'expire')) = (pending_id is not null)),
    constraint ledger_state_only_on_pending check (
        (kind = 'pending') = (pending_state is not null))
)""",
    ]


_INDEXES = [
    # A pending transfer is resolved (posted, voided, expired) at most once.
    "create unique index ledger_one_resolution on ledger_transfers (pending_id) "
    "where pending_id is not null",
    "create index ledger_transfers_debit on ledger_transfers (debit_account, seq)",
    "create index ledger_transfers_credit on ledger_transfers (credit_account, seq)",
    "create index ledger_pending_expiry on ledger_transfers (expires_at) "
    "where pending_state = 'pending'",
]


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    for statement in (_sqlite() if dialect == "sqlite" else _postgres()) + _INDEXES:
        op.execute(statement)


def downgrade() -> None:
    for table in ("ledger_transfers", "ledger_accounts", "ledger_assets"):
        op.execute(f"drop table {table}")
