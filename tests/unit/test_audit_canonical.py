"""The audit chain's fast canonical JSON: byte for byte rfc8785's, taken only where it is,
and verification still catching what a careless fast path would let through."""

from __future__ import annotations

import base64
import hashlib
import random
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

import sagas.audit as audit
from sagas.audit import (
    GENESIS,
    AuditRecord,
    canonical_json,
    ed25519_checker,
    record_hash,
    verify,
)

# Every ASCII character, the ones JSON escapes (and U+007F, which it does not) weighted up.
ASCII = [chr(c) for c in range(0x80)]
AWKWARD = ['"', "\\", "\x00", "\x01", "\x08", "\t", "\n", "\x0b", "\x0c", "\r", "\x1f", "\x7f"]
MAX_SAFE = 2**53 - 1
HASHED = ("seq", "prev_hash", "event_id", "event_type", "wrapped_key", "nonce", "ciphertext")


def _rfc8785(value: Any) -> bytes:
    """The reference: the rfc8785 package's canonical JSON."""
    return rfc8785.dumps(value)


def _ascii_text(rng: random.Random, awkward: bool = True) -> str:
    alphabet = ASCII + AWKWARD * 4 if awkward else [c for c in ASCII if c.isalnum()]
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))


def _safe_int(rng: random.Random) -> int:
    edge = [0, 1, -1, MAX_SAFE, -MAX_SAFE, MAX_SAFE - 1, 2**31, -(2**31), 10**15]
    return rng.choice(edge) if rng.random() < 0.3 else rng.randint(-MAX_SAFE, MAX_SAFE)


def _flat_object(rng: random.Random) -> dict[str, object]:
    out: dict[str, object] = {}
    for _ in range(rng.randrange(0, 9)):
        kind = rng.random()
        value: object = _ascii_text(rng) if kind < 0.6 else _safe_int(rng) if kind < 0.9 else None
        out[_ascii_text(rng)] = value
    return out


class _Spy:
    """Stands in for the rfc8785 module inside sagas.audit, counting the fallbacks."""

    def __init__(self) -> None:
        self.calls = 0

    def dumps(self, value: Any) -> bytes:
        self.calls += 1
        return _rfc8785(value)


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    spy = _Spy()
    monkeypatch.setattr(audit, "rfc8785", spy)
    return spy


def test_flat_ascii_objects_take_the_fast_path_and_match_rfc8785(spy: _Spy) -> None:
    rng = random.Random(8785)
    objects = [_flat_object(rng) for _ in range(5000)]
    objects += [{c: c} for c in ASCII]  # every ASCII character as a key and as a value
    objects += [{"n": n} for n in (0, -1, MAX_SAFE, -MAX_SAFE)]
    for obj in objects:
        assert canonical_json(obj) == _rfc8785(obj), obj
    assert spy.calls == 0  # not one of them went through rfc8785


@pytest.mark.parametrize(
    "value",
    [
        {"k": "caf\u00e9"},  # non-ASCII value
        {"\u00e9": "x"},  # non-ASCII key
        # Code point order puts U+E000 first, RFC 8785's UTF-16 order the emoji.
        {"\ue000": 1, "\U0001f600": 2},
        {"k": True},
        {"k": 1.5},
        {"k": 1e21},
        {"k": [1, "a"]},
        {"k": {"nested": "x"}},
        {"k": None, "n": 2**53},  # out of range: refused below
        ["a", "list"],
        "a string",
        12,
    ],
)
def test_everything_else_goes_to_rfc8785(spy: _Spy, value: Any) -> None:
    try:
        expected: bytes | type[Exception] = _rfc8785(value)
    except rfc8785.CanonicalizationError as exc:
        expected = type(exc)
    if isinstance(expected, bytes):
        assert canonical_json(value) == expected
    else:
        with pytest.raises(expected):
            canonical_json(value)
    assert spy.calls == 1


