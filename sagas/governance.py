"""What governance says now: the registered operator and client keys, the active policy
of each client and asset, and the quorum a governance change needs.

The signer never takes these from a table another process can write: it reads them
from a view (`Governance`) that has verified every governance record from the
genesis quorum created at install (issue 12, decisions 0012 and 0014): `replay`
below. Nothing here does I/O.

A governance record is an `Intent` of a governance kind whose payload holds the
record it installs, its position (`seq`), the hash of the record before it (`prev`;
the genesis hash for the first) and who proposed it. The approvals sign the intent
hash, so they commit to the order: a database writer can neither reorder records nor
drop one in the middle without breaking the next one's link.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from sagas.intents import (
    _MINOR_UNITS,
    GOVERNANCE_KINDS,
    Approval,
    Intent,
    Quorum,
    RegisteredKey,
    UtcSeconds,
    _aware,
    count_approvals,
)
from sagas.policy import PolicyRules, StoredPolicy

# Policy holders that are not clients (reserved: no client may take these ids).
# DEFAULT_POLICY: the rules for a client and asset without rules of their own;
# SETTLEMENT_POLICY: what the platform's own settlement legs are held to (the
# counterparties' settlement addresses as an allow-list, limits, a quorum).
DEFAULT_POLICY = "default"
SETTLEMENT_POLICY = "settlement"
RESERVED_HOLDERS = frozenset({DEFAULT_POLICY, SETTLEMENT_POLICY})


def effective_policy(governance: Governance, client_id: str, asset: str) -> StoredPolicy | None:
    """The client's own policy for the asset, else governance's default for the asset,
    else None: no policy, so nothing is paid (deny by default)."""
    return governance.policy(client_id, asset) or governance.policy(DEFAULT_POLICY, asset)


class Governance(Protocol):
    """The verified governance state, as of its latest record."""

    def operators(self) -> Mapping[str, RegisteredKey]:
        """key id -> operator key (owner: the operator's name)."""

    def client_keys(self) -> Mapping[str, RegisteredKey]:
        """key id -> client system key (owner: the client id)."""

    def counterparty_keys(self) -> Mapping[str, RegisteredKey]:
        """key id -> a liquidity provider's settlement-confirmation key (owner: the
        counterparty's name)."""

    def policy(self, client_id: str, asset: str) -> StoredPolicy | None:
        """The client's active policy for the asset; None: no policy (refused)."""

    def quorum(self) -> int:
        """How many operators (other than the proposer) approve a governance change."""


class ChainedGovernance(Protocol):
    """What the signer reads governance through: one verified state per decision, and the
    chain's records as stored now (the signer refuses a chain shorter than one it
    verified before: a rollback)."""

    def snapshot(self) -> VerifiedGovernance:
        """The state verified from the genesis, once: every check of one decision reads
        this one state (a record deleted meanwhile cannot change half of them)."""

    def record_hash(self, seq: int) -> str | None:
        """The hash of the record at `seq` as stored now (None: there is none)."""


@dataclass
class StaticGovernance:
    """A fixed governance state (fast tiers and tests)."""

    operator_keys: dict[str, RegisteredKey] = field(default_factory=dict)
    client_key_map: dict[str, RegisteredKey] = field(default_factory=dict)
    policies: dict[tuple[str, str], StoredPolicy] = field(default_factory=dict)
    governance_quorum: int = 2
    counterparty_key_map: dict[str, RegisteredKey] = field(default_factory=dict)

    def operators(self) -> Mapping[str, RegisteredKey]:
        return self.operator_keys

    def client_keys(self) -> Mapping[str, RegisteredKey]:
        return self.client_key_map

    def counterparty_keys(self) -> Mapping[str, RegisteredKey]:
        return self.counterparty_key_map

    def policy(self, client_id: str, asset: str) -> StoredPolicy | None:
        return self.policies.get((client_id, asset))

    def quorum(self) -> int:
        return self.governance_quorum

    def snapshot(self) -> VerifiedGovernance:
        """This fixed state as a verified one with no records (head "static")."""
        return VerifiedGovernance(
            genesis_hash="static",
            head="static",
            seq=0,
            applied_at=datetime(2026, 1, 1, tzinfo=UTC),
            operator_keys=MappingProxyType(dict(self.operator_keys)),
            client_key_map=MappingProxyType(dict(self.client_key_map)),
            policies=MappingProxyType(dict(self.policies)),
            bank_accounts=MappingProxyType({}),
            governance_quorum=self.governance_quorum,
            counterparty_key_map=MappingProxyType(dict(self.counterparty_key_map)),
        )

    def record_hash(self, seq: int) -> str | None:
        return None


# --- the signed chain of governance records (issue 12 point 5, decision 0014) ---------

GENESIS_VERSION: Final = "custody.governance.genesis.v1"
# Domain-separated like intent hashes: a genesis hash is never the hash of anything else.
GENESIS_DOMAIN = b"custody.governance.genesis.v1\n"
# Four-eyes: at least two operators' signatures, whoever the proposer claims to be.
MIN_QUORUM = 2
_NAME = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_PUBKEY_HEX = r"^[0-9a-f]{64}$"
_IBAN = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")
_BIC = re.compile(r"[A-Z0-9]{8}([A-Z0-9]{3})?")


class OperatorEntry(BaseModel):
    """An operator named in the genesis: a name and a raw Ed25519 public key (hex)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(pattern=_NAME)
    public_key: str = Field(pattern=_PUBKEY_HEX)

    def registered(self) -> RegisteredKey:
        return RegisteredKey.of(self.name, bytes.fromhex(self.public_key))


class Genesis(BaseModel):
    """The install-time root of governance: the first operators and the quorum. Its hash
    is pinned in settings (CUSTODY_GOVERNANCE_GENESIS_HASH), never read from a table."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    version: Literal["custody.governance.genesis.v1"] = GENESIS_VERSION
    operators: tuple[OperatorEntry, ...] = Field(min_length=MIN_QUORUM)
    quorum: int = Field(ge=MIN_QUORUM, le=10)
    created_at: UtcSeconds

    @model_validator(mode="after")
    def _sound(self) -> Genesis:
        names = [o.name for o in self.operators]
        keys = [o.public_key for o in self.operators]
        if len(set(names)) != len(names) or len(set(keys)) != len(keys):
            raise ValueError("each operator and each key appears once in the genesis")
        if self.quorum > len(set(names)):
            raise ValueError("the quorum exceeds the number of operators: nothing could pass")
        return self

    def canonical(self) -> bytes:
        fields: Any = self.model_dump(mode="json")
        return rfc8785.dumps(fields)

    def hash(self) -> str:
        return hashlib.sha256(GENESIS_DOMAIN + self.canonical()).hexdigest()


class GovernanceRecord(BaseModel):
    """One applied governance change: the intent (whose payload links to the previous
    record's hash) and the approvals that made it pass. Its hash is the intent hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=1)
    intent: Intent
    approvals: tuple[Approval, ...]
    applied_at: UtcSeconds

    def hash(self) -> str:
        return self.intent.hash()


ProposalState = Literal["pending", "applied", "refused"]


class Proposal(BaseModel):
    """A governance change waiting for (or done with) its quorum."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(examples=["gp-3f2a9c1b0d4e5f60"])
    kind: str = Field(examples=["policy_change"])
    state: ProposalState
    intent: Intent = Field(description="what the operators sign (its hash)")
    intent_hash: str
    proposed_by: str
    approvals: tuple[Approval, ...] = ()
    reason: str | None = Field(default=None, description="refused: why")
    seq: int | None = Field(default=None, description="applied: the record's position")
    created_at: datetime | None = None
    updated_at: datetime | None = None


def change_intent(
    kind: str,
    *,
    seq: int,
    prev: str,
    proposed_by: str,
    record: dict[str, JsonValue],
    expires_at: datetime,
    client_id: str | None = None,
    asset: str = "",
    policy_version: int = 0,
    proposal_id: str = "",
) -> Intent:
    """The intent of one governance change, linked to the record before it (`prev`, the
    genesis hash for the first) at position `seq`: approvals commit to the order."""
    payload: dict[str, JsonValue] = {
        "seq": seq,
        "prev": prev,
        "proposed_by": proposed_by,
        "record": record,
    }
    return Intent.model_validate(
        {
            "kind": kind,
            "operation_id": f"gov:{proposal_id or seq}",
            "client_id": client_id,
            "asset": asset,
            "amount": 0,
            "destination": "",
            "fee_cap": 0,
            "policy_version": policy_version,
            "expires_at": expires_at.replace(microsecond=0),
            "payload": payload,
        },
        strict=False,
    )


def policy_record(rules: PolicyRules) -> dict[str, JsonValue]:
    """The JSON a policy_change installs: amounts as strings (wei exceed 2**53), the
    allow-list sorted (one form per policy)."""

    def amount(v: int | None) -> JsonValue:
        return None if v is None else str(v)

    return {
        "per_transaction_limit": amount(rules.per_transaction_limit),
        "daily_velocity_limit": amount(rules.daily_velocity_limit),
        "allow_list_required": rules.allow_list_required,
        "allowed_destinations": list[JsonValue](sorted(rules.allowed_destinations)),
        "approval_threshold": amount(rules.approval_threshold),
        "approval_quorum": rules.approval_quorum,
        "screening_required": rules.screening_required,
    }


def rules_from_record(client_id: str, asset: str, record: Mapping[str, Any]) -> PolicyRules:
    def amount(v: Any) -> int | None:
        if v is None:
            return None
        if not isinstance(v, str) or not _MINOR_UNITS.fullmatch(v):
            raise ValueError(f"not an amount in minor units: {v!r}")
        return int(v)

    if set(record) != set(policy_record(PolicyRules(client_id="x", asset="x"))):
        raise ValueError("a policy record has exactly the policy's fields")
    destinations = record["allowed_destinations"]
    if not isinstance(destinations, list) or not all(isinstance(d, str) for d in destinations):
        raise ValueError("allowed_destinations is a list of strings")
    return PolicyRules.model_validate(
        {
            "client_id": client_id,
            "asset": asset,
            "per_transaction_limit": amount(record["per_transaction_limit"]),
            "daily_velocity_limit": amount(record["daily_velocity_limit"]),
            "allow_list_required": record["allow_list_required"],
            "allowed_destinations": frozenset(destinations),
            "approval_threshold": amount(record["approval_threshold"]),
            "approval_quorum": record["approval_quorum"],
            "screening_required": record["screening_required"],
        }
    )


@dataclass(frozen=True)
class BankAccount:
    iban: str
    bic: str
    version: int


@dataclass(frozen=True)
class ReplayFailure:
    """Why verification stopped: the record (its position) and the reason."""

    seq: int
    reason: str

    def __str__(self) -> str:
        return f"governance record {self.seq}: {self.reason}"


class RecordRefused(ValueError):
    """A governance record that does not follow from the state before it."""


@dataclass(frozen=True)
class VerifiedGovernance:
    """The governance state after verifying every record from the genesis, in order.
    Implements `Governance`. `failure` says where verification stopped, if it did: the
    state is then the one before that record (later records count for nothing)."""

    genesis_hash: str
    head: str  # the hash of the last verified record (the genesis hash if none)
    seq: int  # how many records are verified
    applied_at: datetime
    operator_keys: Mapping[str, RegisteredKey]
    client_key_map: Mapping[str, RegisteredKey]
    policies: Mapping[tuple[str, str], StoredPolicy]
    bank_accounts: Mapping[str, BankAccount]
    governance_quorum: int
    failure: ReplayFailure | None = None
    # Every version each policy had, oldest first (what past decisions were taken under).
    policy_history: Mapping[tuple[str, str], tuple[StoredPolicy, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    counterparty_key_map: Mapping[str, RegisteredKey] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @classmethod
    def of_genesis(cls, genesis: Genesis) -> VerifiedGovernance:
        keys = [o.registered() for o in genesis.operators]
        return cls(
            genesis_hash=genesis.hash(),
            head=genesis.hash(),
            seq=0,
            applied_at=genesis.created_at,
            operator_keys=MappingProxyType({k.key_id: k for k in keys}),
            client_key_map=MappingProxyType({}),
            policies=MappingProxyType({}),
            bank_accounts=MappingProxyType({}),
            governance_quorum=genesis.quorum,
        )

    # Governance
    def operators(self) -> Mapping[str, RegisteredKey]:
        return self.operator_keys

    def client_keys(self) -> Mapping[str, RegisteredKey]:
        return self.client_key_map

    def counterparty_keys(self) -> Mapping[str, RegisteredKey]:
        return self.counterparty_key_map

    def policy(self, client_id: str, asset: str) -> StoredPolicy | None:
        return self.policies.get((client_id, asset))

    def quorum(self) -> int:
        return self.governance_quorum

    # beyond the Protocol
    def bank_account(self, client_id: str) -> BankAccount | None:
        return self.bank_accounts.get(client_id)

    def operator_names(self) -> frozenset[str]:
        return frozenset(k.owner for k in self.operator_keys.values())

    def policy_version(self, client_id: str, asset: str, version: int) -> StoredPolicy | None:
        """A given version of the policy, current or past."""
        found = [p for p in self.policy_history.get((client_id, asset), ()) if p.version == version]
        return found[0] if found else None

    def next_policy_version(self, client_id: str, asset: str) -> int:
        current = self.policy(client_id, asset)
        return 1 if current is None else current.version + 1

    def installs(self, intent: Intent, at: datetime) -> VerifiedGovernance:
        """The state `intent`'s record would make, quorum aside: RecordRefused if the
        record itself could not follow this state (checked before anyone signs)."""
        record = GovernanceRecord.model_construct(
            seq=self.seq + 1, intent=intent, approvals=(), applied_at=at
        )
        return _installed(self, record)

    def check(self, record: GovernanceRecord, now: datetime) -> Quorum:
        """The quorum of `record` if it follows from this state; RecordRefused if not."""
        if self.failure is not None:
            raise RecordRefused(f"the chain is broken before it ({self.failure})")
        intent = record.intent
        if intent.kind not in GOVERNANCE_KINDS:
            raise RecordRefused(f"{intent.kind} is not a governance kind")
        payload = intent.payload or {}
        if set(payload) != {"seq", "prev", "proposed_by", "record"}:
            raise RecordRefused("the payload is not seq, prev, proposed_by and record")
        seq = payload["seq"]
        if isinstance(seq, bool) or record.seq != self.seq + 1 or seq != record.seq:
            raise RecordRefused(f"out of order: expected record {self.seq + 1}")
        if payload["prev"] != self.head:
            raise RecordRefused("its prev is not the hash of the record before it")
        if record.applied_at < self.applied_at or record.applied_at > _aware(now):
            raise RecordRefused("applied before the record it follows, or in the future")
        proposer = payload["proposed_by"]
        if not isinstance(proposer, str) or not proposer:
            raise RecordRefused("no proposer")
        # Expiry against the time it was applied: every intent has expired by a later
        # replay. Approvals are counted by the operators registered before this record.
        quorum = count_approvals(
            intent, record.approvals, self.operator_keys, proposer, record.applied_at
        )
        if not quorum.met(self.governance_quorum):
            reasons = sorted({r.reason.value for r in quorum.refused})
            raise RecordRefused(
                f"{len(quorum.counted)} valid approval(s) of {self.governance_quorum} needed"
                + (f" (refused: {', '.join(reasons)})" if reasons else "")
            )
        return quorum

    def apply(self, record: GovernanceRecord, now: datetime) -> VerifiedGovernance:
        """This state with `record` applied; RecordRefused if it does not follow."""
        self.check(record, now)
        changed = _installed(self, record)
        return replace(changed, head=record.hash(), seq=record.seq, applied_at=record.applied_at)

    def extend(self, records: Iterable[GovernanceRecord], now: datetime) -> VerifiedGovernance:
        """Apply records in order; stop at the first that does not follow, naming it."""
        state = self
        for record in records:
            if state.failure is not None:
                break
            try:
                state = state.apply(record, now)
            except (RecordRefused, ValueError, KeyError, TypeError) as exc:
                state = replace(state, failure=ReplayFailure(record.seq, str(exc)))
        return state


def replay(
    genesis: Genesis, records: Iterable[GovernanceRecord], now: datetime
) -> VerifiedGovernance:
    """Verify every record from the genesis, in order: each links to the one before, and
    is approved by a quorum of operators registered before it, other than its proposer,
    before it expired. Stops at the first that does not hold (`failure` names it)."""
    return VerifiedGovernance.of_genesis(genesis).extend(records, now)


def _str(record: Mapping[str, Any], name: str, pattern: str | None = None) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise RecordRefused(f"{name} is a non-empty string")
    if pattern is not None and not re.fullmatch(pattern, value):
        raise RecordRefused(f"{name} is malformed")
    return value


def _installed(state: VerifiedGovernance, record: GovernanceRecord) -> VerifiedGovernance:
    intent = record.intent
    payload = intent.payload or {}
    body = payload["record"]
    if not isinstance(body, dict):
        raise RecordRefused("the record is an object")
    proposer = str(payload["proposed_by"])
    client = intent.client_id
    if intent.kind == "operator_key_change":
        return _operator_change(state, body)
    if not client:
        raise RecordRefused(f"a {intent.kind} names its client")
    if client in RESERVED_HOLDERS and intent.kind in (
        "bank_account_change",
        "client_key_change",
        "counterparty_key_change",
    ):
        # `default` and `settlement` hold policies only: a key registered to one could
        # sign withdrawals of a client that does not exist.
        raise RecordRefused(f"{client} is reserved for governance's policies")
    if intent.kind == "policy_change":
        if not intent.asset:
            raise RecordRefused("a policy_change names its asset")
        version = state.next_policy_version(client, intent.asset)
        if intent.policy_version != version:
            raise RecordRefused(
                f"it installs policy version {intent.policy_version}, not {version}"
            )
        rules = rules_from_record(client, intent.asset, body)
        return _with_policy(state, rules, version, proposer, record.applied_at)
    if intent.kind == "allow_list_change":
        current = state.policy(client, intent.asset)
        if current is None:
            raise RecordRefused("an allow-list entry needs a policy for the client and asset")
        version = current.version + 1
        if intent.policy_version != version:
            raise RecordRefused(
                f"it installs policy version {intent.policy_version}, not {version}"
            )
        action = _str(body, "action")
        destination = _str(body, "destination")
        if set(body) != {"action", "destination"} or action not in ("add", "remove"):
            raise RecordRefused("an allow-list change is {action: add|remove, destination}")
        listed = set(current.rules.allowed_destinations)
        listed = listed | {destination} if action == "add" else listed - {destination}
        rules = current.rules.model_copy(update={"allowed_destinations": frozenset(listed)})
        return _with_policy(state, rules, version, proposer, record.applied_at)
    if intent.kind == "bank_account_change":
        if set(body) != {"iban", "bic"}:
            raise RecordRefused("a bank account record is {iban, bic}")
        iban, bic = _str(body, "iban"), _str(body, "bic")
        if not _IBAN.fullmatch(iban) or not _BIC.fullmatch(bic):
            raise RecordRefused("not an IBAN and a BIC")
        old = state.bank_accounts.get(client)
        account = BankAccount(iban, bic, 1 if old is None else old.version + 1)
        return replace(
            state, bank_accounts=MappingProxyType({**state.bank_accounts, client: account})
        )
    if intent.kind == "client_key_change":
        keys = _key_change(state, state.client_key_map, client, body, "client")
        return replace(state, client_key_map=keys)
    if intent.kind == "counterparty_key_change":
        # `client` names the liquidity provider whose settlement confirmations the key
        # signs (what the signer holds each of the platform's settlement legs to).
        keys = _key_change(state, state.counterparty_key_map, client, body, "counterparty")
        return replace(state, counterparty_key_map=keys)
    raise RecordRefused(f"unknown governance kind {intent.kind}")


def _key_change(
    state: VerifiedGovernance,
    current: Mapping[str, RegisteredKey],
    owner: str,
    body: Mapping[str, Any],
    role: str,
) -> Mapping[str, RegisteredKey]:
    """A client's or a counterparty's key registry after `{action: add|remove,
    public_key}`: a key added once, in one role only; one removed only if it is there."""
    action = _str(body, "action")
    if set(body) != {"action", "public_key"} or action not in ("add", "remove"):
        raise RecordRefused(f"a {role} key change is {{action: add|remove, public_key}}")
    key = RegisteredKey.of(owner, bytes.fromhex(_str(body, "public_key", _PUBKEY_HEX)))
    keys = dict(current)
    if action == "add":
        if _registered(state, key.key_id):
            raise RecordRefused("this key is registered already")
        keys[key.key_id] = key
    else:
        if keys.get(key.key_id) != key:
            raise RecordRefused(f"the {role} has no such key")
        del keys[key.key_id]
    return MappingProxyType(keys)


def _registered(state: VerifiedGovernance, kid: str) -> bool:
    """One key, one role: a key already registered to an operator, a client or a
    counterparty is not registered again."""
    return (
        kid in state.operator_keys
        or kid in state.client_key_map
        or kid in state.counterparty_key_map
    )


def _with_policy(
    state: VerifiedGovernance, rules: PolicyRules, version: int, by: str, at: datetime
) -> VerifiedGovernance:
    stored = StoredPolicy(rules=rules, version=version, created_by=by, created_at=at)
    where = (rules.client_id, rules.asset)
    policies = {**state.policies, where: stored}
    history = {**state.policy_history, where: (*state.policy_history.get(where, ()), stored)}
    return replace(
        state, policies=MappingProxyType(policies), policy_history=MappingProxyType(history)
    )


def _operator_change(state: VerifiedGovernance, body: Mapping[str, Any]) -> VerifiedGovernance:
    action = _str(body, "action")
    keys = dict(state.operator_keys)
    quorum = state.governance_quorum
    if action == "add":
        if set(body) != {"action", "name", "public_key"}:
            raise RecordRefused("adding an operator key is {action, name, public_key}")
        name = _str(body, "name", _NAME)
        key = RegisteredKey.of(name, bytes.fromhex(_str(body, "public_key", _PUBKEY_HEX)))
        if _registered(state, key.key_id):
            raise RecordRefused("this key is registered already")
        keys[key.key_id] = key
    elif action == "remove":
        if set(body) != {"action", "name"}:
            raise RecordRefused("removing an operator is {action, name}")
        name = _str(body, "name", _NAME)
        if name not in state.operator_names():
            raise RecordRefused(f"{name} is not an operator")
        keys = {k: v for k, v in keys.items() if v.owner != name}
    elif action == "set_quorum":
        if set(body) != {"action", "quorum"}:
            raise RecordRefused("a quorum change is {action, quorum}")
        value = body["quorum"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordRefused("the quorum is an integer")
        quorum = value
    else:
        raise RecordRefused("an operator change is add, remove or set_quorum")
    if not MIN_QUORUM <= quorum <= 10:
        raise RecordRefused(f"the quorum is between {MIN_QUORUM} and 10")
    if quorum > len({k.owner for k in keys.values()}):
        # Refused rather than applied: governance could never change again.
        raise RecordRefused("fewer operators would remain than the quorum")
    return replace(state, operator_keys=MappingProxyType(keys), governance_quorum=quorum)
