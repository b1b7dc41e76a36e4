"""What each platform process may do in the PostgreSQL database: one login role per
process, granted table by table what that process's code does and nothing more.

The owner (the role that runs the migrations, `custody` on the local stack) owns every
table; the process roles own nothing and are re-granted after every migration, so a
new table is reachable by nobody until a line below names it. SQLite has no roles:
the embedded default is unaffected.

Read from the stores each process builds (services/*/main.py, services/platform.py):
the audit writer and the balance projector use Kafka only, so their roles get nothing.
`select ... for update` needs UPDATE on the table, which is why the ledger's writer
(the worker) holds update on its counters and nobody else locks rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from psycopg import Connection, sql

PREFIX = "custody_"
# The processes that have a role; the role of process `api` is `custody_api`.
PROCESSES = ("api", "worker", "signer", "router", "relay", "chainwatch", "audit", "projector")

# table -> process -> privileges ("select, insert", "update(state)" for columns only).
# Anything not named here is denied. Adding a table is one line.
TABLES: Mapping[str, Mapping[str, str]] = {
    # Every process that connects checks the schema is current at start (a read).
    "ledger_schema_version": {
        p: "select" for p in ("api", "worker", "signer", "router", "relay", "chainwatch")
    },
    # --- the ledger: written by the sagas (worker); the API and the router open client
    # accounts and read balances; events go out through the outbox, read by the relay.
    "ledger_assets": {"api": "select", "worker": "select, insert", "router": "select"},
    "ledger_accounts": {
        "api": "select, insert",
        "worker": "select, insert, update",
        "router": "select",
    },
    "ledger_transfers": {"api": "select", "worker": "select, insert, update", "router": "select"},
    # Writers see event ids only: `on conflict (event_id)` reads the conflict column.
    "ledger_outbox": {
        "api": "insert, select(event_id)",
        "worker": "insert, select(event_id)",
        "router": "insert, select(event_id)",
        "chainwatch": "insert, select(event_id)",
        "relay": "select, update(published_at)",
    },
    # --- keys: the worker creates the wallet; addresses are handed out by the API
    # (clients'), the worker (change, settlement) and read by everyone who routes.
    "key_wallets": {
        "api": "select",
        "worker": "select, insert",
        "signer": "select",
        "router": "select",  # a stake command derives the client's delegator address
    },
    "deposit_addresses": {
        "api": "select, insert",
        "worker": "select, insert",
        "signer": "select",
        "router": "select",
        "chainwatch": "select",
    },
    # --- operations: the API and the router record requests; only the sagas (worker)
    # move them on, so only the worker may change state or `approved`.
    "operations": {
        "api": "select, insert",
        "worker": "select, insert, update",
        "router": "select, insert",
        "signer": "select",
    },
    "operation_steps": {
        "api": "select, insert",
        "worker": "select, insert",
        "router": "select, insert",
    },
    "clients": {
        "api": "select, insert, update(iban, bic)",
        "worker": "select",
        "router": "select",
    },
    "api_idempotency": {"api": "select, insert"},
    "policy_versions": {"api": "select, insert", "worker": "select", "signer": "select"},
    "trades": {"api": "select", "worker": "select, insert, update(settlement_id)"},
    "intents": {"api": "select", "worker": "select, insert", "signer": "select"},
    "intent_approvals": {"api": "select, insert", "worker": "select", "signer": "select"},
    # Client request nonces: whoever starts a withdrawal claims one; expired ones are
    # deleted on the way.
    "request_nonces": {"api": "select, insert, delete", "router": "select, insert, delete"},
    # --- chains: the watcher records what it sees; the worker broadcasts and spends.
    "chain_blocks": {"chainwatch": "select, insert, delete"},
    "chain_observations": {
        "chainwatch": "select, insert, update(state, revival)",
        "worker": "select",
    },
    "chain_outgoing": {
        "chainwatch": "select, insert, update(state, revival)",
        "worker": "select",
    },
    "evm_nonces": {"worker": "select, insert, update"},
    # The watcher matches mined transactions to operations by hash, no more.
    "evm_transactions": {
        "worker": "select, insert, update",
        "api": "select",
        "signer": "select",
        "chainwatch": "select(operation_id, tx_hash)",
    },
    "btc_utxos": {"worker": "select, insert, update, delete"},
    # The worker's staking adapter records and rebroadcasts each operation's one signed
    # Cosmos transaction; the watcher reads which of its transactions are the platform's.
    "cosmos_transactions": {
        "worker": "select, insert, update(state, height)",
        "api": "select",
        "chainwatch": "select(operation_id, tx_hash)",
    },
    # The watcher names each batch member's operation when a batch is mined.
    "btc_payout_queue": {
        "worker": "select, insert, update",
        "chainwatch": "select(operation_id, batch_id)",
    },
    "btc_batches": {"worker": "select, insert, update"},
    "btc_transactions": {
        "worker": "select, insert, update, delete",
        "chainwatch": "select(operation_id, txid)",
    },
    # --- the signer's own append-only record of what it signed and what each signature
    # claimed (outpoints, nonces): only the signer writes it, nobody (the signer
    # included) changes or deletes a row. The worker's payment adapters read the claims
    # (a retry re-takes the nonce the signer pinned; no coin another operation holds).
    "signer_signatures": {"signer": "select, insert"},
    "signer_claims": {"signer": "select, insert", "worker": "select"},
    "signer_governance_heads": {"signer": "select, insert"},
    # --- governance: untrusted storage, the signer
    # verifies the records' quorum signatures itself. The API takes proposals and
    # approvals and appends the records they make; the others read the verified state.
    "governance_genesis": {
        "api": "select",
        "worker": "select",
        "signer": "select",
        "router": "select",
    },
    "governance_records": {
        "api": "select, insert",
        "worker": "select",
        "signer": "select",
        "router": "select",
    },
    "governance_proposals": {
        "api": "select, insert, update(state, reason, record_seq, updated_at)"
    },
    "governance_approvals": {"api": "select, insert"},
}


def role(process: str) -> str:
    """The database role of a platform process (`api` -> `custody_api`)."""
    if process not in PROCESSES:
        raise ValueError(f"no database role for process {process!r}")
    return PREFIX + process


def roles() -> list[str]:
    return [role(p) for p in PROCESSES]


def grants_for(process: str) -> dict[str, str]:
    """table -> privileges of one process (what the table above says)."""
    return {table: by[process] for table, by in TABLES.items() if process in by}


def apply_grants(conn: Connection[Any]) -> list[str]:
    """Make every existing process role's privileges in this database exactly what
    TABLES says (revoke everything, grant the listed), in one transaction; run by the
    owner after each migration. Roles that do not exist (a cluster bootstrapped before
    roles existed) and tables not created yet are skipped; returns the roles granted."""
    present = {
        r[0] for r in conn.execute("select rolname from pg_roles where rolname like 'custody\\_%'")
    }
    tables = {
        r[0]
        for r in conn.execute(
            "select tablename from pg_tables where schemaname = 'public'"
        ).fetchall()
    }
    done = []
    with conn.transaction():
        for process in PROCESSES:
            name = role(process)
            if name not in present:
                continue
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("revoke all on all tables in schema public from {}").format(ident))
            conn.execute(
                sql.SQL("revoke all on all sequences in schema public from {}").format(ident)
            )
            for table, privileges in grants_for(process).items():
                if table not in tables:
                    continue
                # Privileges come from the constant above, never from input.
                conn.execute(
                    sql.SQL("grant " + privileges + " on table {} to {}").format(
                        sql.Identifier(table), ident
                    )
                )
            done.append(name)
    return done


def role_url(owner_url: str, process: str, passfile: str) -> str:
    """The owner's URL (same host, port and database) as the process's role, whose
    password libpq reads from `passfile` (a 0600 pgpass file): no secret in the URL."""
    parts = urlsplit(owner_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("passfile", "user")]
    query.append(("passfile", passfile))
    return urlunsplit(
        (
            parts.scheme,
            f"{role(process)}@{host}",
            parts.path,
            urlencode(query, safe="/", quote_via=quote),
            parts.fragment,
        )
    )
