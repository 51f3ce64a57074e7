"""Outbox → real Kafka → inbox, on SQLite and PostgreSQL: exactly one effect per event, and a poison
message dead-lettered while the partition moves on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import JSON, Column, String, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import add_plumbing_tables, create_all, create_engine, new_metadata
from shared.dlq import list_dead_letters, replay
from shared.envelope import Envelope, to_kafka
from shared.events import Actor, ProposalWithdrawn, Role, dlq_topic
from shared.outbox import add_to_outbox
from shared.processor import EventProcessor
from shared.producer import KafkaPublisher
from shared.relay import OutboxRelay
from shared.runtime import make_broker
from shared.settings import CommonSettings
from shared.subscriber import subscribe

pytestmark = pytest.mark.kafka

metadata = new_metadata()
add_plumbing_tables(metadata)
effects = Table(
    "effects", metadata, Column("event_id", String(100), primary_key=True), Column("data", JSON, nullable=False)
)


@dataclass
class Pipeline:
    topic: str
    service: str
    engine: AsyncEngine
    publisher: KafkaPublisher
    relay: OutboxRelay
    settings: CommonSettings
    failing_subjects: set[str]

    async def effects(self) -> list[str]:
        async with self.engine.connect() as conn:
            return list((await conn.execute(select(effects.c.event_id))).scalars())

    async def wait_for_effects(self, count: int, timeout: float = 30.0) -> list[str]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = await self.effects()
            if len(found) >= count or asyncio.get_running_loop().time() > deadline:
                return found
            await asyncio.sleep(0.1)


@pytest.fixture
async def pipeline(db_url: str, kafka_bootstrap: str) -> AsyncIterator[Pipeline]:
    settings = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap)
    suffix = uuid.uuid4().hex[:8]
    topic, service = f"itest.events.{suffix}", f"itest-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 3, 1), NewTopic(dlq_topic(service), 1, 1)])
    await admin.close()

    engine = create_engine(db_url)
    await create_all(engine, metadata)

    failing_subjects: set[str] = set()

    async def handler(conn, envelope: Envelope, record) -> None:
        if envelope.subject in failing_subjects:
            raise RuntimeError(f"cannot handle {envelope.subject} yet")
        await conn.execute(effects.insert().values(event_id=envelope.id, data=envelope.data))

    publisher = KafkaPublisher(settings, client_id="itest")
    await publisher.start()
    relay = OutboxRelay(engine, metadata, publisher, poll_interval=0.05)
    worker = EventProcessor(
        service=service,
        consumer=service,
        engine=engine,
        metadata=metadata,
        handler=handler,
        producer=publisher,
        after_commit=relay.wake,
        retry_attempts=2,
        base_delay=0.01,
    )
    broker = make_broker(settings, service=service)
    subscribe(broker, worker, [topic], group_id=service, description="test")
    await broker.start()
    relay_task = asyncio.create_task(relay.run())
    try:
        yield Pipeline(topic, service, engine, publisher, relay, settings, failing_subjects)
    finally:
        relay.stop()
        await relay_task
        await broker.stop()
        await publisher.stop()
        await engine.dispose()


def withdrawn(proposal_id: str) -> ProposalWithdrawn:
    return ProposalWithdrawn(proposal_id=proposal_id, actor=Actor(id="m-1", role=Role.MEMBER), reason="撤回")


async def test_staged_events_reach_the_consumer_once_each(pipeline: Pipeline) -> None:
    async with pipeline.engine.begin() as conn:
        staged = await add_to_outbox(
            conn, metadata, "intake", [withdrawn(f"p-{n}") for n in range(20)], topic=pipeline.topic
        )
    pipeline.relay.wake()
    found = await pipeline.wait_for_effects(20)
    assert sorted(found) == sorted(envelope.id for envelope in staged)
    assert await pipeline.relay.backlog() == 0


async def test_a_redelivered_event_has_one_effect(pipeline: Pipeline, kafka_bootstrap: str) -> None:
    event = Envelope(
        type=ProposalWithdrawn.TYPE,
        source="/proposalflow/intake",
        subject="p-dup",
        data=withdrawn("p-dup").model_dump(mode="json"),
    )
    key, value, headers = to_kafka(event)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for _ in range(3):
            await producer.send_and_wait(pipeline.topic, value=value, key=key, headers=headers)
        # A different event behind the copies: once it is in, every copy before it has been consumed.
        marker = Envelope(
            type=ProposalWithdrawn.TYPE,
            source="/proposalflow/intake",
            subject="p-dup",
            data=withdrawn("p-dup").model_dump(mode="json"),
        )
        marker_key, marker_value, marker_headers = to_kafka(marker)
        await producer.send_and_wait(pipeline.topic, value=marker_value, key=marker_key, headers=marker_headers)
    finally:
        await producer.stop()
    await pipeline.wait_for_effects(2)
    assert sorted(await pipeline.effects()) == sorted([event.id, marker.id])


async def test_a_poison_message_is_dead_lettered_and_the_next_one_processed(
    pipeline: Pipeline, kafka_bootstrap: str
) -> None:
    good = Envelope(
        type=ProposalWithdrawn.TYPE,
        source="/proposalflow/intake",
        subject="p-poison",
        data=withdrawn("p-poison").model_dump(mode="json"),
    )
    key, value, headers = to_kafka(good)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            pipeline.topic,
            value=b"{not json",
            key=key,
            headers=[
                *headers[:1],
                ("ce_id", b"poison-1"),
                ("ce_source", b"/somewhere"),
                ("ce_type", b"x"),
                ("content-type", b"application/json"),
            ],
        )
        await producer.send_and_wait(pipeline.topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()
    assert await pipeline.wait_for_effects(1) == [good.id]

    consumer = AIOKafkaConsumer(
        dlq_topic(pipeline.service),
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"check-{uuid.uuid4().hex[:6]}",
    )
    await consumer.start()
    try:
        record = await asyncio.wait_for(consumer.getone(), timeout=20)
    finally:
        await consumer.stop()
    dead = dict(record.headers)
    assert record.value == b"{not json"
    assert b"not valid JSON" in dead["x-dlq-error"]
    assert dead["x-dlq-original-topic"] == pipeline.topic.encode()
    assert dead["ce_id"] == b"poison-1"


async def test_dead_letters_are_replayed_once_the_cause_is_fixed(pipeline: Pipeline) -> None:
    pipeline.failing_subjects.add("p-broken")
    async with pipeline.engine.begin() as conn:
        [broken] = await add_to_outbox(conn, metadata, "intake", [withdrawn("p-broken")], topic=pipeline.topic)
        [fine] = await add_to_outbox(conn, metadata, "intake", [withdrawn("p-fine")], topic=pipeline.topic)
    pipeline.relay.wake()
    assert await pipeline.wait_for_effects(1) == [fine.id]

    letters = await list_dead_letters(pipeline.settings, pipeline.service)
    while not letters:  # the dead letter is written after the retries; wait for it, bounded by the test timeout
        await asyncio.sleep(0.2)
        letters = await list_dead_letters(pipeline.settings, pipeline.service)
    assert [letter.original_topic for letter in letters] == [pipeline.topic]
    assert "cannot handle p-broken yet" in letters[0].error

    pipeline.failing_subjects.clear()  # the cause is fixed
    assert await replay(pipeline.settings, pipeline.service) == 1
    assert sorted(await pipeline.wait_for_effects(2)) == sorted([broken.id, fine.id])
    assert await replay(pipeline.settings, pipeline.service) == 0  # nothing is sent twice
