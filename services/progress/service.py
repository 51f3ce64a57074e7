"""Progress's use cases: fold every event of a proposal into its read model and timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.progress import domain, store
from services.progress.domain import Stage
from shared.envelope import Envelope
from shared.events import Event, ProposalAssigned, ProposalSubmitted
from shared.messaging import NotReady

SERVICE = "progress"


async def record(conn: AsyncConnection, envelope: Envelope, event: Event) -> None:
    """Apply one event: the first one of a proposal must be `submitted`; others wait for it."""
    current = await store.get_proposal(conn, event.proposal_id)
    now = datetime.now(UTC)
    if current is None:
        if not isinstance(event, ProposalSubmitted):
            raise NotReady(f"proposal {event.proposal_id} not known yet (waiting for its submitted event)")
        await conn.execute(
            insert(store.proposals).values(
                id=event.proposal_id,
                title=event.title,
                category=event.category,
                stage=Stage.SUBMITTED.value,
                filing_number=None,
                signers=[event.first_proposer.id, *(c.id for c in event.cosigners)],
                lead_unit=None,
                co_units=[],
                reply_due=None,
                submitted_at=event.submitted_at,
                updated_at=now,
            )
        )
    else:
        changes: dict[str, Any] = {"updated_at": now}
        stage = domain.next_stage(Stage(current["stage"]), event)
        if stage is not None:
            changes["stage"] = stage.value
        filing_number = getattr(event, "filing_number", None)
        if filing_number:
            changes["filing_number"] = filing_number
        if isinstance(event, ProposalAssigned):
            changes.update(
                lead_unit=event.lead_unit.id, co_units=[unit.id for unit in event.co_units], reply_due=event.reply_due
            )
        await conn.execute(update(store.proposals).where(store.proposals.c.id == event.proposal_id).values(**changes))
    await conn.execute(
        insert(store.timeline).values(
            proposal_id=event.proposal_id,
            event_id=envelope.id,
            type=envelope.type,
            at=envelope.time,
            actor=event.actor.model_dump(mode="json"),
            summary=domain.summary(event),
            data=domain.timeline_data(event),
        )
    )


def proposal_view(row: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "title": row["title"],
        "category": row["category"],
        "stage": row["stage"],
        "filing_number": row["filing_number"],
        "lead_unit": row["lead_unit"],
        "co_units": row["co_units"],
        "reply_due": row["reply_due"].isoformat() if row["reply_due"] else None,
        "timeline": [
            {
                "type": entry["type"],
                "at": entry["at"].isoformat(),
                "actor": entry["actor"],
                "summary": entry["summary"],
                "event_id": entry["event_id"],
            }
            for entry in entries
        ],
    }
