"""`custody operator keygen|pubkey|sign|verify|propose|approve`: an operator's own
Ed25519 key, and governance proposals and withdrawals approved with it over the API.

The key file stays with the operator (PKCS#8 PEM, encrypted with a passphrase, mode
0600); the platform only ever sees the public key and the approvals made with it. The
passphrase comes from CUSTODY_OPERATOR_PASSPHRASE or a prompt; the API's address and
bearer token from --api / CUSTODY_API_URL and CUSTODY_API_TOKEN. Nothing here prints or
logs the passphrase, the token or the private key.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import json
import os
import stat
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)
from pydantic import ValidationError

from sagas.intents import (
    GOVERNANCE_KINDS,
    Approval,
    Intent,
    key_id,
    raw_public_key,
    rfc3339,
    sign_intent,
    verify_approval,
)

PASSPHRASE_ENV = "CUSTODY_OPERATOR_PASSPHRASE"
TOKEN_ENV = "CUSTODY_API_TOKEN"
API_ENV = "CUSTODY_API_URL"
MIN_PASSPHRASE = 12


class CommandRefused(Exception):
    """A refusal the operator reads: the message never contains a secret."""


def read_passphrase(new: bool) -> bytes:
    """From the environment, else a prompt (twice for a new key)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        value = getpass.getpass("passphrase of the operator key: ")
        if new and getpass.getpass("the same passphrase again: ") != value:
            raise CommandRefused("the two passphrases differ")
    if not value:
        raise CommandRefused("an empty passphrase")
    if new and len(value) < MIN_PASSPHRASE:
        raise CommandRefused(f"a passphrase of at least {MIN_PASSPHRASE} characters is needed")
    return value.encode()


def _write_new(path: Path, data: bytes) -> None:
    # Written in full to a private temporary file, then linked into place: the key file
    # appears whole or not at all, and link() never replaces an existing file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise CommandRefused(f"{path} exists: a key file is never overwritten") from None
    finally:
        os.unlink(tmp)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _public(key: Ed25519PrivateKey | Ed25519PublicKey) -> dict[str, str]:
    return {"key_id": key_id(key), "public_key": raw_public_key(key).hex()}


def generate(out: Path, passphrase: bytes) -> dict[str, str]:
    """A new key pair in `out` (refused if it exists); returns its public key and key id."""
    if out.exists() or out.is_symlink():
        raise CommandRefused(f"{out} exists: a key file is never overwritten")
    if not out.parent.is_dir():
        raise CommandRefused(f"no directory {out.parent}")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(passphrase))
    _write_new(out, pem)
    return _public(key)


