"""PostgreSQL from Debian, as a project-local cluster under the stack dir."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import shutil
import signal
import subprocess
from functools import cached_property
from pathlib import Path

import psycopg
from psycopg import sql

from adapters.ledger.grants import apply_grants, roles
from infra import proc
from infra.services.base import Say, Service, write_private
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
HBA_BEGIN = "# BEGIN custody process roles (infra/services/postgres.py; do not edit)"
HBA_END = "# END custody process roles"


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677), made
    here so the password itself never reaches the server, its statement log included."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    salt64, stored64, server64 = (base64.b64encode(b).decode() for b in (salt, stored, server_key))
    return f"SCRAM-SHA-256${iterations}:{salt64}${stored64}:{server64}"


def hba_block(names: list[str]) -> str:
    """pg_hba.conf lines, ahead of the stack's trust lines, that make the process roles
    prove their passwords (first match wins)."""
    users = ",".join(names)
    return "\n".join(
        [
            HBA_BEGIN,
            f"local   all   {users}   scram-sha-256",
            f"host    all   {users}   127.0.0.1/32   scram-sha-256",
            f"host    all   {users}   ::1/128   scram-sha-256",
            HBA_END,
        ]
    )


def with_hba_block(text: str, block: str) -> str:
    """`text` (a pg_hba.conf) with the managed block first, replacing an older one."""
    lines = text.splitlines()
    if HBA_BEGIN in lines and HBA_END in lines:
        lines = lines[: lines.index(HBA_BEGIN)] + lines[lines.index(HBA_END) + 1 :]
    return block + "\n" + "\n".join(lines).lstrip("\n") + "\n"


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
            # Each platform process keeps a bounded pool per database, and every e2e
            # module runs a platform of its own. A commit does not wait for its WAL to
            # reach the disk (decision 0029): this is the local stack, which no test
            # crashes; a server crash loses at most the last moments, never consistency.
            f"-p {self.s.postgres_port} -k {self.data_dir} -c listen_addresses={self.s.host} "
            f"-c max_connections={MAX_CONNECTIONS} -c synchronous_commit=off",
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

    @property
    def roles_dir(self) -> Path:
        """One pgpass file per process role (0600), named <role>.pgpass."""
        return self.dir / "roles"

    def bootstrap(self, say: Say) -> dict[str, str]:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (DB_NAME,))
            if exists.fetchone() is None:
                say(f"create database {DB_NAME}")
                conn.execute(f'create database "{DB_NAME}"')
        self.bootstrap_roles(say)
        return {
            "CUSTODY_POSTGRES_URL": self.dsn(),
            "CUSTODY_POSTGRES_ROLES_DIR": str(self.roles_dir),
        }

    def bootstrap_roles(self, say: Say) -> None:
        """One login role per platform process, each with a random password kept only in
        its 0600 pgpass file; password authentication for them; their grants on the
        platform database (idempotent: existing passwords are kept)."""
        self.roles_dir.mkdir(parents=True, exist_ok=True)
        self.roles_dir.chmod(0o700)
        names = roles()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            present = {
                r[0]
                for r in conn.execute(
                    "select rolname from pg_roles where rolname = any(%s)", (names,)
                )
            }
            for name in names:
                if name not in present:
                    say(f"create role {name}")
                    conn.execute(
                        sql.SQL(
                            "create role {} login nosuperuser nocreatedb nocreaterole noinherit"
                        ).format(sql.Identifier(name))
                    )
                password = self._password(name)
                conn.execute(
                    sql.SQL("alter role {} password {}").format(
                        sql.Identifier(name), sql.Literal(scram_verifier(password))
                    )
                )
            hba = self.data_dir / "pg_hba.conf"
            current = hba.read_text()
            wanted = with_hba_block(current, hba_block(names))
            if wanted != current:
                say("password authentication for the process roles (pg_hba.conf, reload)")
                with hba.open("w") as f:  # in place: the file stays the postgres user's
                    f.write(wanted)
                conn.execute("select pg_reload_conf()")
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            granted = apply_grants(conn)
        say(f"grants for {len(granted)} process roles on {DB_NAME}")

    def _password(self, name: str) -> str:
        """The role's password from its pgpass file, made (and written 0600) if missing."""
        path = self.roles_dir / f"{name}.pgpass"
        if path.exists():
            path.chmod(0o600)
            return path.read_text().strip().rsplit(":", 1)[1]
        password = secrets.token_urlsafe(32)  # no ':' or '\\': no pgpass escaping needed
        # Any host entry would do for libpq; name the stack's, and any database.
        write_private(path, f"{self.s.host}:{self.s.postgres_port}:*:{name}:{password}\n")
        return password
