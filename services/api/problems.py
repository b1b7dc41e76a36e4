"""RFC 9457 problem details: every error the API returns, with the platform's stable code."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sagas import errors as e

log = logging.getLogger("custody.api")
PROBLEM = "application/problem+json"
TYPE_BASE = "https://custody.example/problems/"

STATUS: dict[type[e.CustodyError], int] = {
    e.RequestInvalid: 422,
    e.IdempotencyKeyMissing: 400,
    e.BodyTooLarge: 413,
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.RequestSignatureInvalid: 401,
    e.KeyAccessDenied: 403,
    e.NotFound: 404,
    e.UnknownAccount: 404,
    e.IdempotencyConflict: 409,
    e.ApprovalRefused: 409,
    e.ApprovalExpired: 409,
    e.InvalidState: 409,
    e.AccountConflict: 409,
    e.TransferIdConflict: 409,
    e.DependencyUnavailable: 503,
    e.ApprovalByProposer: 409,
    e.ProposalExpired: 409,
    e.ProposalStale: 409,
    e.GovernanceUnverified: 503,
}


class Problem(BaseModel):
    """RFC 9457 problem details, with the platform's stable error code."""

    type: str = Field(examples=[TYPE_BASE + "CUS-3002"])
    title: str = Field(examples=["address invalid"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["0xabc is not an Ethereum address"])
    code: str = Field(pattern=r"^CUS-\d{4}$", examples=["CUS-3002"])
    instance: str | None = Field(default=None, examples=["/v1/clients/acme/withdrawals"])


def problem(
    err: e.CustodyError,
    instance: str | None = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    code = status or STATUS.get(type(err), 422)
    body = {
        "type": TYPE_BASE + err.code,
        "title": err.title,
        "status": code,
        "detail": err.detail or err.title,
        "code": err.code,
        **({"instance": instance} if instance else {}),
    }
    headers = {**(headers or {}), **({"WWW-Authenticate": "Bearer"} if code == 401 else {})}
    return JSONResponse(body, status_code=code, media_type=PROBLEM, headers=headers or None)


async def custody_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.CustodyError)
    return problem(exc, request.url.path)


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errs = exc.errors()
    if any(_is_key_header(err.get("loc", ())) for err in errs):
        return problem(e.IdempotencyKeyMissing("send an Idempotency-Key header"), request.url.path)
    first = errs[0] if errs else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    if first.get("type") == "json_invalid":
        return problem(
            e.RequestInvalid(f"malformed JSON: {first.get('msg')}"), request.url.path, 400
        )
    return problem(e.RequestInvalid(f"{where}: {first.get('msg')}"), request.url.path)


def _is_key_header(loc: Sequence[Any]) -> bool:
    return len(loc) == 2 and loc[0] == "header" and str(loc[1]).lower() == "idempotency-key"


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return problem(e.NotFound(request.url.path), request.url.path)
    err = e.RequestInvalid(str(exc.detail))
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # RFC 9110: every method the path takes, not one route's
        headers["Allow"] = ", ".join(_allowed(request))
    return problem(err, request.url.path, exc.status_code, headers)


def _allowed(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _child = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem(e.DependencyUnavailable("the database did not answer"), request.url.path)


async def unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem(e.CustodyError("an unexpected error; it was logged"), request.url.path, 500)
