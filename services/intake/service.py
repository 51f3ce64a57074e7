"""Intake's use cases, shared by both doors (HTTP and the `proposalflow.submissions` topic).

Each reads as: load → decide (domain) → save state and events in the caller's transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.intake import domain, store
from services.intake.domain import ProposalStatus, RuleViolation
from shared.events import (
    Actor,
    Event,
    ProposalContent,
    ProposalFiled,
    ProposalNotFiled,
    ProposalSubmitted,
    Proposer,
)
from shared.messaging import add_to_outbox
from shared.policy import Policy

SERVICE = "intake"


class NotFound(Exception):
    """No proposal with that id (or none the caller may see)."""


async def _emit(conn: AsyncConnection, events: list[Event]) -> None:
    await add_to_outbox(conn, store.metadata, SERVICE, events)


def proposal_view(row: dict[str, Any]) -> dict[str, Any]:
    """A proposal as the API shows it."""
    return {
        "id": row["id"],
        "title": row["title"],
        "body": row["body"],
        "category": row["category"],
        "session_kind": row["session_kind"],
        "first_proposer": row["first_proposer"],
        "cosigners": row["cosigners"],
        "suggestions": row["suggestions"],
        "series_id": row["series_id"],
        "status": row["status"],
        "filing_number": row["filing_number"],
        "review_reason": row["review_reason"],
        "submitted_at": row["submitted_at"].isoformat() if row["submitted_at"] else None,
        "reviewed_at": row["reviewed_at"].isoformat() if row["reviewed_at"] else None,
    }


async def submit(
    conn: AsyncConnection,
    content: ProposalContent,
    actor: Actor,
    policy: Policy,
    *,
    via: str,
    correlation_id: str | None,
    proposal_id: str | None = None,
) -> dict[str, Any]:
    """提交: store a new proposal and announce it. Raises RuleViolation for a request to fix."""
    domain.category_must_be_known(content.category, policy.categories)
    domain.submitter_must_sign(actor, content.first_proposer, content.cosigners)
    suggestions = domain.number_suggestions(content.suggestions)
    proposal_id = proposal_id or str(uuid.uuid4())
    if await store.get_proposal(conn, proposal_id) is not None:
        raise RuleViolation("proposal_id_unique", f"a proposal with id {proposal_id!r} already exists")
    now = datetime.now(UTC)
    row = {
        "id": proposal_id,
        "title": content.title.strip(),
        "body": content.body,
        "category": content.category,
        "session_kind": content.session_kind.value,
        "first_proposer_id": content.first_proposer.id,
        "first_proposer": content.first_proposer.model_dump(mode="json"),
        "cosigners": [cosigner.model_dump(mode="json") for cosigner in content.cosigners],
        "suggestions": [suggestion.model_dump(mode="json") for suggestion in suggestions],
        "series_id": content.series_id,
        "status": ProposalStatus.SUBMITTED.value,
        "filing_number": None,
        "review_reason": None,
        "submitted_by": actor.model_dump(mode="json"),
        "submitted_via": via,
        "submitted_at": now,
        "reviewed_at": None,
    }
    await store.insert_proposal(conn, row)
    await _emit(
        conn,
        [
            ProposalSubmitted(
                proposal_id=proposal_id,
                actor=actor,
                correlation_id=correlation_id,
                title=row["title"],
                body=content.body,
                category=content.category,
                session_kind=content.session_kind,
                first_proposer=content.first_proposer,
                cosigners=content.cosigners,
                suggestions=suggestions,
                series_id=content.series_id,
                submitted_at=now,
            )
        ],
    )
    return proposal_view(row)


async def review(
    conn: AsyncConnection,
    proposal_id: str,
    *,
    file: bool,
    reason: str | None,
    converted_to_opinion: bool,
    actor: Actor,
    correlation_id: str | None,
) -> dict[str, Any]:
    """审查立案: file the proposal with a number, or refuse it with the reason."""
    row = await store.get_proposal(conn, proposal_id)
    if row is None:
        raise NotFound(proposal_id)
    domain.review_may_decide(ProposalStatus(row["status"]))
    now = datetime.now(UTC)
    event: Event
    if file:
        number = domain.filing_number(now.year, await store.next_filing_sequence(conn, now.year))
        await store.record_review(
            conn, proposal_id, status=ProposalStatus.FILED.value, filing_number=number, reason=reason, at=now
        )
        event = ProposalFiled(
            proposal_id=proposal_id,
            actor=actor,
            correlation_id=correlation_id,
            filing_number=number,
            title=row["title"],
            category=row["category"],
            first_proposer=Proposer.model_validate(row["first_proposer"]),
            cosigners=[Proposer.model_validate(cosigner) for cosigner in row["cosigners"]],
            suggestion_count=len(row["suggestions"]),
            filed_at=now,
        )
    else:
        if not reason:
            raise RuleViolation("not_filed_needs_reason", "a proposal not filed needs a reason for its proposers")
        await store.record_review(
            conn, proposal_id, status=ProposalStatus.NOT_FILED.value, filing_number=None, reason=reason, at=now
        )
        event = ProposalNotFiled(
            proposal_id=proposal_id,
            actor=actor,
            correlation_id=correlation_id,
            reason=reason,
            converted_to_opinion=converted_to_opinion,
        )
    await _emit(conn, [event])
    updated = await store.get_proposal(conn, proposal_id)
    assert updated is not None
    return proposal_view(updated)
