"""The API's request dependencies: the caller (bearer token) and the Idempotency-Key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sagas.errors import IdempotencyKeyMissing
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


Who = Annotated[Principal, Depends(principal)]
Key = Annotated[str, Depends(idempotency_key)]
