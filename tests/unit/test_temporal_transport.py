"""The Temporal transport settings: plaintext by default, TLS when asked, an API key
only over TLS, and clear errors for settings that contradict each other."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from adapters.temporal import TemporalTransport, TemporalTransportError
from services.settings import PlatformSettings


def test_plaintext_by_default() -> None:
    transport = PlatformSettings().temporal_transport()
    assert transport.tls_config() is False
    assert transport.api_key() is None


def test_tls_from_the_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ca", "cert", "key"):
        (tmp_path / name).write_bytes(f"-- {name} --".encode())
    (tmp_path / "api-key").write_text("  k-123\n")
    monkeypatch.setenv("CUSTODY_TEMPORAL_TLS_CA_FILE", str(tmp_path / "ca"))
    monkeypatch.setenv("CUSTODY_TEMPORAL_TLS_CERT_FILE", str(tmp_path / "cert"))
    monkeypatch.setenv("CUSTODY_TEMPORAL_TLS_KEY_FILE", str(tmp_path / "key"))
    monkeypatch.setenv("CUSTODY_TEMPORAL_TLS_SERVER_NAME", "temporal.bank.internal")
    monkeypatch.setenv("CUSTODY_TEMPORAL_API_KEY_FILE", str(tmp_path / "api-key"))
    transport = PlatformSettings().temporal_transport()
    tls = transport.tls_config()
    assert isinstance(tls, TLSConfig)
    assert (tls.server_root_ca_cert, tls.client_cert, tls.client_private_key) == (
        b"-- ca --",
        b"-- cert --",
        b"-- key --",
    )
    assert tls.domain == "temporal.bank.internal"
    assert transport.api_key() == "k-123"


def test_tls_with_the_system_roots() -> None:
    tls = TemporalTransport(tls=True).tls_config()
    assert isinstance(tls, TLSConfig)
    assert tls.server_root_ca_cert is None


@pytest.mark.parametrize(
    ("transport", "says"),
    [
        (TemporalTransport(cert_file=Path("c")), "needs its key"),
        (TemporalTransport(tls=True, key_file=Path("k")), "needs its key"),
        (TemporalTransport(server_name="t"), "without TLS"),
    ],
)
def test_contradictory_tls_settings_are_refused(transport: TemporalTransport, says: str) -> None:
    with pytest.raises(TemporalTransportError, match=says):
        transport.tls_config()


def test_an_api_key_is_never_sent_in_plaintext(tmp_path: Path) -> None:
    (tmp_path / "api-key").write_text("k-123")
    with pytest.raises(TemporalTransportError, match="only sent over TLS"):
        TemporalTransport(api_key_file=tmp_path / "api-key").api_key()


def test_an_empty_or_missing_key_file_is_refused_without_its_content(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TemporalTransportError, match="holds no API key"):
        TemporalTransport(tls=True, api_key_file=tmp_path / "empty").api_key()
    with pytest.raises(TemporalTransportError, match="cannot read") as missing:
        TemporalTransport(ca_file=tmp_path / "absent").tls_config()
    assert str(tmp_path / "absent") in str(missing.value)
