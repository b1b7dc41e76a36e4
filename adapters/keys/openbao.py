"""KeyWrapper on OpenBao transit, authenticated by AppRole (hvac).

The role decides what this instance may do: the API and worker roles can wrap
only; the signer role can also unwrap. A refusal is KeyAccessDenied, never a retry.
"""

from __future__ import annotations

import base64

import hvac
import requests
from hvac.exceptions import Forbidden, InvalidRequest, VaultDown

from sagas.errors import DependencyUnavailable, KeyAccessDenied


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
        self._client.auth.approle.login(role_id=self._role_id, secret_id=self._secret_id)

    def _call(self, op: str, **kwargs: str) -> dict[str, object]:
        transit = self._client.secrets.transit
        fn = transit.encrypt_data if op == "encrypt" else transit.decrypt_data
        for attempt in (1, 2):
            try:
                if not self._client.token:
                    self._login()
                result: dict[str, object] = fn(name=self._key, **kwargs)["data"]
                return result
            except Forbidden as exc:
                # An expired token is also a 403: log in again once before concluding.
                if attempt == 1:
                    self._client.token = None
                    continue
                raise KeyAccessDenied(f"transit {op} on {self._key}") from exc
            except (VaultDown, requests.ConnectionError, requests.Timeout) as exc:
                raise DependencyUnavailable(f"openbao: transit {op}") from exc
            except InvalidRequest as exc:
                raise KeyAccessDenied(f"transit {op} on {self._key}: invalid request") from exc
        raise AssertionError("unreachable")

    def wrap(self, plaintext: bytes) -> str:
        data = self._call("encrypt", plaintext=base64.b64encode(plaintext).decode())
        return str(data["ciphertext"])

    def unwrap(self, ciphertext: str) -> bytes:
        data = self._call("decrypt", ciphertext=ciphertext)
        return base64.b64decode(str(data["plaintext"]))
