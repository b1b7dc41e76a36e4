"""`custody operator ...`: key files, approvals through the CLI, and no secret in its output."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from sagas.intents import Approval, Intent, b64url, verify_approval
from services.cli import operator
from services.cli.main import main

PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(operator.PASSPHRASE_ENV, PASSPHRASE)


def _intent(**changes: object) -> Intent:
    fields: dict[str, object] = {
        "kind": "withdrawal",
        "operation_id": "wd-cli-1",
        "client_id": "bank-a",
        "asset": "ETH",
        "amount": 2 * 10**18,
        "destination": "0x" + "ab" * 20,
        "fee_cap": 10**16,
        "policy_version": 1,
        "expires_at": (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0),
    }
    fields.update(changes)
    return Intent.model_validate(fields)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["operator", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _secrets_of(key_file: Path) -> list[str]:
    """Every text form in which the private key or the passphrase could leak."""
    key = load_pem_private_key(key_file.read_bytes(), password=PASSPHRASE.encode())
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()
    body = "".join(pem.splitlines()[1:-1])
    return [
        PASSPHRASE,
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode(),
        b64url(raw),
        body,
        key_file.read_text().splitlines()[1],  # the encrypted PEM, too
    ]


def _assert_no_secret(key_file: Path, *outputs: str) -> None:
    for secret in _secrets_of(key_file):
        for text in outputs:
            assert secret not in text


@pytest.fixture
def key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "alice.pem"
    code, _, err = _run(capsys, "keygen", "--out", str(path))
    assert code == 0, err
    return path


def test_keygen_creates_an_encrypted_0600_key_and_prints_only_public_parts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "alice.pem"
    code, out, err = _run(capsys, "keygen", "--out", str(path))
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----\n")
    with pytest.raises(TypeError):  # no key without the passphrase
        load_pem_private_key(path.read_bytes(), password=None)
    printed = json.loads(out)
    assert set(printed) == {"key_id", "public_key"}
    key = operator.load(path, PASSPHRASE.encode())
    assert printed == operator._public(key)
    assert sorted(os.listdir(tmp_path)) == ["alice.pem"]  # no temporary file left behind
    _assert_no_secret(path, out, err)


def test_keygen_refuses_to_overwrite(key_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = key_file.read_bytes()
    code, out, err = _run(capsys, "keygen", "--out", str(key_file))
    assert code == 4 and "never overwritten" in err and out == ""
    assert key_file.read_bytes() == before
    with pytest.raises(operator.CommandRefused):  # the race after the first check, too
        operator._write_new(key_file, b"other")
    assert key_file.read_bytes() == before
    assert sorted(os.listdir(key_file.parent)) == ["alice.pem"]


def test_keygen_refuses_a_short_or_empty_passphrase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for weak in ("", "short"):
        monkeypatch.setenv(operator.PASSPHRASE_ENV, weak)
        code, _, err = _run(capsys, "keygen", "--out", str(tmp_path / "k.pem"))
        assert code == 4 and "passphrase" in err
    assert not (tmp_path / "k.pem").exists()


def test_the_passphrase_is_prompted_twice_when_not_in_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(operator.PASSPHRASE_ENV)
    answers = iter([PASSPHRASE, PASSPHRASE + "x"])
    monkeypatch.setattr(operator.getpass, "getpass", lambda prompt: next(answers))
    code, _, err = _run(capsys, "keygen", "--out", str(tmp_path / "k.pem"))
    assert code == 4 and "differ" in err and not (tmp_path / "k.pem").exists()
    monkeypatch.setattr(operator.getpass, "getpass", lambda prompt: PASSPHRASE)
    code, out, err = _run(capsys, "keygen", "--out", str(tmp_path / "k.pem"))
    assert code == 0
    _assert_no_secret(tmp_path / "k.pem", out, err)


def test_pubkey_prints_the_same_public_key(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "pubkey", "--key", str(key_file))
    assert code == 0
    assert json.loads(out) == operator._public(operator.load(key_file, PASSPHRASE.encode()))
    _assert_no_secret(key_file, out, err)


def test_a_wrong_passphrase_is_refused_without_echoing_anything_secret(
    key_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(operator.PASSPHRASE_ENV, "not the passphrase at all")
    code, out, err = _run(capsys, "pubkey", "--key", str(key_file))
    assert code == 4 and "wrong passphrase" in err and out == ""
    assert "not the passphrase at all" not in err


def test_a_key_file_readable_by_others_is_refused(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file.chmod(0o644)
    code, _, err = _run(capsys, "pubkey", "--key", str(key_file))
    assert code == 4 and "chmod 600" in err


def test_sign_and_verify_round_trip_through_the_cli(
    key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    intent = _intent()
    intent_file = tmp_path / "intent.json"
    intent_file.write_bytes(intent.canonical())
    code, out, err = _run(capsys, "sign", "--key", str(key_file), "--intent", str(intent_file))
    assert code == 0
    approval = Approval.model_validate_json(out)
    public = operator._public(operator.load(key_file, PASSPHRASE.encode()))
    assert approval.intent_hash == intent.hash() and approval.key_id == public["key_id"]
    assert verify_approval(intent, approval, bytes.fromhex(public["public_key"]))
    # The operator sees what is signed, on stderr.
    assert intent.hash() in err and "2000000000000000000" in err and intent.destination in err
    _assert_no_secret(key_file, out, err)

    approval_file = tmp_path / "approval.json"
    approval_file.write_text(out)
    verify = ("verify", "--approval", str(approval_file), "--pubkey", public["public_key"])
    code, out, _ = _run(capsys, *verify, "--intent", str(intent_file))
    assert code == 0 and out.startswith("OK:")

    other_file = tmp_path / "other.json"
    other_file.write_bytes(_intent(destination="0x" + "cd" * 20).canonical())
    code, out, _ = _run(capsys, *verify, "--intent", str(other_file))
    assert code == 1 and out == "BAD: the approval is over another intent\n"

    bob = tmp_path / "bob.pem"
    assert _run(capsys, "keygen", "--out", str(bob))[0] == 0
    bob_public = operator._public(operator.load(bob, PASSPHRASE.encode()))["public_key"]
    code, out, _ = _run(
        capsys,
        "verify",
        "--approval",
        str(approval_file),
        "--pubkey",
        bob_public,
        "--intent",
        str(intent_file),
    )
    assert code == 1 and out == "BAD: the approval names another key\n"


def test_sign_reads_the_intent_from_stdin(
    key_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    intent = _intent()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(intent.canonical())))
    code, out, err = _run(capsys, "sign", "--key", str(key_file), "--intent", "-")
    assert code == 0
    assert Approval.model_validate_json(out).intent_hash == intent.hash()
    _assert_no_secret(key_file, out, err)


def test_sign_refuses_an_expired_intent_and_a_malformed_one(
    key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expired = tmp_path / "expired.json"
    expired.write_bytes(_intent(expires_at=datetime(2020, 1, 1, tzinfo=UTC)).canonical())
    code, out, err = _run(capsys, "sign", "--key", str(key_file), "--intent", str(expired))
    assert code == 4 and "expired" in err and out == ""
    malformed = tmp_path / "malformed.json"
    doc = json.loads(_intent().canonical())
    malformed.write_text(json.dumps({**doc, "amount": 1.5}))
    code, out, err = _run(capsys, "sign", "--key", str(key_file), "--intent", str(malformed))
    assert code == 4 and "not an intent" in err and out == ""


def test_sign_shows_what_is_signed_with_nothing_hidden(
    key_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A terminal escape that would erase the line, and a Cyrillic look-alike of "a" (U+0430).
    sneaky = "0x" + "ab" * 20 + "\x1b[2K\r0x" + "cd" * 19 + "\u0430b"
    intent_file = tmp_path / "intent.json"
    intent_file.write_bytes(_intent(destination=sneaky).canonical())
    code, _, err = _run(capsys, "sign", "--key", str(key_file), "--intent", str(intent_file))
    assert code == 0
    assert "\x1b" not in err and "\u0430" not in err
    assert "\\u001b[2K\\r" in err and "\\u0430b" in err
