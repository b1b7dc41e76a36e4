"""install / up / down / status / logs for the whole stack."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from infra import proc
from infra.services import all_services
from infra.services.base import Say, Service
from infra.settings import StackSettings


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    running: bool
    healthy: bool
    pid: int | None
    ports: dict[str, int]
    version: str


class Stack:
    def __init__(self, settings: StackSettings | None = None, say: Say = print) -> None:
        self.s = settings or StackSettings()
        self.say = say
        self.services = all_services(self.s)

    def select(self, names: Iterable[str] | None) -> list[Service]:
        if not names:
            return self.services
        wanted = set(names)
        unknown = wanted - {svc.name for svc in self.services}
        if unknown:
            raise SystemExit(f"unknown service(s): {', '.join(sorted(unknown))}")
        return [svc for svc in self.services if svc.name in wanted]

    def install(self, names: Iterable[str] | None = None) -> list[str]:
        """Install what is missing; return the names of services that needed installing."""
        installed = []
        for svc in self.select(names):
            if svc.is_installed():
                self.say(f"  {svc.name:<9} installed ({svc.version()})")
                continue
            started = time.monotonic()
            svc.install(self._say_for(svc))
            if not svc.is_installed():
                raise RuntimeError(f"{svc.name}: install finished but the service is still missing")
            self.say(
                f"  {svc.name:<9} installed {svc.version()} in {time.monotonic() - started:.0f} s"
            )
            installed.append(svc.name)
        return installed

    def up(self, names: Iterable[str] | None = None) -> list[str]:
        """Start what is not running, wait for health, bootstrap; return the names started."""
        began = time.monotonic()
        selected = self.select(names)
        missing = [svc.name for svc in selected if not svc.is_installed()]
        if missing:
            raise SystemExit(f"not installed: {', '.join(missing)} (run: custody stack install)")
        self.s.stack_dir.mkdir(parents=True, exist_ok=True)
        started: list[Service] = []
        by_name = {svc.name: svc for svc in self.services}
        for svc in selected:
            if svc.pid() is not None:
                continue
            for need in svc.needs:  # e.g. anvil loading its state before liquidity reads it
                dep = by_name[need]
                if dep.pid() is not None and not proc.wait_until(
                    dep.alive_and_ready, self.s.start_timeout
                ):
                    raise RuntimeError(f"{need} (needed by {svc.name}) did not become ready")
            svc.prepare(self._say_for(svc))
            self.say(f"  {svc.name:<9} starting on {svc.url()}")
            svc.start()
            started.append(svc)
        # Start everything first, then wait: the slow starters (Kafka's JVM)
        # overlap with the rest.
        env: dict[str, str] = {}
        for svc in selected:
            if not proc.wait_until(svc.alive_and_ready, self.s.start_timeout):
                raise RuntimeError(
                    f"{svc.name} did not become ready in {self.s.start_timeout:.0f} s; "
                    f"see {svc.log_file}"
                )
            env.update(svc.bootstrap(self._say_for(svc)))
            if not proc.wait_until(svc.healthy, self.s.start_timeout):
                raise RuntimeError(f"{svc.name} is not healthy; see {svc.log_file}")
            if svc in started:
                self.say(f"  {svc.name:<9} healthy")
        if {svc.name for svc in selected} == {svc.name for svc in self.services}:
            self._write_env(env)
        self.say(
            f"stack up in {time.monotonic() - began:.1f} s"
            + (
                f" (started: {', '.join(s.name for s in started)})"
                if started
                else " (everything was already running)"
            )
        )
        return [svc.name for svc in started]

    def down(self, names: Iterable[str] | None = None) -> list[str]:
        stopped = []
        # Reverse order: nothing the platform needs disappears before its users.
        for svc in reversed(self.select(names)):
            if svc.stop():
                self.say(f"  {svc.name:<9} stopped")
                stopped.append(svc.name)
        return stopped

    def status(self) -> list[ServiceStatus]:
        rows = []
        for svc in self.services:
            pid = svc.pid()
            healthy = False
            if pid is not None:
                try:
                    healthy = bool(svc.healthy())
                except Exception:  # a failing probe is "unhealthy", not a crash of status
                    healthy = False
            try:
                version = svc.version() if svc.is_installed() else "not installed"
            except Exception:
                version = "unknown"
            rows.append(
                ServiceStatus(svc.name, pid is not None, healthy, pid, svc.ports(), version)
            )
        return rows

    def _say_for(self, svc: Service) -> Say:
        return lambda msg: self.say(f"  {svc.name:<9} {msg}")

    def _write_env(self, env: dict[str, str]) -> None:
        lines = [f"{k}={v}" for k, v in sorted(env.items())]
        self.s.env_file.write_text(
            "# Written by `custody stack up`: where the platform finds the stack.\n"
            "# No secrets here; credential files are referenced by path.\n"
            + "\n".join(lines)
            + "\n"
        )
