"""Progress's tables: the lifecycle read model of every proposal, its timeline, and the handling
records progress owns (会办意见, 答复, 评价, 举措)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.progress import mapping
from services.progress.domain import OPEN_STAGES, Dossier
from shared import db
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
    Column("form", String(20), nullable=True),
    Column("suggestion_count", Integer, nullable=True),
    Column("co_opinion_due", Date, nullable=True),
    Column("is_key", Boolean, nullable=False, server_default=text("false")),
    Column("leaders", JSON, nullable=True),
    Column("round", Integer, nullable=False, server_default=text("1")),
    Column("evaluation_due", Date, nullable=True),
    Column("answered_at", UTCDateTime(), nullable=True),
    Column("closed_at", UTCDateTime(), nullable=True),
    Column("implemented_at", UTCDateTime(), nullable=True),
    Column("implementation_round", Integer, nullable=False, server_default=text("0")),
    Column("implementation_evaluation", String(20), nullable=True),
    Column("implementation_evaluation_due", Date, nullable=True),
    Column("measure_request_due", Date, nullable=True),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("proposal_id", String(100), nullable=False, index=True),
    Column("event_id", String(100), nullable=False, unique=True),
    Column("type", String(200), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", JSON, nullable=False),
    Column("summary", Text, nullable=False),
    Column("data", JSON, nullable=False),
    Column("source_offset", BigInteger, nullable=True),
)

co_opinions = Table(
    "co_opinions",
    metadata,
    Column("proposal_id", String(100), nullable=False),
    Column("unit", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("submitted_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("proposal_id", "unit"),
)

replies = Table(
    "replies",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("proposal_id", String(100), nullable=False, index=True),
    Column("unit", String(200), nullable=False),
    Column("round", Integer, nullable=False),
    Column("classification", String(20), nullable=False),
    Column("text", Text, nullable=False),
    Column("adoptions", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("reply_due", Date, nullable=True),
    Column("drafted_at", UTCDateTime(), nullable=False),
    Column("reviewed_at", UTCDateTime(), nullable=True),
    Column("review_reason", Text, nullable=True),
    Column("public", Boolean, nullable=False),
)

evaluations = Table(
    "evaluations",
    metadata,
    Column("proposal_id", String(100), nullable=False),
    Column("round", Integer, nullable=False),
    Column("signer_id", String(200), nullable=False),
    Column("handling_grade", String(50), nullable=False),
    Column("result_grade", String(50), nullable=False),
    Column("comment", Text, nullable=False),
    Column("submitted_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("proposal_id", "round", "signer_id"),
)

measures = Table(
    "measures",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("proposal_id", String(100), nullable=False, index=True),
    Column("reply_id", String(100), nullable=False),
    Column("text", Text, nullable=False),
    Column("owner_unit", String(200), nullable=False, index=True),
    Column("due", Date, nullable=False),
    Column("status", String(20), nullable=False),
    Column("note", Text, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("done_at", UTCDateTime(), nullable=True),
    Column("reopened", Integer, nullable=False, server_default=text("0")),
    Column("promised_at", UTCDateTime(), nullable=True),
)

implementation_evaluations = Table(
    "implementation_evaluations",
    metadata,
    Column("proposal_id", String(100), nullable=False),
    Column("round", Integer, nullable=False),
    Column("signer_id", String(200), nullable=False),
    Column("grade", String(50), nullable=False),
    Column("comment", Text, nullable=False),
    Column("reopened_measures", JSON, nullable=False),
    Column("new_measure_requested", Boolean, nullable=False),
    Column("submitted_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("proposal_id", "round", "signer_id"),
)


async def get_proposal(conn: AsyncConnection, proposal_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """The proposal's row; with `lock`, held until the transaction ends on PostgreSQL (see :func:`load_dossiers`)."""
    return await db.row_by(conn, proposals, proposal_id, lock=lock)


async def prefetch_proposals(conn: AsyncConnection, proposal_ids: list[str]) -> None:
    """Read a batch's proposals in one statement, for the first `get_proposal` of each in this transaction,
    locked until it ends: another replica may be folding another topic's event of the same proposal
    (docs/performance.md, "Replicas")."""
    await db.prefetch_by_id(conn, proposals, proposal_ids, lock=True)


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


