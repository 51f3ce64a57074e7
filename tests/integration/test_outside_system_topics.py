"""The inbound topics are read by pattern: the shared topic and every outside system's own
(`<inbound>.<system>`), including a system's topic made while the consumer runs, from its first record;
a topic that only looks alike is not read. The handler learns the topic of each record (the door's proof
of which system sent it)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import Column, String, Table, select

from shared.db import add_plumbing_tables, create_all, create_engine, new_metadata
from shared.envelope import Envelope, to_kafka
from shared.processor import EventProcessor
from shared.producer import KafkaPublisher
from shared.runtime import make_broker
from shared.settings import CommonSettings
from shared.subscriber import subscribe

pytestmark = pytest.mark.kafka

metadata = new_metadata()
add_plumbing_tables(metadata)
seen = Table("seen", metadata, Column("event_id", String(100), primary_key=True), Column("topic", String(300)))


async def test_a_systems_topic_made_while_the_consumer_runs_is_read_from_its_first_record(
    tmp_path: object, kafka_bootstrap: str
) -> None:
    settings = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap)
    suffix = uuid.uuid4().hex[:8]
    inbound, service = f"itest.unit-reports-{suffix}", f"itest-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(inbound, 1, 1)])
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/seen.db")
    await create_all(engine, metadata)

    async def handler(conn, envelope: Envelope, record) -> None:
        await conn.execute(seen.insert().values(event_id=envelope.id, topic=record.topic))

    publisher = KafkaPublisher(settings, client_id="itest")
    await publisher.start()
    worker = EventProcessor(
        service=service, consumer=service, engine=engine, metadata=metadata, handler=handler, producer=publisher
    )
    # Metadata refreshed every second, so the test need not wait the services' minute for a new topic.
    broker = make_broker(settings, service=service, metadata_max_age_ms=1000)
    subscribe(broker, worker, [], inbound=[inbound], group_id=service, description="test")
    await broker.start()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()

    async def send(topic: str) -> str:
        envelope = Envelope(type="itest.report.v1", source="/oa/itest", subject="p-1", data={"n": topic})
        key, value, headers = to_kafka(envelope)
        await producer.send_and_wait(topic, value, key=key, headers=headers)
        return envelope.id

    async def read() -> dict[str, str]:
        async with engine.connect() as conn:
            return {row.event_id: row.topic for row in await conn.execute(select(seen))}

    async def until_read(ids: set[str], timeout: float = 60.0) -> dict[str, str]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not ids <= set(found := await read()) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
        return found

    system_topic, lookalike = f"{inbound}.oa-new", f"{inbound}x"
    try:
        shared = await send(inbound)
        assert (await until_read({shared}))[shared] == inbound
        # A system's topic made now, written before the consumer has seen it: found and read from the start.
        await admin.create_topics([NewTopic(system_topic, 1, 1), NewTopic(lookalike, 1, 1)])
        early = await send(system_topic)
        stray = await send(lookalike)
        found = await until_read({early})
        assert found[early] == system_topic
        later = await send(system_topic)
        found = await until_read({later})
        assert found[later] == system_topic
        assert stray not in found
    finally:
        await producer.stop()
        await broker.stop()
        await publisher.stop()
        await admin.delete_topics([inbound, system_topic, lookalike])
        await admin.close()
        await engine.dispose()
