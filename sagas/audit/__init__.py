"""The tamper-evident audit chain: records, hashing, encryption, verification.

Each record carries one event, encrypted (AES-256-GCM under a data key that
OpenBao wraps; the wrapped key travels with the record), and links to the
previous record by hash: `hash` = SHA-256 over the RFC 8785 canonical JSON of
every other field, `prev_hash` = the previous record's `hash`. (`canonical_json`
writes that JSON: for the flat ASCII values records hold, the bytes `rfc8785.dumps`
gives by a faster path; through `rfc8785.dumps` otherwise.) The last record of
each batch also carries the audit writer's Ed25519 signature over its hash,
which covers the whole chain up to it. Anyone with the public key can verify
offline, without decrypting: hashes are over ciphertexts. Without the private
key nobody can append, alter, drop or reorder records undetected.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import rfc8785
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import BaseModel, ConfigDict

from sagas.events import Envelope

GENESIS = "0" * 64


class AuditRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    prev_hash: str
    event_id: str
    event_type: str
    wrapped_key: str
    nonce: str
    ciphertext: str
    hash: str
    signature: str | None = None

    def hashed_fields(self) -> dict[str, object]:
        return self.model_dump(exclude={"hash", "signature"})

    def to_json(self) -> bytes:
        return canonical_json(self.model_dump())


# RFC 8785 writes integers only within IEEE 754's exact range (it refuses the others).
_MAX_SAFE_INT = 2**53 - 1
# For the values `_is_plain` admits, the json module's C encoder with these settings
# writes exactly RFC 8785's bytes: members sorted by key (code point order, which for
# ASCII keys is RFC 8785's UTF-16 order), no whitespace, integers in decimal, null, and
# strings escaped as RFC 8785 3.2.2.2 does (\" \\ \b \f \n \r \t, other characters
# below U+0020 as \u00xx in lower case, everything else as is, U+007F included).
_PLAIN_JSON = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
)


def _is_plain(value: dict[Any, Any]) -> bool:
    """A flat object of ASCII keys to ASCII strings, safe integers and nulls, of exactly
    those types (no bool, float, subclass, list or object: those go to rfc8785)."""
    for key, item in value.items():
        if type(key) is not str or not key.isascii():
            return False
        kind = type(item)
        if kind is str:
            if not item.isascii():
                return False
        elif kind is int:
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return False
        elif item is not None:
            return False
    return True


def canonical_json(value: object) -> bytes:
    """The RFC 8785 canonical JSON of `value`: byte for byte what `rfc8785.dumps` gives
    (and raises), faster for the flat ASCII objects audit records are made of."""
    if type(value) is dict and _is_plain(value):
        return _PLAIN_JSON.encode(value).encode("ascii")
    canonical: Any = value
    return rfc8785.dumps(canonical)


def record_hash(fields: dict[str, object]) -> str:
    return hashlib.sha256(canonical_json(fields)).hexdigest()


# The bytes RFC 8785 writes as they are inside a string, but the quote: printable ASCII
# and U+007F, less the backslash and the quote.
_VERBATIM = bytes(b for b in range(0x20, 0x80) if b not in b'"\\')
# The quotes around the 7 keys and the 6 string values of `_plain_hashed_json`'s text.
_TEMPLATE_QUOTES = b'"' * 26


def _plain_hashed_json(fields: dict[str, Any]) -> bytes | None:
    """`canonical_json` of a record's hashed fields, given its `__dict__`, written
    directly when they are plain: a safe int `seq` and ASCII strings that need no
    escaping. None otherwise (the caller then takes `canonical_json`)."""
    seq = fields["seq"]
    if type(seq) is not int or not -_MAX_SAFE_INT <= seq <= _MAX_SAFE_INT:
        return None
    try:
        # The keys in RFC 8785 order. join takes strings only (their characters, as
        # RFC 8785 does, whatever a str subclass's __str__ or __format__ would say).
        text = "".join(
            (
                '{"ciphertext":"',
                fields["ciphertext"],
                '","event_id":"',
                fields["event_id"],
                '","event_type":"',
                fields["event_type"],
                '","nonce":"',
                fields["nonce"],
                '","prev_hash":"',
                fields["prev_hash"],
                '","seq":',
                str(seq),
                ',"wrapped_key":"',
                fields["wrapped_key"],
                '"}',
            )
        )
    except TypeError:
        return None
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    # Each string was written as is, which is its canonical form exactly when it holds
    # no quote, backslash or control character: then the text holds only verbatim bytes
    # and its own 26 quotes.
    if raw.translate(None, _VERBATIM) != _TEMPLATE_QUOTES:
        return None
    return raw


# `_plain_hashed_json` writes these fields and no others: a field added to the record
# must be added there too (until then, every record would read as altered).
if set(AuditRecord.model_fields) != {
    "seq",
    "prev_hash",
    "event_id",
    "event_type",
    "wrapped_key",
    "nonce",
    "ciphertext",
    "hash",
    "signature",
}:  # pragma: no cover - a development-time guard
    raise AssertionError("AuditRecord's fields changed: update _plain_hashed_json")


def _hashed_json(record: AuditRecord) -> bytes:
    """The bytes a record's `hash` is over: `canonical_json(record.hashed_fields())`."""
    return _plain_hashed_json(record.__dict__) or canonical_json(record.hashed_fields())


def _aad(seq: int, event_id: str) -> bytes:
    # Binds a ciphertext to its place in the chain: it cannot be moved to another record.
    return f"custody-audit:{seq}:{event_id}".encode()


