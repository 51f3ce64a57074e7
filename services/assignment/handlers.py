"""Assignment's Kafka doors: thin, the rules are in domain.py.

- `proposalflow.proposals`: submitted and filed proposals, to route them.
- `proposalflow.unit-reports`: a unit system's 签收 and 异议 (the other commands on that topic are
  progress's, and left to it). A command that fails validation, authorisation or a rule is answered with
  `assignment.unit-report-rejected` on `proposalflow.assignments`, carrying the command id and the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.assignment import service, store
from services.assignment.service import Clock, Context
from services.assignment.unit_of_work import SERVICE, SqlUnitOfWork
from shared.commands import InboundDoor, NotFound, Refusal, RuleViolation, named_proposal, rejection
from shared.envelope import Envelope
from shared.events import (
    UNIT_REPORTS,
    AcceptAssignment,
    AssignmentReportRejected,
    DisputeAssignment,
    ProposalFiled,
    ProposalSubmitted,
    Role,
    parse_message,
)
from shared.outbox import add_to_outbox
from shared.processor import Handler, Record

ANSWERING_ROLES = (Role.UNIT, Role.SYSTEM)
UNIT_COMMANDS = (AcceptAssignment, DisputeAssignment)


def proposals_handler(ctx: Context, clock: Clock) -> Handler:
    async def on_proposal_event(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        event = parse_message(envelope.type, envelope.data)
        if isinstance(event, ProposalSubmitted):
            await service.on_submitted(SqlUnitOfWork(conn), event)
        elif isinstance(event, ProposalFiled):
            await service.on_filed(SqlUnitOfWork(conn), event, ctx, clock())

    return on_proposal_event


async def prefetch_proposals(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    """The proposals consumer's `prepare`: its batch's proposals in one statement (each record then reads
    its own without one, shared/db.py `prefetch_by_id`), and the catalogs and routing rules once for the
    whole batch (`store.read_catalogs_once`)."""
    await store.prefetch_proposals(conn, [envelope.subject for envelope in envelopes if envelope.subject])
    store.read_catalogs_once(conn)


def unit_report_handler(ctx: Context, allowed_sources: Sequence[str], clock: Clock) -> Handler:
    """签收 and 异议 from unit systems, through `service.respond` as `POST /assignments/{id}/accept|dispute`.

    Progress answers the types nobody knows on this topic; this door stays silent on them."""
    door = InboundDoor(
        UNIT_REPORTS,
        UNIT_COMMANDS,
        allowed_sources,
        sends="send unit reports",
        noun="unit report",
        answers_unknown=False,
    )

    def may_answer(command: AcceptAssignment | DisputeAssignment) -> str | None:
        actor = command.actor
        if actor.role not in ANSWERING_ROLES or (actor.role == Role.UNIT and actor.unit != command.unit):
            return f"{actor.role.value} {actor.id} may not answer the assignment for unit {command.unit}"
        return None

    async def on_unit_report(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        if door.ignores(envelope):
            return
        try:
            command: AcceptAssignment | DisputeAssignment = door.admit(envelope, may_answer, topic=record.topic)
            # A unit system acting as itself (role system) answers for the unit the command names.
            acting = command.actor.model_copy(update={"unit": command.unit})
            try:
                await service.respond(
                    SqlUnitOfWork(conn),
                    command.proposal_id,
                    acting,
                    dispute_reason=command.reason if isinstance(command, DisputeAssignment) else None,
                    correlation_id=envelope.correlation_id or envelope.id,
                    ctx=ctx,
                    now=clock(),
                )
            except NotFound as exc:
                raise Refusal(
                    f"no assignment of proposal {command.proposal_id}; a unit answers (签收/异议) once "
                    "`proposalflow.assignment.assigned.v1` has named it",
                    [
                        {
                            "rule": "answer_after_assignment",
                            "message": f"no assignment of proposal {command.proposal_id}",
                        }
                    ],
                    actor=command.actor,
                ) from exc
            except RuleViolation as exc:
                raise Refusal.of(exc, command.actor) from exc
        except Refusal as refusal:
            answer = rejection(AssignmentReportRejected, envelope, refusal, named_proposal(envelope))
            await add_to_outbox(conn, store.metadata, SERVICE, [answer])

    return on_unit_report
