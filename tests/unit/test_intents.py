"""Intents, approvals and request signatures (sagas/intents.py): the bytes people sign."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sagas.intents import (
    INTENT_DOMAIN,
    Approval,
    Intent,
    Quorum,
    Refusal,
    RegisteredKey,
    RequestCheck,
    RequestSignature,
    b64url,
    b64url_decode,
    count_approvals,
    key_id,
    request_message,
    sign_intent,
    sign_request,
    verify_approval,
    verify_request,
)
from tests.fakes import FakeNonceStore

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
EXPIRES = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def _intent(**changes: Any) -> Intent:
    fields: dict[str, Any] = {
        "kind": "withdrawal",
        "operation_id": "wd-0001",
        "client_id": "bank-a",
        "asset": "BTC",
        "amount": 150_000_000,
        "destination": "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",
        "fee_cap": 25_000,
        "policy_version": 3,
        "expires_at": EXPIRES,
    }
    fields.update(changes)
    return Intent(**fields)


# RFC 8785 (the library we canonicalize with), the RFC's own examples.


def test_rfc8785_section_3_2_2_example() -> None:
    text = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert rfc8785.dumps(json.loads(text)) == expected.encode()


def test_rfc8785_section_3_2_3_sorts_keys_by_utf16_code_units() -> None:
    text = (
        '{"\\u20ac": "Euro Sign", "\\r": "Carriage Return",'
        ' "\\ufb33": "Hebrew Letter Dalet With Dagesh", "1": "One",'
        ' "\\ud83d\\ude00": "Emoji: Grinning Face", "\\u0080": "Control",'
        ' "\\u00f6": "Latin Small Letter O With Diaeresis"}'
    )
    keys = list(json.loads(rfc8785.dumps(json.loads(text))))
    # The emoji (U+1F600, surrogates D83D DE00) sorts before U+FB33, as UTF-16 says.
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert rfc8785.dumps({"\u0080": "x"}) == b'{"\xc2\x80":"x"}'  # no escape above U+001F


@pytest.mark.parametrize(
    ("ieee", "text"),
    [
        ("0000000000000000", "0"),
        ("8000000000000000", "0"),
        ("0000000000000001", "5e-324"),
        ("8000000000000001", "-5e-324"),
        ("7fefffffffffffff", "1.7976931348623157e+308"),
        ("ffefffffffffffff", "-1.7976931348623157e+308"),
        ("4340000000000000", "9007199254740992"),
        ("c340000000000000", "-9007199254740992"),
        ("4430000000000000", "295147905179352830000"),
        ("44b52d02c7e14af5", "9.999999999999997e+22"),
        ("44b52d02c7e14af6", "1e+23"),
        ("44b52d02c7e14af7", "1.0000000000000001e+23"),
        ("444b1ae4d6e2ef4e", "999999999999999700000"),
        ("444b1ae4d6e2ef4f", "999999999999999900000"),
        ("444b1ae4d6e2ef50", "1e+21"),
        ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
        ("3eb0c6f7a0b5ed8d", "0.000001"),
        ("41b3de4355555553", "333333333.3333332"),
        ("41b3de4355555554", "333333333.33333325"),
        ("41b3de4355555555", "333333333.3333333"),
        ("41b3de4355555556", "333333333.3333334"),
        ("41b3de4355555557", "333333333.33333343"),
        ("becbf647612f3696", "-0.0000033333333333333333"),
        ("43143ff3c1cb0959", "1424953923781206.2"),
    ],
)
def test_rfc8785_appendix_b_numbers(ieee: str, text: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(ieee))
    assert rfc8785.dumps(value) == text.encode()


@pytest.mark.parametrize("ieee", ["7fffffffffffffff", "7ff0000000000000"])
def test_rfc8785_refuses_nan_and_infinity(ieee: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(ieee))
    with pytest.raises(rfc8785.CanonicalizationError):
        rfc8785.dumps(value)


# The intent's canonical form and hash.

GOLDEN_CANONICAL = (
    b'{"amount":"150000000","asset":"BTC","client_id":"bank-a",'
    b'"destination":"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080",'
    b'"expires_at":"2026-12-01T09:00:00Z","fee_cap":"25000","kind":"withdrawal",'
    b'"operation_id":"wd-0001","payload":null,"policy_version":3,"version":"custody.intent.v1"}'
)
GOLDEN_HASH = "a562c26b0ae964458c185e7837f40300cff5b415344db7f124f3c708cab4c555"


def test_a_fixed_intent_has_a_fixed_canonical_form_and_hash() -> None:
    # A change here breaks every signature ever made: a new version, never an edit.
    intent = _intent()
    assert intent.canonical() == GOLDEN_CANONICAL
    assert intent.hash() == GOLDEN_HASH


def test_the_hash_is_domain_separated() -> None:
    import hashlib

    intent = _intent()
    assert intent.hash() == hashlib.sha256(INTENT_DOMAIN + intent.canonical()).hexdigest()
    assert intent.hash() != hashlib.sha256(intent.canonical()).hexdigest()


def test_amounts_are_decimal_strings_and_survive_beyond_json_doubles() -> None:
    big = 2**64 + 1  # wei amounts exceed 2**53; a JSON number would round them
    intent = _intent(kind="settlement_leg", asset="ETH", amount=big, destination="0xabc")
    assert json.loads(intent.canonical())["amount"] == str(big)
    assert Intent.from_json(intent.canonical()).amount == big


@pytest.mark.parametrize(
    "bad", [1.0, True, -1, "-1", "01", "1.5", " 1", "1e3", "", 2**256, "9" * 5000]
)
def test_an_amount_is_a_non_negative_integer_never_a_float(bad: object) -> None:
    with pytest.raises(ValidationError):
        _intent(amount=bad)
    with pytest.raises(ValidationError):
        _intent(fee_cap=bad)


def test_an_amount_given_as_a_decimal_string_is_the_same_intent() -> None:
    assert _intent(amount="150000000") == _intent()
    assert _intent(amount=str(2**256 - 1)).amount == 2**256 - 1


@pytest.mark.parametrize(
    "expires",
    [
        datetime(2026, 12, 1, 9, 0),  # naive
        datetime(2026, 12, 1, 9, 0, 0, 500, tzinfo=UTC),  # sub-second
    ],
)
def test_expiry_is_aware_and_whole_seconds(expires: datetime) -> None:
    with pytest.raises(ValidationError):
        _intent(expires_at=expires)


def test_expiry_in_another_zone_is_the_same_instant_written_in_utc() -> None:
    cet = timezone(timedelta(hours=1))
    assert _intent(expires_at=EXPIRES.astimezone(cet)).canonical() == GOLDEN_CANONICAL


@pytest.mark.parametrize(
    "text", ["2026-12-01T09:00:00+00:00", "2026-12-01T09:00:00.000Z", "2026-12-01 09:00:00Z"]
)
def test_only_one_text_form_of_a_timestamp_is_read(text: str) -> None:
    doc = json.loads(GOLDEN_CANONICAL)
    doc["expires_at"] = text
    with pytest.raises(ValidationError):
        Intent.from_json(json.dumps(doc))


def test_timestamps_of_any_year_read_back() -> None:
    early = _intent(expires_at=datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert b'"expires_at":"0999-01-02T03:04:05Z"' in early.canonical()
    assert Intent.from_json(early.canonical()) == early


def test_a_string_that_is_not_unicode_text_is_refused() -> None:
    with pytest.raises(ValidationError, match="canonicalizable"):
        _intent(destination="bc1q\ud800")


def test_unknown_fields_and_versions_are_refused() -> None:
    doc = json.loads(GOLDEN_CANONICAL)
    with pytest.raises(ValidationError):
        Intent.from_json(json.dumps({**doc, "memo": "x"}))
    with pytest.raises(ValidationError):
        Intent.from_json(json.dumps({**doc, "version": "custody.intent.v2"}))
    with pytest.raises(ValidationError):
        Intent.from_json(json.dumps({**doc, "kind": "sweep"}))


def test_kind_rules() -> None:
    with pytest.raises(ValidationError, match="always a client's"):
        _intent(client_id=None)
    assert _intent(kind="settlement_leg", client_id=None).client_id is None
    with pytest.raises(ValidationError, match="payload"):
        _intent(kind="policy_change", amount=0, fee_cap=0)
    with pytest.raises(ValidationError, match="moves no value"):
        _intent(kind="policy_change", payload={"max": "1"})
    policy = _intent(
        kind="policy_change", amount=0, fee_cap=0, destination="", payload={"quorum": 2}
    )
    assert json.loads(policy.canonical())["payload"] == {"quorum": 2}


@pytest.mark.parametrize("value", [0.5, 2**53, [1, {"a": -(2**60)}]])
def test_a_payload_holds_exact_json_only(value: object) -> None:
    with pytest.raises(ValidationError):
        _intent(kind="policy_change", amount=0, fee_cap=0, payload={"x": value})


_TAMPER: dict[str, object] = {
    "kind": "fee_bump",
    "operation_id": "wd-0002",
    "client_id": "bank-b",
    "asset": "ETH",
    "amount": 150_000_001,
    "destination": "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt081",
    "fee_cap": 25_001,
    "policy_version": 4,
    "expires_at": EXPIRES + timedelta(seconds=1),
    "payload": {"note": "x"},
}


def test_every_field_is_covered_by_the_hash() -> None:
    assert set(_TAMPER) == set(Intent.model_fields) - {"version"}
    for field, value in _TAMPER.items():
        assert _intent(**{field: value}).hash() != GOLDEN_HASH, field


_text = st.text(min_size=1, max_size=24)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.text(max_size=12),
)
_payload = st.dictionaries(
    st.text(max_size=8),
    st.recursive(
        _json_leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
        max_leaves=8,
    ),
    max_size=5,
)
_intents = st.builds(
    Intent,
    kind=st.sampled_from(["withdrawal", "settlement_leg", "fee_bump"]),
    operation_id=_text,
    client_id=_text,
    asset=_text,
    amount=st.integers(0, 2**256 - 1),
    destination=_text,
    fee_cap=st.integers(0, 2**64),
    policy_version=st.integers(0, 2**31),
    expires_at=st.datetimes(min_value=datetime(1, 1, 2), timezones=st.just(UTC)).map(
        lambda d: d.replace(microsecond=0)
    ),
    payload=st.none() | _payload,
)


@settings(max_examples=200, deadline=None)
@given(_intents)
def test_canonical_json_round_trips_to_the_same_bytes(intent: Intent) -> None:
    again = Intent.from_json(intent.canonical())
    assert again == intent
    assert again.canonical() == intent.canonical()
    # Re-serialised by any JSON library in any key order, still the same intent.
    shuffled = json.dumps(dict(reversed(list(json.loads(intent.canonical()).items()))))
    assert Intent.from_json(shuffled).hash() == intent.hash()


@settings(max_examples=200, deadline=None)
@given(_intents, st.sampled_from(sorted(_TAMPER)))
def test_changing_any_field_changes_the_hash(intent: Intent, field: str) -> None:
    changed = intent.model_copy(update={field: _TAMPER[field]})
    changed = Intent.model_validate(changed.model_dump())
    if changed.model_dump() != intent.model_dump():
        assert changed.hash() != intent.hash()


# Approvals and the quorum.

ALICE, BOB, CAROL, MALLORY = _key(1), _key(2), _key(3), _key(4)
REGISTRY = {
    k.key_id: k
    for k in (
        RegisteredKey.of("alice", ALICE),
        RegisteredKey.of("bob", BOB),
        RegisteredKey.of("carol", CAROL),
    )
}


def test_key_ids_are_sha256_of_the_raw_public_key_truncated() -> None:
    import hashlib

    raw = RegisteredKey.of("alice", ALICE).public_key
    assert key_id(ALICE) == hashlib.sha256(raw).digest()[:16].hex()
    assert len(key_id(ALICE)) == 32 and key_id(ALICE) != key_id(BOB)


def test_a_registered_key_holds_the_key_its_id_names() -> None:
    alice = RegisteredKey.of("alice", ALICE)
    with pytest.raises(ValueError, match="not the id"):
        RegisteredKey(key_id(BOB), "alice", alice.public_key)
    with pytest.raises(ValueError, match="32 bytes"):
        RegisteredKey(alice.key_id, "alice", alice.public_key[:31])


def test_a_fixed_approval_is_a_fixed_signature() -> None:
    # Ed25519 is deterministic: the same key over the same intent gives the same bytes.
    approval = sign_intent(_intent(), ALICE)
    assert approval.intent_hash == GOLDEN_HASH
    assert approval.key_id == key_id(ALICE) == "34750f98bd59fcfc946da45aaabe933b"
    assert approval.signature == (
        "DMSD7imgLvJjEiG09MElaoHMtdshZzLHzXn94H6-GF-VMbD803lzddbGs_l9apXqlqasyki6ywgCnoNOxZeKBg"
    )
    assert len(b64url_decode(approval.signature)) == 64
    # Over the 32 bytes of the hash, not its hex text.
    ALICE.public_key().verify(b64url_decode(approval.signature), bytes.fromhex(GOLDEN_HASH))
    assert approval == sign_intent(_intent(), ALICE)


def test_an_approval_verifies_with_its_key_only() -> None:
    intent = _intent()
    approval = sign_intent(intent, ALICE)
    assert verify_approval(intent, approval, ALICE.public_key())
    assert not verify_approval(intent, approval, BOB.public_key())
    forged = approval.model_copy(update={"key_id": key_id(BOB)})
    assert not verify_approval(intent, forged, BOB.public_key())


def test_an_approval_of_one_intent_is_not_an_approval_of_another() -> None:
    approval = sign_intent(_intent(), ALICE)
    other = _intent(destination="bcrt1qattacker")
    assert not verify_approval(other, approval, ALICE.public_key())
    relabelled = approval.model_copy(update={"intent_hash": other.hash()})
    assert not verify_approval(other, relabelled, ALICE.public_key())


def test_a_tampered_or_mis_encoded_signature_is_refused() -> None:
    intent = _intent()
    approval = sign_intent(intent, ALICE)
    sig = bytearray(b64url_decode(approval.signature))
    sig[10] ^= 1
    flipped = approval.model_copy(update={"signature": b64url(bytes(sig))})
    assert not verify_approval(intent, flipped, ALICE.public_key())
    padded = approval.model_copy(update={"signature": approval.signature + "=="})
    assert not verify_approval(intent, padded, ALICE.public_key())


def _reasons(quorum: Quorum) -> list[Refusal]:
    return [r.reason for r in quorum.refused]


def test_two_distinct_operators_other_than_the_requester_are_counted() -> None:
    intent = _intent()
    approvals = [sign_intent(intent, k) for k in (ALICE, BOB, CAROL)]
    quorum = count_approvals(intent, approvals, REGISTRY, requester="carol", now=NOW)
    assert quorum.operators == {"alice", "bob"}
    assert quorum.met(2) and not quorum.met(3)
    assert _reasons(quorum) == [Refusal.REQUESTER]


def test_the_requesters_own_approval_never_counts() -> None:
    intent = _intent()
    quorum = count_approvals(intent, [sign_intent(intent, ALICE)], REGISTRY, "alice", NOW)
    assert not quorum.counted and _reasons(quorum) == [Refusal.REQUESTER]


def test_an_operator_counts_once_even_with_two_keys() -> None:
    intent = _intent()
    second_key = _key(9)
    registry = {**REGISTRY, key_id(second_key): RegisteredKey.of("alice", second_key)}
    approvals = [
        sign_intent(intent, ALICE),
        sign_intent(intent, ALICE),
        sign_intent(intent, second_key),
    ]
    quorum = count_approvals(intent, approvals, registry, requester=None, now=NOW)
    assert quorum.operators == {"alice"} and len(quorum.counted) == 1
    assert _reasons(quorum) == [Refusal.DUPLICATE_OPERATOR] * 2


def test_an_unregistered_key_is_refused() -> None:
    intent = _intent()
    quorum = count_approvals(intent, [sign_intent(intent, MALLORY)], REGISTRY, None, NOW)
    assert _reasons(quorum) == [Refusal.UNREGISTERED_KEY]


def test_an_approval_replayed_onto_another_intent_is_refused() -> None:
    signed = _intent()
    target = _intent(amount=999_000_000)
    approval = sign_intent(signed, ALICE)
    relabelled = approval.model_copy(update={"intent_hash": target.hash()})
    quorum = count_approvals(target, [approval, relabelled], REGISTRY, None, NOW)
    assert _reasons(quorum) == [Refusal.OTHER_INTENT, Refusal.BAD_SIGNATURE]


def test_approvals_of_an_expired_intent_are_refused() -> None:
    intent = _intent()
    approvals = [sign_intent(intent, k) for k in (ALICE, BOB)]
    for now in (EXPIRES, EXPIRES + timedelta(days=1)):
        quorum = count_approvals(intent, approvals, REGISTRY, None, now)
        assert not quorum.counted and _reasons(quorum) == [Refusal.EXPIRED] * 2
    just_before = count_approvals(intent, approvals, REGISTRY, None, EXPIRES - timedelta(seconds=1))
    assert just_before.met(2)


def test_a_naive_now_is_an_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        count_approvals(_intent(), [], REGISTRY, None, datetime(2026, 12, 1))


def test_an_approval_is_strict_json() -> None:
    approval = sign_intent(_intent(), ALICE)
    assert Approval.model_validate_json(approval.model_dump_json()) == approval
    with pytest.raises(ValidationError):
        Approval.model_validate_json(approval.model_dump_json()[:-1] + ',"operator":"bob"}')
    with pytest.raises(ValidationError):
        Approval(intent_hash="AB" * 32, key_id=key_id(ALICE), signature=approval.signature)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from([ALICE, BOB, CAROL, MALLORY]), max_size=8), _intents)
def test_the_quorum_counts_each_registered_non_requester_once(
    signers: list[Ed25519PrivateKey], intent: Intent
) -> None:
    now = intent.expires_at - timedelta(seconds=1)
    approvals = [sign_intent(intent, k) for k in signers]
    quorum = count_approvals(intent, approvals, REGISTRY, requester="bob", now=now)
    owners = {REGISTRY[key_id(k)].owner for k in signers if key_id(k) in REGISTRY}
    assert quorum.operators == owners - {"bob"}
    assert len(quorum.counted) == len(quorum.operators)
    assert len(quorum.counted) + len(quorum.refused) == len(signers)


# Client request signatures.

BANK = _key(20)
CLIENTS = {key_id(BANK): RegisteredKey.of("bank-a", BANK)}
BODY = b'{"asset":"BTC","amount":"150000000","destination":"bcrt1q..."}'
TARGET = "/v1/clients/bank-a/withdrawals?dry_run=false"
NONCE = "b3f1c2d4e5a6978812345678"


def _signed(**changes: Any) -> RequestSignature:
    args: dict[str, Any] = {
        "method": "POST",
        "target": TARGET,
        "body": BODY,
        "timestamp": NOW,
        "nonce": NONCE,
    }
    args.update(changes)
    return sign_request(BANK, **args)


def _check(
    signature: RequestSignature, nonces: FakeNonceStore | None = None, **changes: Any
) -> RequestCheck:
    args: dict[str, Any] = {"method": "POST", "target": TARGET, "body": BODY, "now": NOW}
    args.update(changes)
    return verify_request(
        args["method"],
        args["target"],
        args["body"],
        signature,
        CLIENTS,
        nonces or FakeNonceStore(lambda: NOW),
        args["now"],
    )


def test_the_request_message_is_fixed() -> None:
    message = request_message("POST", TARGET, b"", NOW, NONCE, key_id(BANK))
    assert message.decode().split("\n") == [
        "custody.request.v1",
        "POST",
        TARGET,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "2026-12-01T08:00:00Z",
        NONCE,
        key_id(BANK),
    ]


def test_a_signed_request_verifies_and_names_its_client() -> None:
    check = _check(_signed())
    assert check.ok and check.client_id == "bank-a"


@pytest.mark.parametrize(
    "changes",
    [
        {"body": BODY.replace(b"150000000", b"150000001")},
        {"body": b""},
        {"target": "/v1/clients/bank-b/withdrawals?dry_run=false"},
        {"target": "/v1/clients/bank-a/withdrawals?dry_run=true"},
        {"target": "/v1/clients/bank-a/withdrawals"},
        {"method": "PUT"},
    ],
)
def test_a_request_other_than_the_signed_one_is_refused(changes: dict[str, Any]) -> None:
    check = _check(_signed(), **changes)
    assert not check.ok and check.refusal is Refusal.BAD_SIGNATURE and check.client_id is None


def test_a_replayed_nonce_is_refused() -> None:
    nonces = FakeNonceStore(lambda: NOW)
    assert _check(_signed(), nonces).ok
    assert _check(_signed(), nonces).refusal is Refusal.REPLAYED_NONCE
    # Even for another body: the nonce is the client's, once.
    other = _signed(body=b"{}")
    assert _check(other, nonces, body=b"{}").refusal is Refusal.REPLAYED_NONCE
    assert _check(_signed(nonce="another-nonce-0001"), nonces).ok


def test_a_forged_request_does_not_use_up_the_nonce() -> None:
    nonces = FakeNonceStore(lambda: NOW)
    forged = _signed().model_copy(update={"signature": b64url(b"\0" * 64)})
    assert _check(forged, nonces).refusal is Refusal.BAD_SIGNATURE
    assert _check(_signed(), nonces).ok


@pytest.mark.parametrize(
    ("too_far", "near"),
    [
        (timedelta(minutes=5, seconds=1), timedelta(minutes=5)),
        (-timedelta(minutes=6), -timedelta(minutes=4)),
    ],
)
def test_a_request_outside_the_clock_skew_is_refused(too_far: timedelta, near: timedelta) -> None:
    assert _check(_signed(timestamp=NOW + too_far)).refusal is Refusal.CLOCK_SKEW
    assert _check(_signed(timestamp=NOW + near)).ok


def test_an_unregistered_client_key_is_refused() -> None:
    stranger = sign_request(MALLORY, "POST", TARGET, BODY, NOW, NONCE)
    assert _check(stranger).refusal is Refusal.UNREGISTERED_KEY
    claimed = stranger.model_copy(update={"key_id": key_id(BANK)})
    assert _check(claimed).refusal is Refusal.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("method", "target"),
    [("post", TARGET), ("POST", "/v1/a\n/b"), ("POST", "/v1/a b"), ("POST", "v1/no-slash")],
)
def test_an_ambiguous_request_cannot_be_signed(method: str, target: str) -> None:
    with pytest.raises(ValueError):
        request_message(method, target, b"", NOW, NONCE, key_id(BANK))
    assert _check(_signed(), method=method, target=target).refusal is Refusal.BAD_SIGNATURE


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=256), st.binary(max_size=256))
def test_any_other_body_is_refused(body: bytes, other: bytes) -> None:
    signed = _signed(body=body)
    assert _check(signed, body=body).ok
    assert _check(signed, body=other).ok is (body == other)
