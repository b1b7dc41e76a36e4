"""The stack's Kafka configuration: SASL everywhere, deny by default, and no password on
a command line, in stack.env or readable by others."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra import proc
from infra.services.kafka import Kafka
from infra.settings import StackSettings


def test_first_start_formats_with_scram_users_from_a_private_argument_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = Kafka(StackSettings(stack_dir=tmp_path))
    kafka.dir.mkdir(parents=True)
    ran: list[tuple[list[str], str, int]] = []

    def fake_run(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        argfile = Path(cmd[-1].removeprefix("@"))
        ran.append((cmd, argfile.read_text(), argfile.stat().st_mode & 0o777))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(proc, "run", fake_run)
    kafka.prepare(lambda _msg: None)

    internal = json.loads(kafka.secrets_file.read_text())
    admin = json.loads(kafka.admin_file.read_text())
    passwords = [internal["broker"], internal["controller"], admin["password"]]
    ((cmd, args, mode),) = ran
    assert mode == 0o600 and cmd[-1].startswith("@")
    assert not any(p in " ".join(cmd) for p in passwords)  # nothing on the command line
    assert f"name=broker,password={internal['broker']}" in args
    assert f"name=admin,password={admin['password']}" in args
    assert not list(kafka.dir.glob(".format-*"))  # the argument file is gone

    config = kafka.config_file.read_text()
    for path in (kafka.config_file, kafka.secrets_file, kafka.admin_file):
        assert path.stat().st_mode & 0o077 == 0, path
    assert "allow.everyone.if.no.acl.found=false" in config
    assert "org.apache.kafka.metadata.authorizer.StandardAuthorizer" in config
    assert "PLAINTEXT://" not in config.replace("SASL_PLAINTEXT://", "")
    assert "CONTROLLER:SASL_PLAINTEXT" in config
    settings = [line for line in config.splitlines() if not line.startswith("#")]
    assert not any("ANONYMOUS" in line for line in settings)
    assert "super.users=User:admin;User:broker;User:controller" in config


def test_a_restart_keeps_the_passwords_and_formats_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka = Kafka(StackSettings(stack_dir=tmp_path))
    kafka.dir.mkdir(parents=True)
    monkeypatch.setattr(proc, "run", lambda cmd, **_: subprocess.CompletedProcess(cmd, 0))
    kafka.prepare(lambda _msg: None)
    first = kafka.config_file.read_text()
    (kafka.dir / "data").mkdir()
    (kafka.dir / "data" / "meta.properties").write_text("")

    def no_format(cmd: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        raise AssertionError("formatted again")

    monkeypatch.setattr(proc, "run", no_format)
    kafka.prepare(lambda _msg: None)
    assert kafka.config_file.read_text() == first


def test_storage_formatted_without_sasl_is_refused(tmp_path: Path) -> None:
    kafka = Kafka(StackSettings(stack_dir=tmp_path))
    (kafka.dir / "data").mkdir(parents=True)
    (kafka.dir / "data" / "meta.properties").write_text("")
    with pytest.raises(RuntimeError, match="formatted without SASL users"):
        kafka.prepare(lambda _msg: None)
    assert not kafka.healthy()  # no admin credentials: never probed, never created
    assert not kafka.admin_file.exists()
