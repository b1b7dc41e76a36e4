"""PostgreSQL from Debian, as a project-local cluster under the stack dir."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import psycopg

from infra import proc
from infra.services.base import Say, Service
from infra.settings import POSTGRES_MAJOR

PG_BIN = Path(f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin")
DB_NAME = "custody"
DB_USER = "custody"


def _as_postgres() -> list[str]:
    # initdb and postgres refuse to run as root; on a root machine run them as
    # Debian's `postgres` user, elsewhere as whoever we are.
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Postgres(Service):
    name = "postgres"
    stop_signal = signal.SIGINT  # "fast shutdown": roll back open transactions, exit cleanly

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

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
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
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
            f"-p {self.s.postgres_port} -k {self.data_dir} -c listen_addresses={self.s.host}",
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
