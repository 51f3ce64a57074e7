"""Notify's tables: what it knows of each proposal, and the in-app inbox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, String, Table, Text, UniqueConstraint, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import UTCDateTime, add_plumbing_tables, new_metadata

metadata = new_metadata()
add_plumbing_tables(metadata)

proposals = Table(
    "proposals",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("signers", JSON, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("recipient", String(200), nullable=False, index=True),
    Column("channel", String(20), nullable=False),
    Column("proposal_id", String(100), nullable=False),
    Column("cause_event_id", String(200), nullable=False),
    Column("cause_event_type", String(200), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("read_at", UTCDateTime(), nullable=True),
    UniqueConstraint("cause_event_id", "recipient", "channel", name="uq_notifications_once"),
)


async def get_proposal(conn: AsyncConnection, proposal_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(proposals).where(proposals.c.id == proposal_id))).mappings().first()
    return dict(row) if row else None


async def inbox(
    conn: AsyncConnection, recipient: str, *, unread_only: bool, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    query = select(notifications).where(notifications.c.recipient == recipient)
    if unread_only:
        query = query.where(notifications.c.read_at.is_(None))
    rows = (
        (await conn.execute(query.order_by(notifications.c.created_at.desc()).limit(limit).offset(offset)))
        .mappings()
        .all()
    )
    unread = (
        await conn.execute(
            select(func.count())
            .select_from(notifications)
            .where(notifications.c.recipient == recipient)
            .where(notifications.c.read_at.is_(None))
        )
    ).scalar_one()
    return [dict(row) for row in rows], int(unread)


async def mark_read(conn: AsyncConnection, recipient: str, notification_id: str, at: Any) -> bool:
    result = await conn.execute(
        update(notifications)
        .where(notifications.c.id == notification_id)
        .where(notifications.c.recipient == recipient)
        .where(notifications.c.read_at.is_(None))
        .values(read_at=at)
    )
    return bool(result.rowcount)
