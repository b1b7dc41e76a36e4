"""Temporal's time-skipping test server for the fast saga tier (tests/sagas).

`temporalio.testing.WorkflowEnvironment.start_time_skipping()` downloads a test server
binary, which these machines cannot. Maven Central serves the same server in Java
(`io.temporal:temporal-test-server`); `ensure` copies it under
<stack>/temporal-test-server once, with a wrapper script that start_time_skipping runs
as `test_server_existing_path` (it passes the port as the only argument).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from infra import proc
from infra.services.base import Say
from infra.settings import StackSettings

VERSION = "1.31.0"
POM = Path(__file__).resolve().parent / "temporal_test_server" / "pom.xml"
MAIN = "io.temporal.testserver.TestServer"
# Each saga scenario gets a server of its own, which lives a few seconds: the client
# compiler only and the serial collector. With C2 and G1 threads the nine withdrawal and
# trade scenarios took 25-32 s instead of 15-16 s on two cores (the JIT competed with
# the workers for them).
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xms64m -Xmx512m"


def _launcher(libs: Path) -> str:
    return (
        "#!/bin/sh\n"
        "# Temporal's Java time-skipping test server (infra/testserver.py); $1 is the port.\n"
        f"exec java {JVM_OPTIONS} -cp '{libs}/*' {MAIN} \"$@\"\n"
    )


def _write_launcher(libs: Path, script: Path) -> None:
    partial = script.with_name(script.name + ".partial")
    partial.write_text(_launcher(libs))
    partial.chmod(0o755)
    partial.replace(script)  # atomic: a server being started meanwhile reads one or the other


def ensure(say: Say = print) -> Path:
    """The wrapper script, installed first if it is missing (and rewritten if it is not
    the one this version writes)."""
    home = StackSettings().stack_dir / "temporal-test-server"
    libs, script = home / "libs", home / "test-server"
    if (libs / f"temporal-test-server-{VERSION}.jar").exists():
        if not script.exists() or script.read_text() != _launcher(libs):
            _write_launcher(libs, script)
        return script
    if shutil.which("java") is None:
        raise RuntimeError("Java 17 is missing: apt-get install openjdk-17-jre-headless")
    say(f"mvn dependency:copy-dependencies (io.temporal:temporal-test-server:{VERSION})")
    partial = home / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    proc.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]
    )
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)  # all or nothing: a half copy never looks installed
    _write_launcher(libs, script)
    return script
