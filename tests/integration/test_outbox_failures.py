"""An outbox row the broker refuses for good, on SQLite and PostgreSQL: the relay marks it failed, counts
it, publishes the rows behind it, and sends it again once `proposalflow outbox retry` clears the mark.

Before this the relay took every error for an outage: a row larger than its topic's `max.message.bytes`
failed at every attempt, and no row behind it, of any proposal, was ever published. The real-broker test
below shows that (it times out waiting for the rows behind the large one on the code before the fix).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from proposalflow.cli import app
from services.intake import store as intake_store
from shared.db import create_engine
from shared.events import Actor, ProposalWithdrawn, Role
from shared.migrate import upgrade_async
from shared.outbox import add_to_outbox
from shared.producer import KafkaPublisher
from shared.relay import OutboxRelay
from shared.settings import CommonSettings
from tests.fakes import RecordingPublisher

ACTOR = Actor(id="m-1", role=Role.MEMBER)
TOPIC_LIMIT = 50_000
"""The test topics' `max.message.bytes`: lower than the producer's 1 MiB, as a topic may be."""

outbox = intake_store.metadata.tables["outbox"]


def withdrawn(proposal_id: str, reason: str = "撤回") -> ProposalWithdrawn:
    return ProposalWithdrawn(proposal_id=proposal_id, actor=ACTOR, reason=reason)


def sample(name: str, service: str) -> float:
    return REGISTRY.get_sample_value(name, {"service": service}) or 0.0


async def eventually(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not in {timeout}s: {what}"
        await asyncio.sleep(0.05)


async def rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(select(outbox).order_by(outbox.c.id))).mappings()]


async def cli(*args: str) -> str:
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


# With a stand-in broker ---------------------------------------------------------------------------------


@pytest.fixture
async def engine(db_url: str, monkeypatch: pytest.MonkeyPatch):
    await upgrade_async("intake", db_url)
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_DATABASE_URL", db_url)  # for the CLI
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


async def test_a_row_refused_for_good_is_marked_failed_and_the_rows_behind_it_are_published(engine) -> None:
    service = f"itest-failed-{uuid.uuid4().hex[:8]}"
    events = [withdrawn("p-1"), withdrawn("p-big", "字" * 20_000), withdrawn("p-big", "again"), withdrawn("p-2")]
    async with engine.begin() as conn:
        envelopes = await add_to_outbox(conn, intake_store.metadata, "intake", events)
    publisher = RecordingPublisher(broker_limit=TOPIC_LIMIT)
    relay = OutboxRelay(engine, intake_store.metadata, publisher, service=service)  # type: ignore[arg-type]

    assert await relay.publish_once() == 3
    assert [dict(sent.headers)["ce_id"].decode() for sent in publisher.sent] == [
        envelopes[0].id,
        envelopes[2].id,  # the same proposal's next event goes out before the failed one
        envelopes[3].id,
    ]
    big = (await rows(engine))[1]
    assert big["sent_at"] is None and big["failed_at"] is not None
    assert big["error"].startswith("MessageSizeTooLargeError")
    assert sample("proposalflow_outbox_failures_total", service) == 1
    assert sample("proposalflow_outbox_failed_rows", service) == 1
    assert await relay.backlog() == 0  # nothing waits: the failed row is not retried by itself
    assert await relay.publish_once() == 0
    assert len(publisher.sent) == 3

    listed = await cli("outbox", "failed", "intake")
    assert f"{big['id']}\t" in listed and "proposal p-big" in listed and "MessageSizeTooLargeError" in listed
    assert "1 failed outbox row(s)" in listed

    publisher.broker_limit = None  # the topic's limit raised
    assert "1 outbox row(s) of intake will be sent again" in await cli(
        "outbox", "retry", "intake", "--id", str(big["id"])
    )
    assert await relay.publish_once() == 1
    assert dict(publisher.sent[-1].headers)["ce_id"].decode() == envelopes[1].id
    assert all(row["sent_at"] is not None and row["failed_at"] is None for row in await rows(engine))
    await relay.backlog()
    assert sample("proposalflow_outbox_failed_rows", service) == 0
    assert sample("proposalflow_outbox_failures_total", service) == 1
    assert "0 failed outbox row(s)" in await cli("outbox", "failed", "intake")


async def test_retry_of_a_row_that_is_not_failed_says_so(engine) -> None:
    result = await asyncio.to_thread(CliRunner().invoke, app, ["outbox", "retry", "intake", "--id", "12345"])
    assert result.exit_code == 1
    assert "no failed outbox row 12345 in intake" in result.output


async def test_a_broker_outage_fails_no_row(engine) -> None:
    async with engine.begin() as conn:
        await add_to_outbox(conn, intake_store.metadata, "intake", [withdrawn("p-1"), withdrawn("p-2")])
    publisher = RecordingPublisher(down=True)
    relay = OutboxRelay(engine, intake_store.metadata, publisher)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="broker down"):
        await relay.publish_once()
    assert [row["failed_at"] for row in await rows(engine)] == [None, None]
    assert await relay.backlog() == 2


# Against the real broker --------------------------------------------------------------------------------


async def make_topic(kafka_bootstrap: str, topic: str, max_message_bytes: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        # One partition: every row goes behind the large one.
        await admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": str(max_message_bytes)})])
    finally:
        await admin.close()


async def raise_topic_limit(kafka_bootstrap: str, topic: str, max_message_bytes: int) -> None:
    """What the operator does before `outbox retry`: raise the topic's limit, and see that it holds."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={"max.message.bytes": str(max_message_bytes)}
        )
        await admin.alter_configs([resource])
        for _ in range(100):
            [described] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            entries = {entry[0]: entry[1] for entry in described.resources[0][4]}
            if entries.get("max.message.bytes") == str(max_message_bytes):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{topic}: max.message.bytes is still {entries.get('max.message.bytes')}")
    finally:
        await admin.close()


