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
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.progress import service, store
from services.progress.domain import RuleViolation
from shared.auth import InboundAllowList
from shared.envelope import Envelope
from shared.events import (
    Actor,
    Event,
    ProgressContent,
    ReportProgress,
    Role,
    SubmitCoOpinion,
    SubmitReply,
    UnitReportRejected,
    parse_message,
)
from shared.messaging import Handler, Record, add_to_outbox
from shared.policy import Policy

REPORTER_ROLES = (Role.UNIT, Role.SYSTEM)
UNIT_COMMANDS = (ReportProgress, SubmitCoOpinion, SubmitReply)


async def on_lifecycle_event(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
    event = parse_message(envelope.type, envelope.data)
    if isinstance(event, Event):
        await service.record(conn, envelope, event)


def unit_report_handler(policy: Policy, allowed_sources: Sequence[str], clock: Callable[[], datetime]) -> Handler:
    allow_list = InboundAllowList(allowed_sources)

    async def on_unit_report(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        correlation_id = envelope.correlation_id or envelope.id

        async def reject(
            reason: str, errors: Sequence[dict[str, Any]] | None = None, actor: Actor | None = None
        ) -> None:
            proposal_id = envelope.data.get("proposal_id") if isinstance(envelope.data, dict) else None
            rejection = UnitReportRejected(
                proposal_id=str(proposal_id or envelope.subject or envelope.id)[:100],
                actor=actor or Actor(id=envelope.source[:200], role=Role.SYSTEM),
                correlation_id=correlation_id,
                command_id=envelope.id,
                command_source=envelope.source,
                command_type=envelope.type,
                reason=reason,
                errors=list(errors or []),
            )
            await add_to_outbox(conn, store.metadata, service.SERVICE, [rejection])

        known = {command.TYPE: command for command in UNIT_COMMANDS}
        command_class = known.get(envelope.type)
        if command_class is None:
            await reject(
                f"unknown command type {envelope.type!r} on proposalflow.unit-reports; send one of {', '.join(known)}"
            )
            return
        if not allow_list.admits(envelope.source):
            await reject(
                f"source {envelope.source!r} is not allowed to send unit reports; "
                "ask the proposal office to add it to PROPOSALFLOW_ALLOWED_SOURCES"
            )
            return
        try:
            command = command_class.model_validate(envelope.data)
        except ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
            await reject(
                "invalid unit report: " + "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]), errors
            )
            return
        actor = command.actor
        if actor.role not in REPORTER_ROLES or (actor.role == Role.UNIT and actor.unit != command.unit):
            await reject(f"{actor.role.value} {actor.id} may not report for unit {command.unit}", actor=actor)
            return
        forged = allow_list.forged_actor(envelope.source, actor)
        if forged:
            await reject(f"forged actor: {forged}", actor=actor)
            return
        try:
            if isinstance(command, ReportProgress):
                content = ProgressContent(kind=command.kind, on=command.on, text=command.text)
                await service.report_progress(
                    conn, command.proposal_id, command.unit, content, actor, correlation_id, clock()
                )
            elif isinstance(command, SubmitCoOpinion):
                await service.submit_co_opinion(
                    conn, command.proposal_id, command.unit, command.text, actor, correlation_id, clock()
                )
            else:
                await service.draft_reply(
                    conn, command.proposal_id, command.unit, command, actor, correlation_id, clock(), policy
                )
        except service.NotFound:
            await reject(
                f"unknown proposal {command.proposal_id}; send reports once it has been assigned to your unit",
                actor=actor,
            )
        except RuleViolation as exc:
            await reject(exc.message, [{"rule": exc.rule, "message": exc.message}], actor)

    return on_unit_report
