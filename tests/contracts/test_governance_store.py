"""The governance store on SQLite and PostgreSQL: proposals collect approvals, apply once
their quorum is met (with their events), and what is read back is only what the chain
from the pinned genesis verifies; rows written straight into the tables count for nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.governance.store import SqlGovernanceStore
from adapters.sqldb import SqlDatabase
from sagas.errors import (
    ApprovalByProposer,
    ApprovalOfOtherIntent,
    ApprovalSignatureInvalid,
    GovernanceRecordRefused,
    GovernanceUnverified,
    InvalidState,
    ProposalExpired,
    ProposalStale,
)
from sagas.governance import Genesis, GovernanceRecord, OperatorEntry, policy_record
from sagas.intents import raw_public_key, sign_intent
from sagas.policy import PolicyRules

KEYS = {n: Ed25519PrivateKey.generate() for n in ("alice", "bob", "carol", "mallory")}
GENESIS = Genesis(
    operators=tuple(
        OperatorEntry(name=n, public_key=raw_public_key(KEYS[n]).hex())
        for n in ("alice", "bob", "carol")
    ),
    quorum=2,
    created_at=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5),
)


def rules(limit: int) -> PolicyRules:
    return PolicyRules(client_id="acme", asset="ETH", per_transaction_limit=limit)


class GovernanceStoreContract:
    url: str

    @pytest.fixture
    def store(self) -> SqlGovernanceStore:
        store = SqlGovernanceStore(self.url, GENESIS.hash())
        assert store.install_genesis(GENESIS) == GENESIS.hash()
        return store

    def propose_policy(self, store: SqlGovernanceStore, limit: int, by: str = "ops-desk") -> str:
        p = store.propose("policy_change", policy_record(rules(limit)), by, "acme", "ETH")
        assert p.state == "pending" and p.intent_hash == p.intent.hash()
        return p.id

    def approve(self, store: SqlGovernanceStore, pid: str, *names: str) -> str:
        state = ""
        for name in names:
            proposal = store.proposal(pid)
            assert proposal is not None
            state = store.approve(pid, sign_intent(proposal.intent, KEYS[name])).state
        return state

    def events(self) -> list[tuple[str, dict[str, object]]]:
        with SqlDatabase(self.url).tx() as conn:
            rows = conn.all(
                "select payload from ledger_outbox where event_key = 'governance' order by position"
            )
        return [(json.loads(r[0])["type"], json.loads(r[0])["data"]) for r in rows]

    def test_a_quorum_applies_the_change_with_its_events(self, store: SqlGovernanceStore) -> None:
        assert store.state().policy("acme", "ETH") is None
        pid = self.propose_policy(store, 100)
        assert self.approve(store, pid, "alice") == "pending"
        assert store.state().policy("acme", "ETH") is None
        assert self.approve(store, pid, "bob") == "applied"
        stored = store.state().policy("acme", "ETH")
        assert stored is not None and stored.version == 1
        assert stored.rules.per_transaction_limit == 100
        assert [t for t, _ in self.events()] == [
            "custody.governance.proposed.v1",
            "custody.governance.approved.v1",
            "custody.governance.approved.v1",
            "custody.governance.applied.v1",
        ]
        # A retried approval is the same answer, not a refusal.
        proposal = store.proposal(pid)
        assert proposal is not None and proposal.seq == 1
        assert store.approve(pid, proposal.approvals[0]).state == "applied"

    def test_refusals_have_their_codes(self, store: SqlGovernanceStore) -> None:
        pid = self.propose_policy(store, 100, by="alice")
        proposal = store.proposal(pid)
        assert proposal is not None
        with pytest.raises(ApprovalByProposer):
            store.approve(pid, sign_intent(proposal.intent, KEYS["alice"]))
        with pytest.raises(ApprovalSignatureInvalid):
            store.approve(pid, sign_intent(proposal.intent, KEYS["mallory"]))
        bad = sign_intent(proposal.intent, KEYS["bob"]).model_copy(
            update={"signature": sign_intent(proposal.intent, KEYS["carol"]).signature}
        )
        with pytest.raises(ApprovalSignatureInvalid):
            store.approve(pid, bad)
        other = store.proposal(self.propose_policy(store, 5))
        assert other is not None
        with pytest.raises(ApprovalOfOtherIntent):
            store.approve(pid, sign_intent(other.intent, KEYS["bob"]))
        assert self.approve(store, pid, "bob") == "pending"
        # Ed25519 is deterministic: bob signing again is a retry, counted once.
        again = store.approve(pid, sign_intent(proposal.intent, KEYS["bob"]))
        assert again.state == "pending" and len(again.approvals) == 1
        assert self.approve(store, pid, "carol") == "applied"
        # The other proposal linked to the old head: it can never apply now.
        with pytest.raises(ProposalStale):
            self.approve(store, other.id, "bob")
        refused = store.proposal(other.id)
        assert refused is not None and refused.state == "refused" and refused.reason == "stale"
        with pytest.raises(InvalidState):
            self.approve(store, other.id, "carol")
        assert "custody.governance.refused.v1" in [t for t, _ in self.events()]

    def test_an_expired_proposal_is_refused(self, store: SqlGovernanceStore) -> None:
        p = store.propose(
            "policy_change", policy_record(rules(1)), "ops", "acme", "ETH", ttl=timedelta(0)
        )
        with pytest.raises(ProposalExpired):
            self.approve(store, p.id, "bob")

    def test_a_record_that_cannot_apply_is_refused_when_proposed(
        self, store: SqlGovernanceStore
    ) -> None:
        with pytest.raises(GovernanceRecordRefused):
            store.propose("operator_key_change", {"action": "remove", "name": "zed"}, "ops")
        with pytest.raises(GovernanceRecordRefused):
            store.propose("bank_account_change", {"iban": "nope", "bic": "x"}, "ops", "acme")

    def test_rows_written_straight_into_the_tables_count_for_nothing(
        self, store: SqlGovernanceStore
    ) -> None:
        pid = self.propose_policy(store, 100)
        self.approve(store, pid, "alice", "bob")
        lone = store.proposal(self.propose_policy(store, 10**9))
        assert lone is not None
        forged = GovernanceRecord(
            seq=2,
            intent=lone.intent,
            approvals=(sign_intent(lone.intent, KEYS["alice"]),),
            applied_at=datetime.now(UTC).replace(microsecond=0),
        )
        db = SqlDatabase(self.url)
        with db.tx(write=True) as conn:
            conn.run(
                "insert into governance_records (seq, intent_hash, body) values (?, ?, ?)",
                (2, forged.hash(), forged.model_dump_json()),
            )
            conn.run(
                "insert into policy_versions (client_id, asset, version, rules, created_by, "
                "created_at) values ('acme', 'ETH', 9, ?, 'db', ?)",
                (rules(10**9).model_dump_json(), conn.time(datetime.now(UTC))),
            )
        state = SqlGovernanceStore(self.url, GENESIS.hash(), migrate=False).state()
        assert state.failure is not None and state.failure.seq == 2
        stored = state.policy("acme", "ETH")
        assert stored is not None and stored.rules.per_transaction_limit == 100

    def test_a_swapped_genesis_is_not_trusted(self, store: SqlGovernanceStore) -> None:
        mine = Genesis(
            operators=tuple(
                OperatorEntry(name=n, public_key=raw_public_key(KEYS[n]).hex())
                for n in ("mallory", "bob")
            ),
            quorum=2,
            created_at=GENESIS.created_at,
        )
        with pytest.raises(InvalidState):
            store.install_genesis(mine)
        with SqlDatabase(self.url).tx(write=True) as conn:
            conn.run("update governance_genesis set body = ?", (mine.model_dump_json(),))
        with pytest.raises(GovernanceUnverified):
            SqlGovernanceStore(self.url, GENESIS.hash(), migrate=False).state()
        with pytest.raises(GovernanceUnverified):
            SqlGovernanceStore(self.url, "", migrate=False).state()


class TestSqliteGovernanceStore(GovernanceStoreContract):
    @pytest.fixture(autouse=True)
    def _url(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'g.sqlite3'}"


@pytest.mark.stack
class TestPostgresGovernanceStore(GovernanceStoreContract):
    @pytest.fixture(autouse=True)
    def _url(self, fresh_postgres_url: str) -> None:
        self.url = fresh_postgres_url
