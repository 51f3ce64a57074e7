"""Progress's tables: the lifecycle read model of every proposal and its timeline."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Date, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import BigId, UTCDateTime, add_plumbing_tables, new_metadata

metadata = new_metadata()
add_plumbing_tables(metadata)

proposals = Table(
    "proposals",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("category", String(50), nullable=False),
    Column("stage", String(20), nullable=False, index=True),
    Column("filing_number", String(30), nullable=True),
    Column("signers", JSON, nullable=False),
    Column("lead_unit", String(100), nullable=True, index=True),
    Column("co_units", JSON, nullable=False),
    Column("reply_due", Date, nullable=True),
    Column("submitted_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("proposal_id", String(100), nullable=False, index=True),
    Column("event_id", String(100), nullable=False),
    Column("type", String(200), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", JSON, nullable=False),
    Column("summary", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("source_offset", BigInteger, nullable=True),
)


async def get_proposal(conn: AsyncConnection, proposal_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(proposals).where(proposals.c.id == proposal_id))).mappings().first()
    return dict(row) if row else None


async def get_timeline(conn: AsyncConnection, proposal_id: str) -> list[dict[str, Any]]:
    rows = (
        (
            await conn.execute(
                select(timeline).where(timeline.c.proposal_id == proposal_id).order_by(timeline.c.at, timeline.c.id)
            )
        )
        .mappings()
        .all()
    )
    return [dict(row) for row in rows]
