"""OpenBao: transit through AppRole, least privilege per role, every unwrap audited."""

from __future__ import annotations

import json
import secrets

import hvac
import pytest

from adapters.keys.openbao import OpenBaoKeyWrapper
from sagas.errors import KeyAccessDenied
from services.settings import PlatformSettings


def _wrapper(s: PlatformSettings, role: str) -> OpenBaoKeyWrapper:
    return OpenBaoKeyWrapper(s.openbao_addr, *s.approle(role), s.openbao_kek)


def test_worker_wraps_and_signer_gets_the_exact_bytes_back(
    stack_settings: PlatformSettings,
) -> None:
    seed = secrets.token_bytes(64)
    ciphertext = _wrapper(stack_settings, "custody-worker").wrap(seed)
    assert ciphertext.startswith("vault:v1:")
    assert _wrapper(stack_settings, "custody-signer").unwrap(ciphertext) == seed


@pytest.mark.parametrize("role", ["custody-api", "custody-worker"])
def test_api_and_worker_roles_are_refused_a_transit_decrypt(
    stack_settings: PlatformSettings, role: str
) -> None:
    ciphertext = _wrapper(stack_settings, "custody-signer").wrap(b"seed")
    with pytest.raises(KeyAccessDenied) as info:
        _wrapper(stack_settings, role).unwrap(ciphertext)
    assert info.value.code == "CUS-4031"


def test_api_role_token_gets_403_from_openbao_itself(stack_settings: PlatformSettings) -> None:
    # Not only our adapter's mapping: OpenBao's own answer to the API role is "permission denied".
    client = hvac.Client(url=stack_settings.openbao_addr)
    role_id, secret_id = stack_settings.approle("custody-api")
    client.auth.approle.login(role_id=role_id, secret_id=secret_id)
    ciphertext = _wrapper(stack_settings, "custody-signer").wrap(b"seed")
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.transit.decrypt_data(name=stack_settings.openbao_kek, ciphertext=ciphertext)
    with pytest.raises(hvac.exceptions.Forbidden):
        client.secrets.transit.read_key(name=stack_settings.openbao_kek)


def test_wrong_secret_id_is_refused(stack_settings: PlatformSettings) -> None:
    role_id, _ = stack_settings.approle("custody-signer")
    impostor = OpenBaoKeyWrapper(
        stack_settings.openbao_addr, role_id, "not-the-secret", stack_settings.openbao_kek
    )
    with pytest.raises(KeyAccessDenied):
        impostor.wrap(b"x")


def test_each_unwrap_is_in_the_audit_device_log(stack_settings: PlatformSettings) -> None:
    audit_log = stack_settings.openbao_approle_dir.parent.parent / "logs" / "openbao-audit.log"
    before = audit_log.stat().st_size
    ciphertext = _wrapper(stack_settings, "custody-worker").wrap(b"audited seed")
    _wrapper(stack_settings, "custody-signer").unwrap(ciphertext)
    with audit_log.open() as f:
        f.seek(before)
        records = [json.loads(line) for line in f if line.strip()]
    decrypts = [
        r
        for r in records
        if r.get("type") == "response"
        and r["request"]["path"] == f"transit/decrypt/{stack_settings.openbao_kek}"
    ]
    assert len(decrypts) == 1
    assert decrypts[0]["auth"]["policies"] == ["custody-signer", "default"]
    # The audit device HMACs secrets: the plaintext never lands in the log in clear.
    assert "audited seed" not in audit_log.read_text()
