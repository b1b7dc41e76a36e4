"""OpenBao transit through AppRole (hvac): the seed KeyWrapper and the audit chain's keys.

The role decides what an instance may do (policies in infra/openbao/policies/):
the API and worker roles can wrap only; the signer can also unwrap; the audit
writer gets data keys and signs; the auditor unwraps audit data keys. A refusal
is KeyAccessDenied, never a retry.
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
OPERATION_HEADER = "X-Custody-Operation"


class _Session:
    """An AppRole login, renewed by logging in again when a token is refused."""

    def __init__(self, addr: str, role_id: str, secret_id: str, timeout: float) -> None:
        self.client = hvac.Client(url=addr, timeout=timeout)
        self._role_id = role_id
        self._secret_id = secret_id

    def _login(self) -> None:
        try:
            self.client.auth.approle.login(role_id=self._role_id, secret_id=self._secret_id)
        except (Forbidden, InvalidRequest) as exc:
            raise KeyAccessDenied("approle login refused") from exc
        except _UNREACHABLE as exc:
            raise DependencyUnavailable("openbao: login") from exc

    def call(self, what: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        for attempt in (1, 2):
            if not self.client.token:
                self._login()
            try:
                return dict(fn()["data"])
            except Forbidden as exc:
                # An expired token is also a 403: log in again once before concluding.
                if attempt == 1:
                    self.client.token = None
                    continue
                raise KeyAccessDenied(what) from exc
            except InvalidRequest as exc:
                raise CiphertextInvalid(what) from exc
            except _UNREACHABLE as exc:
                raise DependencyUnavailable(f"openbao: {what}") from exc
        raise AssertionError("unreachable")


class OpenBaoKeyWrapper:
    def __init__(
        self, addr: str, role_id: str, secret_id: str, key_name: str, timeout: float = 10.0
    ) -> None:
        self._session = _Session(addr, role_id, secret_id, timeout)
        self._key = key_name

    def __repr__(self) -> str:  # never show credentials, even in a traceback
        return f"OpenBaoKeyWrapper(key={self._key!r})"

    def wrap(self, plaintext: bytes) -> str:
        encoded = base64.b64encode(plaintext).decode()
        transit = self._session.client.secrets.transit
        data = self._session.call(
            f"transit encrypt on {self._key}",
            lambda: transit.encrypt_data(name=self._key, plaintext=encoded),
        )
        return str(data["ciphertext"])

    def unwrap(self, ciphertext: str, operation: str | None = None) -> bytes:
        adapter = self._session.client.adapter
        # The operation id travels as an audited request header (infra configures
        # OpenBao to log it), so every unwrap in the audit device names its operation.
        headers = {OPERATION_HEADER: operation} if operation else {}
        data = self._session.call(
            f"transit decrypt on {self._key}",
            lambda: adapter.post(
                f"/v1/transit/decrypt/{self._key}", json={"ciphertext": ciphertext}, headers=headers
            ),
        )
        return base64.b64decode(str(data["plaintext"]))


class OpenBaoAuditKeys:
    """AuditKeys on transit: data keys under `data_key_name`, signatures by `chain_key_name`."""

    def __init__(
        self,
        addr: str,
        role_id: str,
        secret_id: str,
        data_key_name: str = "custody-audit-data",
        chain_key_name: str = "custody-audit-chain",
        timeout: float = 10.0,
    ) -> None:
        self._session = _Session(addr, role_id, secret_id, timeout)
        self._data_key = data_key_name
        self._chain_key = chain_key_name

    def __repr__(self) -> str:
        return f"OpenBaoAuditKeys(data={self._data_key!r}, chain={self._chain_key!r})"

    def new_data_key(self) -> tuple[bytes, str]:
        transit = self._session.client.secrets.transit
        data = self._session.call(
            f"transit datakey on {self._data_key}",
            lambda: transit.generate_data_key(name=self._data_key, key_type="plaintext", bits=256),
        )
        return base64.b64decode(str(data["plaintext"])), str(data["ciphertext"])

    def unwrap_data_key(self, wrapped: str) -> bytes:
        transit = self._session.client.secrets.transit
        data = self._session.call(
            f"transit decrypt on {self._data_key}",
            lambda: transit.decrypt_data(name=self._data_key, ciphertext=wrapped),
        )
        return base64.b64decode(str(data["plaintext"]))

    def sign(self, digest: bytes) -> str:
        transit = self._session.client.secrets.transit
        data = self._session.call(
            f"transit sign with {self._chain_key}",
            lambda: transit.sign_data(
                name=self._chain_key, hash_input=base64.b64encode(digest).decode()
            ),
        )
        return str(data["signature"])

    def public_keys(self) -> dict[int, bytes]:
        transit = self._session.client.secrets.transit
        data = self._session.call(
            f"transit read key {self._chain_key}",
            lambda: transit.read_key(name=self._chain_key),
        )
        return {int(v): base64.b64decode(k["public_key"]) for v, k in data["keys"].items()}
