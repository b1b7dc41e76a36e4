"""KeyWrapper contract: the fake and OpenBao transit (through AppRole) behave alike."""

from __future__ import annotations

import secrets

import pytest

from adapters.keys.openbao import OpenBaoKeyWrapper
from sagas.errors import CiphertextInvalid, KeyAccessDenied
from sagas.ports import KeyWrapper
from services.settings import PlatformSettings
from tests.fakes import FakeKeyWrapper


class KeyWrapperContract:
    """`wrapper` may wrap only (the API/worker roles); `signer` may also unwrap."""

    @pytest.fixture
    def wrapper(self) -> KeyWrapper:
        raise NotImplementedError

    @pytest.fixture
    def signer(self) -> KeyWrapper:
        raise NotImplementedError

    def test_are_key_wrappers(self, wrapper: KeyWrapper, signer: KeyWrapper) -> None:
        assert isinstance(wrapper, KeyWrapper)
        assert isinstance(signer, KeyWrapper)

    def test_signer_unwraps_what_was_wrapped(self, wrapper: KeyWrapper, signer: KeyWrapper) -> None:
        seed = secrets.token_bytes(64)
        ciphertext = wrapper.wrap(seed)
        assert seed.hex() not in ciphertext
        assert signer.unwrap(ciphertext) == seed

    def test_wrapping_twice_gives_different_ciphertexts(self, wrapper: KeyWrapper) -> None:
        seed = secrets.token_bytes(32)
        assert wrapper.wrap(seed) != wrapper.wrap(seed)

    def test_wrapping_role_cannot_unwrap(self, wrapper: KeyWrapper) -> None:
        ciphertext = wrapper.wrap(b"seed material")
        with pytest.raises(KeyAccessDenied) as info:
            wrapper.unwrap(ciphertext)
        assert info.value.code == "CUS-4031"
        assert not info.value.transient

    def test_forged_ciphertext_is_invalid(self, wrapper: KeyWrapper, signer: KeyWrapper) -> None:
        real = wrapper.wrap(b"x" * 32)
        forged = real[:-6] + ("AAAAAA" if not real.endswith("AAAAAA") else "BBBBBB")
        with pytest.raises(CiphertextInvalid) as info:
            signer.unwrap(forged)
        assert info.value.code == "CUS-4002"


class TestFakeKeyWrapper(KeyWrapperContract):
    @pytest.fixture
    def vault(self) -> dict[str, bytes]:
        return {}

    @pytest.fixture
    def wrapper(self, vault: dict[str, bytes]) -> KeyWrapper:
        return FakeKeyWrapper(vault, may_unwrap=False)

    @pytest.fixture
    def signer(self, vault: dict[str, bytes]) -> KeyWrapper:
        return FakeKeyWrapper(vault, may_unwrap=True)


def _openbao(settings: PlatformSettings, role: str) -> OpenBaoKeyWrapper:
    return OpenBaoKeyWrapper(settings.openbao_addr, *settings.approle(role), settings.openbao_kek)


@pytest.mark.stack
class TestOpenBaoWorkerRole(KeyWrapperContract):
    @pytest.fixture
    def wrapper(self, stack_settings: PlatformSettings) -> KeyWrapper:
        return _openbao(stack_settings, "custody-worker")

    @pytest.fixture
    def signer(self, stack_settings: PlatformSettings) -> KeyWrapper:
        return _openbao(stack_settings, "custody-signer")


@pytest.mark.stack
class TestOpenBaoApiRole(KeyWrapperContract):
    @pytest.fixture
    def wrapper(self, stack_settings: PlatformSettings) -> KeyWrapper:
        return _openbao(stack_settings, "custody-api")

    @pytest.fixture
    def signer(self, stack_settings: PlatformSettings) -> KeyWrapper:
        return _openbao(stack_settings, "custody-signer")
