"""The five services as processes (`proposalflow run <service>`), as the end-to-end tests start them,
with any number of replicas per service sharing one SQLite file and one consumer group."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import SERVICES
from tests.procs import free_port

ROOT = Path(__file__).resolve().parents[1]


def memory_of(pid: int) -> dict[str, int]:
    """Resident set now and its peak (VmRSS, VmHWM), in KiB, from /proc."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads, from /proc (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are the 14th and 15th fields of stat; the split dropped the first two.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Instance:
    service: str
    replica: int
    url: str
    log: Path
    process: subprocess.Popen[bytes]


@dataclass
class Suite:
    """The running service processes; replicas of one service share its database and consumer group."""

    env: dict[str, str]
    log_dir: Path
    instances: list[Instance] = field(default_factory=list)

    def urls(self, service: str) -> list[str]:
        return [i.url for i in self.instances if i.service == service]

    def start(self, service: str) -> Instance:
        replica = len(self.urls(service)) + 1
        port = free_port()
        env = {**self.env, f"PROPOSALFLOW_{service.upper()}_HTTP_PORT": str(port)}
        log = self.log_dir / f"{service}-{replica}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "proposalflow.cli", "run", service],
            cwd=ROOT,
            env=env,
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        instance = Instance(service, replica, f"http://127.0.0.1:{port}", log, process)
        self.instances.append(instance)
        return instance

    def start_all(self) -> None:
        for service in SERVICES:
            self.start(service)

    async def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pending = {i.url: i for i in self.instances}
        async with httpx.AsyncClient(timeout=5) as http:
            while pending:
                for url, instance in list(pending.items()):
                    if instance.process.poll() is not None:
                        raise RuntimeError(f"{instance.service} exited early; see {instance.log}")
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"{url}/readyz")).status_code == 200:
                            del pending[url]
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not ready: {sorted(i.service for i in pending.values())}")
                await asyncio.sleep(0.3)

    def memory(self) -> dict[str, dict[str, int]]:
        """RSS and peak RSS (KiB) of every instance, keyed `service` or `service-2` for a replica."""
        return {
            i.service if i.replica == 1 else f"{i.service}-{i.replica}": memory_of(i.process.pid)
            for i in self.instances
        }

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far per service, its replicas summed."""
        used: dict[str, float] = {}
        for i in self.instances:
            used[i.service] = used.get(i.service, 0.0) + cpu_seconds(i.process.pid)
        return used

    def stop(self) -> None:
        for instance in self.instances:
            if instance.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(instance.process.pid, signal.SIGTERM)
        for instance in self.instances:
            try:
                instance.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(instance.process.pid, signal.SIGKILL)
                instance.process.wait(timeout=10)


__all__ = ["SERVICES", "Suite", "cpu_seconds", "free_port", "memory_of"]
