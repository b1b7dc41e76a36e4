"""The pid-file helpers must never signal a process the stack did not start."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from infra import proc


def test_is_running_requires_the_marker(tmp_path: Path) -> None:
    marker = str(tmp_path / "svc")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        # Right after fork the child may not have exec'd yet: its command line is ours.
        deadline = time.monotonic() + 5
        while not proc.is_running(child.pid, marker) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.is_running(child.pid, marker)
        assert not proc.is_running(child.pid, str(tmp_path / "someone-else"))
    finally:
        child.kill()
        child.wait()
    assert not proc.is_running(child.pid, marker)


def test_terminate_stops_and_reaps_a_child(tmp_path: Path) -> None:
    marker = str(tmp_path / "svc")
    log = tmp_path / "svc.log"
    pid = proc.spawn([sys.executable, "-c", "import time; time.sleep(30)", marker], log, tmp_path)
    assert proc.is_running(pid, marker), _describe(pid)
    proc.terminate(pid, marker, timeout=5)
    assert not proc.is_running(pid, marker), _describe(pid)


def _describe(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError as exc:
        return f"/proc/{pid}: {exc}"
    return f"stat={stat!r} cmdline={cmdline!r}"


def test_terminate_leaves_an_unmarked_process_alone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        proc.terminate(child.pid, str(tmp_path / "not-in-its-cmdline"), timeout=1)
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_read_pid_tolerates_missing_and_garbage(tmp_path: Path) -> None:
    assert proc.read_pid(tmp_path / "none.pid") is None
    (tmp_path / "bad.pid").write_text("not a pid")
    assert proc.read_pid(tmp_path / "bad.pid") is None
    (tmp_path / "ok.pid").write_text("1234\n")
    assert proc.read_pid(tmp_path / "ok.pid") == 1234


def test_wait_until_treats_exceptions_as_not_yet() -> None:
    calls = []

    def flaky() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError
        return True

    assert proc.wait_until(flaky, timeout=5, interval=0.01)
    assert not proc.wait_until(lambda: False, timeout=0.05, interval=0.01)
