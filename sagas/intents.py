"""Intents and the signatures over them: what people sign before value moves.

An intent is one movement of value (a withdrawal, a settlement leg, a fee bump) or one
governance change (a policy, a bank account, an allow-list entry, a client or operator
key), written as RFC 8785 canonical JSON. Its hash is what operators approve with their
own Ed25519 keys; client systems sign each mutating request with their registered key.
Nothing here does I/O; the signer, the API and the CLI build on these functions.
Decision 0012 gives the reasons; docs/security.md what is checked where.

Byte formats, fixed because signatures outlive code:
- intent hash: SHA-256 over ``INTENT_DOMAIN + canonical JSON``, lowercase hex;
- approval: Ed25519 over the 32 bytes of the intent hash, base64url without padding;
- key id: the first 16 bytes of SHA-256 of the raw 32-byte Ed25519 public key, hex;
- request: Ed25519 over ``request_message(...)``, lines joined by "\\n", see there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Protocol, runtime_checkable

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    field_validator,
    model_validator,
)

INTENT_VERSION: Final = "custody.intent.v1"
APPROVAL_VERSION: Final = "custody.approval.v1"
REQUEST_VERSION: Final = "custody.request.v1"
# Prefixed to the canonical bytes before hashing: an intent hash can never equal the
# hash of any other JSON document the platform hashes or signs (audit records, events,
# requests), so a signature over one is never a signature over the other.
INTENT_DOMAIN = b"custody.intent.v1\n"

IntentKind = Literal[
    "withdrawal",
    "settlement_leg",
    "fee_bump",
    "stake",
    "unstake",
    "redelegate",
    "policy_change",
    "bank_account_change",
    "allow_list_change",
    "client_key_change",
    "counterparty_key_change",
    "operator_key_change",
]
# A stake's destination is the validator delegated to; an unstake's the validator its
# position is delegated to (the funds come back to the client's own delegator address);
# a redelegation's the validator the position moves to (decision 0033).
VALUE_KINDS: frozenset[str] = frozenset(
    {"withdrawal", "settlement_leg", "fee_bump", "stake", "unstake", "redelegate"}
)
CLIENT_KINDS: frozenset[str] = frozenset({"withdrawal", "stake", "unstake", "redelegate"})


def intent_kind(operation_kind: str) -> str:
    """The kind of intent an operation of this kind records: its own name, but for a
    redelegation (`redelegate`)."""
    return "redelegate" if operation_kind == "redelegation" else operation_kind


GOVERNANCE_KINDS: frozenset[str] = frozenset(
    {
        "policy_change",
        "bank_account_change",
        "allow_list_change",
        "client_key_change",
        "counterparty_key_change",
        "operator_key_change",
    }
)

# At most 78 digits, as many as 2**256 - 1 has: long strings are refused before int().
_MINOR_UNITS = re.compile(r"0|[1-9][0-9]{0,77}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{32}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}")
_METHOD = re.compile(r"[A-Z]{1,16}")
# A request target as sent on the wire: printable ASCII, no spaces, so no newline can
# end a line of the signed message early and make two requests sign the same bytes.
_TARGET = re.compile(r"/[\x21-\x7e]*")
# JSON numbers are IEEE doubles to most parsers: above this an integer is rounded.
_JSON_SAFE_INT = 2**53 - 1


def _minor_units(value: object) -> object:
    # Amounts travel as decimal strings in canonical JSON; bool and float are refused
    # because True == 1 and 1.0 == 1 would silently become amounts.
    if isinstance(value, (bool, float)):
        raise ValueError("an amount is an integer in minor units, never a float or bool")
    if isinstance(value, str):
        if not _MINOR_UNITS.fullmatch(value):
            raise ValueError(f"not a decimal integer in minor units: {value!r}")
        return int(value)
    return value


def _utc_seconds(value: object) -> object:
    if isinstance(value, str):
        # One text form only: the one rfc3339() writes.
        if not _TIMESTAMP.fullmatch(value):
            raise ValueError(f"not an RFC 3339 UTC timestamp like 2026-12-01T08:00:00Z: {value!r}")
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("a timestamp must be timezone-aware (UTC)")
        if value.microsecond:
            raise ValueError("a timestamp is whole seconds (truncate before signing)")
        return value.astimezone(UTC)
    return value


def rfc3339(moment: datetime) -> str:
    """`2026-12-01T08:00:00Z`: the one text form of a timestamp that is signed."""
    # Not strftime: glibc writes the year 999 as "999", which would not read back.
    d = moment.astimezone(UTC)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"


MinorUnits = Annotated[
    int,
    BeforeValidator(_minor_units),
    # No chain holds more than a uint256; the bound also keeps hostile input small.
    Field(ge=0, le=2**256 - 1),
    PlainSerializer(str, return_type=str, when_used="json"),
]
UtcSeconds = Annotated[
    datetime,
    BeforeValidator(_utc_seconds),
    PlainSerializer(rfc3339, return_type=str, when_used="json"),
]


def _check_json(value: JsonValue, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, float):
        raise ValueError(f"{where}: floats are not allowed in a signed payload")
    if isinstance(value, int):
        if abs(value) > _JSON_SAFE_INT:
            raise ValueError(f"{where}: integer beyond 2**53-1, write it as a decimal string")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    for key, item in value.items():
        _check_json(item, f"{where}.{key}")


class Intent(BaseModel):
    """One movement of value or one governance change, exactly as people sign it."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    version: Literal["custody.intent.v1"] = INTENT_VERSION
    kind: IntentKind
    operation_id: str = Field(min_length=1)
    # None only for the platform's own legs (a settlement leg between house accounts).
    client_id: str | None = None
    asset: str
    amount: MinorUnits
    destination: str
    fee_cap: MinorUnits
    policy_version: int = Field(ge=0)
    expires_at: UtcSeconds
    # The record a governance kind installs (the new policy, the IBAN, the key).
    payload: dict[str, JsonValue] | None = None

    @field_validator("payload")
    @classmethod
    def _payload_is_exact_json(cls, payload: dict[str, JsonValue] | None) -> Any:
        if payload is not None:
            _check_json(payload, "payload")
        return payload

    @model_validator(mode="after")
    def _kind_rules(self) -> Intent:
        if self.kind in VALUE_KINDS:
            if not self.asset or not self.destination:
                raise ValueError(f"a {self.kind} names its asset and destination")
            if self.kind in CLIENT_KINDS and not self.client_id:
                raise ValueError(f"a {self.kind} is always a client's")
        else:
            # A governance change moves nothing, so it can never be read as a payment.
            if self.payload is None:
                raise ValueError(f"a {self.kind} carries the record it installs as payload")
            if self.amount or self.fee_cap:
                raise ValueError(f"a {self.kind} moves no value: amount and fee_cap are 0")
        try:
            self.canonical()
        except (rfc8785.CanonicalizationError, UnicodeEncodeError) as exc:
            # E.g. a lone surrogate in a string: an intent that cannot be hashed is none.
            raise ValueError(f"not canonicalizable: {exc}") from exc
        return self

    def canonical(self) -> bytes:
        """The RFC 8785 canonical JSON of every field (nulls included)."""
        fields: Any = self.model_dump(mode="json")
        return rfc8785.dumps(fields)

    def hash(self) -> str:
        """SHA-256 over INTENT_DOMAIN + canonical(), lowercase hex: what approvals sign."""
        return hashlib.sha256(INTENT_DOMAIN + self.canonical()).hexdigest()

    @classmethod
    def from_json(cls, data: str | bytes) -> Intent:
        """Parse an intent from JSON (canonical or not); ValidationError if it is not one."""
        return cls.model_validate_json(data)


