"""Fixtures shared by every layer of tests: databases (SQLite and PostgreSQL) and the Kafka address.

`make test` starts a real PostgreSQL and a real Kafka and exports their addresses; tests that need
them fail (not skip) when they are unreachable, so a green run always means they ran.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "PROPOSALFLOW_TEST_POSTGRES_URL",
    "postgresql+asyncpg://proposalflow:proposalflow@127.0.0.1:15432/proposalflow_test",
)
KAFKA = os.environ.get("PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards."""
    name = f"pf_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is unreachable ({exc}); start it with "
            "`bash deploy/postgres/pg-local.sh start` or run `make test`"
        )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: object) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/test.db"


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[str]:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/test.db"
    else:
        async with fresh_postgres_database() as url:
            yield url


@pytest.fixture
def kafka_bootstrap() -> str:
    return KAFKA
