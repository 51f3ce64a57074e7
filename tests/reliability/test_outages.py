"""The broker or a database goes away for a while under a steady stream, then comes back.

Broker: every service keeps accepting work into its outbox (the HTTP door stays open), the outboxes
hold it, and once the broker is back they drain; nothing is lost or doubled.

Database: a service whose database is unreachable stops storing, and so stops committing offsets
(nothing is acknowledged that was not stored); once the database is back it carries on where it stopped.
PostgreSQL: the service's own database refuses connections (`ALLOW_CONNECTIONS false`) and its sessions
are terminated. SQLite: the test holds the file in an exclusive transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy.engine import make_url

from shared.events import ASSIGNMENTS, PROPOSALS
from tests.conftest import POSTGRES_URL, _dsn
from tests.reliability.conftest import harness, own_broker
from tests.reliability.workload import SIZE, TIMEOUT, partitions_of, settled

pytestmark = [pytest.mark.reliability, pytest.mark.e2e, pytest.mark.kafka, pytest.mark.timeout(TIMEOUT)]


async def unsent(database_url: str) -> int:
    """Rows in a service's outbox not yet published, read straight from its database."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database
        with contextlib.closing(sqlite3.connect(f"file:{url.database}?mode=ro", uri=True, timeout=30)) as db:
            return int(db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0])
    conn = await asyncpg.connect(_dsn(database_url), timeout=10)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
    finally:
        await conn.close()


async def test_a_broker_outage_is_held_in_the_outboxes_and_drained_after(tmp_path: Path) -> None:
    with own_broker(tmp_path / "kafka") as broker:
        async with harness(tmp_path, broker.bootstrap, "sqlite") as h:
            done = asyncio.Event()
            clerk = asyncio.create_task(h.workload.clerk())
            stream = asyncio.create_task(h.workload.stream(done))
            started = time.monotonic()
            try:
                await asyncio.sleep(3)
                await asyncio.to_thread(broker, "stop")
                down = time.monotonic()
                before = len(h.workload.accepted_http)
                held = 0
                while time.monotonic() - down < SIZE.outage:
                    held = max(held, await unsent(h.database_urls["intake"]))
                    await asyncio.sleep(1)
                accepted_while_down = len(h.workload.accepted_http) - before
                await asyncio.to_thread(broker, "start")
                await asyncio.sleep(3)
                done.set()
                await stream
                result = await settled(h.suite, h.workload.accepted, h.run)
                drained = {service: await unsent(url) for service, url in h.database_urls.items()}
            finally:
                done.set()
                stream.cancel()
                clerk.cancel()
            print(
                f"\nbroker down {SIZE.outage:.0f}s: {accepted_while_down} accepted over HTTP meanwhile, "
                f"intake outbox held up to {held:.0f}; total {time.monotonic() - started:.0f}s: {result}"
            )
            assert accepted_while_down > 0, "the HTTP door should stay open while the broker is down"
            assert held > 0, "intake's outbox should have held the events while the broker was down"
            assert not any(drained.values()), f"outboxes not drained: {drained}"
            assert not result.problems, f"{result}\n{h.suite.log_tails()}"


async def committed(bootstrap: str, group: str, topics: list[str]) -> dict[TopicPartition, int]:
    """The group's committed offsets (read-only: this consumer never joins the group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        found = {}
        for topic in topics:
            for partition in await partitions_of(consumer, topic):
                tp = TopicPartition(topic, partition)
                found[tp] = await consumer.committed(tp) or 0
        return found
    finally:
        await consumer.stop()


@contextlib.asynccontextmanager
async def postgres_unavailable(url: str) -> AsyncIterator[None]:
    """The database refuses new connections and its sessions are cut; the server itself stays up."""
    name = make_url(url).database
    admin = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=10)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


@contextlib.contextmanager
def sqlite_locked(url: str) -> Iterator[None]:
    """Another process holds the file in an exclusive transaction: every write waits, then fails."""
    path = make_url(url).database
    assert path
    lock = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        yield
    finally:
        lock.execute("ROLLBACK")
        lock.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_database_outage_stops_the_offsets_and_loses_nothing(
    backend: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    async with harness(tmp_path, kafka_bootstrap, backend) as h:
        done = asyncio.Event()
        clerk = asyncio.create_task(h.workload.clerk())
        stream = asyncio.create_task(h.workload.stream(done))
        group = h.suite.env["PROPOSALFLOW_PROGRESS_CONSUMER_GROUP"]
        started = time.monotonic()
        try:
            await asyncio.sleep(3)
            url = h.database_urls["progress"]
            outage = postgres_unavailable(url) if backend == "postgres" else _async(sqlite_locked(url))
            async with outage:
                # What was stored before the outage may still be committed; after that, nothing.
                await asyncio.sleep(min(5.0, SIZE.outage / 2))
                frozen = await committed(kafka_bootstrap, group, [PROPOSALS, ASSIGNMENTS])
                await asyncio.sleep(max(1.0, SIZE.outage - 5))
                later = await committed(kafka_bootstrap, group, [PROPOSALS, ASSIGNMENTS])
                accepted_meanwhile = len(h.workload.accepted)
            done.set()
            await stream
            result = await settled(h.suite, h.workload.accepted, h.run)
            after = await committed(kafka_bootstrap, group, [PROPOSALS, ASSIGNMENTS])
        finally:
            done.set()
            stream.cancel()
            clerk.cancel()
        print(
            f"\nprogress database down {SIZE.outage:.0f}s ({backend}), {accepted_meanwhile} accepted by then; "
            f"total {time.monotonic() - started:.0f}s: {result}"
        )
        assert later == frozen, "progress committed offsets while it could not store anything"
        assert sum(after.values()) > sum(later.values()), "progress should have caught up after the outage"
        assert not result.problems, f"{result}\n{h.suite.log_tails()}"


@contextlib.asynccontextmanager
async def _async(manager: contextlib.AbstractContextManager[None]) -> AsyncIterator[None]:
    with manager:
        yield