# Keys


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict: only the unpadded canonical encoding, so one signature has one text."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc
    if b64url(data) != text:
        raise ValueError("not the canonical base64url of its bytes")
    return data


def raw_public_key(key: Ed25519PublicKey | Ed25519PrivateKey | bytes) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if isinstance(key, Ed25519PublicKey):
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    if len(key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return key


def key_id(key: Ed25519PublicKey | Ed25519PrivateKey | bytes) -> str:
    """The first 16 bytes of SHA-256 of the raw public key, hex (32 characters)."""
    return hashlib.sha256(raw_public_key(key)).digest()[:16].hex()


@dataclass(frozen=True)
class RegisteredKey:
    """A public key the platform knows, and whose it is (an operator or a client)."""

    key_id: str
    owner: str
    public_key: bytes

    def __post_init__(self) -> None:
        # A registry entry cannot name one key and hold another.
        if key_id(self.public_key) != self.key_id:
            raise ValueError("the key id is not the id of this public key")

    @classmethod
    def of(cls, owner: str, key: Ed25519PublicKey | Ed25519PrivateKey | bytes) -> RegisteredKey:
        raw = raw_public_key(key)
        return cls(key_id(raw), owner, raw)


def _verify(public_key: bytes, signature: str, message: bytes) -> bool:
    try:
        sig = b64url_decode(signature)
        Ed25519PublicKey.from_public_bytes(raw_public_key(public_key)).verify(sig, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_signature(public_key: bytes, signature: str, message: bytes) -> bool:
    """An Ed25519 signature (base64url, canonical) by `public_key` over `message`."""
    return _verify(public_key, signature, message)


# Approvals


class Approval(BaseModel):
    """An operator's Ed25519 signature over one intent's hash."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    version: Literal["custody.approval.v1"] = APPROVAL_VERSION
    intent_hash: str = Field(pattern=_HEX64.pattern)
    key_id: str = Field(pattern=_KEY_ID.pattern)
    signature: str = Field(min_length=1, max_length=128)


def sign_intent(intent: Intent, private_key: Ed25519PrivateKey) -> Approval:
    """The approval of `intent` by the holder of `private_key` (operators' side only)."""
    digest = intent.hash()
    return Approval(
        intent_hash=digest,
        key_id=key_id(private_key),
        signature=b64url(private_key.sign(bytes.fromhex(digest))),
    )


def verify_approval(
    intent: Intent, approval: Approval, public_key: Ed25519PublicKey | bytes
) -> bool:
    """True if `approval` is a valid signature by `public_key` over this intent's hash.
    Expiry and who signed are the quorum's business (count_approvals)."""
    raw = raw_public_key(public_key)
    digest = intent.hash()
    if approval.intent_hash != digest or approval.key_id != key_id(raw):
        return False
    return _verify(raw, approval.signature, bytes.fromhex(digest))


class Refusal(StrEnum):
    """Why an approval or a request was not counted."""

    EXPIRED = "expired"
    OTHER_INTENT = "other_intent"
    UNREGISTERED_KEY = "unregistered_key"
    BAD_SIGNATURE = "bad_signature"
    REQUESTER = "requester"
    DUPLICATE_OPERATOR = "duplicate_operator"
    CLOCK_SKEW = "clock_skew"
    REPLAYED_NONCE = "replayed_nonce"


@dataclass(frozen=True)
class Refused:
    approval: Approval
    reason: Refusal


@dataclass(frozen=True)
class Counted:
    approval: Approval
    operator: str


@dataclass(frozen=True)
class Quorum:
    """The approvals of one intent, sorted into counted (one per operator) and refused."""

    intent_hash: str
    counted: tuple[Counted, ...]
    refused: tuple[Refused, ...]

    @property
    def operators(self) -> frozenset[str]:
        return frozenset(c.operator for c in self.counted)

    def met(self, threshold: int) -> bool:
        return len(self.counted) >= threshold


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now


def count_approvals(
    intent: Intent,
    approvals: Iterable[Approval],
    registry: Mapping[str, RegisteredKey],
    requester: str | frozenset[str] | None,
    now: datetime,
) -> Quorum:
    """Count the valid signatures over exactly this intent by distinct registered operators
    other than `requester` (one name, or every name that asked for it), while the intent
    has not expired; every other approval is refused with its reason. `registry` maps key
    id to the operator's registered key; an operator with several keys still counts once."""
    asked = (
        frozenset()
        if requester is None
        else (frozenset({requester}) if isinstance(requester, str) else requester)
    )
    digest = intent.hash()
    expired = intent.expires_at <= _aware(now)
    counted: list[Counted] = []
    refused: list[Refused] = []
    seen: set[str] = set()
    for approval in approvals:
        registered = registry.get(approval.key_id)
        if expired:
            reason = Refusal.EXPIRED
        elif approval.intent_hash != digest:
            reason = Refusal.OTHER_INTENT
        elif registered is None or registered.key_id != approval.key_id:
            reason = Refusal.UNREGISTERED_KEY
        elif not verify_approval(intent, approval, registered.public_key):
            reason = Refusal.BAD_SIGNATURE
        elif registered.owner in asked:
            reason = Refusal.REQUESTER
        elif registered.owner in seen:
            reason = Refusal.DUPLICATE_OPERATOR
        else:
            seen.add(registered.owner)
            counted.append(Counted(approval, registered.owner))
            continue
        refused.append(Refused(approval, reason))
    return Quorum(digest, tuple(counted), tuple(refused))


# Client request signatures


@runtime_checkable
class NonceStore(Protocol):
    """Remembers the nonces of verified requests, so that none is accepted twice."""

    def claim(self, key_id: str, nonce: str, keep_until: datetime) -> bool:
        """Record `nonce` for `key_id`: True the first time, False if it was already
        claimed (a replay). Atomic: of two concurrent claims exactly one is True. The
        entry may be forgotten after `keep_until` (the request's timestamp is then
        refused as too old anyway). DependencyUnavailable (transient) if unreachable."""


class RequestSignature(BaseModel):
    """A client system's signature over one HTTP request (or one command)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    version: Literal["custody.request.v1"] = REQUEST_VERSION
    key_id: str = Field(pattern=_KEY_ID.pattern)
    timestamp: UtcSeconds
    nonce: str = Field(pattern=_NONCE.pattern)
    signature: str = Field(min_length=1, max_length=128)


def request_message(
    method: str, target: str, body: bytes, timestamp: datetime, nonce: str, key: str
) -> bytes:
    """The bytes a request signature covers: seven lines joined by "\\n", no trailing one:
    the version, the method (upper case), the request target (path and query exactly as
    sent), the SHA-256 of the body (hex; of b"" when there is none), the timestamp
    (RFC 3339, whole seconds, Z), the nonce and the signing key's id."""
    if not _METHOD.fullmatch(method):
        raise ValueError(f"not an HTTP method: {method!r}")
    if not _TARGET.fullmatch(target):
        raise ValueError("the request target is a path (and query) of printable ASCII")
    if not _NONCE.fullmatch(nonce) or not _KEY_ID.fullmatch(key):
        raise ValueError("malformed nonce or key id")
    _utc_seconds(timestamp)
    lines = [
        REQUEST_VERSION,
        method,
        target,
        hashlib.sha256(body).hexdigest(),
        rfc3339(timestamp),
        nonce,
        key,
    ]
    return "\n".join(lines).encode("ascii")


def sign_request(
    private_key: Ed25519PrivateKey,
    method: str,
    target: str,
    body: bytes,
    timestamp: datetime,
    nonce: str,
) -> RequestSignature:
    """The client's side: sign one request with its registered key."""
    kid = key_id(private_key)
    message = request_message(method, target, body, timestamp, nonce, kid)
    return RequestSignature(
        key_id=kid, timestamp=timestamp, nonce=nonce, signature=b64url(private_key.sign(message))
    )


@dataclass(frozen=True)
class RequestCheck:
    """A verified request names its client; a refused one says why."""

    client_id: str | None
    refusal: Refusal | None

    @property
    def ok(self) -> bool:
        return self.refusal is None


class SignedRequest(BaseModel):
    """A client's signed request as it was received, passed through to the signer: the
    exact bytes of the body and the signature over method, target and body."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    method: str = Field(pattern=_METHOD.pattern)
    target: str = Field(pattern=_TARGET.pattern, max_length=2048)
    body: str = Field(max_length=90_000, description="base64url of the body's bytes")
    signature: RequestSignature

    def body_bytes(self) -> bytes:
        return b64url_decode(self.body)


def check_request_signature(
    method: str,
    target: str,
    body: bytes,
    signature: RequestSignature,
    registry: Mapping[str, RegisteredKey],
) -> RequestCheck:
    """The signature alone: by a registered key, over exactly this method, target and
    body. No clock and no nonce: what the signer checks long after the request came
    (the API checked freshness and the nonce when it came; the signer's record holds
    each nonce to one operation)."""
    registered = registry.get(signature.key_id)
    if registered is None or registered.key_id != signature.key_id:
        return RequestCheck(None, Refusal.UNREGISTERED_KEY)
    try:
        message = request_message(
            method, target, body, signature.timestamp, signature.nonce, signature.key_id
        )
    except ValueError:
        return RequestCheck(None, Refusal.BAD_SIGNATURE)
    if not _verify(registered.public_key, signature.signature, message):
        return RequestCheck(None, Refusal.BAD_SIGNATURE)
    return RequestCheck(registered.owner, None)


def verify_request(
    method: str,
    target: str,
    body: bytes,
    signature: RequestSignature,
    registry: Mapping[str, RegisteredKey],
    nonces: NonceStore,
    now: datetime,
    max_skew: timedelta = timedelta(minutes=5),
) -> RequestCheck:
    """Check a client's request signature: a registered key, a valid signature over
    exactly this method, target and body, a timestamp within `max_skew` of `now`, and a
    nonce never seen before. The nonce is claimed only once all else holds, so forged
    requests cannot use up a client's nonces."""
    checked = check_request_signature(method, target, body, signature, registry)
    if not checked.ok:
        return checked
    if abs(signature.timestamp - _aware(now)) > max_skew:
        return RequestCheck(None, Refusal.CLOCK_SKEW)
    if not nonces.claim(signature.key_id, signature.nonce, signature.timestamp + max_skew):
        return RequestCheck(None, Refusal.REPLAYED_NONCE)
    return checked
