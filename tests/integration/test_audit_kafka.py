"""The audit consumer on the real broker, on SQLite and PostgreSQL: every record read becomes one
chained entry (a record that is not a CloudEvent included), a redelivered event adds nothing, and
the resulting chain verifies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.audit import service, store
from services.audit.domain import INVALID_RECORD
from services.audit.handlers import AuditProcessor, occurrence_key, recorder
from services.audit.unit_of_work import SqlLog
from shared.db import create_engine
from shared.envelope import Envelope, to_kafka
from shared.events import Actor, ProposalWithdrawn, Role, dlq_topic
from shared.migrate import upgrade_async
from shared.producer import KafkaPublisher
from shared.runtime import make_broker
from shared.settings import CommonSettings
from shared.subscriber import subscribe

pytestmark = pytest.mark.kafka

KEY = b"kafka-test-key"


@pytest.fixture
async def audited(db_url: str, kafka_bootstrap: str) -> AsyncIterator[tuple[str, AsyncEngine]]:
    """An audit consumer on a fresh topic; yields the topic and the audit database."""
    settings = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap)
    suffix = uuid.uuid4().hex[:8]
    topic, name = f"itest.audited.{suffix}", f"itest-audit-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1), NewTopic(dlq_topic(name), 1, 1)])
    await admin.close()
    await upgrade_async("audit", db_url)
    engine = create_engine(db_url)
    publisher = KafkaPublisher(settings, client_id="itest-audit")
    await publisher.start()
    processor = AuditProcessor(
        key=KEY,
        service=name,
        consumer="audit",
        engine=engine,
        metadata=store.metadata,
        handler=recorder(KEY),
        producer=publisher,
        dedupe_key=occurrence_key,
        base_delay=0.01,
    )
    broker = make_broker(settings, service=name)
    subscribe(broker, processor, [topic], group_id=name, description="test")
    await broker.start()
    try:
        yield topic, engine
    finally:
        await broker.stop()
        await publisher.stop()
        await engine.dispose()


def withdrawn(proposal_id: str) -> Envelope:
    event = ProposalWithdrawn(proposal_id=proposal_id, actor=Actor(id="m-1", role=Role.MEMBER), reason="撤回")
    return Envelope(
        type=event.TYPE, source="/proposalflow/intake", subject=proposal_id, data=event.model_dump(mode="json")
    )


async def entries(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(store.entries.c.type, store.entries.c.event_id).order_by(store.entries.c.seq))
        return [(row.type, row.event_id) for row in rows]


async def test_every_record_is_audited_once_and_the_chain_holds(
    audited: tuple[str, AsyncEngine], kafka_bootstrap: str
) -> None:
    topic, engine = audited
    first, second, marker = withdrawn("p-kafka"), withdrawn("p-kafka"), withdrawn("p-kafka")
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        # One key, so one partition: the marker is read after everything sent before it.
        for envelope in (first, first, second):
            _key, value, headers = to_kafka(envelope)
            await producer.send_and_wait(topic, value=value, key=b"p-kafka", headers=headers)
        garbage = await producer.send_and_wait(
            topic, value=b"{not json", key=b"p-kafka", headers=[("content-type", b"application/json")]
        )
        _key, value, headers = to_kafka(marker)
        await producer.send_and_wait(topic, value=value, key=b"p-kafka", headers=headers)
    finally:
        await producer.stop()

    deadline = asyncio.get_running_loop().time() + 30
    while marker.id not in {event_id for _type, event_id in await entries(engine)}:
        assert asyncio.get_running_loop().time() < deadline, await entries(engine)
        await asyncio.sleep(0.1)

    assert await entries(engine) == [
        (first.type, first.id),
        (second.type, second.id),
        (INVALID_RECORD, f"kafka:{topic}/{garbage.partition}/{garbage.offset}"),
        (marker.type, marker.id),
    ]
    report = await service.verify(SqlLog(engine), KEY)
    assert (report["ok"], report["checked"]) == (True, 4)
