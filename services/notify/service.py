"""Notify's use cases: remember proposals, store in-app notifications exactly once, report delivery."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notify import domain, store
from shared.envelope import Envelope
from shared.events import Actor, Event, NotificationDelivered, ProposalSubmitted, Role
from shared.messaging import NotReady, add_to_outbox

SERVICE = "notify"
SYSTEM = Actor(id="notify", role=Role.SYSTEM)


def notification_id(cause: Envelope, recipient: str, channel: str) -> str:
    """Deterministic: one notification per (event, recipient, channel), however often it is replayed."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cause.source}#{cause.id}#{recipient}#{channel}"))


async def handle(conn: AsyncConnection, envelope: Envelope, event: Event) -> None:
    if isinstance(event, ProposalSubmitted):
        if await store.get_proposal(conn, event.proposal_id) is None:
            await conn.execute(
                insert(store.proposals).values(
                    id=event.proposal_id,
                    title=event.title,
                    signers=[event.first_proposer.id, *(cosigner.id for cosigner in event.cosigners)],
                )
            )
        return
    proposal = await store.get_proposal(conn, event.proposal_id)
    notices = domain.notices_for(
        event, title=proposal["title"] if proposal else "", signers=proposal["signers"] if proposal else []
    )
    if not notices:
        return
    if proposal is None:
        raise NotReady(f"proposal {event.proposal_id} not known yet (waiting for its submitted event)")
    now = datetime.now(UTC)
    delivered: list[Event] = []
    for notice in notices:
        nid = notification_id(envelope, notice.recipient, "inbox")
        exists = (await conn.execute(select(store.notifications.c.id).where(store.notifications.c.id == nid))).first()
        if exists:
            continue
        await conn.execute(
            insert(store.notifications).values(
                id=nid,
                recipient=notice.recipient,
                channel="inbox",
                proposal_id=event.proposal_id,
                cause_event_id=envelope.id,
                cause_event_type=envelope.type,
                title=notice.title,
                body=notice.body,
                created_at=now,
                read_at=None,
            )
        )
        delivered.append(
            NotificationDelivered(
                proposal_id=event.proposal_id,
                actor=SYSTEM,
                correlation_id=event.correlation_id,
                notification_id=nid,
                recipient=notice.recipient,
                channel="inbox",
                cause_event_id=envelope.id,
                cause_event_type=envelope.type,
            )
        )
    await add_to_outbox(conn, store.metadata, SERVICE, delivered)
