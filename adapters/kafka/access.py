"""Who may do what on the platform's Kafka: one SCRAM principal per process, and the
least-privilege ACLs each needs (deny by default: the brokers run the StandardAuthorizer
with allow.everyone.if.no.acl.found=false).

The table is the platform's, not the local stack's: a production cluster applies the
same bindings (`apply_acls` with an admin client). Read it with the code of each process:
the API streams the events topic (SSE); the router consumes commands and events and
answers commands on the events topic; the relay publishes the outbox (events, alerts);
the audit writer chains the events topic into the audit topic in transactions; the
projector folds events into the compacted balances topic; the bank's systems write
commands and read their answers; the auditor reads the audit chain. The worker and
the chain watchers reach Kafka only through the database outbox, so they may do
nothing on Kafka at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from sagas.errors import DependencyUnavailable
from sagas.topics import ALERTS, ALL, AUDIT, BALANCES, COMMANDS, EVENTS

# One principal per process; `bank` stands for the bank's own systems.
PRINCIPALS = (
    "api",
    "worker",
    "router",
    "relay",
    "audit",
    "chainwatch",
    "projector",
    "bank",
    "auditor",
)
AUDIT_TRANSACTIONAL_ID = "custody-audit-writer"
SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Grant:
    principal: str
    resource: str  # "topic" | "group" | "transactional_id"
    name: str
    operation: str  # "read" | "write" | "describe"
    prefixed: bool = False


def _topic(principal: str, operation: str, *names: str) -> list[Grant]:
    return [Grant(principal, "topic", name, operation) for name in names]


def _group(principal: str, prefix: str) -> Grant:
    return Grant(principal, "group", prefix, "read", prefixed=True)


def grants() -> list[Grant]:
    """Every ACL the platform's principals hold (anything not here is denied)."""
    out: list[Grant] = []
    # Every process that starts a Kafka client checks the platform's topics exist
    # (ensure_topics): metadata only, never their records.
    for principal in ("api", "router", "relay", "audit", "projector", "bank", "auditor"):
        out += _topic(principal, "describe", *(t.name for t in ALL))
    # API: the SSE stream of a client's events (assigned partitions, a fresh group id).
    out += _topic("api", "read", EVENTS.name)
    out.append(_group("api", "custody-sse-"))
    # Router: bank commands and chain events in; answers to commands out.
    out += _topic("router", "read", COMMANDS.name, EVENTS.name)
    out += _topic("router", "write", EVENTS.name)
    out.append(_group("router", "custody-router"))
    # Relay: the ledger outbox (its rows name events or alerts).
    out += _topic("relay", "write", EVENTS.name, ALERTS.name)
    # Audit writer: events in, the chain out, offsets in the same transaction.
    out += _topic("audit", "read", EVENTS.name, AUDIT.name)
    out += _topic("audit", "write", AUDIT.name)
    out.append(_group("audit", "custody-audit"))  # also custody-audit-reader
    out += [
        Grant("audit", "transactional_id", AUDIT_TRANSACTIONAL_ID, op)
        for op in ("write", "describe")
    ]
    # Projector: events in, balances out (a fresh group per start).
    out += _topic("projector", "read", EVENTS.name)
    out += _topic("projector", "write", BALANCES.name)
    out.append(_group("projector", "custody-projector-"))
    # The bank: the only writer of commands; reads the answers and its clients' events.
    out += _topic("bank", "write", COMMANDS.name)
    out += _topic("bank", "read", EVENTS.name)
    out.append(_group("bank", "bank-"))
    # Auditors and regulators: the audit chain, nothing else.
    out += _topic("auditor", "read", AUDIT.name)
    out.append(_group("auditor", "custody-audit-reader"))
    return out


_RESOURCE = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional_id": ResourceType.TRANSACTIONAL_ID,
}
_OPERATION = {
    "read": AclOperation.READ,
    "write": AclOperation.WRITE,
    "describe": AclOperation.DESCRIBE,
}


def binding(grant: Grant) -> AclBinding:
    return AclBinding(
        _RESOURCE[grant.resource],
        grant.name,
        ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
        f"User:{grant.principal}",
        "*",
        _OPERATION[grant.operation],
        AclPermissionType.ALLOW,
    )


def apply_acls(admin: AdminClient, wanted: Iterable[Grant] | None = None) -> int:
    """Create the bindings (creating an existing binding is a no-op); returns how many."""
    bindings = [binding(g) for g in (grants() if wanted is None else wanted)]
    for acl, future in admin.create_acls(bindings, request_timeout=30).items():
        try:
            future.result()
        except KafkaException as exc:
            raise DependencyUnavailable(f"kafka: create ACL {acl}: {exc}") from exc
    return len(bindings)


def upsert_users(admin: AdminClient, passwords: dict[str, str]) -> None:
    """Create or reset SCRAM-SHA-256 credentials (user -> password); idempotent."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, SCRAM_ITERATIONS)
    alterations: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(user, info, password.encode())
        for user, password in passwords.items()
    ]
    for user, future in admin.alter_user_scram_credentials(alterations).items():
        try:
            future.result()
        except KafkaException as exc:
            # The error names the user, never the password.
            raise DependencyUnavailable(f"kafka: SCRAM credentials of {user}: {exc}") from exc
