"""Audit's consumer of every topic: each event becomes one entry."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from services.audit import domain, store
from shared.envelope import Envelope
from shared.messaging import Record


def occurrence_key(envelope: Envelope, record: Record) -> str:
    """An event is audited once per topic: a dead-lettered copy is a fact of its own."""
    return f"{record.topic}|{envelope.source}|{envelope.id}"


async def on_any_event(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
    entry = domain.entry_from(envelope, topic=record.topic, partition=record.partition, offset=record.offset)
    await store.append(conn, {**entry, "recorded_at": datetime.now(UTC)})
