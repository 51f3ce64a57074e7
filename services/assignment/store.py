"""Assignment's tables: units and leaders catalogs, routing rules, the proposals it routes,
assignments, units' responses (签收/异议) and key-proposal designations (重点提案)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    select,
    true,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import db
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
    Column("active", Boolean, nullable=False, server_default=true()),
)

leaders = Table(
    "leaders",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("active", Boolean, nullable=False),
)

routing_config = Table(
    "routing_config",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("document", JSON, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("updated_by", String(200), nullable=False),
)
"""One row: the routing rules as admins last saved them (seeded from units.yaml)."""

proposals = Table(
    "proposals",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("category", String(50), nullable=False),
    Column("status", String(20), nullable=False),
    Column("series_id", String(100), nullable=True, index=True),
    Column("suggestions", JSON, nullable=True),
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
    Column("split_units", JSON, nullable=True),
    Column("previous_assignment_id", String(100), nullable=True),
)

unit_responses = Table(
    "unit_responses",
    metadata,
    Column("assignment_id", String(100), ForeignKey("assignments.id"), primary_key=True),
    Column("unit", String(100), primary_key=True),
    Column("response", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("deemed", Boolean, nullable=False),
    Column("actor_id", String(200), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
)
"""One answer per unit and assignment: the primary key is the rule that a unit answers once."""

key_proposals = Table(
    "key_proposals",
    metadata,
    Column("proposal_id", String(100), primary_key=True),
    Column("series_id", String(100), nullable=True),
    Column("supervising_leader", String(100), nullable=False),
    Column("leading_leader", String(100), nullable=True),
    Column("designated_by", String(200), nullable=False),
    Column("designated_at", UTCDateTime(), nullable=False),
)


_UNIT_CATALOG = select(units).order_by(units.c.id)
_CURRENT_ASSIGNMENT = (
    select(assignments)
    .where(assignments.c.proposal_id == bindparam("proposal_id"))
    .order_by(assignments.c.suggested_at.desc())
    .limit(1)
)


_CATALOGS = "proposalflow.assignment.catalogs"


def read_catalogs_once(conn: AsyncConnection) -> None:
    """For the rest of this transaction, the units and leaders catalogs and the routing rules are read once
    and then served from memory: a consumer's batch of filings routes each against the same catalogs, and
    on PostgreSQL each read is a round trip. Only a consumer's batch asks for this (its `prepare`); it
    never writes the catalogs, which change over HTTP in transactions of their own, so the next batch
    sees a change. Nothing is kept past the transaction (shared/db.py `transaction_state`)."""
    db.transaction_state(conn, _CATALOGS, dict)


async def _read_once(conn: AsyncConnection, name: str, read: Callable[[], Awaitable[Any]]) -> Any:
    memo: dict[str, Any] | None = db.transaction_state(conn, _CATALOGS)
    if memo is None:
        return await read()
    if name not in memo:
        memo[name] = await read()
    held = memo[name]
    # The rows are shared by the batch's records, which only read them (routing, checks).
    return dict(held) if held is not None else None


async def unit_catalog(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    async def read() -> dict[str, dict[str, Any]]:
        rows = (await conn.execute(_UNIT_CATALOG)).mappings().all()
        return {row["id"]: dict(row) for row in rows}

    found: dict[str, dict[str, Any]] = await _read_once(conn, "units", read)
    return found


async def leader_catalog(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
    async def read() -> dict[str, dict[str, Any]]:
        rows = (await conn.execute(select(leaders).order_by(leaders.c.id))).mappings().all()
        return {row["id"]: dict(row) for row in rows}

    found: dict[str, dict[str, Any]] = await _read_once(conn, "leaders", read)
    return found


async def routing_document(conn: AsyncConnection) -> dict[str, Any] | None:
    async def read() -> dict[str, Any] | None:
        row = (await conn.execute(select(routing_config.c.document).where(routing_config.c.id == 1))).first()
        return dict(row[0]) if row else None

    found: dict[str, Any] | None = await _read_once(conn, "routing", read)
    return found


async def current_assignment(conn: AsyncConnection, proposal_id: str) -> dict[str, Any] | None:
    """The assignment in force: the latest one (a reassignment supersedes the one before)."""
    row = (await conn.execute(_CURRENT_ASSIGNMENT, {"proposal_id": proposal_id})).mappings().first()
    return dict(row) if row else None


async def list_assignments(
    conn: AsyncConnection, *, status: str | None, unit: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Assignments in force (not superseded), newest first; for a unit, only those naming it."""
    query = select(assignments).where(assignments.c.status != "superseded")
    if status:
        query = query.where(assignments.c.status == status)
    query = query.order_by(assignments.c.suggested_at.desc(), assignments.c.id)
    rows = [dict(row) for row in (await conn.execute(query)).mappings()]
    if unit is not None:
        # Units are in JSON lists, so the filter is in Python; a unit sees a few dozen a year.
        rows = [row for row in rows if unit in [row["lead_unit"], *row["co_units"], *(row["split_units"] or [])]]
    return rows[offset : offset + limit]


async def responses_of(conn: AsyncConnection, assignment_id: str) -> dict[str, dict[str, Any]]:
    query = select(unit_responses).where(unit_responses.c.assignment_id == assignment_id)
    return {row["unit"]: dict(row) for row in (await conn.execute(query)).mappings()}


async def awaiting_answers(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Assignments still awaiting units' answers (assigned or disputed), oldest window first; whether a
    window has closed is the domain's rule (`Assignment.window_closed`)."""
    query = (
        select(assignments)
        .where(assignments.c.status.in_(["assigned", "disputed"]))
        .order_by(assignments.c.dispute_until, assignments.c.id)
    )
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def get_proposal(conn: AsyncConnection, proposal_id: str) -> dict[str, Any] | None:
    return await db.row_by(conn, proposals, proposal_id)


async def prefetch_proposals(conn: AsyncConnection, proposal_ids: list[str]) -> None:
    """Read a batch's proposals in one statement, for the first `get_proposal` of each in this transaction
    (shared/db.py `prefetch_by_id`; proposals are written only through its helpers)."""
    await db.prefetch_by_id(conn, proposals, proposal_ids)


async def proposals_in(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = (await conn.execute(select(proposals).where(proposals.c.id.in_(list(ids))))).mappings()
    return {row["id"]: dict(row) for row in rows}


async def proposals_of_series(conn: AsyncConnection, series_id: str) -> list[dict[str, Any]]:
    query = select(proposals).where(proposals.c.series_id == series_id).order_by(proposals.c.id)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def key_designations(
    conn: AsyncConnection, *, leader: str | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    query = select(key_proposals)
    if leader is not None:
        query = query.where((key_proposals.c.supervising_leader == leader) | (key_proposals.c.leading_leader == leader))
    query = query.order_by(key_proposals.c.designated_at.desc(), key_proposals.c.proposal_id)
    return [dict(row) for row in (await conn.execute(query.limit(limit).offset(offset))).mappings()]


async def learned_history(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Past assignments confirmed by the dispatcher or accepted: proposal text and lead unit."""
    query = (
        select(proposals.c.title, proposals.c.body, proposals.c.suggestions, assignments.c.lead_unit)
        .join(assignments, assignments.c.proposal_id == proposals.c.id)
        .where(assignments.c.status.in_(["assigned", "accepted"]))
    )
    return [dict(row) for row in (await conn.execute(query)).mappings()]
