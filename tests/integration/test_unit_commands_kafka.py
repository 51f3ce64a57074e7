"""A unit system's commands on `proposalflow.unit-reports` over the real broker, with assignment and progress
both reading the topic: 签收 is carried out by assignment and 办理进展 by progress, each answered once; an
early report (sent right after `assignment.assigned`, before progress has read it) is held, then carried
out; every event a command caused carries the command's id as its correlation id, in its data and in the
`ce_correlationid` header; and refusals come back on the owning service's topic with the command id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from shared.auth import issue_token
from shared.envelope import Envelope, EnvelopeError, from_kafka
from shared.events import (
    ASSIGNMENTS,
    HANDLING,
    PROPOSALS,
    UNIT_REPORTS,
    AcceptAssignment,
    DisputeAssignment,
    ReportProgress,
    Role,
)
from shared.migrate import upgrade_async
from shared.outbox import envelope_for
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import create_topics
from tests.assignment_fakes import filed_events
from tests.security.test_inbound_commands import send

pytestmark = pytest.mark.kafka

LEAD_OA = "/oa/dg-zrzyj-itest"
CO_OA = "/oa/dg-nyj-itest"


async def started(service: str, build: Any, tmp_path: Any, monkeypatch: Any, kafka: str) -> tuple[ServiceRuntime, Any]:
    url = f"sqlite+aiosqlite:///{tmp_path}/{service}.db"
    monkeypatch.setenv(f"PROPOSALFLOW_{service.upper()}_DATABASE_URL", url)
    monkeypatch.setenv(f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP", f"{service}-units-{uuid.uuid4().hex[:8]}")
    await upgrade_async(service, url)
    runtime, app = build()
    await runtime.start()
    deadline = asyncio.get_running_loop().time() + 60
    while (await runtime.readiness()).get("broker") != "ok":
        assert asyncio.get_running_loop().time() < deadline, f"{service} did not connect to Kafka"
        await asyncio.sleep(0.2)
    return runtime, app


@pytest.fixture
async def services(tmp_path, monkeypatch, kafka_bootstrap: str) -> AsyncIterator[dict[str, Any]]:
    from services.assignment.app import build as build_assignment
    from services.progress.app import build as build_progress

    monkeypatch.setenv("PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", f"{LEAD_OA}=unit:dg-zrzyj,{CO_OA}=unit:dg-nyj")
    monkeypatch.setenv("PROPOSALFLOW_OUTBOX_POLL_INTERVAL_S", "0.05")
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_EARLY_COMMAND_RETRY_S", "0.5")
    await create_topics(CommonSettings(kafka_bootstrap_servers=kafka_bootstrap), 3, 1)
    assignment, app = await started("assignment", build_assignment, tmp_path, monkeypatch, kafka_bootstrap)
    progress, _ = await started("progress", build_progress, tmp_path, monkeypatch, kafka_bootstrap)
    try:
        yield {"assignment": assignment, "assignment_app": app, "progress": progress}
    finally:
        await progress.stop()
        await assignment.stop()


async def read_until(kafka: str, topics: list[str], done: Any, timeout: float = 60.0) -> list[Envelope]:
    """Every ProposalFlow event on `topics` from the start, until `done(events)` holds (or `timeout` passes)."""
    consumer = AIOKafkaConsumer(
        *topics, bootstrap_servers=kafka, group_id=f"units-reader-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest"
    )
    await consumer.start()
    found: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not done(found) and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        found.append(from_kafka(record.value, record.headers))
                    except EnvelopeError:
                        continue  # another test's poison on the shared broker
    finally:
        await consumer.stop()
    return found


def filed(proposal_id: str) -> list[Envelope]:
    return [envelope_for(event, "intake") for event in filed_events(proposal_id, datetime.now(UTC))]


async def test_unit_commands_are_answered_once_by_their_owner_with_the_command_as_correlation(
    services: dict[str, Any], kafka_bootstrap: str
) -> None:
    proposal_id = f"p-{uuid.uuid4().hex[:8]}"
    await send(kafka_bootstrap, PROPOSALS, *filed(proposal_id))
    dispatcher = issue_token(CommonSettings(), subject="d-1", role=Role.DISPATCHER)
    transport = httpx.ASGITransport(app=services["assignment_app"])
    async with httpx.AsyncClient(transport=transport, base_url="http://assignment", timeout=10) as http:
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            confirmed = await http.post(
                f"/assignments/{proposal_id}/confirm",
                json={"lead_unit": "dg-zrzyj", "co_units": ["dg-nyj"]},
                headers={"Authorization": f"Bearer {dispatcher}"},
            )
            if confirmed.status_code != 404 or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.3)  # the filed proposal is still on its way to assignment
        assert confirmed.status_code == 200, confirmed.text

    lead = {"id": "u-1", "role": "unit", "unit": "dg-zrzyj"}
    accept = Envelope(
        type=AcceptAssignment.TYPE,
        source=LEAD_OA,
        subject=proposal_id,
        data={"actor": lead, "proposal_id": proposal_id, "unit": "dg-zrzyj"},
    )
    # Sent at once after 交办: progress may not have read `assignment.assigned` yet, and holds it till then.
    report = Envelope(
        type=ReportProgress.TYPE,
        source=LEAD_OA,
        subject=proposal_id,
        data={
            "actor": lead,
            "proposal_id": proposal_id,
            "unit": "dg-zrzyj",
            "kind": "phone",
            "on": "2026-03-18",
            "text": "已电话联系提案者",
        },
    )
    forged = Envelope(
        type=DisputeAssignment.TYPE,
        source=CO_OA,
        subject=proposal_id,
        data={"actor": lead, "proposal_id": proposal_id, "unit": "dg-zrzyj", "reason": "不属于本单位职责范围"},
    )
    stranger = Envelope(type=AcceptAssignment.TYPE, source="/oa/not-listed", subject=proposal_id, data=accept.data)
    # Last on the proposal's partition: progress refuses it, so once its answer is out, progress has been
    # through every command before it (in order, within the partition).
    last = Envelope(type=ReportProgress.TYPE, source="/oa/not-listed", subject=proposal_id, data=report.data)
    commands = [accept, report, forged, stranger, last]
    await send(kafka_bootstrap, UNIT_REPORTS, *commands)

    wanted = {command.id for command in commands}

    def answered(events: list[Envelope]) -> bool:
        seen = {e.data.get("command_id") for e in events} | {e.correlation_id for e in events}
        return wanted <= seen

    events = await read_until(kafka_bootstrap, [ASSIGNMENTS, HANDLING], answered)
    by_command: dict[str, list[Envelope]] = {}
    for event in events:
        key = event.data.get("command_id") or event.correlation_id
        if key in wanted:
            by_command.setdefault(key, []).append(event)

    [accepted] = by_command[accept.id]
    assert accepted.type == "proposalflow.assignment.accepted.v1"
    assert (accepted.correlation_id, accepted.data["correlation_id"], accepted.subject) == (
        accept.id,
        accept.id,
        proposal_id,
    )
    [reported] = by_command[report.id]
    assert reported.type == "proposalflow.handling.progress-reported.v1"
    assert (reported.correlation_id, reported.data["correlation_id"]) == (report.id, report.id)
    [refused_forged] = by_command[forged.id]
    assert refused_forged.type == "proposalflow.assignment.unit-report-rejected.v1"
    assert refused_forged.data["reason"].startswith(f"forged actor: source {CO_OA!r} may act for unit:dg-nyj only")
    [refused_stranger] = by_command[stranger.id]
    assert refused_stranger.type == "proposalflow.assignment.unit-report-rejected.v1"
    assert "PROPOSALFLOW_ALLOWED_SOURCES" in refused_stranger.data["reason"]
    for rejected in (refused_forged, refused_stranger):
        assert rejected.correlation_id == rejected.data["command_id"]
    # Progress left the assignment's commands to it: its only refusal is of the last command.
    progress_refusals = [e for e in events if e.type == "proposalflow.unit-report.rejected.v1"]
    assert [e.data["command_id"] for e in progress_refusals if e.subject == proposal_id] == [last.id]
