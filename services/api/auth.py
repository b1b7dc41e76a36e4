"""Bearer tokens: HS256 JWTs carrying a role (client, operator, auditor), the subject
(who) and, for the client role, the client id. The signing secret is a file only its
owner can read; `custody api token` issues tokens with it."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import jwt
from pydantic import BaseModel

from sagas.errors import Forbidden, Unauthenticated

Role = Literal["client", "operator", "auditor"]
ISSUER = "custody"
AUDIENCE = "custody-api"


class Principal(BaseModel):
    sub: str
    role: Role
    client_id: str | None = None

    def may_see(self, client_id: str) -> None:
        """Clients see their own accounts only; operators and auditors see all."""
        if self.role == "client" and self.client_id != client_id:
            raise Forbidden("a client may act on its own accounts only")

    def must_be(self, *roles: Role) -> None:
        if self.role not in roles:
            raise Forbidden(f"this needs the role {' or '.join(roles)}")


def load_secret(path: Path) -> bytes:
    """The signing secret, created (0600) on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def issue(
    secret: bytes,
    sub: str,
    role: Role,
    client_id: str | None = None,
    ttl: timedelta = timedelta(hours=12),
) -> str:
    if role == "client" and not client_id:
        raise ValueError("a client token needs a client id")
    now = datetime.now(UTC)
    claims = {
        "sub": sub,
        "role": role,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + ttl,
        **({"client_id": client_id} if client_id else {}),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify(secret: bytes, header: str | None) -> Principal:
    if not header or not header.startswith("Bearer "):
        raise Unauthenticated("send Authorization: Bearer <token>")
    try:
        claims = jwt.decode(
            header.removeprefix("Bearer ").strip(),
            secret,
            algorithms=["HS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
        return Principal(sub=claims["sub"], role=claims["role"], client_id=claims.get("client_id"))
    except (jwt.PyJWTError, KeyError, ValueError) as exc:
        raise Unauthenticated(f"token refused: {type(exc).__name__}") from None
