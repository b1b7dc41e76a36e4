"""KeyWrapper on OpenBao transit, authenticated by AppRole (hvac).

The role decides what this instance may do: the API and worker roles can wrap
only; the signer role can also unwrap. A refusal is KeyAccessDenied, never a retry.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import hvac
import requests
from hvac.exceptions import Forbidden, InvalidRequest, VaultDown

from sagas.errors import CiphertextInvalid, DependencyUnavailable, KeyAccessDenied

_UNREACHABLE = (VaultDown, requests.ConnectionError, requests.Timeout)


class OpenBaoKeyWrapper:
    def __init__(
        self, addr: str, role_id: str, secret_id: str, key_name: str, timeout: float = 10.0
    ) -> None:
        self._client = hvac.Client(url=addr, timeout=timeout)
        self._role_id = role_id
        self._secret_id = secret_id
        self._key = key_name

    def __repr__(self) -> str:  # never show credentials, even in a traceback
        return f"OpenBaoKeyWrapper(key={self._key!r})"

    def _login(self) -> None:
        try:
            self._client.auth.approle.login(role_id=self._role_id, secret_id=self._secret_id)
        except (Forbidden, InvalidRequest) as exc:
            raise KeyAccessDenied("approle login refused") from exc
        except _UNREACHABLE as exc:
            raise DependencyUnavailable("openbao: login") from exc

    def _transit(self, op: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        for attempt in (1, 2):
            if not self._client.token:
                self._login()
            try:
                return dict(call()["data"])
            except Forbidden as exc:
                # An expired token is also a 403: log in again once before concluding.
                if attempt == 1:
                    self._client.token = None
                    continue
                raise KeyAccessDenied(f"transit {op} on {self._key}") from exc
            except InvalidRequest as exc:
                raise CiphertextInvalid(f"transit {op} on {self._key}") from exc
            except _UNREACHABLE as exc:
                raise DependencyUnavailable(f"openbao: transit {op}") from exc
        raise AssertionError("unreachable")

    def wrap(self, plaintext: bytes) -> str:
        encoded = base64.b64encode(plaintext).decode()
        transit = self._client.secrets.transit
        data = self._transit(
            "encrypt", lambda: transit.encrypt_data(name=self._key, plaintext=encoded)
        )
        return str(data["ciphertext"])

    def unwrap(self, ciphertext: str) -> bytes:
        transit = self._client.secrets.transit
        data = self._transit(
            "decrypt", lambda: transit.decrypt_data(name=self._key, ciphertext=ciphertext)
        )
        return base64.b64decode(str(data["plaintext"]))
