"""Stack configuration: ports overridable by env, every service accounted for."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.services import all_services
from infra.settings import StackSettings
from infra.stack import Stack


def test_ports_and_stack_dir_come_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CUSTODY_STACK_DIR", str(tmp_path))
    monkeypatch.setenv("CUSTODY_KAFKA_PORT", "29092")
    s = StackSettings()
    assert s.stack_dir == tmp_path
    assert s.kafka_port == 29092
    kafka = next(svc for svc in all_services(s) if svc.name == "kafka")
    assert kafka.ports()["broker"] == 29092
    assert kafka.pid_file.is_relative_to(tmp_path)
    assert kafka.log_file.is_relative_to(tmp_path)


def test_the_services_have_distinct_ports(tmp_path: Path) -> None:
    services = all_services(StackSettings(stack_dir=tmp_path))
    assert [s.name for s in services] == [
        "postgres",
        "kafka",
        "temporal",
        "openbao",
        "anvil",
        "btcd",
        "simd",
        "simd-b",
        "bank",
        "liquidity",
    ]
    ports = [p for s in services for p in s.ports().values()]
    assert len(ports) == len(set(ports))


def test_unknown_service_names_are_refused(tmp_path: Path) -> None:
    stack = Stack(StackSettings(stack_dir=tmp_path), say=lambda _m: None)
    with pytest.raises(SystemExit, match="nosuch"):
        stack.select(["kafka", "nosuch"])


def test_a_stack_that_never_ran_reports_everything_stopped(tmp_path: Path) -> None:
    stack = Stack(StackSettings(stack_dir=tmp_path), say=lambda _m: None)
    assert all(not row.running and not row.healthy for row in stack.status())
    assert stack.down() == []


def test_a_kraft_cluster_id_never_starts_with_a_dash() -> None:
    """The storage tool reads an id starting with '-' as an option (a first start failed
    once in CI on exactly that)."""
    import base64

    from infra.services.kafka import new_cluster_id

    ids = [new_cluster_id() for _ in range(5000)]  # ~78 would start with '-' otherwise
    assert not any(i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
