"""A dead letter too large for the broker, against the real broker: a record just under the 1 MiB limit
that fails for good is dead-lettered in a form that fits (its value left out, named by its source topic,
partition and offset) and the records behind it on its partition are processed; `dlq replay` fetches
the left-out value back from the source topic, or refuses, naming where the original was.

Before these tests the dead letter (the record plus its `x-dlq-*` headers) was over the producer's
limit, the send failed with `MessageSizeTooLargeError`, was taken for an outage and retried for ever,
and the partition stalled behind it."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from sqlalchemy import JSON, Column, String, Table, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import add_plumbing_tables, create_all, create_engine, new_metadata
from shared.dlq import DeadLetter, list_dead_letters, replay
from shared.envelope import Envelope, to_kafka
from shared.errors import PermanentError
from shared.events import Actor, ProposalWithdrawn, Role, dlq_topic
from shared.processor import EventProcessor
from shared.producer import KafkaPublisher
from shared.runtime import make_broker
from shared.settings import CommonSettings
from shared.subscriber import subscribe

pytestmark = pytest.mark.kafka

ONE_MIB = 1_048_576
"""aiokafka's default `max_request_size`; the broker's default `message.max.bytes` is a few bytes more."""

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
    settings: CommonSettings
    failing_subjects: set[str] = field(default_factory=set)

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

    async def dead_letters(self, count: int, timeout: float = 30.0) -> list[DeadLetter]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            letters = await list_dead_letters(self.settings, self.service)
            if len(letters) >= count or asyncio.get_running_loop().time() > deadline:
                return letters
            await asyncio.sleep(0.2)


async def start_pipeline(
    db_url: str, kafka_bootstrap: str, *, dlq_topic_configs: dict[str, str] | None = None
) -> tuple[Pipeline, list[object]]:
    settings = CommonSettings(kafka_bootstrap_servers=kafka_bootstrap)
    suffix = uuid.uuid4().hex[:8]
    topic, service = f"itest.large.{suffix}", f"itest-large-{suffix}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    # One partition: every record below goes behind the large one.
    await admin.create_topics(
        [NewTopic(topic, 1, 1), NewTopic(dlq_topic(service), 1, 1, topic_configs=dlq_topic_configs or {})]
    )
    await admin.close()
    engine = create_engine(db_url)
    await create_all(engine, metadata)
    pipeline = Pipeline(topic, service, engine, settings)

    async def handler(conn, envelope: Envelope, record) -> None:
        if envelope.subject in pipeline.failing_subjects:
            # An error that echoes its input: long enough that the trimmed error matters too.
            raise PermanentError(f"the reason breaks a rule: {envelope.data['reason'][:6000]}")
        await conn.execute(effects.insert().values(event_id=envelope.id, data={"subject": envelope.subject}))

    publisher = KafkaPublisher(settings, client_id="itest-large")
    await publisher.start()
    worker = EventProcessor(
        service=service,
        consumer=service,
        engine=engine,
        metadata=metadata,
        handler=handler,
        producer=publisher,
        retry_attempts=2,
        base_delay=0.01,
        max_delay=0.5,
    )
    broker = make_broker(settings, service=service)
    subscribe(broker, worker, [topic], group_id=service, description="test")
    await broker.start()
    return pipeline, [broker, publisher, engine]


async def stop_pipeline(parts: list[object]) -> None:
    broker, publisher, engine = parts
    await broker.stop()  # type: ignore[attr-defined]
    await publisher.stop()  # type: ignore[attr-defined]
    await engine.dispose()  # type: ignore[attr-defined]


@pytest.fixture
async def pipeline(db_url: str, kafka_bootstrap: str) -> AsyncIterator[Pipeline]:
    started, parts = await start_pipeline(db_url, kafka_bootstrap)
    try:
        yield started
    finally:
        await stop_pipeline(parts)


def withdrawn(subject: str, reason: str = "撤回") -> Envelope:
    data = ProposalWithdrawn(proposal_id=subject, actor=Actor(id="m-1", role=Role.MEMBER), reason=reason)
    return Envelope(
        type=ProposalWithdrawn.TYPE,
        source="/proposalflow/intake",
        subject=subject,
        data=data.model_dump(mode="json"),
    )


def size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """What aiokafka's producer compares with `max_request_size`."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers))


