"""Intake's Kafka door: `proposalflow.submissions`. Thin: decode, check, then the same use case as HTTP.

A member platform submits (提交), confirms as a cosigner (联名确认), withdraws (撤案) and resubmits a
returned proposal (修改后重新提交) here. A command that fails validation or authorisation is answered
with `submission.rejected` on `proposalflow.proposals`, carrying the command id and a reason: the sender
always learns its fate. The topic's other commands (评价) are progress's: intake ignores them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.intake import service, store
from services.intake.service import Clock
from services.intake.unit_of_work import SERVICE, SqlUnitOfWork
from shared.commands import InboundDoor, NotFound, Refusal, RuleViolation, rejection
from shared.envelope import Envelope
from shared.events import (
    SUBMISSIONS,
    CosignProposal,
    ResubmitProposal,
    Role,
    SubmissionRejected,
    SubmitProposal,
    WithdrawProposal,
)
from shared.outbox import add_to_outbox
from shared.policy import Policy
from shared.processor import Handler, Record

SUBMITTER_ROLES = (Role.MEMBER, Role.COMMITTEE, Role.SYSTEM)
SUBMISSION_COMMANDS = (SubmitProposal, CosignProposal, WithdrawProposal, ResubmitProposal)
MemberCommand = CosignProposal | WithdrawProposal | ResubmitProposal

MEMBER_ACTIONS = {
    CosignProposal: "confirm as a cosigner (联名确认)",
    WithdrawProposal: "withdraw a proposal (撤案)",
    ResubmitProposal: "resubmit a returned proposal (重新提交)",
}
"""What a member's command does, as a refusal names it; only the member (委员) may, as over HTTP."""


def proposal_id_for(envelope: Envelope) -> str:
    """A command without its own proposal id gets one derived from (source, id): a resent
    command names the same proposal."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{envelope.source}#{envelope.id}"))


def named_proposal(envelope: Envelope) -> str | None:
    """The proposal a command names in its data, even one that failed validation."""
    named = envelope.data.get("proposal_id") if isinstance(envelope.data, dict) else None
    return str(named)[:100] if named else None


def submission_handler(policy: Policy, allowed_sources: Sequence[str], clock: Clock) -> Handler:
    door = InboundDoor(SUBMISSIONS, SUBMISSION_COMMANDS, allowed_sources, sends="submit proposals", noun="submission")

    def may_send(command: SubmitProposal | MemberCommand) -> str | None:
        if isinstance(command, SubmitProposal):
            if command.actor.role not in SUBMITTER_ROLES:
                return f"role {command.actor.role.value} may not submit proposals"
        elif command.actor.role != Role.MEMBER:
            return f"role {command.actor.role.value} may not {MEMBER_ACTIONS[type(command)]}; only the member may"
        return None

    async def on_submission(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        if door.ignores(envelope):
            return
        proposal_id: str | None = None if envelope.type == SubmitProposal.TYPE else named_proposal(envelope)
        try:
            command: SubmitProposal | MemberCommand = door.admit(envelope, may_send, topic=record.topic)
            correlation_id = envelope.correlation_id or envelope.id
            try:
                if isinstance(command, SubmitProposal):
                    proposal_id = command.proposal_id or proposal_id_for(envelope)
                    await service.submit(
                        SqlUnitOfWork(conn),
                        command,
                        command.actor,
                        policy,
                        via=envelope.source,
                        correlation_id=correlation_id,
                        proposal_id=proposal_id,
                        now=clock(),
                    )
                else:
                    await _carry_out(conn, command, correlation_id)
            except NotFound as exc:
                raise Refusal(
                    f"no proposal {exc} of member {command.actor.id}; check the proposal id "
                    "(a member acts only on proposals they signed)",
                    [{"rule": "proposal_of_the_member", "message": f"no proposal {exc} of {command.actor.id}"}],
                    command.actor,
                ) from exc
            except RuleViolation as exc:
                raise Refusal.of(exc, command.actor) from exc
        except Refusal as refusal:
            answer = rejection(SubmissionRejected, envelope, refusal, proposal_id or envelope.subject or envelope.id)
            await add_to_outbox(conn, store.metadata, SERVICE, [answer])

    async def _carry_out(conn: AsyncConnection, command: MemberCommand, correlation_id: str) -> None:
        """The member's command, through the use case its HTTP route calls."""
        uow, actor, now = SqlUnitOfWork(conn), command.actor, clock()
        if isinstance(command, CosignProposal):
            await service.cosign(uow, command.proposal_id, actor, policy, correlation_id=correlation_id, now=now)
        elif isinstance(command, WithdrawProposal):
            await service.withdraw(
                uow, command.proposal_id, actor, reason=command.reason, correlation_id=correlation_id, now=now
            )
        else:
            await service.submit_existing(
                uow,
                command.proposal_id,
                actor,
                policy,
                correlation_id=correlation_id,
                now=now,
                changes=command.changes(),
            )

    return on_submission