def test_the_emoji_case_is_why_non_ascii_falls_back() -> None:
    value = {"\ue000": 1, "\U0001f600": 2}
    assert sorted(value) == ["\ue000", "\U0001f600"]
    assert _rfc8785(value) == '{"\U0001f600":2,"\ue000":1}'.encode()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"n": MAX_SAFE + 1}, rfc8785.IntegerDomainError),
        ({"n": -MAX_SAFE - 1}, rfc8785.IntegerDomainError),
        ({"s": "\ud800"}, rfc8785.CanonicalizationError),  # a lone surrogate
        ({1: "x"}, rfc8785.CanonicalizationError),  # a key that is not a string
    ],
)
def test_what_rfc8785_refuses_is_still_refused(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        _rfc8785(value)
    with pytest.raises(error):
        canonical_json(value)


def test_a_record_hash_is_unchanged() -> None:
    """Records already on the audit topics keep their hashes (computed with rfc8785)."""
    fields: dict[str, object] = {
        "seq": 41,
        "prev_hash": "a3f1" * 16,
        "event_id": "3f2c9a8e-0d4b-4c51-9a57-1e6f0b2d7c90",
        "event_type": "custody.withdrawal.broadcast.v1",
        "wrapped_key": "vault:v1:Zm9vYmFyYmF6cXV4",
        "nonce": "AAECAwQFBgcICQoL",
        "ciphertext": "c2VjcmV0IHBheWxvYWQ+Pz8/",
    }
    expected = "503a602fa5da235dfea509a7f5df4f29b2e654e087c4f1fe6c77f5cd0904aef2"
    assert record_hash(fields) == expected
    record = AuditRecord(**fields, hash=expected)  # type: ignore[arg-type]
    assert audit._hashed_json(record) == _rfc8785(fields)
    assert hashlib.sha256(audit._hashed_json(record)).hexdigest() == expected
    signed = record.model_copy(update={"signature": "vault:v1:c2ln"})
    for r in (record, signed):
        assert r.to_json() == _rfc8785(r.model_dump())


class _Odd(str):
    """A str subclass whose __str__ and __format__ lie: its characters are what count."""

    def __str__(self) -> str:
        return "lie"

    def __format__(self, spec: str) -> str:
        return "lie"


def _record_fields(rng: random.Random, awkward: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {name: _ascii_text(rng, awkward) for name in HASHED[1:]}
    fields["seq"] = _safe_int(rng)
    return fields


def _needs_no_escaping(fields: dict[str, Any]) -> bool:
    """Independently of the code under test: every hashed string is ASCII without a
    quote, backslash or control character, and seq is an int (not a bool) in range."""
    seq = fields["seq"]
    if type(seq) is not int or abs(seq) > MAX_SAFE:
        return False
    for name in HASHED[1:]:
        value = fields[name]
        if not isinstance(value, str):
            return False
        if any(c in '"\\' or ord(c) < 0x20 or ord(c) > 0x7F for c in value):
            return False
    return True


# Records holding a float or an int where the model says otherwise, on purpose.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_records_hash_as_rfc8785_over_their_hashed_fields(spy: _Spy) -> None:
    rng = random.Random(13)
    samples = [_record_fields(rng, awkward=rng.random() < 0.6) for _ in range(5000)]
    base = _record_fields(rng, awkward=False)
    samples += [{**base, name: f"x{c}y"} for name in HASHED[1:] for c in AWKWARD]
    samples += [{**base, "event_type": "caf\u00e9"}, {**base, "seq": MAX_SAFE + 1}]
    samples += [{**base, "seq": True}, {**base, "seq": 2.0}, {**base, "nonce": 7}]
    samples += [{**base, "event_type": _Odd("custody.odd.v1")}]
    fast = slow = 0
    for fields in samples:
        rec = AuditRecord.model_construct(**fields, hash="0" * 64)
        direct = audit._plain_hashed_json(rec.__dict__)
        assert (direct is not None) == _needs_no_escaping(fields), fields
        calls = spy.calls
        try:
            expected = _rfc8785(rec.hashed_fields())
        except rfc8785.CanonicalizationError:
            with pytest.raises(rfc8785.CanonicalizationError):
                audit._hashed_json(rec)
            continue
        assert audit._hashed_json(rec) == expected, fields
        if direct is not None:
            assert direct == expected
            assert spy.calls == calls  # no fallback for a plain record
            fast += 1
        else:
            slow += 1
    assert fast > 1500 and slow > 1500  # both paths well exercised


# --- verification over records whose fields need escaping ---------------------------


class _Keys:
    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        raw = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.checker = ed25519_checker({1: raw})

    def sign(self, digest: bytes) -> str:
        return "vault:v1:" + base64.b64encode(self._key.sign(digest)).decode()


def _naive_json(fields: dict[str, Any]) -> bytes:
    """What a careless fast path would hash: the strings written without escaping."""
    body = ",".join(
        f'"{k}":{v}' if isinstance(v, int) else f'"{k}":"{v}"' for k, v in sorted(fields.items())
    )
    return ("{" + body + "}").encode()


def _chain(
    keys: _Keys, values: list[dict[str, str]], hash_of: dict[int, Any] | None = None
) -> list[AuditRecord]:
    """A signed chain with the given string fields per record; `hash_of[i]` replaces how
    record i's hash is computed (a tampering writer holding the chain key)."""
    records: list[AuditRecord] = []
    prev = GENESIS
    for seq, extra in enumerate(values):
        fields: dict[str, Any] = {
            "seq": seq,
            "prev_hash": prev,
            "event_id": f"event-{seq}",
            "event_type": "custody.test.happened.v1",
            "wrapped_key": "vault:v1:d3JhcHBlZA==",
            "nonce": "bm9uY2Vub25jZQ==",
            "ciphertext": base64.b64encode(bytes([seq]) * 40).decode(),
            **extra,
        }
        canonical = (hash_of or {}).get(seq, _rfc8785)(fields)
        digest = hashlib.sha256(canonical).hexdigest()
        records.append(AuditRecord(**fields, hash=digest))
        prev = digest
    last = records[-1]
    records[-1] = last.model_copy(update={"signature": keys.sign(bytes.fromhex(last.hash))})
    return records


# Values RFC 8785 escapes; then two it writes as they are: U+007F (so does the fast path)
# and non-ASCII (which the fast path leaves to rfc8785).
ESCAPED = [
    {"event_type": 'custody.quoted"type.v1'},
    {"event_id": "back\\slash"},
    {"event_id": "tab\there"},
    {"ciphertext": "nul\x00byte"},
    {"event_id": '","seq":7,"x":"'},  # would read as other members if not escaped
]
AWKWARD_VALUES = [*ESCAPED, {"nonce": "del\x7fchar"}, {"event_type": "custody.caf\u00e9.v1"}]


def test_a_chain_with_fields_that_need_escaping_verifies() -> None:
    keys = _Keys()
    records = _chain(keys, [{}, *AWKWARD_VALUES, {}])
    report = verify(list(enumerate(records)), keys.checker)
    assert report.ok and report.count == len(records)


@pytest.mark.parametrize("index", range(1, len(ESCAPED) + 1))
def test_a_hash_over_unescaped_fields_is_altered(index: int) -> None:
    """The writer signs a chain in which one record's hash is over its unescaped JSON:
    a verifier taking the fast path where it does not apply would accept it."""
    keys = _Keys()
    records = _chain(keys, [{}, *ESCAPED, {}], hash_of={index: _naive_json})
    assert _naive_json(records[index].hashed_fields()) != _rfc8785(records[index].hashed_fields())
    bad = verify(list(enumerate(records)), keys.checker).first_bad
    assert bad is not None
    assert (bad.offset, bad.problem, bad.detail) == (
        index,
        "altered",
        "content does not match its hash",
    )


@pytest.mark.parametrize("field", HASHED[1:])
def test_one_changed_character_in_a_plain_record_is_altered(field: str) -> None:
    keys = _Keys()
    records = _chain(keys, [{}, {}, {}])
    victim = records[1]
    value = getattr(victim, field)
    changed = value[:-1] + ("A" if value[-1] != "A" else "B")
    records[1] = victim.model_copy(update={field: changed})
    bad = verify(list(enumerate(records)), keys.checker).first_bad
    assert bad is not None and (bad.offset, bad.problem) == (1, "altered")


def test_a_changed_seq_is_still_named() -> None:
    keys = _Keys()
    records = _chain(keys, [{}, {}, {}])
    records[1] = records[1].model_copy(update={"seq": 5})
    bad = verify(list(enumerate(records)), keys.checker).first_bad
    assert bad is not None and (bad.offset, bad.problem) == (1, "missing")