def load(path: Path, passphrase: bytes) -> Ed25519PrivateKey:
    """The private key in `path`; refused if others may read the file or it does not open."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise CommandRefused(f"cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CommandRefused(
            f"{path} is readable by others (mode {stat.S_IMODE(mode):o}): chmod 600"
        )
    try:
        key = load_pem_private_key(data, password=passphrase)
    except (ValueError, TypeError):
        # The library's message is not shown: say only what the operator can act on.
        raise CommandRefused(f"cannot open {path}: wrong passphrase or not a key file") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CommandRefused(f"{path} is not an Ed25519 key")
    return key


def _read_intent(source: str) -> Intent:
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise CommandRefused(f"cannot read {source}: {exc.strerror}") from None
    try:
        return Intent.from_json(data)
    except ValidationError as exc:
        raise CommandRefused(f"not an intent: {exc.error_count()} problem(s): {exc}") from None


def _shown(text: str | None) -> str:
    # JSON with ASCII escapes: a terminal escape sequence or a look-alike letter in an
    # intent cannot hide from the operator what is really being signed.
    return json.dumps(text)


def _summary(intent: Intent) -> str:
    lines = [
        f"kind:        {intent.kind}",
        f"operation:   {_shown(intent.operation_id)}",
        f"client:      {_shown(intent.client_id) if intent.client_id else '(platform)'}",
        f"asset:       {_shown(intent.asset)}",
        f"amount:      {intent.amount} (minor units)",
        f"destination: {_shown(intent.destination)}",
        f"fee cap:     {intent.fee_cap} (minor units)",
        f"policy:      version {intent.policy_version}",
        f"expires:     {rfc3339(intent.expires_at)}",
        f"intent hash: {intent.hash()}",
    ]
    if intent.payload is not None:
        lines.insert(8, f"payload:     {json.dumps(intent.payload, sort_keys=True)}")
    return "\n".join(lines)


def keygen_cmd(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() or out.is_symlink():
        raise CommandRefused(f"{out} exists: a key file is never overwritten")
    print(json.dumps(generate(out, read_passphrase(new=True)), indent=2))
    return 0


def pubkey_cmd(args: argparse.Namespace) -> int:
    key = load(Path(args.key), read_passphrase(new=False))
    print(json.dumps(_public(key), indent=2))
    return 0


def sign_cmd(args: argparse.Namespace) -> int:
    intent = _read_intent(args.intent)
    if intent.expires_at <= datetime.now(UTC):
        raise CommandRefused(f"the intent expired at {intent.expires_at.isoformat()}")
    # What is signed goes to stderr first, so the operator sees it beside the approval.
    print(_summary(intent), file=sys.stderr)
    key = load(Path(args.key), read_passphrase(new=False))
    print(sign_intent(intent, key).model_dump_json())
    return 0


def verify_cmd(args: argparse.Namespace) -> int:
    intent = _read_intent(args.intent)
    try:
        approval = Approval.model_validate_json(Path(args.approval).read_bytes())
        public_key = bytes.fromhex(args.pubkey)
        raw_public_key(public_key)
    except OSError as exc:
        raise CommandRefused(f"cannot read {args.approval}: {exc.strerror}") from None
    except (ValidationError, ValueError) as exc:
        raise CommandRefused(f"not an approval and an Ed25519 public key in hex: {exc}") from None
    if approval.intent_hash != intent.hash():
        problem = "the approval is over another intent"
    elif approval.key_id != key_id(public_key):
        problem = "the approval names another key"
    elif not verify_approval(intent, approval, public_key):
        problem = "the signature does not verify"
    else:
        print(f"OK: key {approval.key_id} approved intent {approval.intent_hash}")
        return 0
    print(f"BAD: {problem}")
    return 1


def _api(args: argparse.Namespace) -> httpx.Client:
    base = args.api or os.environ.get(API_ENV)
    token = os.environ.get(TOKEN_ENV)
    if not base or not token:
        raise CommandRefused(f"give --api (or {API_ENV}) and a bearer token in {TOKEN_ENV}")
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _answer(reply: httpx.Response) -> dict[str, Any]:
    try:
        body: dict[str, Any] = reply.json()
    except ValueError:
        body = {}
    if reply.status_code >= 400:
        code = body.get("code", reply.status_code)
        raise CommandRefused(f"{code} {body.get('title', '')}: {body.get('detail', reply.text)}")
    return body


def fetch_intent(http: httpx.Client, proposal_id: str) -> tuple[Intent, dict[str, Any]]:
    """The proposal's intent, refused unless it hashes to the hash the API names."""
    proposal = _answer(http.get(f"/v1/governance/proposals/{proposal_id}"))
    intent = _shown_intent(proposal, proposal_id)
    if intent.kind not in GOVERNANCE_KINDS:
        raise CommandRefused(f"{intent.kind} is not a governance change")
    return intent, proposal


def _shown_intent(shown: dict[str, Any], what: str) -> Intent:
    """The intent an API answer carries, refused unless it hashes to the hash it names."""
    try:
        intent = Intent.model_validate(shown["intent"], strict=False)
    except (KeyError, ValidationError) as exc:
        raise CommandRefused(f"the API sent no intent for {what}: {exc}") from None
    if intent.hash() != shown.get("intent_hash"):
        raise CommandRefused("the API's intent hash is not the hash of the intent it sent")
    return intent


def _hand_in(http: httpx.Client, path: str, key: Ed25519PrivateKey, intent: Intent) -> Any:
    """Sign `intent` with `key` (unless it expired) and post the approval to `path`."""
    if intent.expires_at <= datetime.now(UTC):
        raise CommandRefused(f"the intent expired at {rfc3339(intent.expires_at)}")
    approval = sign_intent(intent, key)
    reply = http.post(
        path,
        content=approval.model_dump_json(),
        headers={
            "Content-Type": "application/json",
            "Idempotency-Key": f"approve-{approval.key_id}-{approval.intent_hash[:16]}",
        },
    )
    return _answer(reply)


def approve_proposal(
    http: httpx.Client, proposal_id: str, key: Ed25519PrivateKey, intent: Intent
) -> dict[str, Any]:
    """Sign the intent with `key` and post the approval; the proposal as it is now."""
    path = f"/v1/governance/proposals/{proposal_id}/approvals"
    after: dict[str, Any] = _hand_in(http, path, key, intent)
    return after


def fetch_withdrawal_intent(http: httpx.Client, operation_id: str) -> Intent:
    """A withdrawal's intent, refused unless it hashes to the hash the API names and is
    for this operation."""
    shown = _answer(http.get(f"/v1/withdrawals/{operation_id}/intent"))
    intent = _shown_intent(shown, operation_id)
    if intent.kind != "withdrawal" or intent.operation_id != operation_id:
        raise CommandRefused(f"not the intent of withdrawal {operation_id}")
    return intent


