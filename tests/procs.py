"""The services as real processes (`proposalflow run <service>`): start, stop, `kill -9`, restart, and run
several replicas of one service. Shared by the e2e and the reliability tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.auth import issue_token
from shared.events import Role
from shared.settings import SERVICES, CommonSettings

ROOT = Path(__file__).resolve().parents[1]


_GIVEN: set[int] = set()


def free_port() -> int:
    """A port nobody listens on now, and one this process has not handed out before: the system may give
    the same free port to two binds in a row, and two services started together must not share one."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def start_service(service: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "proposalflow.cli", "run", service],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_service(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    """SIGTERM (a graceful stop), or SIGKILL (`kill -9`: no shutdown code runs at all)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass
class Suite:
    """The running services: their URLs, logs, and tokens for each role.

    A service may run as several replicas (`<service>`, `<service>#2`, …): all share the service's
    database and consumer group; `urls[service]` is the first replica's address."""

    urls: dict[str, str]
    logs: dict[str, Path]
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    replica_urls: dict[str, str] = field(default_factory=dict)
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Settings of one service only (e.g. its own Kafka user), over `env`."""

    def token(self, role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
        settings = CommonSettings(jwt_secret=self.env["PROPOSALFLOW_JWT_SECRET"])
        return {"Authorization": f"Bearer {issue_token(settings, subject=sub, role=role, unit=unit)}"}

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for service, path in self.logs.items():
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"--- {service} ---\n" + "\n".join(line[:500] for line in text))
        return "\n".join(parts)

    def replica_env(self, replica: str) -> dict[str, str]:
        service = replica.split("#")[0]
        port = self.replica_urls[replica].rsplit(":", 1)[1]
        return {**self.env, **self.service_env.get(service, {}), f"PROPOSALFLOW_{service.upper()}_HTTP_PORT": port}

    def start(self, replica: str) -> None:
        """Start a replica (again), on its own port; its log continues in the same file."""
        if replica not in self.replica_urls:
            self.replica_urls[replica] = f"http://127.0.0.1:{free_port()}"
            self.logs[replica] = self.logs[replica.split("#")[0]].with_name(f"{replica.replace('#', '-')}.log")
        self.processes[replica] = start_service(replica.split("#")[0], self.replica_env(replica), self.logs[replica])

    def kill(self, replica: str) -> None:
        """`kill -9`: the process gets no chance to flush, commit or say goodbye."""
        stop_service(self.processes[replica], kill=True)

    async def restart(self, replica: str, *, timeout: float = 90.0) -> None:
        self.start(replica)
        await wait_ready(self, [replica], timeout=timeout)


async def wait_ready(suite: Suite, replicas: list[str] | None = None, timeout: float = 90.0) -> None:
    """Until every replica answers `/readyz` with 200 (database and broker reachable)."""
    deadline = time.monotonic() + timeout
    pending = set(replicas if replicas is not None else suite.processes)
    async with httpx.AsyncClient(timeout=5) as http:
        while pending:
            for replica in list(pending):
                if suite.processes[replica].poll() is not None:
                    raise RuntimeError(f"{replica} exited early\n{suite.log_tails()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{suite.replica_urls[replica]}/readyz")).status_code == 200:
                        pending.discard(replica)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready: {sorted(pending)}\n{suite.log_tails()}")
            await asyncio.sleep(0.3)


@contextlib.contextmanager
def running(
    env: dict[str, str], log_dir: Path, service_env: dict[str, dict[str, str]] | None = None
) -> Iterator[Suite]:
    """The five services as processes, stopped at the end (with any replicas started meanwhile)."""
    urls, logs = {}, {}
    for service in SERVICES:
        port = free_port()
        env[f"PROPOSALFLOW_{service.upper()}_HTTP_PORT"] = str(port)
        urls[service] = f"http://127.0.0.1:{port}"
        logs[service] = log_dir / f"{service}.log"
    suite = Suite(urls=urls, logs=logs, env=env, replica_urls=dict(urls), service_env=service_env or {})
    try:
        for service in SERVICES:
            suite.start(service)
        yield suite
    finally:
        for process in suite.processes.values():
            stop_service(process)
