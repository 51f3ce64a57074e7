"""Progress's Kafka door for unit systems (`proposalflow.unit-reports`) over the real broker: an
allow-listed report becomes `handling.progress-reported`, and a refused one `unit-report.rejected`
with the command id and the reason, both published on `proposalflow.handling`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.progress.app import build
from shared.envelope import Envelope, from_kafka, to_kafka
from shared.events import HANDLING, UNIT_REPORTS, ReportProgress, SubmitReply
from shared.migrate import upgrade_async
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import create_topics
from tests.progress_fixtures import feed, lifecycle

pytestmark = pytest.mark.kafka

OA = "/oa/dg-zrzyj"


@pytest.fixture
async def runtime(tmp_path, monkeypatch, kafka_bootstrap: str) -> AsyncIterator[ServiceRuntime]:
    url = f"sqlite+aiosqlite:///{tmp_path}/progress.db"
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", OA)
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_CONSUMER_GROUP", f"itest-progress-{uuid.uuid4().hex[:8]}")
    await create_topics(CommonSettings(kafka_bootstrap_servers=kafka_bootstrap), 3, 1)
    await upgrade_async("progress", url)
    runtime, _app = build()
    await runtime.start()
    yield runtime
    await runtime.stop()


async def handling_events_about(kafka_bootstrap: str, command_ids: set[str], proposal_id: str) -> list[Envelope]:
    """Read proposalflow.handling until an answer to each command has arrived (or 40 s pass)."""
    consumer = AIOKafkaConsumer(
        HANDLING, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest", group_id=f"check-{uuid.uuid4().hex}"
    )
    await consumer.start()
    found: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + 40
        while asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    envelope = from_kafka(record.value, record.headers)
                    if envelope.subject == proposal_id or envelope.data.get("command_id") in command_ids:
                        found.append(envelope)
            answered = {e.data.get("command_id") for e in found} | {e.data.get("correlation_id") for e in found}
            if command_ids <= answered:
                break
    finally:
        await consumer.stop()
    return found


async def test_unit_reports_are_applied_or_rejected_with_a_reason(
    runtime: ServiceRuntime, kafka_bootstrap: str
) -> None:
    proposal_id = f"p-{uuid.uuid4().hex[:8]}"
    await feed(runtime, lifecycle(proposal_id))
    report = {
        "actor": {"id": "u-1", "role": "unit", "unit": "dg-zrzyj"},
        "proposal_id": proposal_id,
        "unit": "dg-zrzyj",
        "kind": "research",
        "on": "2026-03-18",
        "text": "赴镇街调研整治项目",
    }
    good = Envelope(type=ReportProgress.TYPE, source=OA, subject=proposal_id, data=report)
    stranger = Envelope(type=ReportProgress.TYPE, source="/oa/unknown", subject=proposal_id, data=report)
    not_lead = Envelope(
        type=SubmitReply.TYPE,
        source=OA,
        subject=proposal_id,
        data={
            **{k: v for k, v in report.items() if k not in ("kind", "on", "text")},
            "actor": {"id": "u-2", "role": "unit", "unit": "dg-czj"},
            "unit": "dg-czj",
            "text": "会办单位不能代替主办单位答复。",
            "classification": "A",
        },
    )
    misspelt = Envelope(type=ReportProgress.TYPE, source=OA, subject=proposal_id, data={**report, "txet": "x"})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for command in (good, stranger, not_lead, misspelt):
            key, value, headers = to_kafka(command)
            await producer.send_and_wait(UNIT_REPORTS, value=value, key=key, headers=headers)
    finally:
        await producer.stop()

    events = await handling_events_about(kafka_bootstrap, {good.id, stranger.id, not_lead.id, misspelt.id}, proposal_id)
    reported = [e for e in events if e.type == "proposalflow.handling.progress-reported.v1"]
    assert [e.data["correlation_id"] for e in reported] == [good.id]
    assert reported[0].data["kind"] == "research"
    rejections = {e.data["command_id"]: e.data for e in events if e.type == "proposalflow.unit-report.rejected.v1"}
    assert set(rejections) == {stranger.id, not_lead.id, misspelt.id}
    assert "PROPOSALFLOW_ALLOWED_SOURCES" in rejections[stranger.id]["reason"]
    assert rejections[not_lead.id]["errors"][0]["rule"] == "reply_by_lead_unit"
    assert "txet" in rejections[misspelt.id]["reason"]
