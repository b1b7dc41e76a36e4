"""One PostgreSQL role per process (adapters/ledger/grants.py), on the stack's cluster:
each role attempts what its process must never do and is refused by the server
(InsufficientPrivilege), and does through the real stores what its process does.

The roles and their pgpass files come from the stack's bootstrap
(infra/services/postgres.py); the database is a fresh one, migrated by the owner.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import psycopg.errors
import pytest

from adapters.keys.hd import BipDeriver
from adapters.keys.store import SqlKeyStore
from adapters.ledger.grants import PROCESSES, apply_grants, role
from adapters.ledger.migrate import upgrade
from adapters.ledger.sql import SqlLedger
from adapters.operations.store import SqlIdempotencyStore
from adapters.operations.trades import SqlTradeStore
from sagas import accounts
from sagas.events import Envelope
from sagas.keys.wallets import create_wallet
from sagas.ledger import Transfer
from sagas.operations import OperationRecord
from services.platform import Platform
from services.settings import PlatformSettings, stack_env_file
from tests.fakes import FakeKeyWrapper

FORGE = (
    "insert into signer_signatures (operation_id, asset, intent_hash, chain, wallet_id, "
    "tx_hash, inputs, payments, fee, created_at) "
    "values ('x', 'BTC', 'i', 'bitcoin', 'w', 'h', '[]', '[]', '0', now())"
)


@dataclass(frozen=True)
class Db:
    owner: str
    urls: dict[str, str]  # process -> its role's URL
    settings: PlatformSettings

    def attempt(self, process: str, statement: str) -> None:
        with psycopg.connect(self.urls[process], autocommit=True) as conn:
            conn.execute(statement)


@pytest.fixture(scope="module")
def db(stack_settings: PlatformSettings) -> Iterator[Db]:
    name = f"roles_{uuid.uuid4().hex[:12]}"
    admin = stack_settings.postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    owner = stack_settings.postgres_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(owner)
        with psycopg.connect(owner, autocommit=True) as conn:
            assert sorted(apply_grants(conn)) == sorted(role(p) for p in PROCESSES)
        by_env = stack_settings.role_urls(owner)
        urls = {p: by_env[f"CUSTODY_LEDGER_URL_{p.upper()}"] for p in PROCESSES}
        yield Db(owner, urls, stack_settings)
    except KeyError:
        pytest.fail("the stack has no process roles: run `custody stack up` (bootstrap)")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


# process, statement it must never get through, why it matters
MUST_NOT = [
    ("api", "update operations set approved = true where id = 'wd:x'", "approve"),
    ("api", "update operations set state = 'approved' where id = 'wd:x'", "advance a saga"),
    ("api", "delete from operations", "erase history"),
    ("api", "update ledger_accounts set credits_posted = 10", "mint a balance"),
    ("api", "insert into ledger_transfers (id) values ('t')", "book a transfer"),
    ("api", FORGE, "forge"),
    ("api", "select * from ledger_outbox", "read unpublished events"),
    ("api", "select * from signer_signatures", "read the signer's record"),
    ("worker", "select * from signer_signatures", "read the signer's record"),
    ("api", "update clients set name = 'x'", "rename a client"),
    ("api", "update key_wallets set wrapped_seed = 'fake:v1:x'", "swap a seed"),
    ("api", "update intent_approvals set operator = 'x'", "rewrite an approval"),
    ("api", "update policy_versions set rules = '{}'", "rewrite a policy version"),
    ("api", "delete from evm_transactions", "forget a broadcast"),
    ("worker", FORGE, "forge"),
    ("worker", "update key_wallets set wrapped_seed = 'fake:v1:x'", "swap a seed"),
    ("worker", "delete from ledger_transfers", "erase the ledger"),
    ("worker", "delete from operations", "erase history"),
    ("worker", "insert into intent_approvals (intent_hash) values ('h')", "forge an approval"),
    ("worker", "delete from policy_versions", "drop a policy"),
    ("router", "update operations set approved = true", "approve"),
    ("router", "insert into ledger_transfers (id) values ('t')", "book a transfer"),
    ("router", FORGE, "forge"),
    ("relay", "insert into ledger_transfers (id) values ('t')", "book a transfer"),
    ("relay", "update ledger_accounts set credits_posted = 10", "mint a balance"),
    ("relay", "insert into ledger_outbox (topic) values ('x')", "forge an event"),
    ("relay", "update ledger_outbox set payload = '{}'", "rewrite an event"),
    ("relay", "select * from operations", "read operations"),
    ("relay", "select * from key_wallets", "read wrapped seeds"),
    ("signer", "update operations set approved = true", "approve its own work"),
    ("signer", "insert into operations (id) values ('x')", "invent an operation"),
    ("signer", "update signer_signatures set tx_hash = 'x'", "rewrite its record"),
    ("signer", "delete from signer_signatures", "erase its record"),
    ("signer", "update key_wallets set xpubs = 'x'", "swap a wallet"),
    ("chainwatch", "update operations set approved = true", "approve"),
    ("chainwatch", "insert into ledger_transfers (id) values ('t')", "book a transfer"),
    ("chainwatch", "update chain_observations set amount = '1'", "inflate a deposit"),
    ("chainwatch", "select * from ledger_outbox", "read unpublished events"),
    ("audit", "select * from operations", "read the database at all"),
    ("projector", "select * from ledger_accounts", "read the database at all"),
    *[(p, "create table intruder (x int)", "change the schema") for p in PROCESSES],
    *[(p, "alter table operations add column x int", "change the schema") for p in PROCESSES],
]


@pytest.mark.parametrize(
    ("process", "statement", "why"), MUST_NOT, ids=[f"{p}-{w}" for p, _s, w in MUST_NOT]
)
def test_a_role_is_refused_what_its_process_must_not_do(
    db: Db, process: str, statement: str, why: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.attempt(process, statement)


def test_a_role_without_its_password_is_refused(db: Db) -> None:
    bare = db.urls["api"].split("?", 1)[0]  # same role, no pgpass file
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(bare).close()


def test_each_process_does_its_work_as_its_own_role(db: Db) -> None:
    s, now = db.settings, datetime.now(UTC)
    client = f"c-{uuid.uuid4().hex[:8]}"
    # The worker opens the books, creates the wallet, books a transfer.
    worker = Platform(s, db.urls["worker"])
    worker.open_books()
    create_wallet(
        s.platform_wallet, BipDeriver(s.btc_network), FakeKeyWrapper({}, False), worker.keys
    )
    worker.ledger.submit(
        [
            Transfer(
                id=f"t-{client}",
                debit_account=accounts.treasury("ETH"),
                credit_account=accounts.quarantine("ETH"),
                asset="ETH",
                amount=5,
            )
        ]
    )
    # The API registers a client, opens its accounts, hands out an address (the
    # per-wallet lock needs no UPDATE on key_wallets), records a withdrawal request
    # with its event, stores its idempotent answer and the client's bank account.
    api = Platform(s, db.urls["api"])
    api.operations.create_client(client, "Client", "ops-1")
    api.open_client_accounts(client)
    address = api.client_address(client, "ETH").address
    assert address.startswith("0x")
    record = OperationRecord(
        id=f"wd:{client}:k1",
        kind="withdrawal",
        client_id=client,
        asset="ETH",
        chain="ethereum",
        amount=1,
        request_hash="h",
        requested_by="bank",
        state="requested",
        created_at=now,
        updated_at=now,
    )
    event = Envelope(source="/custody/api", type="custody.withdrawal.requested.v1", subject=client)
    _stored, created = api.operations.create(record, [("custody.events.v1", event)])
    assert created
    SqlIdempotencyStore(db.urls["api"]).put(f"{client}:/v1/x:k1", "h", 202, "{}")
    api.trades.set_bank_account(client, "DE74500105170000000900", "SIMUDEFFXXX")
    assert SqlTradeStore(db.urls["worker"], migrate=False).bank_account(client) == (
        "DE74500105170000000900",
        "SIMUDEFFXXX",
    )
    # ... but cannot move the operation on, through the very store the worker uses.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        api.operations.advance(record.id, "approved", state="approved", approved=True)
    # The worker can: the saga records the approval.
    assert worker.operations.advance(record.id, "approved", state="approved", approved=True)
    # The signer reads it and appends to its own record.
    with psycopg.connect(db.urls["signer"]) as conn:
        assert conn.execute(
            "select approved from operations where id = %s", (record.id,)
        ).fetchone() == (True,)
        conn.execute(FORGE.replace("'x'", "%s"), (record.id,))
        rows = conn.execute("select operation_id from signer_signatures").fetchall()
    assert rows == [(record.id,)]
    # The chain watcher records a block and looks addresses up.
    with psycopg.connect(db.urls["chainwatch"]) as conn:
        conn.execute(
            "insert into chain_blocks (chain, height, block_hash) values ('ethereum', 1, 'ab')"
        )
        conn.execute("delete from chain_blocks where height = 1")
    assert SqlKeyStore(db.urls["chainwatch"]).lookup(address) is not None
    # The relay reads the outbox and marks what it published; schema current, no DDL.
    relay = SqlLedger(db.urls["relay"])
    pending = relay.unpublished(100)
    assert event.id in {item.event.id for item in pending}
    relay.mark_published([item.position for item in pending])
    assert relay.unpublished(100) == []


def test_no_role_password_is_in_a_log_the_env_file_or_the_catalogue(db: Db) -> None:
    """The server holds SCRAM verifiers only; no stack log or stack.env holds a password.
    (Failures name the file, never the password.)"""
    passwords = {
        p: (db.settings.postgres_roles_dir / f"{role(p)}.pgpass").read_text().strip()
        for p in PROCESSES
    }
    passwords = {p: line.rsplit(":", 1)[1] for p, line in passwords.items()}
    assert all(len(pw) >= 40 for pw in passwords.values())
    stack = stack_env_file().parent
    texts = {path: path.read_bytes() for path in [*stack.glob("logs/*.log"), stack_env_file()]}
    leaks = [
        (str(path), p)
        for path, text in texts.items()
        for p, pw in passwords.items()
        if pw.encode() in text
    ]
    assert leaks == []
    with psycopg.connect(db.owner) as conn:
        stored = dict(
            conn.execute(
                "select rolname, rolpassword from pg_authid where rolname like 'custody\\_%'"
            ).fetchall()
        )
    assert all(stored[role(p)].startswith("SCRAM-SHA-256$4096:") for p in PROCESSES)
    assert [p for p, pw in passwords.items() if pw in stored[role(p)]] == []
