"""Apache Kafka in KRaft mode from the Maven Central jars, run by the machine's Java 17.

Clients authenticate with SASL/SCRAM-SHA-256 and the StandardAuthorizer denies what no
ACL allows (decision 0016). Passwords are random per stack, kept in 0600 files under
<stack>/kafka (the broker's and the controller's in secrets.json and the rendered
server.properties, the platform admin's in admin.json, each process's in
credentials/<principal>.json), and never printed or logged.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from adapters.kafka import access
from adapters.kafka.bus import KafkaEventBus
from infra import proc
from infra.services.base import Say, Service, write_private
from infra.settings import INFRA_DIR, KAFKA_VERSION
from sagas.topics import ALL

KAFKA_INFRA = INFRA_DIR / "kafka"
ADMIN = "admin"  # the platform's admin code: topics, users, ACLs (a super user)


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never starting
    with '-' (the storage tool's argument parser would read it as an option; one id in
    64 did, and the first start failed). Kafka's own Uuid.randomUuid() skips those too."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _new_password() -> str:
    return secrets.token_urlsafe(32)  # [A-Za-z0-9_-]: safe in JAAS and SCRAM option syntax


def _argfile_line(arg: str) -> str:
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Kafka(Service):
    name = "kafka"

    @property
    def secrets_file(self) -> Path:
        """The broker's (inter-broker SCRAM) and the controller's (PLAIN) passwords."""
        return self.dir / "secrets.json"

    @property
    def admin_file(self) -> Path:
        return self.dir / "admin.json"

    @property
    def credentials_dir(self) -> Path:
        return self.dir / "credentials"

    def credentials_file(self, principal: str) -> Path:
        return self.admin_file if principal == ADMIN else self.credentials_dir / f"{principal}.json"

    def _password(self, principal: str) -> str:
        """The principal's password, created (0600) on first use."""
        path = self.credentials_file(principal)
        if not path.exists():
            self.credentials_dir.mkdir(parents=True, exist_ok=True)
            self.credentials_dir.chmod(0o700)
            write_private(path, json.dumps({"username": principal, "password": _new_password()}))
        return str(json.loads(path.read_text())["password"])

    def _internal_secrets(self) -> dict[str, str]:
        if not self.secrets_file.exists():
            write_private(
                self.secrets_file,
                json.dumps({"broker": _new_password(), "controller": _new_password()}),
            )
        return dict(json.loads(self.secrets_file.read_text()))

    def client_config(self, principal: str = ADMIN) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.bootstrap_servers(),
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": principal,
            "sasl.password": self._password(principal),
        }

    @property
    def libs(self) -> Path:
        return self.dir / "libs"

    @property
    def config_file(self) -> Path:
        return self.dir / "server.properties"

    def is_installed(self) -> bool:
        return (self.libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists() and shutil.which(
            "java"
        ) is not None

    def install(self, say: Say) -> None:
        if shutil.which("java") is None:
            raise RuntimeError("Java 17 is missing: apt-get install openjdk-17-jre-headless")
        say(f"mvn dependency:copy-dependencies (org.apache.kafka:kafka_2.13:{KAFKA_VERSION})")
        tmp = self.dir / "libs.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        proc.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA_INFRA / "pom.xml"),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={tmp}",
            ]
        )
        shutil.rmtree(self.libs, ignore_errors=True)
        tmp.rename(self.libs)  # all or nothing: a half copy never looks installed

    def version(self) -> str:
        return KAFKA_VERSION

    def ports(self) -> dict[str, int]:
        return {"broker": self.s.kafka_port, "controller": self.s.kafka_controller_port}

    def _java(self, *main: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_INFRA / 'log4j2.yaml'}",
            "-cp",
            f"{self.libs}/*",
            *main,
        ]

    def prepare(self, say: Say) -> None:
        data = self.dir / "data"
        formatted = (data / "meta.properties").exists()
        if formatted and not self.secrets_file.exists():
            # Formatted before the stack had SASL: its metadata has no SCRAM users, and
            # SCRAM users can only be added offline at format time (or by a super user,
            # whom this broker does not have).
            raise RuntimeError(
                f"{data} was formatted without SASL users; remove it (its topics are lost) "
                "and run `custody stack up kafka` again (docs/stack.md, Kafka)"
            )
        internal = self._internal_secrets()
        template = (KAFKA_INFRA / "server.properties.tmpl").read_text()
        write_private(
            self.config_file,
            template.format(
                port=self.s.kafka_port,
                controller_port=self.s.kafka_controller_port,
                data_dir=data,
                broker_password=internal["broker"],
                controller_password=internal["controller"],
            ),
        )
        if formatted:
            return
        say("format KRaft storage with the broker's and the admin's SCRAM users (first start)")
        args = ["format", "-t", new_cluster_id(), "-c", str(self.config_file)]
        for user, password in (("broker", internal["broker"]), (ADMIN, self._password(ADMIN))):
            args += ["--add-scram", f"SCRAM-SHA-256=[name={user},password={password}]"]
        # Through a 0600 argument file, so no password is on a command line (ps, /proc)
        # or in the message of a failed run.
        main = ["kafka.tools.StorageTool", *args]
        launcher = self._java(*main)[: -len(main)]
        fd, name = tempfile.mkstemp(dir=self.dir, prefix=".format-", suffix=".args")
        try:
            with os.fdopen(fd, "w") as f:
                f.write("\n".join(_argfile_line(a) for a in main) + "\n")
            proc.run([*launcher, f"@{name}"])
        finally:
            os.unlink(name)

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file))

    def bootstrap_servers(self) -> str:
        return f"{self.s.host}:{self.s.kafka_port}"

    def healthy(self) -> bool:
        if not self.admin_file.exists():  # never formatted with SASL: nothing to sign in as
            return False
        admin = AdminClient({**self.client_config(ADMIN), "log_level": 0})
        md = admin.list_topics(timeout=2)
        return len(md.brokers) >= 1

    def bootstrap(self, say: Say) -> dict[str, str]:
        """The platform's principals, their ACLs and topics (all idempotent)."""
        admin = AdminClient({**self.client_config(ADMIN), "log_level": 0})
        access.upsert_users(admin, {p: self._password(p) for p in access.PRINCIPALS})
        count = access.apply_acls(admin)
        say(f"{len(access.PRINCIPALS)} SCRAM principals, {count} ACLs")
        KafkaEventBus(self.client_config(ADMIN), client_id="custody-stack").ensure_topics(ALL)
        return {
            "CUSTODY_KAFKA_BOOTSTRAP": self.bootstrap_servers(),
            "CUSTODY_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "CUSTODY_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
            # Paths only: <dir>/<principal>.json for each process (and the bank's).
            "CUSTODY_KAFKA_CREDENTIALS_DIR": str(self.credentials_dir),
            "CUSTODY_KAFKA_ADMIN_CREDENTIALS": str(self.admin_file),
        }
