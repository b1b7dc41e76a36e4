"""Shared fixtures. Tests under integration/ and the real-service contract cases need
the stack from infra/ (`custody stack up`); without it they fail loudly, never skip."""

from __future__ import annotations

import pytest

from services.settings import PlatformSettings, stack_env_file


@pytest.fixture(scope="session")
def stack_settings() -> PlatformSettings:
    env = stack_env_file()
    if not env.exists():
        pytest.fail(f"the stack is not up ({env} missing): run `make up` or `custody stack up`")
    return PlatformSettings.load()
