"""The audit chain's verification, with fake keys: every kind of tampering is named."""

from __future__ import annotations

import base64

import pytest

from sagas.audit import (
    GENESIS,
    AuditRecord,
    chain_batch,
    ed25519_checker,
    open_record,
    record_hash,
    verify,
)
from sagas.events import Envelope
from tests.fakes import FakeAuditKeys

SECRET_IBAN = "CH9300762011623852957"


def _events(n: int) -> list[Envelope]:
    return [
        Envelope(
            source="/tests",
            type="custody.test.happened.v1",
            subject=f"acct-{i % 3}",
            data={"iban": SECRET_IBAN, "amount": str(10**20 + i)},
        )
        for i in range(n)
    ]


@pytest.fixture
def keys() -> FakeAuditKeys:
    return FakeAuditKeys()


def _chain(keys: FakeAuditKeys, n: int, batch: int = 4) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    events = _events(n)
    for i in range(0, n, batch):
        seq, prev = (records[-1].seq + 1, records[-1].hash) if records else (0, GENESIS)
        records += chain_batch(seq, prev, events[i : i + batch], keys)
    return records


def _check(keys: FakeAuditKeys, records: list[AuditRecord | None]):  # type: ignore[no-untyped-def]
    return verify(list(enumerate(records)), ed25519_checker(keys.public_keys()))


def _rehash(record: AuditRecord, **changes: object) -> AuditRecord:
    changed = record.model_copy(update=changes)
    return changed.model_copy(update={"hash": record_hash(changed.hashed_fields())})


def test_an_untouched_chain_verifies(keys: FakeAuditKeys) -> None:
    records = _chain(keys, 10)
    report = _check(keys, list(records))
    assert report.ok and report.count == 10 and report.head_hash == records[-1].hash
    assert [r.seq for r in records] == list(range(10))
    assert sum(r.signature is not None for r in records) == 3  # one per batch


def test_payloads_are_encrypted_and_readable_with_the_data_key(keys: FakeAuditKeys) -> None:
    records = _chain(keys, 3)
    for record in records:
        raw = record.to_json()
        assert SECRET_IBAN.encode() not in raw and b"100000000000000000000" not in raw
        event = open_record(record, keys.unwrap_data_key(record.wrapped_key))
        assert event.id == record.event_id and event.data["iban"] == SECRET_IBAN


def test_an_altered_record_is_named(keys: FakeAuditKeys) -> None:
    records: list[AuditRecord | None] = list(_chain(keys, 10))
    victim = records[5]
    assert victim is not None
    forged_ct = base64.b64encode(b"x" * 40).decode()
    records[5] = victim.model_copy(update={"ciphertext": forged_ct})
    bad = _check(keys, records).first_bad
    assert bad is not None and (bad.offset, bad.problem) == (5, "altered")


def test_an_altered_record_with_its_hash_recomputed_breaks_the_link(keys: FakeAuditKeys) -> None:
    records: list[AuditRecord | None] = list(_chain(keys, 10))
    victim = records[5]
    assert victim is not None
    records[5] = _rehash(victim, event_type="custody.nothing.to.see.v1")
    bad = _check(keys, records).first_bad
    assert bad is not None and (bad.offset, bad.problem) == (6, "altered")
    assert "prev_hash" in bad.detail


def test_a_rewritten_tail_fails_the_chain_key_signature(keys: FakeAuditKeys) -> None:
    records = _chain(keys, 10, batch=4)  # signatures at seq 3, 7, 9
    rewritten = records[:5]
    for r in records[5:]:  # alter seq 5 and relink everything after it, keeping signatures
        prev = rewritten[-1].hash
        changes: dict[str, object] = {"prev_hash": prev}
        if r.seq == 5:
            changes["event_type"] = "custody.rewritten.v1"
        rewritten.append(_rehash(r, **changes))
    bad = _check(keys, list(rewritten)).first_bad
    assert bad is not None and bad.problem == "forged"
    assert bad.offset == 4  # the first record after the last valid signature (seq 3)


def test_a_dropped_record_is_named(keys: FakeAuditKeys) -> None:
    records: list[AuditRecord | None] = list(_chain(keys, 10))
    del records[4]
    bad = _check(keys, records).first_bad
    assert bad is not None and (bad.offset, bad.problem) == (4, "missing")


def test_reordered_records_are_named(keys: FakeAuditKeys) -> None:
    records: list[AuditRecord | None] = list(_chain(keys, 10))
    records[6], records[7] = records[7], records[6]
    bad = _check(keys, records).first_bad
    assert bad is not None and (bad.offset, bad.problem) == (6, "reordered")


def test_a_record_appended_without_the_chain_key_is_forged(keys: FakeAuditKeys) -> None:
    records = _chain(keys, 8)
    intruder_keys = FakeAuditKeys()  # a writer with its own key, not the chain's
    appended = chain_batch(8, records[-1].hash, _events(1), intruder_keys)
    bad = _check(keys, [*records, *appended]).first_bad
    assert bad is not None and (bad.offset, bad.problem) == (8, "forged")
    unsigned = appended[0].model_copy(update={"signature": None})
    bad = _check(keys, [*records, unsigned]).first_bad
    assert bad is not None and (bad.offset, bad.problem) == (8, "forged")


def test_garbage_is_unreadable(keys: FakeAuditKeys) -> None:
    records: list[AuditRecord | None] = list(_chain(keys, 4))
    records.insert(2, None)
    bad = _check(keys, records).first_bad
    assert bad is not None and (bad.offset, bad.problem) == (2, "unreadable")


def test_a_range_can_be_verified_from_the_middle(keys: FakeAuditKeys) -> None:
    records = _chain(keys, 12)
    window = list(enumerate(records))[4:]
    report = verify(window, ed25519_checker(keys.public_keys()), start=None)
    assert report.ok and report.count == 8