def seal(
    seq: int, prev_hash: str, event: Envelope, data_key: bytes, wrapped_key: str
) -> AuditRecord:
    """The next record of the chain for `event` (unsigned)."""
    nonce = os.urandom(12)
    ciphertext = AESGCM(data_key).encrypt(nonce, event.to_json(), _aad(seq, event.id))
    fields: dict[str, object] = {
        "seq": seq,
        "prev_hash": prev_hash,
        "event_id": event.id,
        "event_type": event.type,
        "wrapped_key": wrapped_key,
        "nonce": base64.b64encode(nonce).decode(),
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    return AuditRecord(**fields, hash=record_hash(fields))  # type: ignore[arg-type]


def open_record(record: AuditRecord, data_key: bytes) -> Envelope:
    """Decrypt a record's event (the data key unwrapped by an authorised auditor)."""
    plaintext = AESGCM(data_key).decrypt(
        base64.b64decode(record.nonce),
        base64.b64decode(record.ciphertext),
        _aad(record.seq, record.event_id),
    )
    return Envelope.from_json(plaintext)


Problem = Literal["altered", "missing", "reordered", "forged", "unreadable"]


@dataclass(frozen=True)
class Finding:
    offset: int
    seq: int | None
    problem: Problem
    detail: str


@dataclass(frozen=True)
class VerifyReport:
    count: int
    head_hash: str
    first_bad: Finding | None

    @property
    def ok(self) -> bool:
        return self.first_bad is None


SignatureCheck = Callable[[str, bytes], bool]


def verify(
    records: Sequence[tuple[int, AuditRecord | None]],
    check_signature: SignatureCheck,
    start: tuple[int, str] | None = (0, GENESIS),
) -> VerifyReport:
    """Recompute the chain over (offset, record) pairs in topic order.

    `start` is the (seq, prev_hash) the first record must have; None trusts the
    first record's own (verifying a range that does not begin at the genesis).
    A record that could not be parsed is passed as None.
    """
    if not records:
        return VerifyReport(0, start[1] if start else GENESIS, None)
    first = records[0][1]
    if start is None:
        start = (first.seq, first.prev_hash) if first else (0, GENESIS)
    expected_seq, expected_prev = start
    signed_through = -1  # index of the last record covered by a valid signature
    head = expected_prev

    def bad(i: int, problem: Problem, detail: str) -> VerifyReport:
        offset, rec = records[i]
        return VerifyReport(i, head, Finding(offset, rec.seq if rec else None, problem, detail))

    for i, (offset, rec) in enumerate(records):
        if rec is None:
            return bad(i, "unreadable", "not a valid audit record")
        # The field values as the model holds them: reading a pydantic model's attributes
        # costs several times reading its __dict__, and this loop runs once per record.
        fields = rec.__dict__
        seq, rec_hash = fields["seq"], fields["hash"]
        if seq != expected_seq:
            if seq < expected_seq:
                return bad(i, "reordered", f"seq {seq} after seq {expected_seq - 1}")
            if expected_seq in [r.seq for _, r in records if r is not None]:
                return bad(i, "reordered", f"seq {seq} where seq {expected_seq} belongs")
            return bad(
                i,
                "missing",
                f"expected seq {expected_seq}, found {seq}: "
                f"{seq - expected_seq} record(s) missing before offset {offset}",
            )
        content = _plain_hashed_json(fields) or canonical_json(rec.hashed_fields())
        if hashlib.sha256(content).hexdigest() != rec_hash:
            return bad(i, "altered", "content does not match its hash")
        if fields["prev_hash"] != expected_prev:
            return bad(i, "altered", "does not link to the previous record (prev_hash)")
        signature = fields["signature"]
        if signature is not None:
            if not check_signature(signature, bytes.fromhex(rec_hash)):
                j = signed_through + 1
                return bad(
                    j,
                    "forged",
                    f"the signature at offset {offset} does not verify with the chain key: "
                    f"records from offset {records[j][0]} to {offset} are not authentic",
                )
            signed_through = i
        expected_seq, expected_prev = seq + 1, rec_hash
        head = rec_hash
    if signed_through < len(records) - 1:
        j = signed_through + 1
        return bad(
            j, "forged", f"records from offset {records[j][0]} on carry no chain-key signature"
        )
    return VerifyReport(len(records), head, None)


def ed25519_checker(public_keys: dict[int, bytes]) -> SignatureCheck:
    """A signature check over 'vault:v<N>:<base64>' signatures with the given public keys."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    def check(signature: str, digest: bytes) -> bool:
        try:
            prefix, version, sig = signature.split(":", 2)
            key = public_keys[int(version.removeprefix("v"))]
            if prefix != "vault":
                return False
            Ed25519PublicKey.from_public_bytes(key).verify(base64.b64decode(sig), digest)
        except (ValueError, KeyError, InvalidSignature):
            return False
        return True

    return check


class AuditKeySource(Protocol):
    def new_data_key(self) -> tuple[bytes, str]: ...

    def sign(self, digest: bytes) -> str: ...


def chain_batch(
    next_seq: int, prev_hash: str, events: Sequence[Envelope], keys: AuditKeySource
) -> list[AuditRecord]:
    """Seal events as the next records of the chain under one fresh data key, and sign
    the batch's last hash with the chain key."""
    if not events:
        return []
    data_key, wrapped = keys.new_data_key()
    records = []
    for event in events:
        record = seal(next_seq, prev_hash, event, data_key, wrapped)
        records.append(record)
        next_seq, prev_hash = record.seq + 1, record.hash
    records[-1] = records[-1].model_copy(
        update={"signature": keys.sign(bytes.fromhex(records[-1].hash))}
    )
    return records
