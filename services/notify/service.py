"""Notify's use cases: keep the record of each proposal, and plan every notice exactly once.

It reads as the other services' use cases do: load (the proposal's record and the recipients' contacts,
through the unit of work) → decide (the rules in domain.py: what the event changes, who is told what,
over which channel and when) → save (`uow.commit()`, in the consumer's transaction).

The consumer's transaction only plans: an inbox notice is stored (delivered at once), and every
outside-channel notice becomes one `deliveries` row per (event, recipient, channel), with an id
derived from those three, so a redelivered or replayed event plans nothing new. The delivery worker
(delivery.py) sends them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.notify import domain
from services.notify.rules import Channel, CompiledRule
from services.notify.settings import NotifySettings
from services.notify.unit_of_work import UnitOfWork
from shared.envelope import Envelope
from shared.errors import NotReady
from shared.events import Actor, Event, NotificationDelivered, ProposalSubmitted, Role

SYSTEM = Actor(id="notify", role=Role.SYSTEM)


def notification_id(cause: Envelope, recipient: str, channel: str) -> str:
    """Deterministic: one notification per (event, recipient, channel), however often it is replayed."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{cause.source}#{cause.id}#{recipient}#{channel}"))


def outcome_event_id(notification: str, outcome: str) -> str:
    """The id of the delivered/failed event of one notification: one event per outcome, even if a
    crash makes the worker record it twice."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{notification}#{outcome}"))


@dataclass(frozen=True)
class Notifier:
    """The rules and settings the use cases need."""

    rules: list[CompiledRule]
    settings: NotifySettings

    @property
    def configured_channels(self) -> frozenset[Channel]:
        """Inbox and webhook always work; email and SMS need their server or gateway configured."""
        channels = {Channel.INBOX, Channel.WEBHOOK}
        if self.settings.smtp_host:
            channels.add(Channel.EMAIL)
        if self.settings.sms_gateway_url:
            channels.add(Channel.SMS)
        return frozenset(channels)

    def link(self, proposal_id: str) -> str:
        return f"{self.settings.public_base_url.rstrip('/')}/proposals/{proposal_id}"


async def handle(uow: UnitOfWork, envelope: Envelope, event: Event, notifier: Notifier) -> None:
    """Update the record of the proposal, then plan the notices the rules give for the event."""
    async with uow:
        view = await uow.proposal(event.proposal_id)
        if isinstance(event, ProposalSubmitted) and view is None:
            signers = (event.first_proposer.id, *(cosigner.id for cosigner in event.cosigners))
            view = domain.ProposalView(id=event.proposal_id, title=event.title, signers=signers)
            uow.add_proposal(view)
        if domain.changes_view(event) or domain.rules_apply(notifier.rules, envelope.type, event):
            if view is None:
                raise NotReady(f"proposal {event.proposal_id} not known yet (waiting for its submitted event)")
            waiting = domain.missing_prerequisite(event, view)
            if waiting:
                raise NotReady(waiting)
            updated = domain.updated_view(view, event)
            uow.save_proposal(view, updated)
            notices = domain.notices_for(
                notifier.rules, envelope.type, event, updated, notifier.link(event.proposal_id), previous=view
            )
            if notices:
                await plan(uow, envelope, event, notices, notifier)
        await uow.commit()


async def plan(
    uow: UnitOfWork, envelope: Envelope, event: Event, notices: list[domain.Notice], notifier: Notifier
) -> None:
    """The event's notices: inbox notifications (stored in one statement), outside-channel deliveries (in
    another), and a delivered event for each inbox notification that is new."""
    now = datetime.now(UTC)
    contacts = await uow.contacts(sorted({notice.recipient for notice in notices}))
    inbox: list[dict[str, Any]] = []
    deliveries: list[dict[str, Any]] = []
    for notice in notices:
        common = {
            "id": notification_id(envelope, notice.recipient, notice.channel),
            "recipient": notice.recipient,
            "channel": notice.channel.value,
            "proposal_id": event.proposal_id,
            "cause_event_id": envelope.id,
            "cause_event_type": envelope.type,
            "title": notice.title,
            "body": notice.body,
            "created_at": now,
        }
        if notice.channel == Channel.INBOX:
            if all(row["id"] != common["id"] for row in inbox):
                inbox.append({**common, "read_at": None})
            continue
        contact = contacts.get(notice.recipient)
        address = domain.deliverable_address(notice.channel, contact, notifier.configured_channels)
        if address is None or contact is None:
            continue
        not_before = now
        if notice.channel == Channel.SMS:
            not_before = domain.sms_not_before(now, contact.quiet_hours, notifier.settings.timezone)
        deliveries.append(
            {
                **common,
                "address": address,
                "correlation_id": event.correlation_id,
                "link": notifier.link(event.proposal_id),
                "next_attempt_at": not_before,
            }
        )
    delivered = {
        row["id"]: (
            NotificationDelivered(
                proposal_id=event.proposal_id,
                actor=SYSTEM,
                correlation_id=event.correlation_id,
                notification_id=row["id"],
                recipient=row["recipient"],
                channel="inbox",
                cause_event_id=envelope.id,
                cause_event_type=envelope.type,
                attempts=1,
            ),
            outcome_event_id(row["id"], "delivered"),
        )
        for row in inbox
    }
    uow.plan(inbox, deliveries, delivered)
