"""A unit system's 签收, 异议 and 举措落实 by command on `proposalflow.unit-reports`, handler logic only: each
service's own processor (inbox, parking) on SQLite and PostgreSQL, records built in memory, outgoing events
read from the outbox. The real broker carries the same commands in tests/integration and tests/e2e.

Two services read the topic: assignment carries out 签收 and 异议, progress the other reports; each leaves
the other's commands alone, so every command is answered once, by its owner.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from services.assignment import store as assignment_store
from services.assignment.app import build as build_assignment
from services.progress import store as progress_store
from services.progress.app import build as build_progress
from shared.auth import issue_token
from shared.envelope import Envelope
from shared.events import (
    UNIT_REPORTS,
    AcceptAssignment,
    Actor,
    AssignmentAccepted,
    AssignmentReportRejected,
    DisputeAssignment,
    ProposalAssigned,
    ReportProgress,
    Role,
    UnitRef,
    UpdateMeasure,
)
from shared.migrate import upgrade_async
from shared.outbox import envelope_for
from shared.processor import EventProcessor
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from tests.assignment_fakes import filed_events
from tests.fakes import record_of
from tests.progress_fixtures import Clock, feed, lifecycle

LEAD_OA = "/oa/dg-zrzyj"
CO_OA = "/oa/dg-nyj"
PLATFORM = "/oa/platform"
GRANTS = f"{LEAD_OA}=unit:dg-zrzyj,{CO_OA}=unit:dg-nyj,{PLATFORM}"
START = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 2026-03-02, 10:00 in Beijing
OFFSETS = itertools.count(1)


def token(role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CommonSettings(), subject=sub, role=role, unit=unit)}"}


def unit_actor(unit: str, person: str = "u-1") -> dict[str, Any]:
    return {"id": person, "role": "unit", "unit": unit}


def command(ce_type: str, data: dict[str, Any], source: str = LEAD_OA) -> Envelope:
    return Envelope(type=ce_type, source=source, subject=str(data.get("proposal_id", "")) or None, data=data)


def processor(runtime: ServiceRuntime, consumer: str) -> EventProcessor:
    [found] = [p for p in runtime.processors if p.consumer == consumer]
    return found


async def outbox(runtime: ServiceRuntime, metadata: Any) -> list[dict[str, Any]]:
    table = metadata.tables["outbox"]
    async with runtime.engine.connect() as conn:
        rows = (await conn.execute(select(table.c.type, table.c.payload).order_by(table.c.id))).all()
    return [{"type": row.type, **json.loads(row.payload)} for row in rows]


# Assignment: 签收 and 异议 ------------------------------------------------------------------------------


@dataclass
class Assignment:
    runtime: ServiceRuntime
    http: httpx.AsyncClient

    async def send(self, envelope: Envelope, offset: int | None = None) -> str:
        record = record_of(envelope, UNIT_REPORTS, next(OFFSETS) if offset is None else offset)
        return await processor(self.runtime, "assignment-unit-reports").process(record)

    async def events(self) -> list[dict[str, Any]]:
        return await outbox(self.runtime, assignment_store.metadata)

    async def assigned(self, proposal_id: str, *, confirm: bool = True) -> None:
        """A filed proposal (over its Kafka door), then 交办 confirmed by the dispatcher (HTTP)."""
        for event in filed_events(proposal_id, START):
            record = record_of(envelope_for(event, "intake"), "proposalflow.proposals", next(OFFSETS))
            assert await processor(self.runtime, "assignment").process(record) == "handled"
        if confirm:
            body = {"lead_unit": "dg-zrzyj", "co_units": ["dg-nyj"]}
            confirmed = await self.http.post(
                f"/assignments/{proposal_id}/confirm", json=body, headers=token(Role.DISPATCHER, "d-1")
            )
            assert confirmed.status_code == 200, confirmed.text

    async def view(self, proposal_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/assignments/{proposal_id}", headers=token(Role.DISPATCHER, "d-1"))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def assignment(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Assignment]:
    monkeypatch.setenv("PROPOSALFLOW_ASSIGNMENT_DATABASE_URL", db_url)
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", GRANTS)
    await upgrade_async("assignment", db_url)
    runtime, app = build_assignment(clock=lambda: START)
    async with runtime.transaction() as conn:
        await app.state.seed_and_learn(conn)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://assignment") as http:
        yield Assignment(runtime, http)
    await runtime.engine.dispose()


async def test_a_unit_system_accepts_and_disputes_by_command_once_with_the_command_as_correlation(
    assignment: Assignment,
) -> None:
    await assignment.assigned("p-1")
    accept = command(
        AcceptAssignment.TYPE, {"actor": unit_actor("dg-nyj", "u-2"), "proposal_id": "p-1", "unit": "dg-nyj"}, CO_OA
    )
    assert await assignment.send(accept, offset=1000) == "handled"
    accepted = (await assignment.events())[-1]
    assert accepted["type"] == "proposalflow.assignment.accepted.v1"
    assert (accepted["unit"]["id"], accepted["correlation_id"], accepted["deemed"]) == ("dg-nyj", accept.id, False)
    # Redelivered (same record, or the same command again): nothing happens twice.
    before = len(await assignment.events())
    assert await assignment.send(accept, offset=1000) == "duplicate"
    assert await assignment.send(accept) == "duplicate"
    assert len(await assignment.events()) == before

    reason = "属农村宅基地管理, 应由市农业农村局主办"
    dispute = command(
        DisputeAssignment.TYPE,
        {"actor": {"id": PLATFORM, "role": "system"}, "proposal_id": "p-1", "unit": "dg-zrzyj", "reason": reason},
        PLATFORM,
    )
    assert await assignment.send(dispute) == "handled"
    disputed = (await assignment.events())[-1]
    assert disputed["type"] == "proposalflow.assignment.disputed.v1"
    assert (disputed["unit"]["id"], disputed["reason"], disputed["correlation_id"]) == ("dg-zrzyj", reason, dispute.id)
    # The actor names the topic the command came through (actor.via: the shared topic here).
    assert disputed["actor"] == {"id": PLATFORM, "role": "system", "unit": "dg-zrzyj", "via": UNIT_REPORTS}
    view = await assignment.view("p-1")
    assert view["status"] == "disputed"
    assert {r["unit"]: r["response"] for r in view["responses"]} == {"dg-nyj": "accepted", "dg-zrzyj": "disputed"}


async def test_refused_answers_are_rejected_on_assignments_with_the_rule_and_change_nothing(
    assignment: Assignment,
) -> None:
    await assignment.assigned("p-2")
    await assignment.assigned("p-3", confirm=False)  # suggested, not yet 交办
    lead = {"actor": unit_actor("dg-zrzyj"), "proposal_id": "p-2", "unit": "dg-zrzyj"}
    stranger = command(AcceptAssignment.TYPE, lead, "/oa/not-listed")
    forged = command(AcceptAssignment.TYPE, lead, CO_OA)  # the co-unit's system, answering for the lead
    other_unit = command(AcceptAssignment.TYPE, {**lead, "actor": unit_actor("dg-nyj")}, LEAD_OA)
    malformed = command(DisputeAssignment.TYPE, {**lead, "reason": "不"})
    misspelt = command(AcceptAssignment.TYPE, {**lead, "unti": "dg-zrzyj"})
    too_early = command(AcceptAssignment.TYPE, {**lead, "proposal_id": "p-3"})
    unknown = command(AcceptAssignment.TYPE, {**lead, "proposal_id": "p-none"})
    reason = {"reason": "属农村宅基地管理, 应由市农业农村局主办"}
    dispute_stranger = command(DisputeAssignment.TYPE, {**lead, **reason}, "/oa/not-listed")
    dispute_forged = command(DisputeAssignment.TYPE, {**lead, **reason}, CO_OA)
    refused = [stranger, forged, other_unit, malformed, misspelt, too_early, unknown, dispute_stranger, dispute_forged]
    for envelope in refused:
        assert await assignment.send(envelope) == "handled"
    twice = command(AcceptAssignment.TYPE, lead)
    assert await assignment.send(twice) == "handled"
    again = command(DisputeAssignment.TYPE, {**lead, **reason})
    assert await assignment.send(again) == "handled"

    events = await assignment.events()
    rejections = {e["command_id"]: e for e in events if e["type"] == "proposalflow.assignment.unit-report-rejected.v1"}
    assert set(rejections) == {e.id for e in [*refused, again]}
    for envelope in [*refused, again]:
        rejected = rejections[envelope.id]
        assert (rejected["command_source"], rejected["command_type"]) == (envelope.source, envelope.type)
        assert rejected["correlation_id"] == envelope.id
    for envelope in (stranger, dispute_stranger):
        assert "PROPOSALFLOW_ALLOWED_SOURCES" in rejections[envelope.id]["reason"]
    for envelope in (forged, dispute_forged):
        assert rejections[envelope.id]["reason"] == (
            f"forged actor: source {CO_OA!r} may act for unit:dg-nyj only; the command names unit:dg-zrzyj 'u-1'"
        )
    assert rejections[other_unit.id]["reason"] == "unit u-1 may not answer the assignment for unit dg-zrzyj"
    assert rejections[malformed.id]["reason"].startswith("invalid unit report: reason:")
    assert "unti" in rejections[misspelt.id]["reason"]
    assert rejections[too_early.id]["errors"][0]["rule"] == "assignment_awaits_response"
    assert rejections[unknown.id]["errors"][0]["rule"] == "answer_after_assignment"
    assert rejections[again.id]["errors"][0]["rule"] == "unit_responds_once"
    # One answer only: the accept that went through; nothing partial from the others.
    answers = [
        e for e in events if e["type"] in ("proposalflow.assignment.accepted.v1", "proposalflow.assignment.disputed.v1")
    ]
    assert [(e["type"], e["correlation_id"]) for e in answers] == [("proposalflow.assignment.accepted.v1", twice.id)]
    assert [r["unit"] for r in (await assignment.view("p-2"))["responses"]] == ["dg-zrzyj"]
    assert (await assignment.view("p-3"))["responses"] == []


async def test_assignment_leaves_progress_reports_and_unknown_types_alone(assignment: Assignment) -> None:
    await assignment.assigned("p-4")
    before = await assignment.events()
    report = {"actor": unit_actor("dg-zrzyj"), "proposal_id": "p-4", "unit": "dg-zrzyj"}
    for envelope in (
        command(ReportProgress.TYPE, {**report, "kind": "phone", "on": "2026-03-03", "text": "电话沟通"}),
        command(UpdateMeasure.TYPE, {**report, "measure_id": "m-1", "status": "done"}),
        command("proposalflow.unit-report.something-else.v1", report),
    ):
        assert await assignment.send(envelope) == "handled"
    assert await assignment.events() == before


# Progress: 举措落实, the other service's commands, early commands ---------------------------------------

REPLY = {
    "text": "经研究, 我局已编制全域土地综合整治规划, 并会同市财政局设立专项资金。",
    "classification": "A",
    "adoptions": [{"number": 1, "adopted": True, "how": "已编制规划"}, {"number": 2, "adopted": True}],
    "measures": [{"text": "设立整治专项资金", "owner_unit": "dg-czj", "due": "2026-12-31"}],
}


@dataclass
class Progress:
    runtime: ServiceRuntime
    http: httpx.AsyncClient

    async def send(self, envelope: Envelope, offset: int | None = None) -> str:
        record = record_of(envelope, UNIT_REPORTS, next(OFFSETS) if offset is None else offset)
        return await processor(self.runtime, "progress-unit-reports").process(record)

    async def events(self) -> list[dict[str, Any]]:
        return await outbox(self.runtime, progress_store.metadata)

    async def answered_with_a_measure(self, proposal_id: str) -> str:
        """The lead unit's reply (HTTP), approved by the committee: its measure is tracked. Its id."""
        lead = token(Role.UNIT, "u-1", unit="dg-zrzyj")
        drafted = await self.http.post(f"/proposals/{proposal_id}/replies", json=REPLY, headers=lead)
        assert drafted.status_code == 200, drafted.text
        reply_id = drafted.json()["replies"][-1]["id"]
        approved = await self.http.post(
            f"/proposals/{proposal_id}/replies/{reply_id}/review",
            json={"decision": "approve"},
            headers=token(Role.COMMITTEE, "c-1"),
        )
        assert approved.status_code == 200, approved.text
        [measure] = approved.json()["measures"]
        return str(measure["id"])

    async def measure(self, proposal_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/proposals/{proposal_id}", headers=token(Role.COMMITTEE, "c-1"))
        [measure] = response.json()["measures"]
        return dict(measure)

    async def parked(self) -> list[Any]:
        table = progress_store.metadata.tables["parked_events"]
        async with self.runtime.engine.connect() as conn:
            return list((await conn.execute(select(table))).all())


@pytest.fixture
async def progress(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Progress]:
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_DATABASE_URL", db_url)
    monkeypatch.setenv("PROPOSALFLOW_ALLOWED_SOURCES", f"{GRANTS},/oa/dg-czj=unit:dg-czj")
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_EARLY_COMMAND_HOLD_S", "900")
    await upgrade_async("progress", db_url)
    runtime, app = build_progress(Clock(datetime(2026, 3, 20, 2, tzinfo=UTC)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://progress") as http:
        yield Progress(runtime, http)
    await runtime.engine.dispose()


def measure_update(proposal_id: str, measure_id: str, status: str, unit: str = "dg-czj", **extra: Any) -> Envelope:
    data = {"actor": unit_actor(unit), "proposal_id": proposal_id, "unit": unit, "measure_id": measure_id}
    return command(UpdateMeasure.TYPE, {**data, "status": status, **extra}, f"/oa/{unit}")


async def test_a_measure_moves_on_by_command_through_the_same_rules_as_http(progress: Progress) -> None:
    await feed(progress.runtime, lifecycle("p-10"))  # lead dg-zrzyj, co-handling dg-czj
    measure_id = await progress.answered_with_a_measure("p-10")
    started = measure_update("p-10", measure_id, "in_progress", note="资金方案已报批")
    assert await progress.send(started, offset=2000) == "handled"
    updated = (await progress.events())[-1]
    assert updated["type"] == "proposalflow.measure.updated.v1"
    assert (updated["measure_id"], updated["status"], updated["correlation_id"]) == (
        measure_id,
        "in_progress",
        started.id,
    )
    assert await progress.send(started, offset=2000) == "duplicate"
    assert await progress.send(started) == "duplicate"
    assert [e["type"] for e in await progress.events()].count("proposalflow.measure.updated.v1") == 1
    assert (await progress.measure("p-10"))["status"] == "in_progress"


async def test_the_last_measure_done_by_command_opens_the_implementation_evaluation_at_once_as_http_does(
    progress: Progress,
) -> None:
    await feed(progress.runtime, lifecycle("p-13"))
    measure_id = await progress.answered_with_a_measure("p-13")
    for signer in ("m-1", "m-2"):
        evaluated = await progress.http.post(
            "/proposals/p-13/evaluations",
            json={"handling_grade": "satisfied", "result_grade": "satisfied"},
            headers=token(Role.MEMBER, signer),
        )
        assert evaluated.status_code == 200, evaluated.text
    assert evaluated.json()["stage"] == "closed"
    done = measure_update("p-13", measure_id, "done", note="专项资金已设立")
    assert await progress.send(done) == "handled"
    caused = [e for e in await progress.events() if e.get("correlation_id") == done.id]
    assert [e["type"] for e in caused] == [
        "proposalflow.measure.updated.v1",
        "proposalflow.proposal.implemented.v1",
        "proposalflow.implementation.evaluation-opened.v1",
    ]
    assert caused[-1]["round"] == 1 and caused[-1]["signers"] == ["m-1", "m-2"]
    view = (await progress.http.get("/proposals/p-13", headers=token(Role.COMMITTEE, "c-1"))).json()
    assert view["implemented_at"] is not None
    assert view["implementation_evaluation"] == {
        "state": "open",
        "round": 1,
        "due": caused[-1]["evaluation_due"],
        "new_measure_due": None,
    }


async def test_refused_measure_updates_are_rejected_with_the_rule_and_change_nothing(progress: Progress) -> None:
    await feed(progress.runtime, lifecycle("p-11"))
    measure_id = await progress.answered_with_a_measure("p-11")
    stranger = Envelope(
        type=UpdateMeasure.TYPE,
        source="/oa/not-listed",
        subject="p-11",
        data=measure_update("p-11", measure_id, "done").data,
    )
    forged = Envelope(
        type=UpdateMeasure.TYPE, source=CO_OA, subject="p-11", data=measure_update("p-11", measure_id, "done").data
    )
    malformed = measure_update("p-11", measure_id, "finished")
    backwards = measure_update("p-11", measure_id, "planned")
    dropped_silently = measure_update("p-11", measure_id, "dropped")
    not_owner = measure_update("p-11", measure_id, "done", unit="dg-nyj")
    no_such = measure_update("p-11", "m-none", "done")
    refused = [stranger, forged, malformed, backwards, dropped_silently, not_owner, no_such]
    for envelope in refused:
        assert await progress.send(envelope) == "handled"

    rejections = {
        e["command_id"]: e for e in await progress.events() if e["type"] == "proposalflow.unit-report.rejected.v1"
    }
    assert set(rejections) == {e.id for e in refused}
    assert "PROPOSALFLOW_ALLOWED_SOURCES" in rejections[stranger.id]["reason"]
    assert rejections[forged.id]["reason"].startswith(f"forged actor: source {CO_OA!r} may act for unit:dg-nyj only")
    assert rejections[malformed.id]["reason"].startswith("invalid unit report: status:")
    assert rejections[backwards.id]["errors"][0]["rule"] == "measure_moves_forward"
    assert rejections[dropped_silently.id]["errors"][0]["rule"] == "measure_dropped_with_reason"
    assert rejections[not_owner.id]["errors"][0]["rule"] == "measure_by_owner"
    assert rejections[no_such.id]["errors"][0]["rule"] == "measure_exists"
    assert "reply.drafted" in rejections[no_such.id]["reason"]
    assert "proposalflow.measure.updated.v1" not in [e["type"] for e in await progress.events()]
    assert (await progress.measure("p-11"))["status"] == "planned"


async def test_progress_leaves_answers_to_assignment_and_names_every_command_for_an_unknown_type(
    progress: Progress,
) -> None:
    await feed(progress.runtime, lifecycle("p-12"))
    before = await progress.events()
    lead = {"actor": unit_actor("dg-zrzyj"), "proposal_id": "p-12", "unit": "dg-zrzyj"}
    assert await progress.send(command(AcceptAssignment.TYPE, lead)) == "handled"
    assert await progress.send(command(DisputeAssignment.TYPE, {**lead, "reason": "不属于本单位职责范围"})) == "handled"
    assert await progress.events() == before

    unknown = command("proposalflow.unit-report.something-else.v1", lead)
    assert await progress.send(unknown) == "handled"
    [rejected] = (await progress.events())[len(before) :]
    assert rejected["type"] == "proposalflow.unit-report.rejected.v1" and rejected["command_id"] == unknown.id
    for ce_type in (ReportProgress.TYPE, UpdateMeasure.TYPE, AcceptAssignment.TYPE, DisputeAssignment.TYPE):
        assert ce_type in rejected["reason"]


def progress_report(proposal_id: str) -> Envelope:
    data = {"actor": unit_actor("dg-zrzyj"), "proposal_id": proposal_id, "unit": "dg-zrzyj"}
    return command(ReportProgress.TYPE, {**data, "kind": "phone", "on": "2026-03-18", "text": "电话沟通"})


async def test_a_report_before_its_assignment_is_held_then_carried_out_once_the_assignment_arrives(
    progress: Progress,
) -> None:
    early = progress_report("p-13")
    assert await progress.send(early) == "parked"
    assert await progress.events() == []
    await processor(progress.runtime, "progress-unit-reports").rerun_all_parked()
    assert await progress.events() == [] and len(await progress.parked()) == 1  # still waiting

    await feed(progress.runtime, lifecycle("p-13"))
    await processor(progress.runtime, "progress-unit-reports").rerun_all_parked()
    [reported] = await progress.events()
    assert reported["type"] == "proposalflow.handling.progress-reported.v1"
    assert reported["correlation_id"] == early.id
    assert await progress.parked() == []


async def test_a_report_is_held_not_refused_when_the_units_acceptance_was_folded_before_the_assignment(
    progress: Progress,
) -> None:
    """签收 and 交办 come on assignment's topic in that order, but a re-run of parked events can fold the
    签收 a moment before the 交办: the proposal then shows as handled with no handling unit yet. A unit's
    report meanwhile is held until the 交办 is in, as for a proposal only filed, not refused."""
    events = lifecycle("p-16")
    [assigned] = [event for event in events if isinstance(event, ProposalAssigned)]
    accepted = AssignmentAccepted(
        proposal_id="p-16",
        actor=Actor(id="u-1", role=Role.UNIT, unit="dg-zrzyj"),
        assignment_id=assigned.assignment_id,
        unit=UnitRef(id="dg-zrzyj", name="市自然资源局"),
    )
    await feed(progress.runtime, [event for event in events if event is not assigned] + [accepted])
    early = progress_report("p-16")
    assert await progress.send(early) == "parked"
    assert await progress.events() == []

    await feed(progress.runtime, [assigned])
    await processor(progress.runtime, "progress-unit-reports").rerun_all_parked()
    [reported] = await progress.events()
    assert reported["type"] == "proposalflow.handling.progress-reported.v1"
    assert reported["correlation_id"] == early.id
    assert await progress.parked() == []


async def test_a_report_held_past_the_hold_is_refused_saying_it_may_be_resent(progress: Progress) -> None:
    await feed(progress.runtime, lifecycle("p-14", assigned=False))  # filed, 交办 not yet seen here
    early = progress_report("p-14")
    assert await progress.send(early) == "parked"
    table = progress_store.metadata.tables["parked_events"]
    async with progress.runtime.transaction() as conn:
        await conn.execute(update(table).values(parked_at=datetime.now(UTC) - timedelta(hours=1)))
    await processor(progress.runtime, "progress-unit-reports").rerun_all_parked()
    [rejected] = await progress.events()
    assert rejected["type"] == "proposalflow.unit-report.rejected.v1" and rejected["command_id"] == early.id
    assert rejected["errors"][0]["rule"] == "command_after_assignment"
    assert "send the command again with a new id" in rejected["reason"]
    assert await progress.parked() == []


async def test_a_refused_answer_on_assignments_leaves_progress_s_proposal_and_timeline_as_they_were(
    progress: Progress,
) -> None:
    await feed(progress.runtime, lifecycle("p-15"))
    before = (await progress.http.get("/proposals/p-15", headers=token(Role.COMMITTEE, "c-1"))).json()
    refusal = AssignmentReportRejected(
        proposal_id="p-15",
        actor=Actor(id="u-1", role=Role.UNIT, unit="dg-zrzyj"),
        command_id="c-1",
        command_source=LEAD_OA,
        command_type=AcceptAssignment.TYPE,
        reason="unit dg-zrzyj already answered: accepted",
    )
    unknown = refusal.model_copy(update={"proposal_id": "p-nowhere"})
    lifecycle_consumer = processor(progress.runtime, "progress")
    for offset, event in enumerate((refusal, unknown), start=next(OFFSETS)):
        record = record_of(envelope_for(event, "assignment"), "proposalflow.assignments", offset)
        assert await lifecycle_consumer.process(record) == "handled"
    after = (await progress.http.get("/proposals/p-15", headers=token(Role.COMMITTEE, "c-1"))).json()
    assert after == before
    assert await progress.parked() == []
