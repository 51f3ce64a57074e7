"""Audit's table: the append-only log (审计日志). No code path updates or deletes an entry."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer, String, Table, UniqueConstraint, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import BigId, UTCDateTime, add_plumbing_tables, new_metadata

metadata = new_metadata()
add_plumbing_tables(metadata)

entries = Table(
    "audit_entries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(200), nullable=False),
    Column("source", String(200), nullable=False),
    Column("type", String(200), nullable=False),
    Column("subject", String(200), nullable=True, index=True),
    Column("time", UTCDateTime(), nullable=False),
    Column("actor_id", String(200), nullable=True, index=True),
    Column("actor_role", String(30), nullable=True),
    Column("actor_unit", String(200), nullable=True),
    Column("correlation_id", String(200), nullable=True),
    Column("topic", String(200), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    UniqueConstraint("topic", "source", "event_id", name="uq_audit_entries_event"),
)


async def append(conn: AsyncConnection, entry: dict[str, Any]) -> None:
    await conn.execute(entries.insert().values(**entry))


async def history(conn: AsyncConnection, subject: str) -> list[dict[str, Any]]:
    rows = (
        (await conn.execute(select(entries).where(entries.c.subject == subject).order_by(entries.c.id)))
        .mappings()
        .all()
    )
    return [dict(row) for row in rows]