async def _rows(conn: AsyncConnection, table: Table, proposal_ids: list[str] | None) -> list[dict[str, Any]]:
    query = select(table)
    if proposal_ids is not None:
        query = query.where(table.c.proposal_id.in_(proposal_ids))
    return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def load_dossiers(
    conn: AsyncConnection, proposal_ids: list[str] | None = None, *, lock: bool = False
) -> list[Dossier]:
    """Proposals with their replies, co-opinions, evaluations and measures (all, or the ids given).

    With `lock` (the ids given), on PostgreSQL the proposals' rows stay locked until the transaction ends
    (`FOR UPDATE`, in id order): the service's consumers and doors each fold a proposal in a transaction
    of their own (a unit's report beside its assignment's events, on one replica or several), and
    without the lock the later commit would write back a state read before the other's change."""
    if lock and proposal_ids is not None and conn.dialect.name == "postgresql":
        query = select(proposals).order_by(proposals.c.id).with_for_update()
    else:
        query = select(proposals).order_by(proposals.c.submitted_at, proposals.c.id)
    if proposal_ids is not None:
        query = query.where(proposals.c.id.in_(proposal_ids))
    rows = [dict(row) for row in (await conn.execute(query)).mappings().all()]
    # Locked in id order (as every batch locks), listed in the order of submission all the same.
    rows.sort(key=lambda row: (row["submitted_at"], row["id"]))
    found = {row["id"]: mapping.dossier(row) for row in rows}
    ids = None if proposal_ids is None else list(found)
    # Within a round, a returned reply comes before its redraft even when both carry the same time.
    order = {"returned": 0, "approved": 1, "drafted": 1}
    for row in sorted(await _rows(conn, replies, ids), key=lambda r: (r["round"], order[r["status"]], r["drafted_at"])):
        found[row["proposal_id"]].replies.append(mapping.reply(row))
    for row in await _rows(conn, co_opinions, ids):
        found[row["proposal_id"]].co_opinions.append(mapping.co_opinion(row))
    for row in await _rows(conn, evaluations, ids):
        found[row["proposal_id"]].evaluations.append(mapping.evaluation(row))
    for row in sorted(await _rows(conn, measures, ids), key=lambda r: (r["due"], r["id"])):
        found[row["proposal_id"]].measures.append(mapping.measure(row))
    for row in sorted(
        await _rows(conn, implementation_evaluations, ids), key=lambda r: (r["round"], r["submitted_at"])
    ):
        found[row["proposal_id"]].implementation_evaluations.append(mapping.implementation_verdict(row))
    return list(found.values())


async def load_dossier(conn: AsyncConnection, proposal_id: str, *, lock: bool = False) -> Dossier | None:
    """The proposal with its records: read ahead by :func:`prefetch_dossiers` for the first load of it
    in this transaction (locked), else six statements (locked with `lock`, see :func:`load_dossiers`)."""
    read: dict[str, Dossier | None] | None = db.transaction_state(conn, _DOSSIERS_READ)
    if read is not None and proposal_id in read:
        return read.pop(proposal_id)
    found = await load_dossiers(conn, [proposal_id], lock=lock)
    return found[0] if found else None


_DOSSIERS_READ = "progress.dossiers-read"


async def prefetch_dossiers(conn: AsyncConnection, proposal_ids: list[str]) -> None:
    """Read a batch's dossiers in one statement per table (six, whatever the batch's size), for the first
    :func:`load_dossier` of each in this transaction; each is then gone, so a later load reads what the
    transaction wrote (an id without a proposal is remembered as none). Whoever writes a dossier's
    rows in that transaction drops it first (:func:`forget_dossiers`)."""
    read: dict[str, Dossier | None] | None = db.transaction_state(conn, _DOSSIERS_READ, dict)
    if read is None:
        return
    wanted = sorted({proposal_id for proposal_id in proposal_ids if proposal_id not in read})
    if wanted:
        found = {dossier.id: dossier for dossier in await load_dossiers(conn, wanted, lock=True)}
        read.update({proposal_id: found.get(proposal_id) for proposal_id in wanted})


def forget_dossiers(conn: AsyncConnection, proposal_ids: list[str]) -> None:
    """Drop these dossiers read ahead (their rows are being written)."""
    read: dict[str, Dossier | None] | None = db.transaction_state(conn, _DOSSIERS_READ)
    if read:
        for proposal_id in proposal_ids:
            read.pop(proposal_id, None)


async def open_proposal_ids(conn: AsyncConnection) -> list[str]:
    """Proposals with open steps: handled and not yet implemented."""
    # 落实评价 keeps an implemented proposal open until its round is opened and closed.
    evaluating = proposals.c.implementation_evaluation.in_(["due", "open"])
    query = (
        select(proposals.c.id)
        .where(proposals.c.stage.in_([stage.value for stage in OPEN_STAGES]))
        .where(or_(proposals.c.implemented_at.is_(None), evaluating))
    )
    return list((await conn.execute(query)).scalars())


async def timeline_has(conn: AsyncConnection, event_id: str) -> bool:
    query = select(timeline.c.id).where(timeline.c.event_id == event_id).limit(1)
    return (await conn.execute(query)).first() is not None


async def proposals_with_public_replies(conn: AsyncConnection) -> list[str]:
    query = select(replies.c.proposal_id).where(replies.c.public.is_(True)).distinct()
    return list((await conn.execute(query)).scalars())