def approve_withdrawal(
    http: httpx.Client, operation_id: str, key: Ed25519PrivateKey, intent: Intent
) -> dict[str, Any]:
    """Sign a withdrawal's intent with `key` and hand the approval in: the tally."""
    tally: dict[str, Any] = _hand_in(http, f"/v1/withdrawals/{operation_id}/approvals", key, intent)
    return tally


def approve_cmd(args: argparse.Namespace) -> int:
    if args.withdrawal:
        with _api(args) as http:
            intent = fetch_withdrawal_intent(http, args.withdrawal)
            print(_summary(intent), file=sys.stderr)
            key = load(Path(args.key), read_passphrase(new=False))
            tally = approve_withdrawal(http, args.withdrawal, key, intent)
        print(json.dumps(tally))
        return 0
    with _api(args) as http:
        intent, proposal = fetch_intent(http, args.proposal)
        print(f"proposed by: {_shown(str(proposal.get('proposed_by')))}", file=sys.stderr)
        print(_summary(intent), file=sys.stderr)
        key = load(Path(args.key), read_passphrase(new=False))
        after = approve_proposal(http, args.proposal, key, intent)
    print(json.dumps({k: after.get(k) for k in ("id", "state", "seq", "reason")}))
    print(f"approvals: {len(after.get('approvals', []))}", file=sys.stderr)
    return 0


def propose_cmd(args: argparse.Namespace) -> int:
    try:
        record = json.loads(
            Path(args.record[1:]).read_text() if args.record.startswith("@") else args.record
        )
    except (OSError, ValueError) as exc:
        raise CommandRefused(f"--record is JSON (or @file): {exc}") from None
    body = {"kind": args.kind, "client_id": args.client, "asset": args.asset, "record": record}
    with _api(args) as http:
        proposal = _answer(
            http.post(
                "/v1/governance/proposals",
                json={k: v for k, v in body.items() if v is not None},
                headers={"Idempotency-Key": args.idempotency_key or uuid.uuid4().hex},
            )
        )
    print(json.dumps({"id": proposal["id"], "intent_hash": proposal["intent_hash"]}))
    return 0


Command = Callable[[argparse.Namespace], int]


def run(func: Command, args: argparse.Namespace) -> int:
    """Run a subcommand; a refusal is one line on stderr and exit status 4."""
    try:
        return func(args)
    except CommandRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 4


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    operator = sub.add_parser("operator", help="an operator's own key: keygen, sign approvals")
    actions = operator.add_subparsers(dest="operator_action", required=True)

    def command(name: str, func: Command, text: str) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=text)
        p.set_defaults(func=functools.partial(run, func))
        return p

    keygen = command("keygen", keygen_cmd, "a new Ed25519 key file (0600, encrypted)")
    keygen.add_argument("--out", required=True, help="the key file to create")
    pubkey = command("pubkey", pubkey_cmd, "print the key's public key and key id")
    pubkey.add_argument("--key", required=True)
    sign = command("sign", sign_cmd, "approve an intent: print the Approval JSON")
    sign.add_argument("--key", required=True)
    sign.add_argument("--intent", required=True, help="the intent JSON file, or - for stdin")
    verify = command("verify", verify_cmd, "check an approval against an intent and a key")
    verify.add_argument("--intent", required=True, help="the intent JSON file, or -")
    verify.add_argument("--approval", required=True)
    verify.add_argument("--pubkey", required=True, help="the raw Ed25519 public key, hex")
    propose = command("propose", propose_cmd, "propose a governance change over the API")
    propose.add_argument(
        "--kind",
        required=True,
        choices=[
            "policy_change",
            "bank_account_change",
            "allow_list_change",
            "client_key_change",
            "counterparty_key_change",
            "operator_key_change",
        ],
    )
    propose.add_argument("--client", help="the client id (all kinds but operator_key_change)")
    propose.add_argument("--asset", help="policy_change, allow_list_change")
    propose.add_argument("--record", required=True, help="the record as JSON, or @file")
    propose.add_argument("--idempotency-key")
    propose.add_argument("--api", help=f"the API's base URL (default: {API_ENV})")
    approve = command(
        "approve", approve_cmd, "show a proposal or a withdrawal's intent, sign it, hand it in"
    )
    approve.add_argument("--key", required=True)
    what = approve.add_mutually_exclusive_group(required=True)
    what.add_argument("--proposal", help="a governance proposal's id")
    what.add_argument("--withdrawal", help="a withdrawal's operation id")
    approve.add_argument("--api", help=f"the API's base URL (default: {API_ENV})")
