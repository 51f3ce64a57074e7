"""Notify's use case on the in-memory unit of work (tests/notify_fakes.py): no database, no broker."""

from __future__ import annotations

from datetime import time

import pytest

from services.notify import service
from services.notify.domain import Contact
from services.notify.rules import Channel, load_rules
from services.notify.settings import NotifySettings
from shared.errors import NotReady
from shared.events import Event
from shared.outbox import envelope_for
from tests.notify_fakes import FakeUnitOfWork
from tests.notify_fixtures import lifecycle

SETTINGS = NotifySettings(smtp_host="127.0.0.1", sms_gateway_url="http://127.0.0.1:9/sms")
NOTIFIER = service.Notifier(rules=load_rules(SETTINGS.rules_path), settings=SETTINGS)
WRITER = {
    "proposalflow.proposals": "intake",
    "proposalflow.assignments": "assignment",
    "proposalflow.handling": "progress",
}


def told(uow: FakeUnitOfWork, event: Event) -> set[tuple[str, str]]:
    return {
        (row["recipient"], row["title"])
        for row in uow.notifications.values()
        if row["cause_event_type"] == event.TYPE and row["proposal_id"] == event.proposal_id
    }


async def test_the_whole_lifecycle_stores_each_inbox_notice_once_with_its_delivered_event() -> None:
    uow = FakeUnitOfWork()
    for event, expected in lifecycle():
        before = set(uow.notifications)
        envelope = envelope_for(event, WRITER[event.TOPIC])
        await service.handle(uow, envelope, event, NOTIFIER)
        new = {row_id: uow.notifications[row_id] for row_id in set(uow.notifications) - before}
        assert {(row["recipient"], row["title"]) for row in new.values()} == expected, event.TYPE
        assert all(row["cause_event_id"] == envelope.id and row["read_at"] is None for row in new.values())
    delivered = [event for event, _ in uow.outbox]
    assert sorted(e.notification_id for e in delivered) == sorted(uow.notifications)  # type: ignore[attr-defined]
    assert all(e.TYPE == "proposalflow.notification.delivered.v1" for e in delivered)
    assert uow.proposals["p-main"].filing_number == "2026-0001"


async def test_a_redelivered_event_plans_nothing_new_and_publishes_nothing_again() -> None:
    uow = FakeUnitOfWork()
    events = [envelope_for(event, WRITER[event.TOPIC]) for event, _ in lifecycle()[:5]]
    for envelope, (event, _) in zip(events, lifecycle()[:5], strict=True):
        await service.handle(uow, envelope, event, NOTIFIER)
    notifications, outbox = dict(uow.notifications), list(uow.outbox)
    assert len(notifications) == 8  # 联名 2, 立案 2, 交办 4
    event = lifecycle()[4][0]
    await service.handle(uow, events[4], event, NOTIFIER)
    assert uow.notifications == notifications
    assert uow.outbox == outbox


async def test_an_event_of_a_proposal_not_known_yet_waits_and_writes_nothing() -> None:
    uow = FakeUnitOfWork()
    filed = lifecycle()[3][0]
    with pytest.raises(NotReady, match="not known yet"):
        await service.handle(uow, envelope_for(filed, "intake"), filed, NOTIFIER)
    assert (uow.proposals, uow.notifications, uow.deliveries, uow.outbox) == ({}, {}, {}, [])


async def test_outside_channels_are_planned_pending_for_the_contacts_that_have_them() -> None:
    """The proposer has email and SMS with quiet hours all day: the email is due at once, the SMS after
    the quiet hours; the cosigner has no contact, so only their inbox notice is kept."""
    zhang = Contact(
        id="m-1",
        email="zhang@example.cn",
        phone="13800000000",
        webhook_url=None,
        channels=None,
        quiet_hours=(time(0, 0), time(23, 59)),
    )
    uow = FakeUnitOfWork({"m-1": zhang})
    for event, _ in lifecycle()[:4]:
        await service.handle(uow, envelope_for(event, WRITER[event.TOPIC]), event, NOTIFIER)
    planned = {(row["recipient"], row["channel"]): row for row in uow.deliveries.values()}
    assert {key for key in planned if key[0] == "m-1"} >= {("m-1", Channel.EMAIL.value), ("m-1", Channel.SMS.value)}
    assert all(recipient == "m-1" for recipient, _ in planned)
    email, sms = planned[("m-1", Channel.EMAIL.value)], planned[("m-1", Channel.SMS.value)]
    assert (email["status"], email["attempts"], email["address"]) == ("pending", 0, "zhang@example.cn")
    assert email["next_attempt_at"] == email["created_at"]
    assert sms["next_attempt_at"] > sms["created_at"]
    assert not any(e.notification_id in uow.deliveries for e, _ in uow.outbox)  # type: ignore[attr-defined]
