"""Regression tests, quick and in-process, for the faults the reliability suite found (each on SQLite and
PostgreSQL, through the `db_url` fixture, unless it is about one of them)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from services.intake import store as intake_store
from services.progress import service as progress_service
from services.progress import store as progress_store
from services.progress.unit_of_work import SqlUnitOfWork
from shared.db import create_engine
from shared.events import Actor, ProposalWithdrawn, Role, SubmissionRejected, parse_message
from shared.failures import is_transient
from shared.migrate import upgrade_async
from shared.outbox import add_to_outbox, envelope_for
from shared.processor import EventProcessor
from shared.relay import OutboxRelay
from shared.runtime import make_broker
from shared.settings import CommonSettings
from tests.conftest import POSTGRES_URL, _dsn, fresh_postgres_database
from tests.fakes import RecordingPublisher, record_of
from tests.procs import free_port
from tests.progress_fixtures import lifecycle

ACTOR = Actor(id="m-1", role=Role.MEMBER)


class HangingPublisher:
    """A broker that takes the records but does not acknowledge them until released."""

    def __init__(self) -> None:
        self.sent = 0
        self.release = asyncio.Event()
        self._acks: list[asyncio.Task[None]] = []

    async def send(self, topic: str, *, value: Any, key: Any, headers: Any) -> asyncio.Future[Any]:
        self.sent += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        async def acknowledge() -> None:
            await self.release.wait()
            future.set_result(None)

        self._acks.append(asyncio.create_task(acknowledge()))
        return future


async def test_the_outbox_relay_does_not_stop_other_writes_while_the_broker_is_slow(db_url: str) -> None:
    """Found by the broker outage: on SQLite the relay held the write lock while waiting for the broker,
    so every other write of the service (the HTTP door included) failed with 'database is locked'."""
    await upgrade_async("intake", db_url)
    engine = create_engine(db_url)
    try:
        withdrawn = ProposalWithdrawn(proposal_id="p-1", actor=ACTOR, reason="撤回")
        async with engine.begin() as conn:
            await add_to_outbox(conn, intake_store.metadata, "intake", [withdrawn])
        publisher = HangingPublisher()
        relay = OutboxRelay(engine, intake_store.metadata, publisher)  # type: ignore[arg-type]
        publishing = asyncio.create_task(relay.publish_once())
        while not publisher.sent:
            await asyncio.sleep(0.01)

        async def write() -> None:
            async with engine.begin() as conn:
                await add_to_outbox(conn, intake_store.metadata, "intake", [withdrawn.model_copy()])

        await asyncio.wait_for(write(), timeout=5)
        publisher.release.set()
        assert await publishing == 1
        assert await relay.backlog() == 1
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_a_database_that_refuses_connections_is_a_transient_failure() -> None:
    """Found by the database outage: 'not currently accepting connections' (and a terminated session)
    were taken for permanent errors, so the events in hand were dead-lettered instead of waited for."""
    async with fresh_postgres_database() as url:
        engine = create_engine(url)
        admin = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=10)
        name = make_url(url).database
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            for _ in range(2):  # the pooled connection that was cut, then a new one refused
                with pytest.raises(Exception) as refused:
                    async with engine.connect() as conn:
                        await conn.execute(text("SELECT 1"))
                assert is_transient(refused.value), repr(refused.value)
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await admin.close()
            await engine.dispose()


def withdrawn(proposal_id: str) -> ProposalWithdrawn:
    return ProposalWithdrawn(proposal_id=proposal_id, actor=Actor(id="m-1", role=Role.MEMBER), reason="撤回")


@pytest.mark.postgres
async def test_a_connection_cut_under_the_relay_and_the_inbox_is_waited_out_then_replaced() -> None:
    """The relay's turn and a batch's inbox run on asyncpg's own connection (issue 17), which SQLAlchemy
    does not watch: a session the server cut must still count as an outage, never a dead letter, and
    the next attempt must get a working connection, not the dead one from the pool."""
    async with fresh_postgres_database() as url:
        await upgrade_async("intake", url)
        engine = create_engine(url)
        admin = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=10)
        name = make_url(url).database
        handled: list[str] = []

        async def handler(conn: Any, envelope: Any, _record: Any) -> None:
            handled.append(envelope.subject)
            await add_to_outbox(conn, intake_store.metadata, "intake", [withdrawn(envelope.subject)])

        publisher = RecordingPublisher()
        relay = OutboxRelay(engine, intake_store.metadata, publisher)  # type: ignore[arg-type]
        worker = EventProcessor(
            service="intake",
            consumer="cut",
            engine=engine,
            metadata=intake_store.metadata,
            handler=handler,
            producer=publisher,  # type: ignore[arg-type]
            base_delay=0.01,
            max_delay=0.05,
        )
        try:
            assert await worker.process_batch([record_of(envelope_for(withdrawn("p-1"), "intake"))]) == ["handled"]
            assert await relay.publish_once() == 1
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            await asyncio.sleep(0.2)  # the loop reads the server's goodbye
            assert await worker.process_batch([record_of(envelope_for(withdrawn("p-2"), "intake"), offset=1)]) == [
                "handled"
            ]
            assert await relay.publish_once() == 1
            assert [sent.key for sent in publisher.sent] == [b"p-1", b"p-2"]
            assert handled == ["p-1", "p-2"]
        finally:
            await admin.close()
            await engine.dispose()


async def test_progress_does_not_park_the_rejection_of_a_command_that_made_no_proposal(db_url: str) -> None:
    """Found by the poison test: progress parked a `submission.rejected` of an unknown proposal for ever,
    and with it every later event of a proposal then submitted under that id (a portal that sends its own
    proposal id, is refused once and resends)."""
    await upgrade_async("progress", db_url)
    engine = create_engine(db_url)

    async def record(conn: Any, envelope: Any, _record: Any) -> None:
        await progress_service.record(SqlUnitOfWork(conn), envelope, parse_message(envelope.type, envelope.data))  # type: ignore[arg-type]

    worker = EventProcessor(
        service="progress",
        consumer="progress",
        engine=engine,
        metadata=progress_store.metadata,
        handler=record,
        producer=RecordingPublisher(),  # type: ignore[arg-type]
        base_delay=0.001,
        max_delay=0.01,
    )
    try:
        rejected = SubmissionRejected(
            proposal_id="p-portal-1",
            actor=Actor(id="/portal/x", role=Role.SYSTEM),
            command_id="c-1",
            command_source="/portal/x",
            command_type="proposalflow.submission.requested.v1",
            reason="invalid submission",
        )
        outcomes = [await worker.process(record_of(envelope_for(rejected, "intake")))]
        for offset, event in enumerate(lifecycle("p-portal-1"), start=1):
            outcomes.append(await worker.process(record_of(envelope_for(event, "intake"), offset=offset)))
        assert outcomes == ["handled"] * len(outcomes)
        async with engine.connect() as conn:
            proposal = await progress_store.get_proposal(conn, "p-portal-1")
        assert proposal is not None and proposal["stage"] == "assigned"
    finally:
        await engine.dispose()


@pytest.mark.kafka
async def test_the_consumers_reach_a_cluster_given_as_a_list_of_brokers(kafka_bootstrap: str) -> None:
    """Found by the three-broker test: FastStream took "a:9092,b:9092" for one address, so with more than
    one bootstrap broker (any production cluster) no consumer ever started; the producers, on aiokafka
    directly, did, and the outboxes drained into topics nobody read."""
    closed = free_port()  # a broker that is down: the client must go on to the next one
    broker = make_broker(
        CommonSettings(kafka_bootstrap_servers=f"127.0.0.1:{closed}, {kafka_bootstrap}"), service="intake"
    )
    try:
        await asyncio.wait_for(broker.start(), timeout=60)
    finally:
        await broker.stop()
