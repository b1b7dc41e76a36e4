"""What every stack service has: install, start, health, bootstrap, stop, status."""

from __future__ import annotations

import abc
import os
import signal
from collections.abc import Callable
from pathlib import Path

from infra import proc
from infra.settings import StackSettings

Say = Callable[[str], None]


class Service(abc.ABC):
    name: str
    stop_signal: int = signal.SIGTERM
    # Services that must be ready before this one starts (it connects to them at start).
    needs: tuple[str, ...] = ()

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings

    # --- layout -------------------------------------------------------------
    @property
    def dir(self) -> Path:
        return self.s.stack_dir / self.name

    @property
    def log_file(self) -> Path:
        return self.s.stack_dir / "logs" / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.s.stack_dir / "run" / f"{self.name}.pid"

    @property
    def marker(self) -> str:
        """A string in the service's command line that only this stack's process has."""
        return str(self.dir)

    # --- to implement -------------------------------------------------------
    @abc.abstractmethod
    def is_installed(self) -> bool: ...

    @abc.abstractmethod
    def install(self, say: Say) -> None: ...

    @abc.abstractmethod
    def version(self) -> str: ...

    @abc.abstractmethod
    def ports(self) -> dict[str, int]: ...

    @abc.abstractmethod
    def command(self) -> list[str]: ...

    @abc.abstractmethod
    def healthy(self) -> bool: ...

    def ready(self) -> bool:
        """Up enough to bootstrap; most services are ready when healthy."""
        return self.healthy()

    def alive_and_ready(self) -> bool:
        return self.pid() is not None and self.ready()

    def prepare(self, say: Say) -> None:
        """First-start work before the process runs (format storage, initdb); idempotent."""

    def bootstrap(self, say: Say) -> dict[str, str]:
        """After health: idempotent setup; returns settings to publish in stack.env."""
        return {}

    # --- lifecycle ----------------------------------------------------------
    def pid(self) -> int | None:
        pid = proc.read_pid(self.pid_file)
        if pid is not None and proc.is_running(pid, self.marker):
            return pid
        return None

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        pid = proc.spawn(self.command(), self.log_file, cwd=self.dir, env=self.env())
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")

    def env(self) -> dict[str, str]:
        return {}

    def stop(self) -> bool:
        """Stop the process this stack started; True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        proc.terminate(pid, self.marker, sig=self.stop_signal)
        self.pid_file.unlink(missing_ok=True)
        return True

    def url(self) -> str:
        return f"{self.s.host}:{next(iter(self.ports().values()))}"


def write_private(path: Path, text: str) -> None:
    """Write a credential file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
