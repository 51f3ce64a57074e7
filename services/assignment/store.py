"""Assignment's tables: units catalog, filed proposals it must route, assignments."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Date, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import UTCDateTime, add_plumbing_tables, new_metadata

metadata = new_metadata()
add_plumbing_tables(metadata)

units = Table(
    "units",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("short_name", String(100), nullable=False),
    Column("kind", String(30), nullable=False),
)

proposals = Table(
    "proposals",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("category", String(50), nullable=False),
    Column("status", String(20), nullable=False),
)

assignments = Table(
    "assignments",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("proposal_id", String(100), nullable=False, index=True),
    Column("status", String(20), nullable=False),
    Column("form", String(20), nullable=False),
    Column("lead_unit", String(100), nullable=False),
    Column("co_units", JSON, nullable=False),
    Column("reasons", JSON, nullable=False),
    Column("reply_due", Date, nullable=True),
    Column("co_opinion_due", Date, nullable=True),
    Column("dispute_until", Date, nullable=True),
    Column("suggested_at", UTCDateTime(), nullable=False),
    Column("assigned_at", UTCDateTime(), nullable=True),
)


async def unit_catalog(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    rows = (await conn.execute(select(units).order_by(units.c.id))).mappings().all()
    return {row["id"]: dict(row) for row in rows}


async def current_assignment(conn: AsyncConnection, proposal_id: str) -> dict[str, Any] | None:
    row = (
        (
            await conn.execute(
                select(assignments)
                .where(assignments.c.proposal_id == proposal_id)
                .order_by(assignments.c.suggested_at.desc())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def get_proposal(conn: AsyncConnection, proposal_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(proposals).where(proposals.c.id == proposal_id))).mappings().first()
    return dict(row) if row else None
