"""Notify's consumer of every lifecycle topic: thin, see service.py."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notify import service, store
from services.notify.unit_of_work import SqlUnitOfWork
from shared.envelope import Envelope
from shared.events import Event, parse_message
from shared.processor import Handler, Record


class EventHandler:
    """Each event through :func:`service.handle`, its unit of work on the processor's transaction.
    `prepare` (which the processor calls first in every transaction, shared/processor.py) reads the
    batch's proposals in one statement."""

    def __init__(self, notifier: service.Notifier) -> None:
        self._notifier = notifier

    async def __call__(self, conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        event = parse_message(envelope.type, envelope.data)
        if isinstance(event, Event):
            await service.handle(SqlUnitOfWork(conn), envelope, event, self._notifier)

    @staticmethod
    async def prepare(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
        await store.prefetch_proposals(conn, [envelope.subject for envelope in envelopes if envelope.subject])


def on_event(notifier: service.Notifier) -> Handler:
    return EventHandler(notifier)
