"""Intake's tables: proposals and the filing-number counter, plus the messaging plumbing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Integer, String, Table, Text, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import UTCDateTime, add_plumbing_tables, new_metadata

metadata = new_metadata()
add_plumbing_tables(metadata)

proposals = Table(
    "proposals",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("category", String(50), nullable=False),
    Column("session_kind", String(20), nullable=False),
    Column("first_proposer_id", String(200), nullable=False, index=True),
    Column("first_proposer", JSON, nullable=False),
    Column("cosigners", JSON, nullable=False),
    Column("suggestions", JSON, nullable=False),
    Column("series_id", String(100), nullable=True),
    Column("status", String(20), nullable=False, index=True),
    Column("filing_number", String(30), nullable=True, unique=True),
    Column("review_reason", Text, nullable=True),
    Column("submitted_by", JSON, nullable=False),
    Column("submitted_via", String(200), nullable=False),
    Column("submitted_at", UTCDateTime(), nullable=False),
    Column("reviewed_at", UTCDateTime(), nullable=True),
)

filing_counters = Table(
    "filing_counters",
    metadata,
    Column("year", Integer, primary_key=True),
    Column("last", Integer, nullable=False),
)


async def insert_proposal(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await conn.execute(proposals.insert().values(**row))


async def get_proposal(conn: AsyncConnection, proposal_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(proposals).where(proposals.c.id == proposal_id))).mappings().first()
    return dict(row) if row else None


async def list_proposals(
    conn: AsyncConnection, *, proposer_id: str | None, status: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    query = select(proposals).order_by(proposals.c.submitted_at.desc(), proposals.c.id)
    if proposer_id is not None:
        query = query.where(proposals.c.first_proposer_id == proposer_id)
    if status is not None:
        query = query.where(proposals.c.status == status)
    rows = (await conn.execute(query.limit(limit).offset(offset))).mappings().all()
    return [dict(row) for row in rows]


async def next_filing_sequence(conn: AsyncConnection, year: int) -> int:
    """The next 案号 sequence of a year, taken atomically inside the caller's transaction."""
    insert_stmt = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(filing_counters)
    stmt = (
        insert_stmt.values(year=year, last=1)
        .on_conflict_do_update(index_elements=["year"], set_={"last": filing_counters.c.last + 1})
        .returning(filing_counters.c.last)
    )
    return int((await conn.execute(stmt)).scalar_one())


async def record_review(
    conn: AsyncConnection, proposal_id: str, *, status: str, filing_number: str | None, reason: str | None, at: datetime
) -> None:
    await conn.execute(
        update(proposals)
        .where(proposals.c.id == proposal_id)
        .values(status=status, filing_number=filing_number, review_reason=reason, reviewed_at=at)
    )
