"""Progress's Kafka doors. Thin: decode, check, then the same use cases as HTTP (service.py).

- `proposalflow.proposals` and `proposalflow.assignments`: the lifecycle, into the read model;
  event types this version does not know are ignored.
- `proposalflow.unit-reports`: commands from allow-listed unit systems (办理进展, 会办意见, 答复).
  A command that fails validation or authorisation is answered with `unit-report.rejected` on
  `proposalflow.handling`, carrying the command id and the reason: the sender always learns its fate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.progress import service, store
from services.progress.unit_of_work import SERVICE, SqlUnitOfWork, UnitOfWork
from shared.commands import InboundDoor, NotFound, Refusal, RuleViolation, rejection
from shared.envelope import Envelope
from shared.events import (
    UNIT_REPORTS,
    Event,
    ProgressContent,
    ReportProgress,
    Role,
    SubmitCoOpinion,
    SubmitReply,
    UnitReportRejected,
    parse_message,
)
from shared.outbox import add_to_outbox
from shared.policy import Policy
from shared.processor import Handler, Record

REPORTER_ROLES = (Role.UNIT, Role.SYSTEM)
UNIT_COMMANDS = (ReportProgress, SubmitCoOpinion, SubmitReply)


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

    async def on_unit_report(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        correlation_id = envelope.correlation_id or envelope.id
        try:
            command = door.admit(envelope, may_report, topic=record.topic)
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
