"""Governance on SQL: the genesis, proposals with the approvals collected, and the chain of
applied records, each change committed with its events (transactional outbox).

The tables are not trusted: every read replays the chain from the genesis whose hash
the store was given (settings, never a table), so a row written straight into a table
counts for nothing unless a quorum of registered operators signed it in that place of
the chain. Writes are serialised (an advisory lock on PostgreSQL; SQLite's write lock).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import JsonValue

from adapters.ledger.migrate import upgrade
from adapters.ledger.outbox import emit
from adapters.sqldb import Conn, SqlDatabase
from sagas.errors import (
    ApprovalByProposer,
    ApprovalOfOtherIntent,
    ApprovalRefused,
    ApprovalSignatureInvalid,
    GovernanceRecordRefused,
    GovernanceUnverified,
    InvalidState,
    NotFound,
    ProposalExpired,
    ProposalStale,
)
from sagas.events import Envelope
from sagas.governance import (
    Genesis,
    GovernanceRecord,
    Proposal,
    RecordRefused,
    ReplayFailure,
    VerifiedGovernance,
    change_intent,
    effective_policy,
)
from sagas.governance_events import SOURCE, SUBJECT, event_type
from sagas.intents import Approval, Intent, Refusal, RegisteredKey, count_approvals
from sagas.policy import PolicyRules, StoredPolicy
from sagas.topics import EVENTS

DEFAULT_TTL = timedelta(hours=24)
_LOCK = "governance"


class _Race(Exception):
    pass


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _event(proposal_id: str, step: str, tail: str = "", **data: Any) -> Envelope:
    return Envelope(
        id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{proposal_id}/{step}{tail}")),
        source=SOURCE,
        type=event_type(step),
        subject=SUBJECT,
        data={k: v for k, v in data.items() if v is not None},
    )


class SqlGovernanceStore:
    """Proposals and the applied chain; `state()` is the verified governance."""

    def __init__(self, url: str, genesis_hash: str, migrate: bool = True) -> None:
        if migrate:
            upgrade(url)
        self._db = SqlDatabase(url, on_integrity=lambda exc: _Race(str(exc)))
        self._genesis_hash = genesis_hash
        self._cache: tuple[tuple[str, ...], VerifiedGovernance] | None = None
        self._cache_lock = threading.Lock()
        self._tip: tuple[tuple[int, Any, Any], VerifiedGovernance] | None = None

    def __repr__(self) -> str:
        return f"SqlGovernanceStore({self._db.kind})"

    # --- the genesis ------------------------------------------------------------------
    def install_genesis(self, genesis: Genesis) -> str:
        """Write the genesis (once) and return its hash. InvalidState if another genesis
        is installed in this database already."""

        def work(conn: Conn) -> str:
            rows = conn.all("select hash from governance_genesis")
            if rows and rows[0][0] != genesis.hash():
                raise InvalidState("this database has another governance genesis")
            if not rows:
                conn.run(
                    "insert into governance_genesis (hash, body, created_at) values (?, ?, ?)",
                    (genesis.hash(), genesis.model_dump_json(), conn.time(genesis.created_at)),
                )
            return genesis.hash()

        return self._db.write(work)

    def _genesis(self, conn: Conn) -> Genesis:
        if not self._genesis_hash:
            raise GovernanceUnverified(
                "no genesis hash is pinned (CUSTODY_GOVERNANCE_GENESIS_HASH)"
            )
        row = conn.one("select body from governance_genesis where hash = ?", (self._genesis_hash,))
        if row is None:
            raise GovernanceUnverified(f"no genesis {self._genesis_hash[:16]}... in the database")
        genesis = Genesis.model_validate_json(row[0])
        if genesis.hash() != self._genesis_hash:  # the row's key is not evidence
            raise GovernanceUnverified("the stored genesis does not hash to the pinned hash")
        return genesis

    # --- the verified state -----------------------------------------------------------
    def _state(self, conn: Conn) -> VerifiedGovernance:
        # Cheap when nothing was applied since the last read (every request asks): the
        # chain's length and last record name the verified state already held.
        tip = conn.one(
            "select count(*), max(seq), max(case when seq = (select max(seq) from "
            "governance_records) then intent_hash end) from governance_records"
        )
        key = (int(tip[0]), tip[1], tip[2])
        with self._cache_lock:
            held = self._tip
        if held is not None and held[0] == key:
            return held[1]
        genesis = self._genesis(conn)
        bodies = tuple(
            str(r[0]) for r in conn.all("select body from governance_records order by seq")
        )
        now = datetime.now(UTC)
        with self._cache_lock:
            cached = self._cache
        if cached is not None and bodies[: len(cached[0])] == cached[0]:
            known, state = cached
        else:
            known, state = (), VerifiedGovernance.of_genesis(genesis)
        records = []
        for body in bodies[len(known) :]:
            try:
                records.append(GovernanceRecord.model_validate_json(body))
            except ValueError:
                # Not even a record: verification stops there, as at a bad signature.
                broken = ReplayFailure(state.seq + len(records) + 1, "not a governance record")
                state = replace(state.extend(records, now), failure=state.failure or broken)
                return state
        state = state.extend(records, now) if records else state
        if state.failure is None:
            with self._cache_lock:
                self._cache = (bodies, state)
                self._tip = (key, state)
        return state

    def state(self) -> VerifiedGovernance:
        """The governance verified from the pinned genesis. GovernanceUnverified if the
        genesis is missing; a chain broken by a bad record stops there (`failure`)."""
        with self._db.tx() as conn:
            return self._state(conn)

    # --- proposals --------------------------------------------------------------------
    def propose(
        self,
        kind: str,
        record: dict[str, JsonValue],
        proposed_by: str,
        client_id: str | None = None,
        asset: str = "",
        ttl: timedelta = DEFAULT_TTL,
    ) -> Proposal:
        """A pending proposal linked to the current head of the chain, with its event.
        RequestInvalid if the record could never apply to the current state."""
        proposal_id = f"gp-{uuid.uuid4().hex[:16]}"

        def work(conn: Conn) -> Proposal:
            self._lock(conn)
            state = self._state(conn)
            if state.failure is not None:
                raise InvalidState(f"governance is stopped at {state.failure}")
            now = _now()
            version = 0
            if kind == "policy_change" and client_id:
                version = state.next_policy_version(client_id, asset)
            elif kind == "allow_list_change" and client_id:
                current = state.policy(client_id, asset)
                version = 0 if current is None else current.version + 1
            try:
                intent = change_intent(
                    kind,
                    seq=state.seq + 1,
                    prev=state.head,
                    proposed_by=proposed_by,
                    record=record,
                    expires_at=now + ttl,
                    client_id=client_id,
                    asset=asset,
                    policy_version=version,
                    proposal_id=proposal_id,
                )
                state.installs(intent, now)
            except (RecordRefused, ValueError) as exc:
                raise GovernanceRecordRefused(f"this {kind} cannot apply: {exc}") from None
            conn.run(
                "insert into governance_proposals (id, kind, intent, intent_hash, proposed_by, "
                "state, created_at, updated_at) values (?, ?, ?, ?, ?, 'pending', ?, ?)",
                (
                    proposal_id,
                    kind,
                    intent.canonical().decode(),
                    intent.hash(),
                    proposed_by,
                    conn.time(now),
                    conn.time(now),
                ),
            )
            emit(
                conn,
                EVENTS.name,
                [
                    _event(
                        proposal_id,
                        "proposed",
                        kind=kind,
                        intent_hash=intent.hash(),
                        proposed_by=proposed_by,
                        client_id=client_id,
                        asset=asset or None,
                        intent=intent.canonical().decode(),
                    )
                ],
            )
            return self._proposal(conn, proposal_id)

        return self._db.write(work, retry_on=(_Race,))

    def proposal(self, proposal_id: str) -> Proposal | None:
        with self._db.tx() as conn:
            try:
                return self._proposal(conn, proposal_id)
            except NotFound:
                return None

    def _proposal(self, conn: Conn, proposal_id: str) -> Proposal:
        row = conn.one(
            "select id, kind, intent, intent_hash, proposed_by, state, reason, record_seq, "
            "created_at, updated_at from governance_proposals where id = ?",
            (proposal_id,),
        )
        if row is None:
            raise NotFound(f"proposal {proposal_id}")
        approvals = conn.all(
            "select approval from governance_approvals where proposal_id = ? "
            "order by created_at, key_id",
            (proposal_id,),
        )
        return Proposal(
            id=row[0],
            kind=row[1],
            intent=Intent.from_json(row[2]),
            intent_hash=row[3],
            proposed_by=row[4],
            state=row[5],
            reason=row[6],
            seq=row[7],
            approvals=tuple(Approval.model_validate_json(a[0]) for a in approvals),
            created_at=Conn.read_time(row[8]),
            updated_at=Conn.read_time(row[9]),
        )

    def _lock(self, conn: Conn) -> None:
        if not conn.sqlite:  # SQLite writers are serialised already (BEGIN IMMEDIATE)
            conn.one("select pg_advisory_xact_lock(hashtextextended(?, 0))", (_LOCK,))

    def approve(self, proposal_id: str, approval: Approval) -> Proposal:
        """Record one operator's approval, and apply the proposal once its quorum is met:
        in one transaction with the events. Refusals: ApprovalOfOtherIntent,
        ApprovalSignatureInvalid, ApprovalByProposer, ApprovalRefused (the operator
        approved already), ProposalExpired and ProposalStale (the proposal is refused for
        good, and that is recorded), InvalidState (not pending)."""
        outcome: list[Exception] = []

        def work(conn: Conn) -> Proposal:
            outcome.clear()
            self._lock(conn)
            proposal = self._proposal(conn, proposal_id)
            intent = proposal.intent
            if approval in proposal.approvals:
                return proposal  # a retry of a recorded approval
            if proposal.state != "pending":
                raise InvalidState(f"proposal {proposal_id} is {proposal.state}")
            if approval.intent_hash != proposal.intent_hash:
                raise ApprovalOfOtherIntent(f"the approval is over {approval.intent_hash[:16]}...")
            state = self._state(conn)
            now = _now()
            if intent.expires_at <= now:
                outcome.append(ProposalExpired(f"proposal {proposal_id} expired"))
                return self._refuse(conn, proposal, "expired")
            payload = intent.payload or {}
            if state.failure is not None or payload.get("prev") != state.head:
                outcome.append(
                    ProposalStale(f"another change was applied after proposal {proposal_id}")
                )
                return self._refuse(conn, proposal, "stale")
            single = count_approvals(
                intent, [approval], state.operators(), proposal.proposed_by, now
            )
            if single.refused:
                reason = single.refused[0].reason
                if reason == Refusal.REQUESTER:
                    raise ApprovalByProposer(f"{proposal.proposed_by} proposed this change")
                raise ApprovalSignatureInvalid(f"{reason.value}: key {approval.key_id}")
            operator = single.counted[0].operator
            quorum = count_approvals(
                intent,
                [*proposal.approvals, approval],
                state.operators(),
                proposal.proposed_by,
                now,
            )
            if operator not in {c.operator for c in quorum.counted if c.approval == approval}:
                raise ApprovalRefused(f"{operator} has approved already")
            conn.run(
                "insert into governance_approvals (proposal_id, key_id, operator, approval, "
                "created_at) values (?, ?, ?, ?, ?)",
                (
                    proposal_id,
                    approval.key_id,
                    operator,
                    approval.model_dump_json(),
                    conn.time(now),
                ),
            )
            common: dict[str, Any] = {
                "kind": proposal.kind,
                "intent_hash": proposal.intent_hash,
                "proposed_by": proposal.proposed_by,
                "client_id": intent.client_id,
                "asset": intent.asset or None,
            }
            events = [
                _event(
                    proposal_id,
                    "approved",
                    f"/{approval.key_id}",
                    key_id=approval.key_id,
                    operator=operator,
                    approvals=len(quorum.counted),
                    **common,
                )
            ]
            if quorum.met(state.quorum()):
                record = GovernanceRecord(
                    seq=state.seq + 1,
                    intent=intent,
                    approvals=tuple(c.approval for c in quorum.counted),
                    applied_at=now,
                )
                try:
                    state.apply(record, now)
                except RecordRefused as exc:
                    emit(conn, EVENTS.name, events)
                    return self._refuse(conn, proposal, str(exc))
                conn.run(
                    "insert into governance_records (seq, intent_hash, body, proposal_id) "
                    "values (?, ?, ?, ?)",
                    (record.seq, record.hash(), record.model_dump_json(), proposal_id),
                )
                conn.run(
                    "update governance_proposals set state = 'applied', record_seq = ?, "
                    "updated_at = ? where id = ?",
                    (record.seq, conn.time(now), proposal_id),
                )
                events.append(
                    _event(proposal_id, "applied", seq=record.seq, prev=state.head, **common)
                )
            emit(conn, EVENTS.name, events)
            return self._proposal(conn, proposal_id)

        result = self._db.write(work, retry_on=(_Race,))
        if outcome:
            raise outcome[0]
        return result

    def _refuse(self, conn: Conn, proposal: Proposal, reason: str) -> Proposal:
        now = _now()
        conn.run(
            "update governance_proposals set state = 'refused', reason = ?, updated_at = ? "
            "where id = ?",
            (reason, conn.time(now), proposal.id),
        )
        emit(
            conn,
            EVENTS.name,
            [
                _event(
                    proposal.id,
                    "refused",
                    kind=proposal.kind,
                    intent_hash=proposal.intent_hash,
                    proposed_by=proposal.proposed_by,
                    client_id=proposal.intent.client_id,
                    asset=proposal.intent.asset or None,
                    reason=reason,
                )
            ],
        )
        return self._proposal(conn, proposal.id)

    def records(self) -> Sequence[GovernanceRecord]:
        """The applied records as stored (unverified: for display and audit)."""
        with self._db.tx() as conn:
            rows = conn.all("select body from governance_records order by seq")
        return [GovernanceRecord.model_validate_json(r[0]) for r in rows]


class GovernedPolicies:
    """The PolicyStore the sagas read: each client's active policy as the verified
    governance chain says. A row written into policy_versions counts for nothing."""

    def __init__(self, store: SqlGovernanceStore) -> None:
        self._store = store

    def put(self, rules: PolicyRules, created_by: str) -> StoredPolicy:
        """Refused: a policy changes only by a proposal a quorum approved."""
        raise InvalidState("a policy changes only by a governance proposal (policy_change)")

    def current(self, client_id: str, asset: str) -> StoredPolicy | None:
        """The active policy (the client's own, else governance's default for the asset);
        GovernanceUnverified (permanent) without a pinned genesis."""
        return effective_policy(self._store.state(), client_id, asset)

    def version(self, client_id: str, asset: str, version: int) -> StoredPolicy | None:
        """A given version, current or past, as the chain has it."""
        return self._store.state().policy_version(client_id, asset, version)


class LiveGovernance:
    """sagas.governance.Governance over the store: every read verifies the chain from the
    pinned genesis again (GovernanceUnverified if it cannot), so a record written since
    counts at once and a record nobody signed never does."""

    def __init__(self, store: SqlGovernanceStore) -> None:
        self._store = store

    def __repr__(self) -> str:
        return "LiveGovernance()"

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the latest record verified (0 and the genesis hash: none)."""
        state = self._store.state()
        return state.seq, state.head

    def snapshot(self) -> VerifiedGovernance:
        return self._store.state()

    def record_hash(self, seq: int) -> str | None:
        """The hash of the record at `seq` as stored now (None: there is none)."""
        records = self._store.records()
        return records[seq - 1].hash() if 0 < seq <= len(records) else None

    def operators(self) -> Mapping[str, RegisteredKey]:
        return self._store.state().operators()

    def client_keys(self) -> Mapping[str, RegisteredKey]:
        return self._store.state().client_keys()

    def counterparty_keys(self) -> Mapping[str, RegisteredKey]:
        return self._store.state().counterparty_keys()

    def policy(self, client_id: str, asset: str) -> StoredPolicy | None:
        return self._store.state().policy(client_id, asset)

    def quorum(self) -> int:
        return self._store.state().quorum()
