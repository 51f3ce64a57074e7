"""Progress's consumer of proposals and assignments: thin, see service.py."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from services.progress import service
from shared.envelope import Envelope
from shared.events import Event, parse_message
from shared.messaging import Record


async def on_lifecycle_event(conn: AsyncConnection, envelope: Envelope, _record: Record) -> None:
    event = parse_message(envelope.type, envelope.data)
    if isinstance(event, Event):
        await service.record(conn, envelope, event)
