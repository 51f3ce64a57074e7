"""Intake's tables: proposals, their signers and the filing-number counter, plus the messaging plumbing."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    Integer,
    String,
    Table,
    Text,
    bindparam,
    delete,
    false,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import db
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
    Column("submitted_at", UTCDateTime(), nullable=True),
    Column("reviewed_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=True),
    Column("cosign_due", Date, nullable=True),
    Column("review_started_at", UTCDateTime(), nullable=True),
    Column("not_filed_ground", String(200), nullable=True),
    Column("converted_to_opinion", Boolean, nullable=False, server_default=false()),
    Column("merged_into", String(100), nullable=True, index=True),
    Column("return_reason", Text, nullable=True),
    Column("withdraw_reason", Text, nullable=True),
)

signers = Table(
    "signers",
    metadata,
    Column("proposal_id", String(100), primary_key=True),
    Column("signer_id", String(200), primary_key=True, index=True),
    Column("is_first", Boolean, nullable=False),
    Column("confirmed_at", UTCDateTime(), nullable=True),
)
"""提案者: the first proposer and the cosigners of each proposal; `confirmed_at` is the 联名确认."""

filing_counters = Table(
    "filing_counters",
    metadata,
    Column("year", Integer, primary_key=True),
    Column("last", Integer, nullable=False),
)


async def insert_proposal(conn: AsyncConnection, row: dict[str, Any]) -> None:
    await db.insert_rows(conn, proposals, row)


async def get_proposal(conn: AsyncConnection, proposal_id: str) -> dict[str, Any] | None:
    return await db.row_by(conn, proposals, proposal_id)


async def update_proposal(conn: AsyncConnection, proposal_id: str, **values: Any) -> None:
    if not values:  # an empty draft or an edit that changes nothing: no statement (an empty SET is invalid SQL)
        return
    await db.update_by(conn, proposals, proposal_id, values)


async def list_proposals(
    conn: AsyncConnection,
    *,
    signer_id: str | None,
    status: str | None,
    limit: int,
    offset: int,
    series_id: str | None = None,
) -> list[dict[str, Any]]:
    """A member's own proposals (as any signer; drafts only to their first proposer), or, with no
    `signer_id`, every proposal that has left its draft; optionally only one series (系列提案)."""
    query = select(proposals).order_by(proposals.c.created_at.desc(), proposals.c.id)
    if signer_id is not None:
        query = query.where(proposals.c.id.in_(select(signers.c.proposal_id).where(signers.c.signer_id == signer_id)))
    else:
        query = query.where(proposals.c.status != "draft")
    if status is not None:
        query = query.where(proposals.c.status == status)
    if series_id is not None:
        query = query.where(proposals.c.series_id == series_id)
    rows = (await conn.execute(query.limit(limit).offset(offset))).mappings().all()
    return [dict(row) for row in rows]


async def filed_in_year(conn: AsyncConnection, year: int) -> list[dict[str, Any]]:
    """The proposals filed under a year's 案号 (YYYY-NNNN)."""
    query = (
        select(proposals)
        .where(proposals.c.status == "filed")
        .where(proposals.c.filing_number.like(f"{year}-%"))
        .order_by(proposals.c.filing_number)
    )
    return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def merged_into(conn: AsyncConnection, proposal_id: str) -> list[str]:
    query = db.built_once(
        ("intake-merged-into",),
        lambda: select(proposals.c.id).where(proposals.c.merged_into == bindparam("into")).order_by(proposals.c.id),
    )
    return list((await conn.execute(query, {"into": proposal_id})).scalars())


async def transition(
    conn: AsyncConnection, proposal_id: str, from_status: StrEnum, to_status: StrEnum, **values: Any
) -> bool:
    """Move a proposal from one status to another; False if it was no longer in `from_status`
    (a concurrent request or sweep got there first)."""
    query = db.built_once(
        ("intake-transition",),
        lambda: (
            update(proposals)
            .where(proposals.c.id == bindparam("match_id"))
            .where(proposals.c.status == bindparam("from_status"))
        ),
    )
    parameters = {**values, "status": to_status.value, "match_id": proposal_id, "from_status": from_status.value}
    result = await conn.execute(query, parameters)
    return bool(result.rowcount == 1)


async def insert_proposal_with_signers(
    conn: AsyncConnection, row: dict[str, Any], signer_rows: list[dict[str, Any]]
) -> None:
    """A new proposal and its signers in one statement on PostgreSQL (the proposal's `INSERT` as a
    data-modifying CTE of the signers' `INSERT`): one round trip instead of two."""
    new_proposal = insert(proposals).values(row).cte("new_proposal")
    await conn.execute(insert(signers).values(signer_rows).add_cte(new_proposal))


async def transition_with_signers(
    conn: AsyncConnection,
    proposal_id: str,
    from_status: StrEnum,
    to_status: StrEnum,
    signer_rows: list[dict[str, Any]],
    **values: Any,
) -> bool:
    """:func:`transition` and the changed signers' `is_first`/`confirmed_at` in one statement on
    PostgreSQL: the proposal's compare-and-set `UPDATE … RETURNING` as a CTE, each signer's `UPDATE` a CTE
    that writes only if the compare-and-set did (`EXISTS` on it). False, and nothing written, if the
    proposal was no longer in `from_status`."""
    moved = (
        update(proposals)
        .where(proposals.c.id == proposal_id)
        .where(proposals.c.status == from_status.value)
        .values(**values, status=to_status.value)
        .returning(proposals.c.id)
        .cte("moved")
    )
    written = select(moved.c.id).exists()
    changes = [
        update(signers)
        .where(signers.c.proposal_id == proposal_id)
        .where(signers.c.signer_id == row["signer_id"])
        .where(written)
        .values(is_first=row["is_first"], confirmed_at=row["confirmed_at"])
        .cte(f"signer_{n}")
        for n, row in enumerate(signer_rows)
    ]
    query = select(func.count()).select_from(moved).add_cte(*changes)
    return bool((await conn.execute(query)).scalar_one() == 1)


