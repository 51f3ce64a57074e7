"""Intake's Kafka door: `proposalflow.submissions`. Thin: decode, check, then the same use case as HTTP.

A command that fails validation or authorisation is answered with `submission.rejected` on
`proposalflow.proposals`, carrying the command id and a reason: the sender always learns its fate.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection

from services.intake import service, store
from services.intake.domain import RuleViolation
from services.intake.service import Clock
from shared.auth import InboundAllowList
from shared.envelope import Envelope
from shared.events import Actor, Role, SubmissionRejected, SubmitProposal
from shared.messaging import Handler, Record, add_to_outbox
from shared.policy import Policy

SUBMITTER_ROLES = (Role.MEMBER, Role.COMMITTEE, Role.SYSTEM)


def proposal_id_for(envelope: Envelope) -> str:
    """A command without its own proposal id gets one derived from (source, id): a resent
    command names the same proposal."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{envelope.source}#{envelope.id}"))


def submission_handler(policy: Policy, allowed_sources: Sequence[str], clock: Clock) -> Handler:
    allow_list = InboundAllowList(allowed_sources)

    async def on_submission(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        correlation_id = envelope.correlation_id or envelope.id

        async def reject(
            reason: str,
            errors: Sequence[dict[str, Any]] | None = None,
            actor: Actor | None = None,
            proposal_id: str | None = None,
        ) -> None:
            await add_to_outbox(
                conn,
                store.metadata,
                service.SERVICE,
                [
                    SubmissionRejected(
                        proposal_id=proposal_id or envelope.subject or envelope.id,
                        actor=actor or Actor(id=envelope.source, role=Role.SYSTEM),
                        correlation_id=correlation_id,
                        command_id=envelope.id,
                        command_source=envelope.source,
                        command_type=envelope.type,
                        reason=reason,
                        errors=list(errors or []),
                    )
                ],
            )

        if envelope.type != SubmitProposal.TYPE:
            await reject(
                f"unknown command type {envelope.type!r} on proposalflow.submissions; send {SubmitProposal.TYPE}"
            )
            return
        if not allow_list.admits(envelope.source):
            await reject(
                f"source {envelope.source!r} is not allowed to submit proposals; "
                "ask the proposal office to add it to PROPOSALFLOW_ALLOWED_SOURCES"
            )
            return
        try:
            command = SubmitProposal.model_validate(envelope.data)
        except ValidationError as exc:
            errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
            summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
            await reject(f"invalid submission: {summary}", errors)
            return
        if command.actor.role not in SUBMITTER_ROLES:
            await reject(f"role {command.actor.role.value} may not submit proposals", actor=command.actor)
            return
        forged = allow_list.forged_actor(envelope.source, command.actor)
        if forged:
            await reject(f"forged actor: {forged}", actor=command.actor)
            return
        proposal_id = command.proposal_id or proposal_id_for(envelope)
        try:
            await service.submit(
                conn,
                command,
                command.actor,
                policy,
                via=envelope.source,
                correlation_id=correlation_id,
                proposal_id=proposal_id,
                now=clock(),
            )
        except RuleViolation as exc:
            await reject(exc.message, [{"rule": exc.rule, "message": exc.message}], command.actor, proposal_id)

    return on_submission
