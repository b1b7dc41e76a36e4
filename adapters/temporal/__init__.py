"""Temporal client construction, shared by the API, the worker, the router and the signer.

`connect` speaks plaintext to a dev server, or TLS (optionally mutual, with a client
certificate) and an API key to a production cluster, as `TemporalTransport` says
(from CUSTODY_TEMPORAL_* settings, services/settings.py; docs/security.md "Temporal").
An API key is only ever sent over TLS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import TLSConfig


class TemporalTransportError(ValueError):
    """The Temporal transport settings contradict each other or name unreadable files."""


@dataclass(frozen=True)
class TemporalTransport:
    """How a process reaches Temporal. Plaintext unless `tls` or a CA or client
    certificate is given. Files only: no secret is ever a settings value."""

    tls: bool = False
    ca_file: Path | None = None  # the cluster's CA; None: the system's roots
    cert_file: Path | None = None  # the client's certificate (mTLS), with key_file
    key_file: Path | None = None
    server_name: str | None = None  # the name the server's certificate is checked for
    api_key_file: Path | None = None  # a Temporal API key, sent as a bearer token

    @property
    def uses_tls(self) -> bool:
        return self.tls or self.ca_file is not None or self.cert_file is not None

    def tls_config(self) -> TLSConfig | bool:
        """False for plaintext, else the TLS configuration (TemporalTransportError if
        it is incomplete)."""
        if (self.cert_file is None) != (self.key_file is None):
            raise TemporalTransportError(
                "a client certificate needs its key, and a key its certificate"
            )
        if not self.uses_tls:
            if self.server_name:
                raise TemporalTransportError("a TLS server name without TLS")
            return False
        return TLSConfig(
            server_root_ca_cert=_read(self.ca_file, "the Temporal CA"),
            client_cert=_read(self.cert_file, "the Temporal client certificate"),
            client_private_key=_read(self.key_file, "the Temporal client key"),
            domain=self.server_name or None,
        )

    def api_key(self) -> str | None:
        if self.api_key_file is None:
            return None
        if not self.uses_tls:
            raise TemporalTransportError("a Temporal API key is only sent over TLS")
        key = (_read(self.api_key_file, "the Temporal API key") or b"").decode().strip()
        if not key:
            raise TemporalTransportError(f"{self.api_key_file} holds no API key")
        return key


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TemporalTransportError(f"{what}: cannot read {path} ({exc.strerror})") from None


async def connect(address: str, namespace: str, transport: TemporalTransport) -> Client:
    """A Temporal client with the pydantic data converter (configured here, once). The
    transport is always given (`PlatformSettings.temporal_transport()`): a forgotten one
    must not quietly mean plaintext."""
    return await Client.connect(
        address,
        namespace=namespace,
        data_converter=pydantic_data_converter,
        tls=transport.tls_config(),
        api_key=transport.api_key(),
    )
