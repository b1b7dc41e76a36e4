"""Shared fixtures. Tests under integration/ and the real-service contract cases need
the stack from infra/ (`custody stack up`); without it they fail loudly, never skip."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from services.settings import PlatformSettings, stack_env_file


@pytest.fixture(scope="session")
def stack_settings() -> PlatformSettings:
    env = stack_env_file()
    if not env.exists():
        pytest.fail(f"the stack is not up ({env} missing): run `make up` or `custody stack up`")
    return PlatformSettings.load()


@pytest.fixture
def fresh_postgres_url(stack_settings: PlatformSettings) -> Iterator[str]:
    """A new, empty database in the stack's PostgreSQL cluster, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin_url = stack_settings.postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    yield stack_settings.postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
