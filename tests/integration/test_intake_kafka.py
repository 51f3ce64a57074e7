"""Intake's Kafka door on the real broker: the intake app runs in-process (its real consumer, outbox
relay and producer), commands go in on `proposalflow.submissions` and what comes out is read back
from `proposalflow.proposals`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import select

from services.intake import store
from services.intake.app import build
from services.intake.handlers import proposal_id_for
from shared.envelope import CLOUDEVENTS_JSON, Envelope, from_kafka, to_kafka
from shared.events import PROPOSALS, SUBMISSIONS, SubmitProposal
from shared.migrate import upgrade_async
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import create_topics

pytestmark = pytest.mark.kafka

PORTAL = "/portal/members-itest"
COMMAND = {
    "actor": {"id": "m-1", "role": "member"},
    "title": "关于加快智能制造的建议",
    "body": "东莞制造业规模大, 需要加快数字化转型。",
    "category": "经济建设",
    "first_proposer": {"id": "m-1", "name": "张三"},
    "suggestions": ["设立专项资金", "建设公共服务平台"],
}


@pytest.fixture
async def intake(tmp_path, monkeypatch, kafka_bootstrap: str) -> AsyncIterator[ServiceRuntime]:
    url = f"sqlite+aiosqlite:///{tmp_path}/intake.db"
    for name, value in {
        "PROPOSALFLOW_INTAKE_DATABASE_URL": url,
        "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROPOSALFLOW_ALLOWED_SOURCES": PORTAL,
        "PROPOSALFLOW_INTAKE_CONSUMER_GROUP": f"intake-itest-{uuid.uuid4().hex[:8]}",
        "PROPOSALFLOW_OUTBOX_POLL_INTERVAL_S": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    await create_topics(CommonSettings(kafka_bootstrap_servers=kafka_bootstrap), 3, 1)
    await upgrade_async("intake", url)
    runtime, _app = build()
    await runtime.start()
    deadline = asyncio.get_running_loop().time() + 60
    while (await runtime.readiness()).get("broker") != "ok":
        assert asyncio.get_running_loop().time() < deadline, "intake did not connect to Kafka"
        await asyncio.sleep(0.2)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def send(kafka_bootstrap: str, *envelopes: Envelope, structured: bool = False, key: bytes | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for envelope in envelopes:
            if structured:
                body = {
                    "specversion": "1.0",
                    "id": envelope.id,
                    "source": envelope.source,
                    "type": envelope.type,
                    "data": envelope.data,
                }
                value, headers = json.dumps(body).encode(), [("content-type", CLOUDEVENTS_JSON.encode())]
            else:
                _key, value, headers = to_kafka(envelope)
            await producer.send_and_wait(SUBMISSIONS, value=value, key=key or envelope.id.encode(), headers=headers)
    finally:
        await producer.stop()


async def published(kafka_bootstrap: str, subjects: set[str], count: int, timeout: float = 45.0) -> list[Envelope]:
    """Events on `proposalflow.proposals` about `subjects`, once `count` of them have arrived."""
    consumer = AIOKafkaConsumer(
        PROPOSALS,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"itest-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    envelope = from_kafka(record.value, record.headers)
                    if envelope.subject in subjects:
                        found.append(envelope)
    finally:
        await consumer.stop()
    return found


def command(**changes: Any) -> Envelope:
    return Envelope(type=SubmitProposal.TYPE, source=PORTAL, data={**COMMAND, **changes})


async def test_binary_and_structured_submissions_become_proposals(intake: ServiceRuntime, kafka_bootstrap: str) -> None:
    binary, structured = command(), command(title="关于建设公共服务平台的建议")
    await send(kafka_bootstrap, binary)
    await send(kafka_bootstrap, structured, structured=True)
    ids = {proposal_id_for(binary): binary, proposal_id_for(structured): structured}
    events = await published(kafka_bootstrap, set(ids), 2)
    assert sorted((e.type, e.subject) for e in events) == sorted(
        ("proposalflow.proposal.submitted.v1", proposal_id) for proposal_id in ids
    )
    titles = {e.subject: e.data["title"] for e in events}
    assert titles == {proposal_id: envelope.data["title"] for proposal_id, envelope in ids.items()}
    assert all(e.source == "/proposalflow/intake" for e in events)


async def test_a_resent_command_yields_one_proposal_and_one_submitted_event(
    intake: ServiceRuntime, kafka_bootstrap: str
) -> None:
    original = command()
    same_partition = original.id.encode()
    await send(kafka_bootstrap, original, original, key=same_partition)
    await send(kafka_bootstrap, original, structured=True, key=same_partition)
    # A later command behind the copies in the same partition: once it is handled, every copy was.
    marker = command(title="关于排在重复命令之后的建议")
    await send(kafka_bootstrap, marker, key=same_partition)
    subjects = {proposal_id_for(original), proposal_id_for(marker)}
    events = await published(kafka_bootstrap, subjects, 2)
    assert sorted((e.type, e.subject) for e in events) == sorted(
        ("proposalflow.proposal.submitted.v1", subject) for subject in subjects
    )
    outbox = store.metadata.tables["outbox"]
    async with intake.engine.connect() as conn:
        staged = (await conn.execute(select(outbox.c.key, outbox.c.type))).all()
    assert [row.type for row in staged if row.key == proposal_id_for(original)] == [
        "proposalflow.proposal.submitted.v1"
    ]


async def test_invalid_and_unknown_source_commands_are_answered_with_rejections(
    intake: ServiceRuntime, kafka_bootstrap: str
) -> None:
    invalid = command(suggestions=[])
    unknown_category = command(category="体育")
    stranger = Envelope(type=SubmitProposal.TYPE, source="/somebody/else", data=COMMAND)
    await send(kafka_bootstrap, invalid, stranger)
    await send(kafka_bootstrap, unknown_category, structured=True)
    subjects = {invalid.id, stranger.id, proposal_id_for(unknown_category)}
    events = await published(kafka_bootstrap, subjects, 3)
    assert {e.type for e in events} == {"proposalflow.submission.rejected.v1"}
    reasons = {e.data["command_id"]: e.data["reason"] for e in events}
    assert "suggestions" in reasons[invalid.id]
    assert "not allowed" in reasons[stranger.id]
    assert "PROPOSALFLOW_ALLOWED_SOURCES" in reasons[stranger.id]
    assert "unknown category" in reasons[unknown_category.id]
