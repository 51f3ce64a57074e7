"""Notify's consumer of every lifecycle topic: thin, see service.py."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.notify import service
from shared.envelope import Envelope
from shared.events import Event, parse_message
from shared.processor import Handler, Record


def on_event(notifier: service.Notifier) -> Handler:
    async def handle(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
        event = parse_message(envelope.type, envelope.data)
        if isinstance(event, Event):
            await service.handle(conn, envelope, event, notifier)

    return handle
