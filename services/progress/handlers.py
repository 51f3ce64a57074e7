"""Progress's Kafka doors. Thin: decode, check, then the same use cases as HTTP (service.py).

- `proposalflow.proposals` and `proposalflow.assignments`: the lifecycle, into the read model;
  event types this version does not know are ignored.
- `proposalflow.unit-reports`: commands from allow-listed unit systems (办理进展, 会办意见, 答复).
  A command that fails validation or authorisation is answered with `unit-report.rejected` on
  `proposalflow.handling`, carrying the command id and the reason: the sender always learns its fate.
- `proposalflow.submissions`: 评价 from member platforms, answered on refusal with `evaluation.rejected`.
  The topic's other commands are intake's, and intake answers a type nobody knows: progress ignores both.
- `proposalflow.leader-reports`: 督办 from leaders' office systems, answered on refusal with
  `leader-report.rejected`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.progress import service, store
from services.progress.unit_of_work import SERVICE, SqlUnitOfWork, UnitOfWork
from shared.commands import InboundDoor, NotFound, Refusal, RuleViolation, rejection
from shared.envelope import Envelope
from shared.events import (
    LEADER_REPORTS,
    SUBMISSIONS,
    UNIT_REPORTS,
    EvaluateImplementation,
    EvaluateReply,
    EvaluationRejected,
    Event,
    LeaderReportRejected,
    ProgressContent,
    RecordSupervision,
    Rejection,
    ReportProgress,
    Role,
    SubmitCoOpinion,
    SubmitReply,
    UnitReportRejected,
    parse_message,
)
from shared.outbox import add_to_outbox
from shared.policy import Policy, WorkingCalendar
from shared.processor import Handler, Record

REPORTER_ROLES = (Role.UNIT, Role.SYSTEM)
UNIT_COMMANDS = (ReportProgress, SubmitCoOpinion, SubmitReply)
MEMBER_COMMANDS = (EvaluateReply, EvaluateImplementation)
LEADER_COMMANDS = (RecordSupervision,)


async def on_lifecycle_event(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
    event = parse_message(envelope.type, envelope.data)
    if isinstance(event, Event):
        await service.record(SqlUnitOfWork(conn), envelope, event)


def unit_report_handler(policy: Policy, allowed_sources: Sequence[str], clock: Callable[[], datetime]) -> Handler:
    door = InboundDoor(UNIT_REPORTS, UNIT_COMMANDS, allowed_sources, sends="send unit reports", noun="unit report")

    def may_report(command: ReportProgress | SubmitCoOpinion | SubmitReply) -> str | None:
        actor = command.actor
        if actor.role not in REPORTER_ROLES or (actor.role == Role.UNIT and actor.unit != command.unit):
            return f"{actor.role.value} {actor.id} may not report for unit {command.unit}"
        return None

    async def on_unit_report(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        correlation_id = envelope.correlation_id or envelope.id
        try:
            command = door.admit(envelope, may_report)
            try:
                await _carry_out(SqlUnitOfWork(conn), command, correlation_id)
            except NotFound as exc:
                raise Refusal(
                    f"unknown proposal {command.proposal_id}; send reports once it has been assigned to your unit",
                    actor=command.actor,
                ) from exc
            except RuleViolation as exc:
                raise Refusal.of(exc, command.actor) from exc
        except Refusal as refusal:
            named = envelope.data.get("proposal_id") if isinstance(envelope.data, dict) else None
            proposal_id = str(named or envelope.subject or envelope.id)[:100]
            answer = rejection(UnitReportRejected, envelope, refusal, proposal_id)
            await add_to_outbox(conn, store.metadata, SERVICE, [answer])

    async def _carry_out(
        uow: UnitOfWork, command: ReportProgress | SubmitCoOpinion | SubmitReply, correlation_id: str
    ) -> None:
        actor = command.actor
        if isinstance(command, ReportProgress):
            content = ProgressContent(kind=command.kind, on=command.on, text=command.text)
            await service.report_progress(
                uow, command.proposal_id, command.unit, content, actor, correlation_id, clock()
            )
        elif isinstance(command, SubmitCoOpinion):
            await service.submit_co_opinion(
                uow, command.proposal_id, command.unit, command.text, actor, correlation_id, clock()
            )
        else:
            await service.draft_reply(
                uow, command.proposal_id, command.unit, command, actor, correlation_id, clock(), policy
            )

    return on_unit_report


def named_proposal(envelope: Envelope) -> str:
    """The proposal a command names, even one that failed validation; else its subject or id."""
    named = envelope.data.get("proposal_id") if isinstance(envelope.data, dict) else None
    return str(named or envelope.subject or envelope.id)[:100]


def evaluation_handler(policy: Policy, allowed_sources: Sequence[str], clock: Callable[[], datetime]) -> Handler:
    """评价 and 落实评价 from a member platform on `proposalflow.submissions`, through the HTTP routes' use
    cases."""
    door = InboundDoor(SUBMISSIONS, MEMBER_COMMANDS, allowed_sources, sends="send evaluations", noun="evaluation")
    calendar = WorkingCalendar.from_policy(policy)

    def may_evaluate(command: EvaluateReply | EvaluateImplementation) -> str | None:
        if command.actor.role != Role.MEMBER:
            what = "a reply (评价)" if isinstance(command, EvaluateReply) else "an implementation (落实评价)"
            return f"role {command.actor.role.value} may not evaluate {what}; only its signers may"
        return None

    async def evaluate(uow: UnitOfWork, command: EvaluateReply | EvaluateImplementation, correlation_id: str) -> None:
        if isinstance(command, EvaluateImplementation):
            await service.evaluate_implementation(
                uow,
                command.proposal_id,
                command.actor.id,
                grade=command.grade,
                comment=command.comment,
                reopen=command.reopen,
                new_measure=command.new_measure,
                actor=command.actor,
                correlation_id=correlation_id,
                now=clock(),
                policy=policy,
                calendar=calendar,
            )
            return
        await service.evaluate(
            uow,
            command.proposal_id,
            command.actor.id,
            handling_grade=command.handling_grade,
            result_grade=command.result_grade,
            comment=command.comment,
            actor=command.actor,
            correlation_id=correlation_id,
            now=clock(),
            policy=policy,
            calendar=calendar,
        )

    async def on_member_command(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        if envelope.type not in door.commands:
            return  # intake's command, or one intake answers as unknown
        await _door_step(conn, envelope, door, may_evaluate, evaluate, EvaluationRejected)

    return on_member_command


def supervision_handler(allowed_sources: Sequence[str], clock: Callable[[], datetime]) -> Handler:
    """督办 from a leader's office system on `proposalflow.leader-reports`, through the HTTP route's use case."""
    door = InboundDoor(
        LEADER_REPORTS, LEADER_COMMANDS, allowed_sources, sends="record supervision", noun="supervision record"
    )

    def may_supervise(command: RecordSupervision) -> str | None:
        if command.actor.role != Role.LEADER:
            return f"role {command.actor.role.value} may not record supervision (督办); only the supervising leader may"
        return None

    async def record(uow: UnitOfWork, command: RecordSupervision, correlation_id: str) -> None:
        await service.record_supervision(
            uow,
            command.proposal_id,
            kind=command.kind,
            on=command.on,
            text=command.text,
            actor=command.actor,
            correlation_id=correlation_id,
            now=clock(),
        )

    async def on_leader_report(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        await _door_step(conn, envelope, door, may_supervise, record, LeaderReportRejected)

    return on_leader_report


async def _door_step(
    conn: AsyncConnection,
    envelope: Envelope,
    door: InboundDoor,
    authorise: Callable[[Any], str | None],
    carry_out: Callable[[UnitOfWork, Any, str], Awaitable[None]],
    refused_as: type[Rejection],
) -> None:
    """Admit the command and carry it out, or answer it with `refused_as` saying why; a refused command
    changes nothing (its use case commits nothing before its rules pass)."""
    try:
        command = door.admit(envelope, authorise)
        try:
            await carry_out(SqlUnitOfWork(conn), command, envelope.correlation_id or envelope.id)
        except NotFound as exc:
            raise Refusal(
                f"unknown proposal {command.proposal_id}: progress has no such proposal yet; check the id, "
                "or resend the command once the proposal's events have reached progress",
                [{"rule": "proposal_known", "message": f"no proposal {exc}"}],
                command.actor,
            ) from exc
        except RuleViolation as exc:
            raise Refusal.of(exc, command.actor) from exc
    except Refusal as refusal:
        answer = rejection(refused_as, envelope, refusal, named_proposal(envelope))
        await add_to_outbox(conn, store.metadata, SERVICE, [answer])


async def prefetch_lifecycle(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    """The lifecycle consumer's `prepare`: its batch's proposals in one statement (each record then reads
    its own without one, shared/db.py `prefetch_by_id`)."""
    await store.prefetch_proposals(conn, [envelope.subject for envelope in envelopes if envelope.subject])
