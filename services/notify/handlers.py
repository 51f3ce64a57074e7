"""Notify's consumer of every lifecycle topic: thin, see service.py."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notify import service, store
from services.notify.domain import possible_recipients
from services.notify.unit_of_work import SqlUnitOfWork, defer_writes, write_deferred
from shared.envelope import Envelope
from shared.events import Event, parse_message
from shared.processor import Handler, Record


class EventHandler:
    """Each event through :func:`service.handle`, its unit of work on the processor's transaction.
    `prepare` (which the processor calls first in every transaction, shared/processor.py) reads the
    batch's proposals and contacts, one statement each, and has the batch's writes wait for `finish`
    (which the processor calls last), where they go in a few statements."""

    def __init__(self, notifier: service.Notifier) -> None:
        self._notifier = notifier
        self._notifying_types = {rule.rule.event for rule in notifier.rules}

    async def __call__(self, conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        event = parse_message(envelope.type, envelope.data)
        if isinstance(event, Event):
            await service.handle(SqlUnitOfWork(conn), envelope, event, self._notifier)

    async def prepare(self, conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
        """The batch's proposals in one statement, then the contacts of everyone its events could notify
        (if a rule names any of their types) in another."""
        defer_writes(conn)
        rows = await store.prefetch_proposals(conn, [envelope.subject for envelope in envelopes if envelope.subject])
        known = {row["id"]: row for row in rows}
        notifying = [envelope for envelope in envelopes if envelope.type in self._notifying_types]
        if notifying:
            recipients = set().union(*(possible_recipients(e.data, known.get(e.subject or "")) for e in notifying))
            await store.prefetch_contacts(conn, recipients)

    async def finish(self, conn: AsyncConnection) -> None:
        """The batch's proposals, notices and delivered events, written together."""
        await write_deferred(conn)


def on_event(notifier: service.Notifier) -> Handler:
    return EventHandler(notifier)
