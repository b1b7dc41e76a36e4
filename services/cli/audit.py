"""`custody audit verify|show|public-keys|lag`: check and read the audit chain, and how far
its writer is behind the events."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from pathlib import Path

from adapters.kafka.audit_log import chain_lag, read_audit
from adapters.keys.openbao import OpenBaoAuditKeys
from sagas.audit import GENESIS, ed25519_checker, open_record, verify
from sagas.errors import CustodyError
from sagas.topics import AUDIT, EVENTS
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


def lag_cmd(args: argparse.Namespace) -> int:
    """The events the audit writer has not chained yet; with --wait, wait until it has
    chained every event published when the command started. 0 when caught up."""
    settings = PlatformSettings.load()
    kafka = settings.kafka_client(args.kafka_principal)
    started = time.monotonic()
    try:
        first = chain_lag(kafka, args.events_topic)
        target = {p: end for p, (_done, end) in first.items()}
        now = first
        while True:
            behind = {p: target[p] - done for p, (done, _end) in now.items() if done < target[p]}
            if not behind or time.monotonic() - started >= args.wait:
                break
            time.sleep(0.5)
            now = chain_lag(kafka, args.events_topic)
    except CustodyError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 4
    lag = sum(target[p] - min(done, target[p]) for p, (done, _end) in first.items())
    waited = time.monotonic() - started
    if behind:
        print(
            f"BEHIND: {sum(behind.values())} events of {args.events_topic} not chained after "
            f"{waited:.1f} s (partitions {sorted(behind)}; {lag} behind at the start)"
        )
        return 1
    print(
        f"caught up: every event of {args.events_topic} chained ({lag} behind at the start, "
        f"{waited:.1f} s)"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="verify and read the audit chain")
    actions = audit.add_subparsers(dest="audit_action", required=True)
    for name, func, text in (
        ("verify", verify_cmd, "recompute the chain; OK or the first bad record"),
        ("show", show_cmd, "decrypt records (authorised auditor role only)"),
        ("public-keys", public_keys_cmd, "print the chain's public keys for offline checks"),
        ("lag", lag_cmd, "the events the audit writer has not chained yet (0 when caught up)"),
    ):
        p = actions.add_parser(name, help=text)
        p.set_defaults(func=func)
        if name == "public-keys":
            continue
        if name == "lag":
            p.add_argument("--events-topic", default=EVENTS.name)
            p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the writer")
            p.add_argument(
                "--kafka-principal",
                default="audit",
                help="who to read Kafka as (default audit: the writer's own principal, "
                "which may read its group's committed offsets)",
            )
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