async def receive(consumer: AIOKafkaConsumer, count: int, timeout: float = 30.0) -> list[Any]:
    """`count` records (or what came before the timeout)."""
    received: list[Any] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(received) < count and asyncio.get_running_loop().time() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        for records in batches.values():
            received.extend(records)
    return received


def ce_ids(records: list[Any]) -> list[str]:
    return [dict(record.headers)["ce_id"].decode() for record in records]


@pytest.mark.kafka
async def test_after_the_broker_refuses_a_record_the_next_ones_to_its_partition_still_go(kafka_bootstrap: str) -> None:
    """aiokafka's idempotent producer counts the refused batch's sequence numbers, the broker does not: the
    next record to that partition would fail with `OutOfOrderSequenceNumber` for as long as the producer
    lives. The publisher replaces its producer after a failed delivery."""
    topic = f"itest.refused.{uuid.uuid4().hex[:8]}"
    await make_topic(kafka_bootstrap, topic, TOPIC_LIMIT)
    publisher = KafkaPublisher(CommonSettings(kafka_bootstrap_servers=kafka_bootstrap), client_id="itest-refused")
    await publisher.start()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        await publisher.send_and_wait(topic, value=b"first", key=b"k", headers=[("ce_id", b"1")])
        with pytest.raises(MessageSizeTooLargeError):
            await publisher.send_and_wait(topic, value=b"x" * (TOPIC_LIMIT + 1000), key=b"k", headers=[("ce_id", b"2")])
        await publisher.send_and_wait(topic, value=b"after", key=b"k", headers=[("ce_id", b"3")])
        assert ce_ids(await receive(consumer, 2)) == ["1", "3"]
    finally:
        await consumer.stop()
        await publisher.stop()


@pytest.mark.kafka
async def test_a_row_too_large_for_its_topic_does_not_stall_the_outbox_and_is_published_once_retried(
    engine: AsyncEngine, kafka_bootstrap: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, service = f"itest.outbox.{suffix}", f"itest-outbox-{suffix}"
    await make_topic(kafka_bootstrap, topic, TOPIC_LIMIT)
    events = [
        withdrawn("p-before"),
        withdrawn("p-large", "x" * (TOPIC_LIMIT + 10_000)),  # under the producer's 1 MiB, over the topic's limit
        withdrawn("p-large", "later event of the same proposal"),
        *(withdrawn(f"p-after-{n % 3}", f"after {n}") for n in range(12)),
    ]
    async with engine.begin() as conn:
        envelopes = await add_to_outbox(conn, intake_store.metadata, "intake", events, topic=topic)
    publisher = KafkaPublisher(CommonSettings(kafka_bootstrap_servers=kafka_bootstrap), client_id="itest-outbox")
    await publisher.start()
    relay = OutboxRelay(
        engine,
        intake_store.metadata,
        publisher,
        poll_interval=0.05,
        max_backoff=0.5,
        service=service,
        recount_interval=0.2,
    )
    relaying = asyncio.create_task(relay.run())
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        # The rows behind the large one are published, in order, the same proposal's next event included.
        behind = [envelopes[0].id, *(envelope.id for envelope in envelopes[2:])]
        assert ce_ids(await receive(consumer, len(behind))) == behind

        # The large row is marked failed, not dropped, and counted.
        large = next(row for row in await rows(engine) if row["event_id"] == envelopes[1].id)
        assert large["sent_at"] is None and large["failed_at"] is not None
        assert "MessageSizeTooLargeError" in large["error"]
        assert sample("proposalflow_outbox_failures_total", service) == 1
        await eventually(lambda: sample("proposalflow_outbox_failed_rows", service) == 1, "the failed-rows gauge")
        listed = await cli("outbox", "failed", "intake")
        assert f"{large['id']}\t" in listed and topic in listed and "MessageSizeTooLargeError" in listed

        # The operator raises the topic's limit and retries the row: it is published as it was staged.
        await raise_topic_limit(kafka_bootstrap, topic, 1_048_588)
        assert "1 outbox row(s)" in await cli("outbox", "retry", "intake", "--id", str(large["id"]))
        [retried] = await receive(consumer, 1)
        assert ce_ids([retried]) == [envelopes[1].id]
        assert retried.key == b"p-large"
        assert json.loads(retried.value)["reason"] == events[1].reason
        await eventually(lambda: sample("proposalflow_outbox_failed_rows", service) == 0, "the gauge back to 0")
        # The relay marks the row sent when its turn commits, just after the broker has the record.
        deadline = asyncio.get_running_loop().time() + 30
        while not all(row["sent_at"] is not None for row in await rows(engine)):
            assert asyncio.get_running_loop().time() < deadline, "the retried row not marked sent in 30s"
            await asyncio.sleep(0.05)
        assert all(row["sent_at"] is not None and row["failed_at"] is None for row in await rows(engine))
        assert sample("proposalflow_outbox_failures_total", service) == 1
    finally:
        relay.stop()
        await relaying
        await consumer.stop()
        await publisher.stop()
