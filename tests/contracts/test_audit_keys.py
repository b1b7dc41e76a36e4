"""AuditKeys contract: tests/fakes.py FakeAuditKeys and adapters/keys/openbao.py
OpenBaoAuditKeys on the stack's OpenBao (AppRole custody-audit writes, custody-auditor
reads).

Checked: a data key is 32 fresh bytes whose wrapping does not show it; the auditor
unwraps it to the same bytes, any other role gets KeyAccessDenied (permanent); a chain
head's signature reads 'vault:v<N>:<base64>' and verifies, as Ed25519 over the digest,
with public_keys()[N] as both roles read them, and fails for another digest; a role
that may not sign gets KeyAccessDenied. OpenBao's auditor may not mint data keys either
(the fake has no role for that). Data keys are compared as booleans, never printed."""

from __future__ import annotations

import base64
import hmac
import re
import secrets

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from adapters.keys.openbao import OpenBaoAuditKeys
from sagas.audit import ed25519_checker
from sagas.errors import KeyAccessDenied
from sagas.ports import AuditKeys
from services.settings import PlatformSettings
from tests.fakes import FakeAuditKeys

SIGNATURE = re.compile(r"vault:v(\d+):([A-Za-z0-9+/]+={0,2})")


def _denied(info: pytest.ExceptionInfo[KeyAccessDenied]) -> tuple[str, bool]:
    return info.value.code, info.value.transient


class AuditKeysContract:
    """`writer` mints data keys and signs; `auditor` unwraps the writer's data keys;
    `not_auditor` may not unwrap them and `not_writer` may not sign."""

    @pytest.fixture
    def roles(self) -> tuple[AuditKeys, AuditKeys, AuditKeys, AuditKeys]:
        raise NotImplementedError  # writer, auditor, not_auditor, not_writer

    def test_are_the_port(self, roles: tuple[AuditKeys, ...]) -> None:
        assert all(isinstance(role, AuditKeys) for role in roles)

    def test_data_keys_are_fresh_aes_256_keys(self, roles: tuple[AuditKeys, ...]) -> None:
        writer = roles[0]
        (one, wrapped_one), (two, wrapped_two) = writer.new_data_key(), writer.new_data_key()
        shown = any(form in wrapped_one for form in (one.hex(), base64.b64encode(one).decode()))
        fresh = not hmac.compare_digest(one, two) and wrapped_one != wrapped_two
        assert (len(one), len(two), shown, fresh) == (32, 32, False, True)

    def test_the_auditor_unwraps_the_writers_data_keys(self, roles: tuple[AuditKeys, ...]) -> None:
        writer, auditor = roles[:2]
        keys = [writer.new_data_key() for _ in range(3)]
        same = [hmac.compare_digest(auditor.unwrap_data_key(w), plain) for plain, w in keys]
        assert same == [True, True, True]

    def test_no_other_role_unwraps_a_data_key(self, roles: tuple[AuditKeys, ...]) -> None:
        writer, _, not_auditor, _ = roles
        _, wrapped = writer.new_data_key()
        with pytest.raises(KeyAccessDenied) as info:
            not_auditor.unwrap_data_key(wrapped)
        assert _denied(info) == ("CUS-4031", False)

    def test_a_signed_head_verifies_with_the_public_key_of_its_version(
        self, roles: tuple[AuditKeys, ...]
    ) -> None:
        writer, auditor = roles[:2]
        digest, other = secrets.token_bytes(32), secrets.token_bytes(32)
        signature = writer.sign(digest)
        match = SIGNATURE.fullmatch(signature)
        assert match is not None, signature
        keys = auditor.public_keys()
        assert keys == writer.public_keys()
        assert keys and all(len(k) == 32 for k in keys.values())
        key = Ed25519PublicKey.from_public_bytes(keys[int(match[1])])
        key.verify(base64.b64decode(match[2]), digest)  # raises if it does not verify
        with pytest.raises(InvalidSignature):
            key.verify(base64.b64decode(match[2]), other)
        check = ed25519_checker(keys)  # as the audit chain's verifier reads them
        assert (check(signature, digest), check(signature, other)) == (True, False)

    def test_a_role_that_may_not_sign_cannot_forge_a_head(
        self, roles: tuple[AuditKeys, ...]
    ) -> None:
        with pytest.raises(KeyAccessDenied) as info:
            roles[3].sign(secrets.token_bytes(32))
        assert _denied(info) == ("CUS-4031", False)


class TestFakeAuditKeys(AuditKeysContract):
    @pytest.fixture
    def roles(self) -> tuple[AuditKeys, AuditKeys, AuditKeys, AuditKeys]:
        both = FakeAuditKeys()  # one instance: a fake's roles share no keys
        return both, both, FakeAuditKeys(may_unwrap=False), FakeAuditKeys(may_sign=False)


@pytest.mark.stack
class TestOpenBaoAuditKeys(AuditKeysContract):
    @pytest.fixture
    def roles(
        self, stack_settings: PlatformSettings
    ) -> tuple[AuditKeys, AuditKeys, AuditKeys, AuditKeys]:
        def role(name: str) -> OpenBaoAuditKeys:
            return OpenBaoAuditKeys(stack_settings.openbao_addr, *stack_settings.approle(name))

        writer, auditor = role("custody-audit"), role("custody-auditor")
        return writer, auditor, writer, auditor

    def test_the_auditor_may_not_mint_data_keys(self, roles: tuple[AuditKeys, ...]) -> None:
        with pytest.raises(KeyAccessDenied) as info:
            roles[1].new_data_key()
        assert _denied(info) == ("CUS-4031", False)
