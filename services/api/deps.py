"""The API's request dependencies: the caller (bearer token) and the Idempotency-Key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from sagas.errors import IdempotencyKeyMissing
from services.api.auth import Principal, verify
from services.app.withdrawals import KEY_PATTERN


def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    return verify(request.app.state.token_secret, authorization)


def idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            description="1-64 of A-Z a-z 0-9 . _ -; a retry with the same key and body "
            "gets the first answer",
            examples=["inv-2026-0042"],
        ),
    ] = None,
) -> str:
    if idempotency_key is None or not KEY_PATTERN.fullmatch(idempotency_key):
        raise IdempotencyKeyMissing("send an Idempotency-Key header")
    return idempotency_key


Who = Annotated[Principal, Depends(principal)]
Key = Annotated[str, Depends(idempotency_key)]
