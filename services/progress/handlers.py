"""Progress's Kafka doors. Thin: decode, check, then the same use case as HTTP (`service.carry_out`),
with the command's handling step (`unit_step`, `member_step`, `supervision_step`) and its occasion (the
command's actor and correlation id, now, the policy).

- `proposalflow.proposals` and `proposalflow.assignments`: the lifecycle, into the read model;
  event types this version does not know are ignored.
- `proposalflow.unit-reports`: commands from allow-listed unit systems (办理进展, 会办意见, 答复, 举措落实);
  the unit's 签收 and 异议 on the same topic are assignment's, and left to it. A command that fails
  validation, authorisation or a rule is answered with `unit-report.rejected` on `proposalflow.handling`,
  carrying the command id and the reason: the sender always learns its fate.
- A command that comes before progress has caught up with its proposal (a report right after
  `assignment.assigned`, which progress reads from another topic) is held (parked, as events are) and
  tried again until `hold` has passed; only then is it refused, with a reason that says it may be resent.
- `proposalflow.submissions`: 评价 from member platforms, answered on refusal with `evaluation.rejected`.
  The topic's other commands are intake's, and intake answers a type nobody knows: progress ignores both.
- `proposalflow.leader-reports`: 督办 from leaders' office systems, answered on refusal with
  `leader-report.rejected`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.progress import domain, service, store
from services.progress.domain import HandlingStep, MeasureStatus, Occasion
from services.progress.unit_of_work import SERVICE, SqlUnitOfWork
from shared.commands import InboundDoor, NotFound, Refusal, RuleViolation, named_proposal, rejection
from shared.envelope import Envelope
from shared.errors import NotReady
from shared.events import (
    LEADER_REPORTS,
    SUBMISSIONS,
    UNIT_REPORTS,
    Command,
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
    UpdateMeasure,
    parse_message,
)
from shared.outbox import add_to_outbox
from shared.policy import Policy, WorkingCalendar
from shared.processor import Handler, Record

REPORTER_ROLES = (Role.UNIT, Role.SYSTEM)
UNIT_COMMANDS = (ReportProgress, SubmitCoOpinion, SubmitReply, UpdateMeasure)
UNIT_REPORTS_CONSUMER = "progress-unit-reports"

UnitCommand = ReportProgress | SubmitCoOpinion | SubmitReply | UpdateMeasure
MEMBER_COMMANDS = (EvaluateReply, EvaluateImplementation)
LEADER_COMMANDS = (RecordSupervision,)
Clock = Callable[[], datetime]


async def on_lifecycle_event(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
    event = parse_message(envelope.type, envelope.data)
    if isinstance(event, Event):
        await service.record(SqlUnitOfWork(conn), envelope, event)


async def held_since(conn: AsyncConnection, record: Record) -> datetime | None:
    """When this command was first parked, or None the first time it is tried."""
    parked = store.metadata.tables["parked_events"]
    query = (
        select(parked.c.parked_at)
        .where(parked.c.consumer == UNIT_REPORTS_CONSUMER)
        .where(parked.c.topic == record.topic)
        .where(parked.c.partition == record.partition)
        .where(parked.c.offset == record.offset)
        .order_by(parked.c.id)
        .limit(1)
    )
    return (await conn.execute(query)).scalar_one_or_none()


def unit_report_handler(
    policy: Policy, allowed_sources: Sequence[str], clock: Clock, hold: timedelta = timedelta(0)
) -> Handler:
    """`hold`: how long a command for a proposal progress has not yet seen assigned is held and retried."""
    door = InboundDoor(UNIT_REPORTS, UNIT_COMMANDS, allowed_sources, sends="send unit reports", noun="unit report")
    occasion = occasions(policy, clock)

    def may_report(command: UnitCommand) -> str | None:
        actor = command.actor
        if actor.role not in REPORTER_ROLES or (actor.role == Role.UNIT and actor.unit != command.unit):
            return f"{actor.role.value} {actor.id} may not report for unit {command.unit}"
        return None

    async def on_unit_report(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        if door.ignores(envelope):
            return
        try:
            command = door.admit(envelope, may_report, topic=record.topic)
            try:
                await service.carry_out(SqlUnitOfWork(conn), unit_step(command), occasion(envelope, command))
            except NotFound as exc:
                if exc.args and exc.args[0] != command.proposal_id:
                    raise Refusal(
                        f"unknown measure {exc.args[0]!r} of proposal {command.proposal_id}: a measure is named by "
                        "its `id` in `proposalflow.reply.drafted.v1` (`measures`)",
                        [{"rule": "measure_exists", "message": f"no measure {exc.args[0]}"}],
                        actor=command.actor,
                    ) from exc
                await _hold_or_refuse(conn, record, command, exc)
            except RuleViolation as exc:
                if domain.awaits_assignment(await SqlUnitOfWork(conn).lifecycle(command.proposal_id)):
                    await _hold_or_refuse(conn, record, command, exc)
                raise Refusal.of(exc, command.actor) from exc
        except Refusal as refusal:
            answer = rejection(UnitReportRejected, envelope, refusal, named_proposal(envelope))
            await add_to_outbox(conn, store.metadata, SERVICE, [answer])

    async def _hold_or_refuse(conn: AsyncConnection, record: Record, command: UnitCommand, exc: Exception) -> NoReturn:
        """Park the command (NotReady) while `hold` lasts; then refuse it, saying it may be sent again."""
        since = await held_since(conn, record)
        if hold > timedelta(0) and (since is None or datetime.now(UTC) - since < hold):
            raise NotReady(f"proposal {command.proposal_id} is not assigned here yet; holding the command") from exc
        waited = f" after holding it for {hold.total_seconds():.0f} s" if hold else ""
        raise Refusal(
            f"proposal {command.proposal_id} is not known here as assigned to a unit yet{waited}; "
            "if it has been assigned to your unit (proposalflow.assignment.assigned.v1), send the command "
            "again with a new id",
            [{"rule": "command_after_assignment", "message": f"proposal {command.proposal_id} is not assigned yet"}],
            actor=command.actor,
        ) from exc

    return on_unit_report


def evaluation_handler(policy: Policy, allowed_sources: Sequence[str], clock: Clock) -> Handler:
    """评价 and 落实评价 from a member platform on `proposalflow.submissions`, through the HTTP routes' use
    cases."""
    door = InboundDoor(SUBMISSIONS, MEMBER_COMMANDS, allowed_sources, sends="send evaluations", noun="evaluation")
    occasion = occasions(policy, clock)

    def may_evaluate(command: EvaluateReply | EvaluateImplementation) -> str | None:
        if command.actor.role != Role.MEMBER:
            what = "a reply (评价)" if isinstance(command, EvaluateReply) else "an implementation (落实评价)"
            return f"role {command.actor.role.value} may not evaluate {what}; only its signers may"
        return None

    async def on_member_command(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        if envelope.type not in door.commands:
            return  # intake's command, or one intake answers as unknown
        await _door_step(conn, envelope, record, door, may_evaluate, member_step, occasion, EvaluationRejected)

    return on_member_command


def supervision_handler(policy: Policy, allowed_sources: Sequence[str], clock: Clock) -> Handler:
    """督办 from a leader's office system on `proposalflow.leader-reports`, through the HTTP route's use case."""
    door = InboundDoor(
        LEADER_REPORTS, LEADER_COMMANDS, allowed_sources, sends="record supervision", noun="supervision record"
    )
    occasion = occasions(policy, clock)

    def may_supervise(command: RecordSupervision) -> str | None:
        if command.actor.role != Role.LEADER:
            return f"role {command.actor.role.value} may not record supervision (督办); only the supervising leader may"
        return None

    async def on_leader_report(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        await _door_step(conn, envelope, record, door, may_supervise, supervision_step, occasion, LeaderReportRejected)

    return on_leader_report


def occasions(policy: Policy, clock: Clock) -> Callable[[Envelope, Command], Occasion]:
    """The occasion of each command a door carries out: its actor, its correlation id (else its own id,
    so the events it causes name it), the clock's now, the policy."""
    calendar = WorkingCalendar.from_policy(policy)

    def occasion(envelope: Envelope, command: Command) -> Occasion:
        return Occasion(command.actor, envelope.correlation_id or envelope.id, clock(), policy, calendar)

    return occasion


