"""Commands on the inbound topics from a source not on the allow-list, or naming an actor their source
may not act for, are rejected with an event (on the real broker): `submission.rejected` on
`proposalflow.proposals`, `unit-report.rejected` on `proposalflow.handling`, each carrying the
command id and the reason, while the honest command beside them goes through."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pydantic import ValidationError

from shared.auth import InboundAllowList
from shared.envelope import Envelope, EnvelopeError, from_kafka, to_kafka
from shared.events import (
    HANDLING,
    PROPOSALS,
    SUBMISSIONS,
    UNIT_REPORTS,
    Actor,
    ReportProgress,
    Role,
    SubmitProposal,
)
from shared.migrate import upgrade_async
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import create_topics
from tests.progress_fixtures import feed, lifecycle

pytestmark = [pytest.mark.security, pytest.mark.kafka]

MEMBER_PORTAL = "/portal/members-sec"
PLATFORM = "/cppcc/platform-sec"
LEAD_OA = "/oa/dg-zrzyj-sec"
CO_OA = "/oa/dg-czj-sec"


def test_a_grant_limits_whom_a_source_may_act_for() -> None:
    allow = InboundAllowList([f"{MEMBER_PORTAL}=member", f"{LEAD_OA}=unit:dg-zrzyj", PLATFORM])
    assert allow.admits(MEMBER_PORTAL) and not allow.admits("/portal/other")
    assert allow.forged_actor(MEMBER_PORTAL, Actor(id="m-1", role=Role.MEMBER)) is None
    assert allow.forged_actor(MEMBER_PORTAL, Actor(id="c-1", role=Role.COMMITTEE)) == (
        f"source {MEMBER_PORTAL!r} may act for member only; the command names committee 'c-1'"
    )
    assert allow.forged_actor(LEAD_OA, Actor(id="u-1", role=Role.UNIT, unit="dg-zrzyj")) is None
    assert "may act for unit:dg-zrzyj only" in (
        allow.forged_actor(LEAD_OA, Actor(id="u-9", role=Role.UNIT, unit="dg-jtj")) or ""
    )
    assert allow.forged_actor(PLATFORM, Actor(id="c-1", role=Role.COMMITTEE)) is None
    assert allow.forged_actor(PLATFORM, Actor(id=PLATFORM, role=Role.SYSTEM)) is None
    assert "is not the source" in (allow.forged_actor(PLATFORM, Actor(id="/elsewhere", role=Role.SYSTEM)) or "")


def test_a_misspelt_grant_stops_the_service_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", f"{LEAD_OA}=units:dg-zrzyj")
    with pytest.raises(ValidationError, match="'units:dg-zrzyj' is not a role"):
        CommonSettings()


async def running(
    service: str, build: Callable[[], tuple[ServiceRuntime, Any]], tmp_path: Any, monkeypatch: Any, kafka: str
) -> ServiceRuntime:
    url = f"sqlite+aiosqlite:///{tmp_path}/{service}.db"
    for name, value in {
        f"PROPOSALFLOW_{service.upper()}_DATABASE_URL": url,
        "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka,
        f"PROPOSALFLOW_{service.upper()}_CONSUMER_GROUP": f"{service}-sec-{uuid.uuid4().hex[:8]}",
        "PROPOSALFLOW_OUTBOX_POLL_INTERVAL_S": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    await create_topics(CommonSettings(kafka_bootstrap_servers=kafka), 3, 1)
    await upgrade_async(service, url)
    runtime, _app = build()
    await runtime.start()
    deadline = asyncio.get_running_loop().time() + 60
    while (await runtime.readiness()).get("broker") != "ok":
        assert asyncio.get_running_loop().time() < deadline, f"{service} did not connect to Kafka"
        await asyncio.sleep(0.2)
    return runtime


@pytest.fixture
async def intake(tmp_path, monkeypatch, kafka_bootstrap: str) -> AsyncIterator[ServiceRuntime]:
    from services.intake.app import build

    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", f"{MEMBER_PORTAL}=member,{PLATFORM}")
    runtime = await running("intake", build, tmp_path, monkeypatch, kafka_bootstrap)
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def progress(tmp_path, monkeypatch, kafka_bootstrap: str) -> AsyncIterator[ServiceRuntime]:
    from services.progress.app import build

    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", f"{LEAD_OA}=unit:dg-zrzyj,{CO_OA}=unit:dg-czj")
    runtime = await running("progress", build, tmp_path, monkeypatch, kafka_bootstrap)
    try:
        yield runtime
    finally:
        await runtime.stop()


async def send(kafka: str, topic: str, *envelopes: Envelope) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        for envelope in envelopes:
            key, value, headers = to_kafka(envelope)
            await producer.send_and_wait(topic, value=value, key=key or envelope.id.encode(), headers=headers)
    finally:
        await producer.stop()


async def answers(kafka: str, topic: str, commands: list[Envelope], timeout: float = 45.0) -> dict[str, Envelope]:
    """The event on `topic` answering each command (by `command_id` or `correlation_id`), once all have one."""
    wanted = {command.id for command in commands}
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka, group_id=f"sec-reader-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, Envelope] = {}
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while set(found) < wanted and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    try:
                        envelope = from_kafka(record.value, record.headers)
                    except EnvelopeError:
                        continue  # another test's poison on the shared broker, not an answer to ours
                    for name in ("command_id", "correlation_id"):
                        if envelope.data.get(name) in wanted:
                            found.setdefault(envelope.data[name], envelope)
    finally:
        await consumer.stop()
    return found


SUBMISSION = {
    "title": "关于加快智能制造的建议",
    "body": "东莞制造业规模大, 需要加快数字化转型。",
    "category": "经济建设",
    "first_proposer": {"id": "m-1", "name": "张三"},
    "suggestions": ["设立专项资金"],
}


def submission(source: str, actor: dict[str, Any]) -> Envelope:
    return Envelope(type=SubmitProposal.TYPE, source=source, data={**SUBMISSION, "actor": actor})


async def test_submissions_from_strangers_or_with_forged_actors_are_rejected_with_the_reason(
    intake: ServiceRuntime, kafka_bootstrap: str
) -> None:
    honest = submission(MEMBER_PORTAL, {"id": "m-1", "role": "member"})
    stranger = submission("/portal/not-listed", {"id": "m-1", "role": "member"})
    posing_as_committee = submission(MEMBER_PORTAL, {"id": "c-1", "role": "committee"})
    posing_as_other_system = submission(PLATFORM, {"id": "/portal/not-listed", "role": "system"})
    commands = [honest, stranger, posing_as_committee, posing_as_other_system]
    await send(kafka_bootstrap, SUBMISSIONS, *commands)

    found = await answers(kafka_bootstrap, PROPOSALS, commands)
    assert found[honest.id].type == "proposalflow.proposal.submitted.v1"
    rejected = {command.id: found[command.id] for command in commands[1:]}
    assert {event.type for event in rejected.values()} == {"proposalflow.submission.rejected.v1"}
    reasons = {command_id: event.data["reason"] for command_id, event in rejected.items()}
    assert reasons[stranger.id] == (
        "source '/portal/not-listed' is not allowed to submit proposals; "
        "ask the proposal office to add it to PROPOSALFLOW_ALLOWED_SOURCES"
    )
    assert reasons[posing_as_committee.id] == (
        f"forged actor: source {MEMBER_PORTAL!r} may act for member only; the command names committee 'c-1'"
    )
    assert reasons[posing_as_other_system.id] == (
        "forged actor: a system actor is the sending system itself: "
        f"actor id '/portal/not-listed' is not the source {PLATFORM!r}"
    )
    for command in commands[1:]:
        assert rejected[command.id].data["command_source"] == command.source


async def test_a_unit_system_cannot_report_for_another_unit(progress: ServiceRuntime, kafka_bootstrap: str) -> None:
    proposal_id = f"p-{uuid.uuid4().hex[:8]}"
    await feed(progress, lifecycle(proposal_id))  # lead dg-zrzyj, co-handling dg-czj

    def report(source: str, actor: dict[str, Any], unit: str) -> Envelope:
        data = {"actor": actor, "proposal_id": proposal_id, "unit": unit, "kind": "phone", "on": "2026-03-18"}
        return Envelope(type=ReportProgress.TYPE, source=source, subject=proposal_id, data={**data, "text": "电话沟通"})

    honest = report(LEAD_OA, {"id": "u-1", "role": "unit", "unit": "dg-zrzyj"}, "dg-zrzyj")
    co_posing_as_lead = report(CO_OA, {"id": "u-2", "role": "unit", "unit": "dg-zrzyj"}, "dg-zrzyj")
    as_system = report(LEAD_OA, {"id": LEAD_OA, "role": "system"}, "dg-czj")
    stranger = report("/oa/not-listed", {"id": "u-1", "role": "unit", "unit": "dg-zrzyj"}, "dg-zrzyj")
    commands = [honest, co_posing_as_lead, as_system, stranger]
    await send(kafka_bootstrap, UNIT_REPORTS, *commands)

    found = await answers(kafka_bootstrap, HANDLING, commands)
    assert found[honest.id].type == "proposalflow.handling.progress-reported.v1"
    rejected = {command.id: found[command.id] for command in commands[1:]}
    assert {event.type for event in rejected.values()} == {"proposalflow.unit-report.rejected.v1"}
    assert rejected[co_posing_as_lead.id].data["reason"] == (
        f"forged actor: source {CO_OA!r} may act for unit:dg-czj only; the command names unit:dg-zrzyj 'u-2'"
    )
    assert rejected[as_system.id].data["reason"] == (
        f"forged actor: source {LEAD_OA!r} may act for unit:dg-zrzyj only; the command names system {LEAD_OA!r}"
    )
    assert "PROPOSALFLOW_ALLOWED_SOURCES" in rejected[stranger.id].data["reason"]
    assert all(event.data["command_id"] == command_id for command_id, event in rejected.items())
