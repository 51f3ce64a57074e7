"""Intake's Kafka door: `proposalflow.submissions`. Thin: decode, check, then the same use case as HTTP.

A command that fails validation or authorisation is answered with `submission.rejected` on
`proposalflow.proposals`, carrying the command id and a reason: the sender always learns its fate.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.intake import service, store
from services.intake.service import Clock
from services.intake.unit_of_work import SERVICE, SqlUnitOfWork
from shared.commands import InboundDoor, Refusal, RuleViolation, rejection
from shared.envelope import Envelope
from shared.events import SUBMISSIONS, Role, SubmissionRejected, SubmitProposal
from shared.outbox import add_to_outbox
from shared.policy import Policy
from shared.processor import Handler, Record

SUBMITTER_ROLES = (Role.MEMBER, Role.COMMITTEE, Role.SYSTEM)


def proposal_id_for(envelope: Envelope) -> str:
    """A command without its own proposal id gets one derived from (source, id): a resent
    command names the same proposal."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{envelope.source}#{envelope.id}"))


def submission_handler(policy: Policy, allowed_sources: Sequence[str], clock: Clock) -> Handler:
    door = InboundDoor(SUBMISSIONS, [SubmitProposal], allowed_sources, sends="submit proposals", noun="submission")

    def may_submit(command: SubmitProposal) -> str | None:
        if command.actor.role not in SUBMITTER_ROLES:
            return f"role {command.actor.role.value} may not submit proposals"
        return None

    async def on_submission(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        proposal_id: str | None = None
        try:
            command: SubmitProposal = door.admit(envelope, may_submit, topic=record.topic)
            proposal_id = command.proposal_id or proposal_id_for(envelope)
            try:
                await service.submit(
                    SqlUnitOfWork(conn),
                    command,
                    command.actor,
                    policy,
                    via=envelope.source,
                    correlation_id=envelope.correlation_id or envelope.id,
                    proposal_id=proposal_id,
                    now=clock(),
                )
            except RuleViolation as exc:
                raise Refusal.of(exc, command.actor) from exc
        except Refusal as refusal:
            answer = rejection(SubmissionRejected, envelope, refusal, proposal_id or envelope.subject or envelope.id)
            await add_to_outbox(conn, store.metadata, SERVICE, [answer])

    return on_submission
