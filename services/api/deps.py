"""The API's request dependencies: the caller (bearer token) and the Idempotency-Key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from sagas.errors import IdempotencyKeyMissing, RequestSignatureInvalid
from sagas.intents import RequestSignature, SignedRequest, b64url
from services.api.auth import Principal, verify
from services.app.withdrawals import KEY_PATTERN

# Declares the scheme in the OpenAPI document; the token is checked by `verify`, which
# answers 401 problem+json itself (auto_error would answer FastAPI's own 403).
BEARER = HTTPBearer(auto_error=False, description="an HS256 JWT: `custody api token`")
KEY_HEADER = "Idempotency-Key"
KEY_SCHEMA = r"^[A-Za-z0-9._-]{1,64}$"


def principal(
    request: Request,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Principal:
    return verify(request.app.state.token_secret, request.headers.get("authorization"))


def idempotency_key(
    idempotency_key: Annotated[
        str,
        Header(
            alias=KEY_HEADER,
            pattern=KEY_SCHEMA,
            min_length=1,
            max_length=64,
            description="required on every POST: 1-64 of A-Z a-z 0-9 . _ -; a retry with "
            "the same key and body gets the same resource (400 CUS-3006 without it)",
            examples=["inv-2026-0042"],
        ),
    ],
) -> str:
    if not KEY_PATTERN.fullmatch(idempotency_key):  # the schema's pattern, matched whole
        raise IdempotencyKeyMissing("send an Idempotency-Key header")
    return idempotency_key


# The four headers of a client's request signature (docs/security.md). Read from the
# request itself and declared in the OpenAPI document as plain optional strings
# (SIGNATURE_HEADERS): a "null" branch in the schema would invite clients to send the
# text "null".
SIGNATURE_HEADERS = (
    ("Custody-Key-Id", r"^[0-9a-f]{32}$", "the client key's id"),
    ("Custody-Timestamp", r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$",
     "RFC 3339 UTC, whole seconds"),
    ("Custody-Nonce", r"^[A-Za-z0-9_-]{16,128}$", "used once"),
    ("Custody-Signature", r"^[A-Za-z0-9_-]{1,128}$", "Ed25519, base64url"),
)  # fmt: skip
SIGNATURE_PARAMETERS = [
    {
        "name": name,
        "in": "header",
        "required": False,
        "description": text,
        "schema": {"type": "string", "pattern": pattern},
    }
    for name, pattern, text in SIGNATURE_HEADERS
]


async def signed_request(request: Request) -> SignedRequest | None:
    """The client's request signature (docs/security.md), with the exact bytes received;
    None if the request carries none (where one is needed, that is refused)."""
    given = [request.headers.get(name) for name, _pattern, _text in SIGNATURE_HEADERS]
    if all(v is None for v in given):
        return None
    if any(v is None for v in given):
        raise RequestSignatureInvalid("send all four Custody-* signature headers")
    key_id, timestamp, nonce, signature = given
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    target = raw_path.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
    try:
        return SignedRequest(
            method=request.method,
            target=target,
            body=b64url(await request.body()),
            signature=RequestSignature.model_validate(
                {"key_id": key_id, "timestamp": timestamp, "nonce": nonce, "signature": signature},
                strict=False,
            ),
        )
    except (ValidationError, ValueError):
        raise RequestSignatureInvalid("malformed Custody-* signature headers") from None


Signed = Annotated[SignedRequest | None, Depends(signed_request)]
Who = Annotated[Principal, Depends(principal)]
Key = Annotated[str, Depends(idempotency_key)]