def large_event(subject: str, total: int) -> tuple[Envelope, bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """An event whose record is `total` bytes as the producer measures it (just under its limit)."""
    envelope = withdrawn(subject, "x")
    key, value, headers = to_kafka(envelope)
    reason = "x" * (1 + total - size(key, value, headers))
    envelope = withdrawn(subject, reason)
    key, value, headers = to_kafka(envelope)
    while size(key, value, headers) > total:  # a varint may have grown by a byte
        reason = reason[:-1]
        envelope = withdrawn(subject, reason)
        key, value, headers = to_kafka(envelope)
    return envelope, key, value, headers


async def produce(kafka_bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, list]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=ONE_MIB)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_a_record_just_under_the_limit_is_dead_lettered_and_its_partition_moves_on(
    pipeline: Pipeline, kafka_bootstrap: str
) -> None:
    large, key, value, headers = large_event("p-large", ONE_MIB - 64)
    assert value is not None
    pipeline.failing_subjects.add("p-large")
    behind = [withdrawn(f"p-behind-{n}") for n in range(3)]
    await produce(kafka_bootstrap, pipeline.topic, [(key, value, headers), *(to_kafka(e) for e in behind)])

    # The partition moves on: every record behind the large one is processed.
    assert sorted(await pipeline.wait_for_effects(3)) == sorted(e.id for e in behind)

    [letter] = await pipeline.dead_letters(1)
    found = dict(letter.headers)
    # It fits: the producer would not have sent it otherwise, and it says what it left out and where it is.
    assert size(letter.key, letter.value, letter.headers) <= ONE_MIB
    assert letter.value is None
    assert found["x-dlq-value-omitted"] == str(len(value)).encode()
    assert found["x-dlq-value-sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert found["x-dlq-original-topic"] == pipeline.topic.encode()
    assert found["x-dlq-original-partition"] == b"0"
    assert found["x-dlq-original-offset"] == b"0"
    assert letter.error.startswith("PermanentError: the reason breaks a rule: xxx")
    assert len(found["x-dlq-error"]) <= 4000
    assert letter.key == key
    assert found["ce_id"] == large.id.encode()  # the original headers are kept: the letter says what it was
    assert letter.value_omitted == len(value)

    # Once the cause is fixed, replay fetches the value from the source topic and sends the original back.
    pipeline.failing_subjects.clear()
    assert await replay(pipeline.settings, pipeline.service) == 1
    assert sorted(await pipeline.wait_for_effects(4)) == sorted([large.id, *(e.id for e in behind)])
    assert await replay(pipeline.settings, pipeline.service) == 0


async def test_replay_refuses_a_letter_whose_original_is_gone_naming_where_it_was(
    pipeline: Pipeline, kafka_bootstrap: str
) -> None:
    _, key, value, headers = large_event("p-gone", ONE_MIB - 64)
    pipeline.failing_subjects.add("p-gone")
    after = withdrawn("p-after")
    await produce(kafka_bootstrap, pipeline.topic, [(key, value, headers), to_kafka(after)])
    assert await pipeline.wait_for_effects(1) == [after.id]
    [letter] = await pipeline.dead_letters(1)
    assert letter.value_omitted is not None

    # Retention (here: deleting the records) took the original out of its source topic.
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(pipeline.topic, 0): RecordsToDelete(before_offset=1)})
    finally:
        await admin.close()

    pipeline.failing_subjects.clear()
    for _ in range(2):  # refused again: the replay group did not move past the letter
        with pytest.raises(LookupError, match=rf"{pipeline.topic}\[0\]@0") as refused:
            await replay(pipeline.settings, pipeline.service)
        assert "no longer" in str(refused.value)
    assert await pipeline.effects() == [after.id]


async def test_a_broker_limit_below_the_producers_is_met_by_a_smaller_letter(db_url: str, kafka_bootstrap: str) -> None:
    """The producer lets the letter through, the broker's limit on the dead-letter topic is lower: the
    broker's refusal is met with the smaller form, not retried for ever."""
    pipeline, parts = await start_pipeline(db_url, kafka_bootstrap, dlq_topic_configs={"max.message.bytes": "200000"})
    try:
        _, key, value, headers = large_event("p-mid", 500_000)
        assert value is not None
        pipeline.failing_subjects.add("p-mid")
        after = withdrawn("p-after")
        await produce(kafka_bootstrap, pipeline.topic, [(key, value, headers), to_kafka(after)])
        assert await pipeline.wait_for_effects(1) == [after.id]
        [letter] = await pipeline.dead_letters(1)
        assert letter.value is None
        assert dict(letter.headers)["x-dlq-value-omitted"] == str(len(value)).encode()
    finally:
        await stop_pipeline(parts)


async def test_a_smaller_letter_goes_after_the_broker_refused_one_on_a_partition_it_had_written(
    db_url: str, kafka_bootstrap: str
) -> None:
    """The same as above with a letter already on the dead-letter partition: the broker's refusal left the
    idempotent producer's sequence numbers ahead of the broker's, and the smaller form failed with
    `OutOfOrderSequenceNumber`, retried for ever (the test above passed only because the refused letter was
    the producer's first on that partition). The publisher now replaces its producer after a refusal."""
    pipeline, parts = await start_pipeline(db_url, kafka_bootstrap, dlq_topic_configs={"max.message.bytes": "200000"})
    try:
        small = withdrawn("p-small")
        _, key, value, headers = large_event("p-mid", 500_000)
        pipeline.failing_subjects.update({"p-small", "p-mid"})
        after = withdrawn("p-after")
        await produce(kafka_bootstrap, pipeline.topic, [to_kafka(small), (key, value, headers), to_kafka(after)])
        assert await pipeline.wait_for_effects(1) == [after.id]
        first, second = await pipeline.dead_letters(2)
        assert dict(first.headers)["ce_id"] == small.id.encode() and first.value is not None
        assert second.value is None
        assert dict(second.headers)["x-dlq-value-omitted"] == str(len(value)).encode()
    finally:
        await stop_pipeline(parts)
