"""A bank system's side of request signatures: an httpx Auth that signs every mutating
request with the client's registered Ed25519 key (the `Custody-*` headers the API and
the signer check; the byte format is sagas.intents.request_message).

    http = httpx.Client(base_url=..., headers={"Authorization": "Bearer ..."},
                        auth=ClientRequestSigner(private_key))
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Generator
from datetime import UTC, datetime

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sagas.intents import RequestSignature, SignedRequest, b64url, sign_request

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def headers_for(sig: RequestSignature) -> dict[str, str]:
    return {
        "Custody-Key-Id": sig.key_id,
        "Custody-Timestamp": sig.model_dump(mode="json")["timestamp"],
        "Custody-Nonce": sig.nonce,
        "Custody-Signature": sig.signature,
    }


def signed(
    key: Ed25519PrivateKey, method: str, target: str, body: bytes, now: datetime | None = None
) -> SignedRequest:
    """One request signed with a fresh nonce (also what a Kafka command carries)."""
    when = (now or _now()).replace(microsecond=0)
    signature = sign_request(key, method, target, body, when, secrets.token_urlsafe(18))
    return SignedRequest(method=method, target=target, body=b64url(body), signature=signature)


class ClientRequestSigner(httpx.Auth):
    requires_request_body = True

    def __init__(self, key: Ed25519PrivateKey, clock: Callable[[], datetime] = _now) -> None:
        self._key = key
        self._clock = clock

    def __repr__(self) -> str:
        return "ClientRequestSigner()"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.method in MUTATING:
            target = request.url.raw_path.decode("ascii")
            when = self._clock().replace(microsecond=0)
            nonce = secrets.token_urlsafe(18)
            sig = sign_request(self._key, request.method, target, request.content, when, nonce)
            request.headers.update(headers_for(sig))
        yield request
