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


def _header(name: str, pattern: str, text: str) -> object:
    return Header(alias=name, pattern=pattern, max_length=128, description=text)


async def signed_request(
    request: Request,
    key_id: Annotated[
        str | None, _header("Custody-Key-Id", r"^[0-9a-f]{32}$", "the client key's id")
    ] = None,
    timestamp: Annotated[
        str | None,
        _header("Custody-Timestamp", r"^[0-9T:Z-]{20}$", "RFC 3339 UTC, whole seconds"),
    ] = None,
    nonce: Annotated[
        str | None, _header("Custody-Nonce", r"^[A-Za-z0-9_-]{16,128}$", "used once")
    ] = None,
    signature: Annotated[
        str | None,
        _header("Custody-Signature", r"^[A-Za-z0-9_-]{1,128}$", "Ed25519, base64url"),
    ] = None,
) -> SignedRequest | None:
    """The client's request signature (docs/security.md), with the exact bytes received;
    None if the request carries none (where one is needed, that is refused)."""
    given = (key_id, timestamp, nonce, signature)
    if all(v is None for v in given):
        return None
    if any(v is None for v in given):
        raise RequestSignatureInvalid("send all four Custody-* signature headers")
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
