"""PostgreSQL from Debian, as a project-local cluster under the stack dir."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from functools import cached_property
from pathlib import Path

import psycopg

from infra import proc
from infra.services.base import Say, Service
from infra.settings import POSTGRES_MAJOR

PG_BIN = Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin")
DB_NAME = "custody"
DB_USER = "custody"


def _postgres_can_enter(path: Path) -> bool:
    probe = subprocess.run(
        ["runuser", "-u", "postgres", "--", "test", "-x", str(path)], check=False
    )
    return probe.returncode == 0


def _as_postgres() -> list[str]:
    # initdb and postgres refuse to run as root; on a root machine run them as
    # Debian's `postgres` user, elsewhere as whoever we are.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


MAX_CONNECTIONS = 600


class Postgres(Service):
    name = "postgres"
    stop_signal = signal.SIGINT  # "fast shutdown": roll back open transactions, exit cleanly

    @cached_property
    def data_dir(self) -> Path:
        """<stack>/postgres/data, unless the `postgres` user cannot reach the stack dir
        (a checkout under a 0700 home, say): then a directory of its own under /var/tmp,
        named after the stack dir, with a symlink to it left in the stack dir."""
        preferred = self.dir / "data"
        if os.geteuid() != 0 or _postgres_can_enter(self.s.stack_dir):
            return preferred
        digest = hashlib.sha256(str(self.s.stack_dir).encode()).hexdigest()[:12]
        # Root creates it and hands it to postgres before initdb: no foreign file is trusted.
        return Path(f"/var/tmp/custody-stack-{digest}/postgres/data")  # noqa: S108

    @property
    def log_file(self) -> Path:
        # pg_ctl opens its log as the postgres user: keep it beside the data it can reach.
        default = super().log_file
        return (
            default if self.data_dir == self.dir / "data" else self.data_dir.parent / "postgres.log"
        )

    def is_installed(self) -> bool:
        return (PG_BIN / "initdb").exists() and (PG_BIN / "postgres").exists()

    def install(self, say: Say) -> None:
        if os.geteuid() != 0:
            raise RuntimeError(f"PostgreSQL {POSTGRES_MAJOR} missing: apt-get install postgresql")
        say("apt-get install postgresql (Debian)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, capture_output=True)
        proc.run(["apt-get", "install", "-y", "-q", f"postgresql-{POSTGRES_MAJOR}"], env=env)

    def version(self) -> str:
        out = proc.run([str(PG_BIN / "postgres"), "--version"]).stdout
        return out.split()[2]

    def ports(self) -> dict[str, int]:
        return {"sql": self.s.postgres_port}

    @property
    def marker(self) -> str:
        return str(self.data_dir)

    def prepare(self, say: Say) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        say("initdb (first start)")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.data_dir.parent, "postgres", "postgres")
        if self.data_dir != self.dir / "data":
            say(f"the postgres user cannot enter {self.s.stack_dir}; data in {self.data_dir}")
            (self.dir / "data").unlink(missing_ok=True)
            (self.dir / "data").symlink_to(self.data_dir)
        proc.run(
            [
                *_as_postgres(),
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                DB_USER,
                "-E",
                "UTF8",
                "--no-instructions",
            ]
        )

    def command(self) -> list[str]:
        return [
            *_as_postgres(),
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.log_file),
            "-o",
            # Each platform process keeps one connection per thread per store (no pool
            # yet): the worker and the API alone can hold a few hundred.
            f"-p {self.s.postgres_port} -k {self.data_dir} -c listen_addresses={self.s.host} "
            f"-c max_connections={MAX_CONNECTIONS}",
            "start",
        ]

    def start(self) -> None:
        # pg_ctl daemonises the server; the pid to keep is the postmaster's.
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.log_file.touch()
            shutil.chown(self.log_file, "postgres", "postgres")
        proc.run(self.command())
        pid = (self.data_dir / "postmaster.pid").read_text().splitlines()[0].strip()
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")

    def dsn(self, db: str = DB_NAME) -> str:
        return f"postgresql://{DB_USER}@{self.s.host}:{self.s.postgres_port}/{db}"

    def healthy(self) -> bool:
        with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
            return conn.execute("select 1").fetchone() == (1,)

    def bootstrap(self, say: Say) -> dict[str, str]:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (DB_NAME,))
            if exists.fetchone() is None:
                say(f"create database {DB_NAME}")
                conn.execute(f'create database "{DB_NAME}"')
        return {"CUSTODY_POSTGRES_URL": self.dsn()}
