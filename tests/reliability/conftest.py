"""The suite under test for the fault tests: five services as processes, on SQLite or PostgreSQL, on the
test broker or on a broker (or cluster) of the test's own, with a workload to drive them.

Topic names are fixed, so two suites on one broker see each other's events (one's assignment service
would assign the other's proposals): tests on the shared broker run one after another, as pytest runs
them. Each suite's consumer groups start at the end of the topics, so history left by earlier tests is
not replayed into it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.settings import SERVICES
from tests.conftest import fresh_postgres_database
from tests.procs import ROOT, Suite, free_port, running, wait_ready
from tests.reliability.workload import Workload, prepare_topics, reliability_env

KAFKA_LOCAL = ROOT / "deploy" / "kafka-local"


@dataclass
class Harness:
    suite: Suite
    workload: Workload
    run: str
    database_urls: dict[str, str]


@contextlib.asynccontextmanager
async def harness(
    tmp_path: Path,
    bootstrap: str,
    backend: str,
    *,
    replicas: dict[str, int] | None = None,
    partitions: int = 6,
    replication: int = 1,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Harness]:
    run = uuid.uuid4().hex[:8]
    env = {**reliability_env(tmp_path, bootstrap, run), **(extra_env or {})}
    await prepare_topics(
        bootstrap,
        [env[f"PROPOSALFLOW_{s.upper()}_CONSUMER_GROUP"] for s in SERVICES],
        partitions=partitions,
        replication=replication,
    )
    urls: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as stack:
        for service in SERVICES:
            if backend == "postgres":
                urls[service] = await stack.enter_async_context(fresh_postgres_database())
            else:
                urls[service] = f"sqlite+aiosqlite:///{tmp_path}/data/{service}.db"
            env[f"PROPOSALFLOW_{service.upper()}_DATABASE_URL"] = urls[service]
        (tmp_path / "data").mkdir(exist_ok=True)
        with running(env, tmp_path) as suite:
            await wait_ready(suite)
            # Replicas start once the first is up: each process migrates its database at start, and two
            # migrating one database at once would race (in production a migration job runs first).
            for service, count in (replicas or {}).items():
                for number in range(2, count + 1):
                    await suite.restart(f"{service}#{number}")
            yield Harness(suite=suite, workload=Workload(suite, bootstrap, run), run=run, database_urls=urls)


@dataclass
class Broker:
    """A single-node broker of the test's own (kafka-local.sh), to stop and start at will."""

    env: dict[str, str]

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.env['KAFKA_LOCAL_PORT']}"

    def __call__(self, command: str) -> None:
        subprocess.run(["bash", str(KAFKA_LOCAL / "kafka-local.sh"), command], env=self.env, check=True, cwd=ROOT)


@contextlib.contextmanager
def own_broker(data_dir: Path) -> Iterator[Broker]:
    broker = Broker(
        env={
            **os.environ,
            "KAFKA_LOCAL_PORT": str(free_port()),
            "KAFKA_LOCAL_CONTROLLER_PORT": str(free_port()),
            "KAFKA_LOCAL_DATA_DIR": str(data_dir),
        }
    )
    broker("start")
    try:
        yield broker
    finally:
        broker("reset")


@dataclass
class Cluster:
    """A three-node cluster of the test's own (kafka-cluster.sh): RF 3, min.insync.replicas=2."""

    env: dict[str, str]

    def __call__(self, *command: str) -> str:
        done = subprocess.run(
            ["bash", str(KAFKA_LOCAL / "kafka-cluster.sh"), *command],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"kafka-cluster.sh {' '.join(command)}: {done.stdout}{done.stderr}"
        return done.stdout.strip()

    @property
    def bootstrap(self) -> str:
        return self("bootstrap")


@contextlib.contextmanager
def own_cluster(data_dir: Path) -> Iterator[Cluster]:
    base = os.environ.get("PROPOSALFLOW_TEST_CLUSTER_BASE_PORT") or str(_free_run_of_ports(6))
    cluster = Cluster(
        env={
            **os.environ,
            "KAFKA_CLUSTER_BASE_PORT": base,
            "KAFKA_CLUSTER_DATA_DIR": str(data_dir),
            # Three JVMs starting at once on a busy machine take their time to form a quorum.
            "KAFKA_LOCAL_START_TIMEOUT": os.environ.get("KAFKA_LOCAL_START_TIMEOUT", "240"),
        }
    )
    try:
        cluster("start")
        yield cluster
    finally:
        cluster("reset")


def _free_run_of_ports(count: int) -> int:
    """A base port with `count` free ports after it (the cluster's nodes take consecutive ports)."""
    for _ in range(50):
        base = free_port()
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no run of free ports found")
