"""The `custody` command: `custody stack install|up|down|status|logs`, `custody demo`,
`custody audit verify|show|public-keys`, `custody api token`,
`custody operator keygen|pubkey|sign|verify|propose|approve`, `custody governance init|show`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


def _stack_cmd(args: argparse.Namespace) -> int:
    # Imported here so `custody --help` stays fast and works without the stack's deps.
    from infra.stack import Stack

    stack = Stack(say=lambda msg: print(msg, flush=True))
    if args.action == "install":
        print("installing the stack (skipping what is already there):", flush=True)
        done = stack.install(args.services)
        print(f"installed: {', '.join(done)}" if done else "nothing to install", flush=True)
    elif args.action == "up":
        stack.up(args.services)
    elif args.action == "down":
        stopped = stack.down(args.services)
        print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    elif args.action == "status":
        rows = stack.status()
        print(f"{'service':<10}{'state':<11}{'version':<16}{'pid':<9}ports")
        for r in rows:
            state = "healthy" if r.healthy else ("unhealthy" if r.running else "stopped")
            ports = ", ".join(f"{k} {stack.s.host}:{v}" for k, v in r.ports.items())
            print(f"{r.name:<10}{state:<11}{r.version:<16}{r.pid or '-'!s:<9}{ports}")
        return 0 if all(r.healthy for r in rows) else 3
    elif args.action == "logs":
        for svc in stack.select(args.services):
            print(f"==> {svc.log_file} <==")
            if svc.log_file.exists():
                lines = svc.log_file.read_text(errors="replace").splitlines()[-args.lines :]
                print("\n".join(lines))
    return 0


def _demo_cmd(args: argparse.Namespace) -> int:
    from services.cli.demo import run_demo

    return run_demo()


def _token_cmd(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from services.api.auth import issue, load_secret
    from services.settings import PlatformSettings

    secret = load_secret(PlatformSettings.load().api_token_secret_file)
    print(issue(secret, args.sub, args.role, args.client, timedelta(hours=args.hours)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="custody", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local stack of real services")
    stack.add_argument("action", choices=["install", "up", "down", "status", "logs"])
    stack.add_argument("services", nargs="*", help="limit to these services (default: all)")
    stack.add_argument("-n", "--lines", type=int, default=40, help="log lines to show")
    stack.set_defaults(func=_stack_cmd)

    demo = sub.add_parser("demo", help="run the demo scenario against the running stack")
    demo.set_defaults(func=_demo_cmd)

    api = sub.add_parser("api", help="the REST API's tools")
    api_actions = api.add_subparsers(dest="action", required=True)
    token = api_actions.add_parser("token", help="issue a bearer token (prints it)")
    token.add_argument("--role", choices=["client", "operator", "auditor"], required=True)
    token.add_argument("--sub", required=True, help="who: a user or system name")
    token.add_argument("--client", help="the client id (client role)")
    token.add_argument("--hours", type=float, default=12.0, help="validity")
    token.set_defaults(func=_token_cmd)

    from services.cli import audit, governance
    from services.cli import operator as operator_cli

    audit.add_parser(sub)
    operator_cli.add_parser(sub)
    governance.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
