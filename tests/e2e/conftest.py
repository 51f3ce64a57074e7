"""The five services as separate processes (`proposalflow run <service>`), on a real Kafka and on
SQLite or PostgreSQL, each with its own database."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.settings import SERVICES, CommonSettings
from tests.conftest import KAFKA, fresh_postgres_database
from tests.procs import ROOT, Suite, free_port, running, start_service, stop_service, wait_ready
from tests.reliability.workload import prepare_topics

# The process helpers moved to tests/procs.py (the reliability tests share them); still importable here.
__all__ = [
    "PORTAL",
    "ROOT",
    "UNIT_SYSTEMS",
    "Suite",
    "free_port",
    "running",
    "shared_suite",
    "start_service",
    "started_suite",
    "stop_service",
    "suite",
    "wait_ready",
]

PORTAL = "/portal/members-e2e"
UNIT_SYSTEMS = {"dg-zrzyj": "/oa/dg-zrzyj-e2e", "dg-nyj": "/oa/dg-nyj-e2e"}
"""Unit OA systems allowed to write `proposalflow.unit-reports`, each for its own unit only."""


@contextlib.asynccontextmanager
async def started_suite(backend: str, tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[Suite]:
    """The five services on `backend` (sqlite, or postgres with a fresh database each), ready."""
    run = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROPOSALFLOW_DATA_DIR": str(tmp_path / "data"),
        "PROPOSALFLOW_ALLOWED_SOURCES": ",".join([PORTAL, *(f"{s}=unit:{u}" for u, s in UNIT_SYSTEMS.items())]),
        "PROPOSALFLOW_JWT_SECRET": f"e2e-secret-{run}-0123456789abcdef0123456789",
        "PROPOSALFLOW_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }
    for service in SERVICES:
        env[f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP"] = f"e2e-{run}-{service}"
    # The groups start at the topics' current end (topics made as the services make them): the earlier
    # tests' commands and events on the run's broker are not this suite's to work through.
    groups = [env[f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP"] for service in SERVICES]
    await prepare_topics(kafka_bootstrap, groups, partitions=CommonSettings().topic_partitions)
    async with contextlib.AsyncExitStack() as stack:
        if backend == "postgres":
            for service in SERVICES:
                url = await stack.enter_async_context(fresh_postgres_database())
                env[f"PROPOSALFLOW_{service.upper()}_DATABASE_URL"] = url
        with running(env, tmp_path) as started:
            await wait_ready(started)
            yield started


@pytest.fixture(params=["sqlite", "postgres"])
async def suite(request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str) -> AsyncIterator[Suite]:
    async with started_suite(request.param, tmp_path, kafka_bootstrap) as started:
        yield started


@pytest.fixture(scope="package", params=["sqlite", "postgres"])
async def shared_suite(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Suite]:
    """One suite per database for the end-to-end tests (package scope: stopped when they are done, not
    left reading the later tests' traffic), shared by the modules whose tests each work on proposals of
    their own and look only at those (never at counts over a whole suite, nor settings of their own):
    the five services start twice for all of them instead of twice per module. A module that counts
    everything in a suite, needs settings of its own, a secured broker or kills a service keeps its
    own `suite`."""
    async with started_suite(request.param, tmp_path_factory.mktemp("shared"), KAFKA) as started:
        yield started


@pytest.fixture
async def portal(suite: Suite) -> AsyncIterator[str]:
    """The portal beside the suite, with the development login on (the suite has its own secret)."""
    port = free_port()
    env = {
        **suite.env,
        "PROPOSALFLOW_PORTAL_HTTP_PORT": str(port),
        "PROPOSALFLOW_PORTAL_DEV_LOGIN": "true",
        "PROPOSALFLOW_PORTAL_INTAKE_URL": suite.urls["intake"],
        "PROPOSALFLOW_PORTAL_ASSIGNMENT_URL": suite.urls["assignment"],
        "PROPOSALFLOW_PORTAL_PROGRESS_URL": suite.urls["progress"],
    }
    log = suite.logs["intake"].with_name("portal.log")
    suite.urls["portal"], suite.logs["portal"] = f"http://127.0.0.1:{port}", log
    suite.replica_urls["portal"] = suite.urls["portal"]
    suite.processes["portal"] = start_service("portal", env, log)
    try:
        await wait_ready(suite)
        yield suite.urls["portal"]
    finally:
        stop_service(suite.processes.pop("portal"))
        del suite.urls["portal"], suite.replica_urls["portal"]