def unit_step(command: UnitCommand) -> HandlingStep:
    """The handling step a unit's system asks for, for the unit it names (`may_report` checked it)."""
    match command:
        case ReportProgress():
            content = ProgressContent(kind=command.kind, on=command.on, text=command.text)
            return domain.ReportProgress(command.proposal_id, command.unit, content)
        case SubmitCoOpinion():
            return domain.SubmitCoOpinion(command.proposal_id, command.unit, command.text)
        case UpdateMeasure():
            status = MeasureStatus(command.status)
            return domain.UpdateMeasure(command.proposal_id, command.measure_id, command.unit, status, command.note)
        case SubmitReply():
            return domain.DraftReply(command.proposal_id, command.unit, command)


def member_step(command: EvaluateReply | EvaluateImplementation) -> HandlingStep:
    """评价 or 落实评价 by the command's actor, a signer."""
    if isinstance(command, EvaluateImplementation):
        return domain.EvaluateImplementation(
            command.proposal_id, command.grade, command.comment, reopen=command.reopen, new_measure=command.new_measure
        )
    return domain.Evaluate(
        command.proposal_id,
        handling_grade=command.handling_grade,
        result_grade=command.result_grade,
        comment=command.comment,
    )


def supervision_step(command: RecordSupervision) -> HandlingStep:
    """督办 by the command's actor, a leader."""
    return domain.RecordSupervision(command.proposal_id, kind=command.kind, on=command.on, text=command.text)


async def _door_step(
    conn: AsyncConnection,
    envelope: Envelope,
    record: Record,
    door: InboundDoor,
    authorise: Callable[[Any], str | None],
    step_of: Callable[[Any], HandlingStep],
    occasion: Callable[[Envelope, Command], Occasion],
    refused_as: type[Rejection],
) -> None:
    """Admit the command and carry out its step, or answer it with `refused_as` saying why; a refused
    command changes nothing (its use case commits nothing before its rules pass)."""
    try:
        command = door.admit(envelope, authorise, topic=record.topic)
        try:
            await service.carry_out(SqlUnitOfWork(conn), step_of(command), occasion(envelope, command))
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


async def prefetch_unit_reports(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
    """The unit-report consumer's `prepare`: the dossiers of its batch's proposals, one statement per table
    for the whole batch (each report then loads its own without one)."""
    ids = [envelope.subject for envelope in envelopes if envelope.subject]
    if len(ids) > 1:
        await store.prefetch_dossiers(conn, ids)
