"""`custody audit verify|show|public-keys`: check and read the audit chain."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path

from adapters.kafka.audit_log import read_audit
from adapters.keys.openbao import OpenBaoAuditKeys
from sagas.audit import GENESIS, ed25519_checker, open_record, verify
from sagas.errors import CustodyError
from sagas.topics import AUDIT
from services.settings import PlatformSettings


def _public_keys(args: argparse.Namespace, settings: PlatformSettings) -> dict[int, bytes]:
    if args.public_keys:
        raw = json.loads(Path(args.public_keys).read_text())
        return {int(v): base64.b64decode(k) for v, k in raw.items()}
    return OpenBaoAuditKeys(
        settings.openbao_addr, *settings.approle("custody-auditor")
    ).public_keys()


def verify_cmd(args: argparse.Namespace) -> int:
    settings = PlatformSettings.load()
    records = read_audit(
        settings.kafka_client(args.kafka_principal),
        args.topic,
        start=args.from_offset,
        end=args.to_offset,
    )
    start = (0, GENESIS) if args.from_offset == 0 else None
    report = verify(records, ed25519_checker(_public_keys(args, settings)), start=start)
    if report.first_bad is None:
        print(f"OK: {report.count} records verified on {args.topic}, head {report.head_hash}")
        return 0
    bad = report.first_bad
    print(f"BAD: offset {bad.offset} (seq {bad.seq}): {bad.problem}: {bad.detail}")
    print(f"({report.count} records verified before it, last good hash {report.head_hash})")
    return 1


def show_cmd(args: argparse.Namespace) -> int:
    settings = PlatformSettings.load()
    try:
        keys = OpenBaoAuditKeys(settings.openbao_addr, *settings.approle(args.role))
        unwrapped: dict[str, bytes] = {}
        for offset, record in read_audit(
            settings.kafka_client(args.kafka_principal),
            args.topic,
            start=args.from_offset,
            end=args.to_offset,
        ):
            if record is None:
                print(json.dumps({"offset": offset, "error": "unreadable record"}))
                continue
            if record.wrapped_key not in unwrapped:
                unwrapped[record.wrapped_key] = keys.unwrap_data_key(record.wrapped_key)
            event = open_record(record, unwrapped[record.wrapped_key])
            print(
                json.dumps(
                    {"offset": offset, "seq": record.seq, "event": event.model_dump(mode="json")}
                )
            )
    except CustodyError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 4
    return 0


def public_keys_cmd(args: argparse.Namespace) -> int:
    settings = PlatformSettings.load()
    keys = OpenBaoAuditKeys(settings.openbao_addr, *settings.approle("custody-auditor"))
    print(
        json.dumps(
            {str(v): base64.b64encode(k).decode() for v, k in keys.public_keys().items()}, indent=2
        )
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify and read the audit chain")
    actions = audit.add_subparsers(dest="audit_action", required=True)
    for name, func, text in (
        ("verify", verify_cmd, "recompute the chain; OK or the first bad record"),
        ("show", show_cmd, "decrypt records (authorised auditor role only)"),
        ("public-keys", public_keys_cmd, "print the chain's public keys for offline checks"),
    ):
        p = actions.add_parser(name, help=text)
        p.set_defaults(func=func)
        if name == "public-keys":
            continue
        p.add_argument("--topic", default=AUDIT.name)
        p.add_argument("--from", dest="from_offset", type=int, default=0)
        p.add_argument("--to", dest="to_offset", type=int, default=None)
        p.add_argument(
            "--kafka-principal",
            default="auditor",
            help="who to read Kafka as (default auditor, who may read only the audit topic; "
            "admin for a copy on a topic of one's own)",
        )
        if name == "verify":
            p.add_argument("--public-keys", help="JSON file from `custody audit public-keys`")
        else:
            p.add_argument("--role", default="custody-auditor", help=argparse.SUPPRESS)
