"""Apache Kafka in KRaft mode from the Maven Central jars, run by the machine's Java 17."""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from infra import proc
from infra.services.base import Say, Service
from infra.settings import INFRA_DIR, KAFKA_VERSION

KAFKA_INFRA = INFRA_DIR / "kafka"


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding, never starting
    with '-' (the storage tool's argument parser would read it as an option; one id in
    64 did, and the first start failed). Kafka's own Uuid.randomUuid() skips those too."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Service):
    name = "kafka"

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

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            "-Xmx768m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={KAFKA_INFRA / 'log4j2.yaml'}",
            "-cp",
            f"{self.libs}/*",
            main,
            *args,
        ]

    def prepare(self, say: Say) -> None:
        data = self.dir / "data"
        template = (KAFKA_INFRA / "server.properties.tmpl").read_text()
        self.config_file.write_text(
            template.format(
                port=self.s.kafka_port,
                controller_port=self.s.kafka_controller_port,
                data_dir=data,
            )
        )
        if (data / "meta.properties").exists():
            return
        say("format KRaft storage (first start)")
        cluster_id = new_cluster_id()
        proc.run(
            self._java(
                "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(self.config_file)
            )
        )

    def command(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file))

    def bootstrap_servers(self) -> str:
        return f"{self.s.host}:{self.s.kafka_port}"

    def healthy(self) -> bool:
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers(), "log_level": 0})
        md = admin.list_topics(timeout=2)
        return len(md.brokers) >= 1

    def bootstrap(self, say: Say) -> dict[str, str]:
        return {"CUSTODY_KAFKA_BOOTSTRAP": self.bootstrap_servers()}
