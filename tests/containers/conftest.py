"""docker-compose.yml brought up with podman (podman-compose), used through its published ports.

`make test-containers` builds the images first (deploy/images/build.sh, no registry needed) and passes
their names and free ports in the environment. The stack is a compose project of its own, torn down
with its volumes however the tests end; every container's log is kept under .data/ for a failed run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from shared.settings import SERVICES
from tests.procs import ROOT, Suite

PORTAL_SOURCE = "/portal/containers-test"
# Published ports: settable, and by default clear of `make run` (8101-8105, 8080, Kafka 19092).
PORT_BASE = int(os.environ.get("PROPOSALFLOW_CONTAINERS_PORT_BASE", "18100"))
PORTS = {
    "intake": PORT_BASE + 1,
    "assignment": PORT_BASE + 2,
    "progress": PORT_BASE + 3,
    "notify": PORT_BASE + 4,
    "audit": PORT_BASE + 5,
    "portal": PORT_BASE + 80,
}
KAFKA_PORT = PORT_BASE + 94
READY_TIMEOUT_S = 300.0


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class ComposeStack(Suite):
    """The running compose project: its services' published URLs, tokens for each role (from Suite), and
    the containers behind them."""

    project: str = ""
    compose_env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = ROOT

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{KAFKA_PORT}"

    def container(self, service: str) -> str:
        names = podman(
            "ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
            "--filter", f"label=com.docker.compose.service={service}", "--format", "{{.Names}}",
        ).stdout.split()  # fmt: skip
        assert names, f"no container for {service} in {self.project}"
        return names[0]

    def containers(self) -> list[str]:
        listed = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}", "--format", "json")
        return [entry["Names"][0] for entry in json.loads(listed.stdout or "[]")]

    def state(self, service: str) -> dict[str, object]:
        inspected = json.loads(podman("inspect", self.container(service)).stdout)[0]
        return {**inspected["State"], "RestartCount": inspected.get("RestartCount", 0)}

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for name in self.containers():
            logs = podman("logs", "--tail", str(lines), name, check=False)
            parts.append(f"--- {name} ---\n{logs.stdout}{logs.stderr}")
        return "\n".join(parts)

    def save_logs(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.containers():
            logs = podman("logs", name, check=False)
            (self.log_dir / f"{name}.log").write_text(logs.stdout + logs.stderr, encoding="utf-8")


def compose_command() -> list[str]:
    found = os.environ.get("PODMAN_COMPOSE") or shutil.which("podman-compose")
    if not found:
        pytest.fail("podman-compose is missing: `make test-containers` installs it (pyproject's containers extra)")
    return [found]


def wait_ready(stack: ComposeStack, timeout: float = READY_TIMEOUT_S) -> float:
    """Until every service answers /readyz (the portal /healthz) on its published port; seconds taken."""
    started = time.monotonic()
    pending = dict(stack.urls)
    with httpx.Client(timeout=5) as http:
        while pending:
            for name, url in list(pending.items()):
                path = "/healthz" if name == "portal" else "/readyz"
                try:
                    if http.get(f"{url}{path}").status_code == 200:
                        del pending[name]
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() - started > timeout:
                pytest.fail(f"not ready after {timeout:.0f} s: {sorted(pending)}\n{stack.log_tails()}")
            time.sleep(1)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def stack() -> Iterator[ComposeStack]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: `apt-get install podman runc` (see docs/operations.md)")
    project = f"pfct{uuid.uuid4().hex[:8]}"
    secret = f"containers-test-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(ROOT / "deploy" / "images" / "containers.conf")),
        "COMPOSE_PROJECT_NAME": project,
        "PODMAN_COMPOSE": " ".join(compose_command()),
        "PROPOSALFLOW_JWT_SECRET": secret,
        "PROPOSALFLOW_ALLOWED_SOURCES": PORTAL_SOURCE,
        "KAFKA_EXTERNAL_HOST": "127.0.0.1",
        "KAFKA_EXTERNAL_PORT": str(KAFKA_PORT),
        **{f"{name.upper()}_PORT": str(port) for name, port in PORTS.items()},
    }
    os.environ["CONTAINERS_CONF"] = env["CONTAINERS_CONF"]  # for the podman calls of the tests themselves
    for variable in ("PROPOSALFLOW_IMAGE", "KAFKA_IMAGE", "POSTGRES_IMAGE"):
        image = env.get(variable)
        if image and podman("image", "exists", image, check=False).returncode != 0:
            pytest.fail(f"{variable}={image} is not built: run deploy/images/build.sh (or `make test-containers`)")
    stack = ComposeStack(
        urls={name: f"http://127.0.0.1:{port}" for name, port in PORTS.items()},
        logs={},
        env=env,
        project=project,
        compose_env=env,
        log_dir=ROOT / ".data" / "containers-test" / project,
    )
    try:
        started = time.monotonic()
        up = subprocess.run(
            ["bash", str(ROOT / "deploy" / "images" / "compose-up.sh")],
            env=env, capture_output=True, text=True, timeout=1200, check=False,
        )  # fmt: skip
        if up.returncode != 0:
            pytest.fail(f"compose-up.sh failed ({up.returncode}):\n{up.stderr[-6000:]}\n{stack.log_tails()}")
        print("\n" + "\n".join(line for line in up.stderr.splitlines() if line.startswith("[compose-up")))
        ready = wait_ready(stack)
        took = time.monotonic() - started
        print(f"\n[containers] {project}: up and ready in {took:.0f} s (the published ports after {ready:.0f} s)")
        yield stack
    finally:
        stack.save_logs()
        print(f"[containers] logs of every container: {stack.log_dir}")
        down = subprocess.run(
            [*compose_command(), "-p", project, "-f", str(ROOT / "docker-compose.yml"), "down", "-v", "-t", "10"],
            env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        # Whatever compose left behind (a failed `up` may not know every container): by the project's label.
        label = f"label=io.podman.compose.project={project}"
        for kind, listing in (
            ("container", ["ps", "-a"]),
            ("volume", ["volume", "ls"]),
            ("network", ["network", "ls"]),
        ):
            ids = podman(*listing, "-q", "--filter", label, check=False).stdout.split()
            if ids:
                podman(kind, "rm", "-f", *ids, check=False)
        if down.returncode != 0:
            print(f"[containers] compose down said ({down.returncode}): {down.stderr[-2000:]}")


__all__ = ["KAFKA_PORT", "PORTAL_SOURCE", "PORTS", "SERVICES", "ComposeStack", "podman", "stack"]
