"""A JSON-over-HTTP call with a timeout and retries on transient failures only (no answer,
502/503/504), each retry with the same idempotency key. What is left after the retries
is DependencyUnavailable, which the sagas' retry policies retry again."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from sagas.errors import DependencyUnavailable

log = logging.getLogger("custody.http")
TRANSIENT_STATUS = frozenset({502, 503, 504})


class JsonHttp:
    def __init__(
        self,
        base_url: str,
        name: str,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.2,
    ) -> None:
        self.name = name
        self._http = httpx.Client(base_url=base_url, timeout=timeout)
        self._attempts = attempts
        self._backoff = backoff

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        retry: bool = True,
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of the first non-transient answer."""
        headers = {"Idempotency-Key": key} if key else {}
        attempts = self._attempts if retry else 1
        last = ""
        for attempt in range(1, attempts + 1):
            try:
                reply = self._http.request(method, path, json=body, headers=headers)
            except httpx.HTTPError as exc:  # timeouts, refused connections, resets
                last = f"{type(exc).__name__}"
            else:
                if reply.status_code not in TRANSIENT_STATUS:
                    try:
                        data = reply.json()
                    except ValueError:
                        data = {"code": "NOT_JSON", "detail": reply.text[:200]}
                    return reply.status_code, data if isinstance(data, dict) else {"items": data}
                last = f"HTTP {reply.status_code}"
            log.warning(
                "%s %s %s: %s (attempt %d of %d)", self.name, method, path, last, attempt, attempts
            )
            if attempt < attempts:
                time.sleep(self._backoff * 2 ** (attempt - 1))
        raise DependencyUnavailable(f"{self.name} {method} {path}: {last}")

    def close(self) -> None:
        self._http.close()
