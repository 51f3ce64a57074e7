"""Outbox rows the relay could never publish: look at them, and send them again once the cause is fixed.

The relay (`shared.messaging.OutboxRelay`) marks a row failed (`outbox.failed_at`, `outbox.error`) when
the broker refuses it for good: larger than its topic's `max.message.bytes`, a topic the service may
not write, an invalid topic. The row stays in the outbox, unsent, and the rows behind it go on.
:func:`retry_failed_rows` clears the mark; the relay then sends the row with the rows waiting then, and
marks it failed again if the cause is still there. Nothing here deletes a row: an event the service
committed is only ever published, late or not at all yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import MetaData, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass(frozen=True)
class FailedRow:
    """One failed outbox row, as an operator reads it."""

    id: int
    event_id: str
    type: str
    topic: str
    key: str | None
    """The proposal id (the record's key)."""
    value_bytes: int
    created_at: datetime
    failed_at: datetime
    error: str


async def failed_rows(engine: AsyncEngine, metadata: MetaData, limit: int = 100) -> list[FailedRow]:
    """The outbox's failed rows, oldest first."""
    table = metadata.tables["outbox"]
    query = (
        select(
            table.c.id,
            table.c.event_id,
            table.c.type,
            table.c.topic,
            table.c.key,
            func.length(table.c.payload).label("value_bytes"),
            table.c.created_at,
            table.c.failed_at,
            table.c.error,
        )
        .where(table.c.sent_at.is_(None))
        .where(table.c.failed_at.is_not(None))
        .order_by(table.c.id)
        .limit(limit)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        FailedRow(
            id=int(row.id),
            event_id=row.event_id,
            type=row.type,
            topic=row.topic,
            key=row.key,
            value_bytes=int(row.value_bytes),
            created_at=row.created_at,
            failed_at=row.failed_at,
            error=row.error or "",
        )
        for row in rows
    ]


async def retry_failed_rows(engine: AsyncEngine, metadata: MetaData, row_id: int | None = None) -> int:
    """Clear the failed mark of one row (`row_id`) or of every failed row; returns how many. The relay
    sends them with its next batch, in id order among the rows waiting then."""
    table = metadata.tables["outbox"]
    statement = (
        update(table)
        .where(table.c.sent_at.is_(None))
        .where(table.c.failed_at.is_not(None))
        .values(failed_at=None, error=None)
    )
    if row_id is not None:
        statement = statement.where(table.c.id == row_id)
    async with engine.begin() as conn:
        result = await conn.execute(statement)
    return int(result.rowcount)