async def awaiting_cosigners(conn: AsyncConnection, *, due_before: date) -> list[dict[str, Any]]:
    """Joint proposals still awaiting cosigners whose window ended before `due_before`."""
    query = (
        select(proposals)
        .where(proposals.c.status == "awaiting_cosigners")
        .where(proposals.c.cosign_due < due_before)
        .order_by(proposals.c.cosign_due, proposals.c.id)
    )
    return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def signers_of(conn: AsyncConnection, proposal_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {proposal_id: [] for proposal_id in proposal_ids}
    query = select(signers).where(signers.c.proposal_id.in_(proposal_ids))
    for row in (await conn.execute(query)).mappings().all():
        found[row["proposal_id"]].append(dict(row))
    return found


async def get_proposal_with_signers(
    conn: AsyncConnection, proposal_id: str, *, filing_year: int | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]], bool, int | None] | None:
    """The proposal, its signers (提案者) and whether any proposal is merged into it (并案), in one
    statement (a left join: one row per signer, or one without a signer), or None if there is none. One
    round trip instead of two on PostgreSQL, and a filing (立案) that finds nothing merged into it needs no
    statement to list them.

    With `filing_year` (PostgreSQL only), the statement also takes that year's next 案号 sequence (the
    counter's upsert of :func:`next_filing_sequence` as a data-modifying CTE) and returns it last; taken
    even if there is no such proposal, in the caller's transaction, which a refusal rolls back."""
    proposals_merged = proposals.alias("proposals_merged")
    take = filing_year is not None

    def build() -> Any:
        merged = select(proposals_merged.c.id).where(proposals_merged.c.merged_into == proposals.c.id).exists()
        query = (
            select(
                proposals, signers.c.signer_id, signers.c.is_first, signers.c.confirmed_at, merged.label("merged_any")
            )
            .select_from(proposals.outerjoin(signers, signers.c.proposal_id == proposals.c.id))
            .where(proposals.c.id == bindparam("proposal_id"))
            .order_by(signers.c.signer_id)
        )
        if not take:
            return query
        taken = _take_sequence("postgresql").cte("taken_sequence")
        return query.add_columns(select(taken.c.last).scalar_subquery().label("filing_sequence")).add_cte(taken)

    query = db.built_once(("intake-proposal-with-signers", take), build)
    parameters: dict[str, Any] = {"proposal_id": proposal_id}
    if take:
        parameters["year"] = filing_year
    rows = (await conn.execute(query, parameters)).mappings().all()
    if not rows:
        return None
    own = ("signer_id", "is_first", "confirmed_at")
    extra = ("merged_any", "filing_sequence")
    proposal = {key: value for key, value in rows[0].items() if key not in own and key not in extra}
    found = [
        {"proposal_id": proposal_id, **{key: row[key] for key in own}} for row in rows if row["signer_id"] is not None
    ]
    sequence = rows[0]["filing_sequence"] if take else None
    return proposal, found, bool(rows[0]["merged_any"]), None if sequence is None else int(sequence)


async def get_signers(conn: AsyncConnection, proposal_id: str) -> list[dict[str, Any]]:
    return await db.rows_by(conn, signers, proposal_id, "proposal_id")


async def replace_signers(
    conn: AsyncConnection, proposal_id: str, first_id: str, cosigner_ids: list[str], at: Any
) -> None:
    """The signers as the proposal names them; the first proposer signs by submitting."""
    await conn.execute(delete(signers).where(signers.c.proposal_id == proposal_id))
    rows = [{"proposal_id": proposal_id, "signer_id": first_id, "is_first": True, "confirmed_at": at}]
    rows += [
        {"proposal_id": proposal_id, "signer_id": c, "is_first": False, "confirmed_at": None} for c in cosigner_ids
    ]
    await conn.execute(signers.insert(), rows)


async def confirm_signer(conn: AsyncConnection, proposal_id: str, signer_id: str, at: datetime) -> None:
    await conn.execute(
        update(signers)
        .where(signers.c.proposal_id == proposal_id)
        .where(signers.c.signer_id == signer_id)
        .values(confirmed_at=at)
    )


def _take_sequence(dialect: str) -> Any:
    """The counter's upsert that takes a year's next 案号 sequence (`year` bound), returning it."""
    return (
        (postgresql.insert if dialect == "postgresql" else sqlite.insert)(filing_counters)
        .values(year=bindparam("year"), last=1)
        .on_conflict_do_update(index_elements=["year"], set_={"last": filing_counters.c.last + 1})
        .returning(filing_counters.c.last)
    )


async def next_filing_sequence(conn: AsyncConnection, year: int) -> int:
    """The next 案号 sequence of a year, taken atomically inside the caller's transaction."""
    dialect = conn.dialect.name
    stmt = db.built_once(("intake-filing-sequence", dialect), lambda: _take_sequence(dialect))
    return int((await conn.execute(stmt, {"year": year})).scalar_one())
