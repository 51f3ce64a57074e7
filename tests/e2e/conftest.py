"""The five services as separate processes (`proposalflow run <service>`), on a real Kafka and on
SQLite or PostgreSQL, each with its own database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from shared.auth import issue_token
from shared.events import Role
from shared.settings import SERVICES, CommonSettings
from tests.conftest import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[2]
PORTAL = "/portal/members-e2e"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Suite:
    """The running services: their URLs, logs, and tokens for each role."""

    urls: dict[str, str]
    logs: dict[str, Path]
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def token(self, role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
        settings = CommonSettings(jwt_secret=self.env["PROPOSALFLOW_JWT_SECRET"])
        return {"Authorization": f"Bearer {issue_token(settings, subject=sub, role=role, unit=unit)}"}

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for service, path in self.logs.items():
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            parts.append(f"--- {service} ---\n" + "\n".join(text))
        return "\n".join(parts)


def start_service(service: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "run", service],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_service(process: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


async def wait_ready(suite: Suite, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(suite.urls)
    async with httpx.AsyncClient(timeout=5) as http:
        while pending:
            for service in list(pending):
                if suite.processes[service].poll() is not None:
                    raise RuntimeError(f"{service} exited early\n{suite.log_tails()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{suite.urls[service]}/readyz")).status_code == 200:
                        pending.discard(service)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready: {sorted(pending)}\n{suite.log_tails()}")
            await asyncio.sleep(0.3)


@contextlib.contextmanager
def running(env: dict[str, str], log_dir: Path) -> Iterator[Suite]:
    urls, logs = {}, {}
    for service in SERVICES:
        port = free_port()
        env[f"PROPOSALFLOW_{service.upper()}_HTTP_PORT"] = str(port)
        urls[service] = f"http://127.0.0.1:{port}"
        logs[service] = log_dir / f"{service}.log"
    suite = Suite(urls=urls, logs=logs, env=env)
    try:
        for service in SERVICES:
            suite.processes[service] = start_service(service, env, logs[service])
        yield suite
    finally:
        for process in suite.processes.values():
            stop_service(process)


@pytest.fixture(params=["sqlite", "postgres"])
async def suite(request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[Suite]:
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROPOSALFLOW_DATA_DIR": str(tmp_path / "data"),
        "PROPOSALFLOW_ALLOWED_SOURCES": PORTAL,
        "PROPOSALFLOW_JWT_SECRET": f"e2e-secret-{run}-0123456789abcdef0123456789",
        "PROPOSALFLOW_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    for service in SERVICES:
        env[f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP"] = f"e2e-{run}-{service}"
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "postgres":
            for service in SERVICES:
                url = await stack.enter_async_context(fresh_postgres_database())
                env[f"PROPOSALFLOW_{service.upper()}_DATABASE_URL"] = url
        with running(env, tmp_path) as started:
            await wait_ready(started)
            yield started
