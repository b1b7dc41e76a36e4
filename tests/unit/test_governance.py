"""The governance chain: replayed from the genesis, each record needs a quorum of valid
approvals by operators registered before it, other than its proposer, and must link to
the record before it. Each refusal names the record and stops the replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import JsonValue, ValidationError

from sagas.governance import (
    Genesis,
    Governance,
    GovernanceRecord,
    OperatorEntry,
    StaticGovernance,
    VerifiedGovernance,
    change_intent,
    policy_record,
    replay,
)
from sagas.intents import Approval, Intent, key_id, raw_public_key, sign_intent
from sagas.policy import PolicyRules

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=30)
KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol", "dave")}


def entry(name: str) -> OperatorEntry:
    return OperatorEntry(name=name, public_key=raw_public_key(KEYS[name]).hex())


GENESIS = Genesis(operators=(entry("alice"), entry("bob"), entry("carol")), quorum=2, created_at=T0)


class Chain:
    """Builds records as the store would: each links to the last, applied an hour apart."""

    def __init__(self) -> None:
        self.records: list[GovernanceRecord] = []
        self.state = VerifiedGovernance.of_genesis(GENESIS)

    def intent(
        self, kind: str, record: dict[str, JsonValue], by: str = "ops-desk", **kw: object
    ) -> Intent:
        seq = len(self.records) + 1
        prev = self.records[-1].hash() if self.records else GENESIS.hash()
        args: dict[str, object] = {"expires_at": T0 + timedelta(hours=seq, minutes=30), **kw}
        return change_intent(kind, seq=seq, prev=prev, proposed_by=by, record=record, **args)  # type: ignore[arg-type]

    def add(
        self, intent: Intent, *signers: str, approvals: tuple[Approval, ...] = ()
    ) -> GovernanceRecord:
        seq = len(self.records) + 1
        signed = tuple(sign_intent(intent, KEYS[s]) for s in signers) + approvals
        record = GovernanceRecord(
            seq=seq, intent=intent, approvals=signed, applied_at=T0 + timedelta(hours=seq)
        )
        self.records.append(record)
        return record


def policy(limit: int) -> dict[str, JsonValue]:
    return policy_record(PolicyRules(client_id="acme", asset="ETH", per_transaction_limit=limit))


def policy_intent(chain: Chain, limit: int, version: int = 1, **kw: object) -> Intent:
    return chain.intent(
        "policy_change", policy(limit), client_id="acme", asset="ETH", policy_version=version, **kw
    )


def test_both_implementations_are_governance_views() -> None:
    views: list[Governance] = [StaticGovernance(), replay(GENESIS, [], NOW)]
    assert all(v.quorum() == 2 for v in views)


def test_the_genesis_registers_its_operators_and_is_pinned_by_hash() -> None:
    state = replay(GENESIS, [], NOW)
    assert state.operator_names() == {"alice", "bob", "carol"}
    assert state.operators()[key_id(KEYS["alice"])].owner == "alice"
    assert state.head == GENESIS.hash() and state.seq == 0 and state.failure is None
    other = GENESIS.model_copy(update={"quorum": 3})
    assert Genesis.model_validate(other.model_dump()).hash() != GENESIS.hash()


@pytest.mark.parametrize(
    ("names", "quorum"), [(("alice", "bob"), 1), (("alice", "bob"), 3), (("alice", "alice"), 2)]
)
def test_a_genesis_without_four_eyes_is_refused(names: tuple[str, ...], quorum: int) -> None:
    with pytest.raises(ValidationError):
        Genesis(operators=tuple(entry(n) for n in names), quorum=quorum, created_at=T0)


def test_a_quorum_of_other_operators_installs_records_in_order() -> None:
    chain = Chain()
    chain.add(policy_intent(chain, 100), "alice", "bob")
    chain.add(policy_intent(chain, 50, version=2, by="carol"), "alice", "bob")
    chain.add(
        chain.intent(
            "bank_account_change",
            {"iban": "DE89370400440532013000", "bic": "COBADEFFXXX"},
            client_id="acme",
        ),
        "bob",
        "carol",
    )
    chain.add(
        chain.intent(
            "allow_list_change",
            {"action": "add", "destination": "0xabc"},
            client_id="acme",
            asset="ETH",
            policy_version=3,
        ),
        "alice",
        "carol",
    )
    client_key = Ed25519PrivateKey.generate()
    chain.add(
        chain.intent(
            "client_key_change",
            {"action": "add", "public_key": raw_public_key(client_key).hex()},
            client_id="acme",
        ),
        "alice",
        "bob",
    )
    state = replay(GENESIS, chain.records, NOW)
    assert state.failure is None and state.seq == 5 and state.head == chain.records[-1].hash()
    stored = state.policy("acme", "ETH")
    assert stored is not None and stored.version == 3 and stored.created_by == "ops-desk"
    assert stored.rules.per_transaction_limit == 50
    assert stored.rules.allowed_destinations == {"0xabc"}
    first = state.policy_version("acme", "ETH", 1)
    assert first is not None and first.rules.per_transaction_limit == 100
    assert state.policy_version("acme", "ETH", 4) is None
    account = state.bank_account("acme")
    assert account is not None and account.iban == "DE89370400440532013000"
    assert state.client_keys()[key_id(client_key)].owner == "acme"


def test_operators_are_added_and_removed_and_the_quorum_changes() -> None:
    chain = Chain()
    dave = {"action": "add", "name": "dave", "public_key": raw_public_key(KEYS["dave"]).hex()}
    chain.add(chain.intent("operator_key_change", dave), "alice", "bob")  # type: ignore[arg-type]
    chain.add(
        chain.intent("operator_key_change", {"action": "set_quorum", "quorum": 3}),
        "alice",
        "bob",
        "dave",
    )
    chain.add(
        chain.intent("operator_key_change", {"action": "remove", "name": "carol"}),
        "alice",
        "bob",
        "dave",
    )
    state = replay(GENESIS, chain.records, NOW)
    assert state.failure is None
    assert state.operator_names() == {"alice", "bob", "dave"} and state.quorum() == 3
    # carol is no longer an operator: her signature no longer counts.
    chain.add(policy_intent(chain, 10), "carol", "alice", "bob")
    broken = replay(GENESIS, chain.records, NOW)
    assert broken.failure is not None and broken.failure.seq == 4
    assert "unregistered_key" in broken.failure.reason


def test_a_quorum_the_operators_cannot_reach_is_refused() -> None:
    chain = Chain()
    chain.add(
        chain.intent("operator_key_change", {"action": "set_quorum", "quorum": 4}),
        "alice",
        "bob",
        "carol",
    )
    state = replay(GENESIS, chain.records, NOW)
    assert state.failure is not None and "fewer operators" in state.failure.reason
    assert state.quorum() == 2


def refused(chain: Chain) -> tuple[int, str]:
    state = replay(GENESIS, chain.records, NOW)
    assert state.failure is not None
    # The state is the one before the refused record: its change counts for nothing.
    assert state.seq == state.failure.seq - 1
    return state.failure.seq, state.failure.reason


def test_one_operator_alone_is_refused() -> None:
    chain = Chain()
    chain.add(policy_intent(chain, 100), "alice")
    assert refused(chain) == (1, "1 valid approval(s) of 2 needed")


def test_one_operator_signing_twice_with_the_same_key_counts_once() -> None:
    chain = Chain()
    chain.add(policy_intent(chain, 100), "alice", "alice")
    seq, reason = refused(chain)
    assert seq == 1 and "duplicate_operator" in reason


def test_the_proposers_own_approval_does_not_count() -> None:
    chain = Chain()
    chain.add(policy_intent(chain, 100, by="alice"), "alice", "bob")
    seq, reason = refused(chain)
    assert seq == 1 and "requester" in reason


def test_an_approval_replayed_from_another_record_does_not_count() -> None:
    chain = Chain()
    first = chain.add(policy_intent(chain, 100), "alice", "bob")
    bobs = first.approvals[1]
    chain.add(policy_intent(chain, 10**6, version=2), "alice", approvals=(bobs,))
    seq, reason = refused(chain)
    assert seq == 2 and "other_intent" in reason


def test_an_approval_applied_after_the_intent_expired_does_not_count() -> None:
    chain = Chain()
    chain.add(policy_intent(chain, 100, expires_at=T0 + timedelta(minutes=59)), "alice", "bob")
    seq, reason = refused(chain)
    assert seq == 1 and "expired" in reason


def test_a_broken_prev_link_is_refused() -> None:
    chain = Chain()
    chain.add(policy_intent(chain, 100), "alice", "bob")
    chain.add(policy_intent(chain, 50, version=2), "alice", "bob")
    chain.add(policy_intent(chain, 20, version=3), "alice", "bob")
    # A database writer drops the middle record: the third no longer links.
    dropped = Chain()
    dropped.records = [chain.records[0], chain.records[2].model_copy(update={"seq": 2})]
    seq, reason = refused(dropped)
    assert seq == 2 and "out of order" in reason
    # ... or renumbers it too: its signed payload still says seq 3.
    assert replay(GENESIS, [chain.records[0], chain.records[2]], NOW).failure is not None
    # Reordering is caught as well.
    reordered = replay(GENESIS, [chain.records[1], chain.records[0]], NOW)
    assert reordered.failure is not None and reordered.failure.seq == 2


def test_a_record_linked_to_another_genesis_is_refused() -> None:
    chain = Chain()
    intent = change_intent(
        "policy_change",
        seq=1,
        prev="0" * 64,
        proposed_by="ops",
        record=policy(5),
        expires_at=T0 + timedelta(hours=2),
        client_id="acme",
        asset="ETH",
        policy_version=1,
    )
    chain.add(intent, "alice", "bob")
    seq, reason = refused(chain)
    assert seq == 1 and "prev" in reason


def test_a_record_signed_by_a_not_yet_registered_operator_is_refused() -> None:
    chain = Chain()
    # dave signs the record that adds dave: he was not an operator before it.
    dave = {"action": "add", "name": "dave", "public_key": raw_public_key(KEYS["dave"]).hex()}
    chain.add(chain.intent("operator_key_change", dave), "alice", "dave")  # type: ignore[arg-type]
    seq, reason = refused(chain)
    assert seq == 1 and "unregistered_key" in reason


def test_replay_stops_at_the_first_refused_record() -> None:
    chain = Chain()
    chain.add(policy_intent(chain, 100), "alice", "bob")
    chain.add(policy_intent(chain, 10**9, version=2), "alice")  # one operator alone
    chain.add(policy_intent(chain, 10**9, version=3), "alice", "bob")  # even if valid
    state = replay(GENESIS, chain.records, NOW)
    assert state.failure is not None and state.failure.seq == 2
    stored = state.policy("acme", "ETH")
    assert stored is not None and stored.version == 1 and stored.rules.per_transaction_limit == 100
    assert "governance record 2" in str(state.failure)


def test_a_policy_version_out_of_sequence_is_refused() -> None:
    chain = Chain()
    chain.add(policy_intent(chain, 100, version=7), "alice", "bob")
    assert "version" in refused(chain)[1]


def test_a_record_applied_in_the_future_or_before_the_last_is_refused() -> None:
    chain = Chain()
    record = chain.add(policy_intent(chain, 100), "alice", "bob")
    early = replay(GENESIS, [record], T0)
    assert early.failure is not None and "future" in early.failure.reason


def test_amounts_beyond_2_53_survive_the_record() -> None:
    chain = Chain()
    chain.add(policy_intent(chain, 10 * 10**18), "alice", "bob")
    stored = replay(GENESIS, chain.records, NOW).policy("acme", "ETH")
    assert stored is not None and stored.rules.per_transaction_limit == 10 * 10**18


@pytest.mark.parametrize("holder", ["default", "settlement"])
def test_a_reserved_policy_holder_gets_no_key_and_no_bank_account(holder: str) -> None:
    """`default` and `settlement` hold policies only: a key registered to one could sign
    withdrawals for a client that does not exist (even if a quorum signed it)."""
    chain = Chain()
    key = Ed25519PrivateKey.generate()
    chain.add(
        chain.intent(
            "client_key_change",
            {"action": "add", "public_key": raw_public_key(key).hex()},
            client_id=holder,
        ),
        "alice",
        "bob",
    )
    state = replay(GENESIS, chain.records, NOW)
    assert state.failure is not None and "reserved" in str(state.failure)
    assert state.client_keys() == {}


def test_a_counterpartys_confirmation_key_is_registered_by_a_quorum_and_one_role_only() -> None:
    chain = Chain()
    lp = Ed25519PrivateKey.generate()
    add = {"action": "add", "public_key": raw_public_key(lp).hex()}
    chain.add(chain.intent("counterparty_key_change", add, client_id="lp-alpha"), "alice")
    alone = replay(GENESIS, chain.records, NOW)  # one approval: not applied
    assert alone.failure is not None and alone.counterparty_keys() == {}
    chain = Chain()
    chain.add(chain.intent("counterparty_key_change", add, client_id="lp-alpha"), "alice", "bob")
    state = replay(GENESIS, chain.records, NOW)
    assert state.failure is None
    assert state.counterparty_keys()[key_id(lp)].owner == "lp-alpha"
    assert state.client_keys() == {}  # a counterparty's key signs no client request
    # The same key again, as a client's key, or for a reserved holder: refused.
    for kind, holder in (("client_key_change", "acme"), ("counterparty_key_change", "settlement")):
        again = Chain()
        again.records = list(chain.records)
        again.add(again.intent(kind, add, client_id=holder), "alice", "bob")
        refused = replay(GENESIS, again.records, NOW)
        assert refused.failure is not None and refused.failure.seq == 2, holder
