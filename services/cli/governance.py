"""`custody governance init|show`: the genesis ceremony (decision 0014).

`init` writes the genesis (the first operators' names and Ed25519 public keys, and
the governance quorum) into the platform database and prints its hash; put that hash
into CUSTODY_GOVERNANCE_GENESIS_HASH of every process, so that no database writer can
swap the genesis. Operators keep their private keys: only public keys are given here.
"""

from __future__ import annotations

import argparse
import functools
import json
from datetime import UTC, datetime

from pydantic import ValidationError

from adapters.governance.store import SqlGovernanceStore
from sagas.errors import CustodyError
from sagas.governance import Genesis, OperatorEntry
from services.cli.operator import CommandRefused, run
from services.settings import PlatformSettings


def _operator(text: str) -> OperatorEntry:
    name, sep, key = text.partition("=")
    if not sep:
        raise CommandRefused(f"--operator takes NAME=PUBKEY_HEX, not {text!r}")
    try:
        return OperatorEntry(name=name, public_key=key.lower())
    except ValidationError:
        raise CommandRefused(
            f"operator {name!r}: a name of a-z 0-9 . _ - and a 64-hex-digit Ed25519 public key"
        ) from None


def init_cmd(args: argparse.Namespace) -> int:
    url = args.db_url or PlatformSettings.load().ledger_url
    try:
        genesis = Genesis(
            operators=tuple(_operator(o) for o in args.operator),
            quorum=args.quorum,
            created_at=datetime.now(UTC).replace(microsecond=0),
        )
    except ValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        raise CommandRefused(f"not a genesis: {problems}") from None
    try:
        digest = SqlGovernanceStore(url, genesis.hash()).install_genesis(genesis)
    except CustodyError as exc:
        raise CommandRefused(str(exc)) from None
    print(digest)
    return 0


def show_cmd(args: argparse.Namespace) -> int:
    settings = PlatformSettings.load()
    store = SqlGovernanceStore(args.db_url or settings.ledger_url, settings.governance_genesis_hash)
    try:
        state = store.state()
    except CustodyError as exc:
        raise CommandRefused(str(exc)) from None
    print(
        json.dumps(
            {
                "genesis_hash": state.genesis_hash,
                "head": state.head,
                "seq": state.seq,
                "quorum": state.quorum(),
                "operators": sorted(state.operator_names()),
                "failure": None if state.failure is None else str(state.failure),
            },
            indent=2,
        )
    )
    return 0 if state.failure is None else 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gov = sub.add_parser("governance", help="the governance genesis and chain")
    actions = gov.add_subparsers(dest="governance_action", required=True)
    init = actions.add_parser("init", help="write the genesis; prints its hash")
    init.add_argument("--operator", action="append", required=True, help="NAME=PUBKEY_HEX (repeat)")
    init.add_argument("--quorum", type=int, required=True, help="approvals a change needs")
    init.add_argument("--db-url", help="default: CUSTODY_LEDGER_URL")
    init.set_defaults(func=functools.partial(run, init_cmd))
    show = actions.add_parser("show", help="verify the chain from the pinned genesis")
    show.add_argument("--db-url", help="default: CUSTODY_LEDGER_URL")
    show.set_defaults(func=functools.partial(run, show_cmd))
