"""Notify's tables: what it knows of each proposal, the contacts directory (通讯录), the in-app inbox
and the outside-channel deliveries with their retry state."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from services.notify.domain import Contact, ProposalView
from services.notify.rules import Channel
from shared import db
from shared.db import UTCDateTime, add_plumbing_tables, new_metadata
from shared.events import UnitRef

metadata = new_metadata()
add_plumbing_tables(metadata)

proposals = Table(
    "proposals",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("signers", JSON, nullable=False),
    Column("filing_number", String(100), nullable=True),
    Column("lead_unit", JSON, nullable=True),
    Column("co_units", JSON, nullable=True),
    Column("split_units", JSON, nullable=True),
    Column("supervising_leader", String(200), nullable=True),
    Column("leading_leader", String(200), nullable=True),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("email", String(320), nullable=True),
    Column("phone", String(40), nullable=True),
    Column("webhook_url", String(2000), nullable=True),
    Column("channels", JSON, nullable=True),
    Column("quiet_start", String(5), nullable=True),
    Column("quiet_end", String(5), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
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

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("recipient", String(200), nullable=False),
    Column("channel", String(20), nullable=False),
    Column("address", String(2000), nullable=False),
    Column("proposal_id", String(100), nullable=False),
    Column("cause_event_id", String(200), nullable=False),
    Column("cause_event_type", String(200), nullable=False),
    Column("correlation_id", String(200), nullable=True),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("link", String(2000), nullable=False),
    Column("status", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("claimed_until", UTCDateTime(), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("finished_at", UTCDateTime(), nullable=True),
    UniqueConstraint("cause_event_id", "recipient", "channel", name="uq_deliveries_once"),
    Index("ix_deliveries_due", "status", "next_attempt_at"),
)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


# Proposals ----------------------------------------------------------------------------------------


def _units(value: Any) -> tuple[UnitRef, ...]:
    return tuple(UnitRef.model_validate(unit) for unit in value or [])


async def get_proposal(conn: AsyncConnection, proposal_id: str) -> ProposalView | None:
    row = await db.row_by(conn, proposals, proposal_id)
    if row is None:
        return None
    return ProposalView(
        id=row["id"],
        title=row["title"],
        signers=tuple(row["signers"]),
        filing_number=row["filing_number"],
        lead_unit=UnitRef.model_validate(row["lead_unit"]) if row["lead_unit"] else None,
        co_units=_units(row["co_units"]),
        split_units=_units(row["split_units"]),
        supervising_leader=row["supervising_leader"],
        leading_leader=row["leading_leader"],
    )


def _proposal_values(view: ProposalView) -> dict[str, Any]:
    return {
        "title": view.title,
        "signers": list(view.signers),
        "filing_number": view.filing_number,
        "lead_unit": view.lead_unit.model_dump() if view.lead_unit else None,
        "co_units": [unit.model_dump() for unit in view.co_units],
        "split_units": [unit.model_dump() for unit in view.split_units],
        "supervising_leader": view.supervising_leader,
        "leading_leader": view.leading_leader,
    }


async def prefetch_proposals(conn: AsyncConnection, proposal_ids: list[str]) -> list[dict[str, Any]]:
    """Read a batch's proposals in one statement: each serves the first `get_proposal` of it in this
    transaction (shared/db.py `prefetch_by_id`), locked until it ends: another replica may be handling
    another topic's event of the same proposal. Returns the rows found."""
    return await db.prefetch_by_id(conn, proposals, proposal_ids, lock=True)


async def insert_proposal(conn: AsyncConnection, view: ProposalView) -> None:
    await db.insert_rows(conn, proposals, {"id": view.id, **_proposal_values(view)})


async def insert_proposals(conn: AsyncConnection, views: list[ProposalView]) -> None:
    """New proposals in one statement."""
    if views:
        await db.insert_rows(conn, proposals, [{"id": view.id, **_proposal_values(view)} for view in views])


async def save_proposals(conn: AsyncConnection, changes: list[tuple[ProposalView, ProposalView]]) -> None:
    """Write what each (before, after) pair changed, as :func:`save_proposal` does, the rows that change
    the same columns in one statement (shared/db.py `update_rows`)."""
    changed: dict[Any, dict[str, Any]] = {}
    for before, after in changes:
        old, new = _proposal_values(before), _proposal_values(after)
        values = {name: value for name, value in new.items() if old[name] != value}
        if values:
            changed[after.id] = values
    await db.update_rows(conn, proposals, changed)


async def save_proposal(conn: AsyncConnection, before: ProposalView, after: ProposalView) -> None:
    """Write only what the event changed: a parked event re-run beside the consumer may update the same
    proposal at the same moment, and writing the whole row would undo the other's change."""
    old, new = _proposal_values(before), _proposal_values(after)
    changed = {name: value for name, value in new.items() if old[name] != value}
    if changed:
        await db.update_by(conn, proposals, after.id, changed)


# Contacts -----------------------------------------------------------------------------------------


def _clock(value: str | None) -> time | None:
    return time.fromisoformat(value) if value else None


def contact_of(row: Any) -> Contact:
    start, end = _clock(row["quiet_start"]), _clock(row["quiet_end"])
    return Contact(
        id=row["id"],
        email=row["email"],
        phone=row["phone"],
        webhook_url=row["webhook_url"],
        channels=frozenset(Channel(channel) for channel in row["channels"]) if row["channels"] is not None else None,
        quiet_hours=(start, end) if start and end else None,
    )


_CONTACTS_IN = select(contacts).where(contacts.c.id.in_(bindparam("ids", expanding=True)))
_CONTACTS_READ = "notify.contacts-read"


async def contacts_by_id(conn: AsyncConnection, ids: list[str]) -> dict[str, Contact]:
    """The contacts of these ids that exist. Those :func:`prefetch_contacts` read for this transaction
    (found or not) without a statement; the consumer's transaction writes no contact, so they stay true."""
    if not ids:
        return {}
    read: dict[str, Contact | None] | None = db.transaction_state(conn, _CONTACTS_READ)
    unknown = [contact_id for contact_id in ids if read is None or contact_id not in read]
    found: dict[str, Contact | None] = {}
    if unknown:
        rows = (await conn.execute(_CONTACTS_IN, {"ids": unknown})).mappings().all()
        found = {row["id"]: contact_of(row) for row in rows}
    if read is not None:
        found.update({contact_id: read[contact_id] for contact_id in ids if contact_id in read})
    return {contact_id: contact for contact_id, contact in found.items() if contact is not None}


async def prefetch_contacts(conn: AsyncConnection, ids: set[str]) -> None:
    """Read a batch's possible recipients' contacts in one statement, for :func:`contacts_by_id` in this
    transaction (an id without a contact is remembered as none)."""
    read: dict[str, Contact | None] | None = db.transaction_state(conn, _CONTACTS_READ, dict)
    wanted = sorted(ids - set(read or ()))
    if read is None or not wanted:
        return
    rows = (await conn.execute(_CONTACTS_IN, {"ids": wanted})).mappings().all()
    found = {row["id"]: contact_of(row) for row in rows}
    read.update({contact_id: found.get(contact_id) for contact_id in wanted})


async def get_contact(conn: AsyncConnection, contact_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(contacts).where(contacts.c.id == contact_id))).mappings().first()
    return dict(row) if row else None


async def list_contacts(
    conn: AsyncConnection, *, kind: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    query = select(contacts)
    count = select(func.count()).select_from(contacts)
    if kind:
        query, count = query.where(contacts.c.kind == kind), count.where(contacts.c.kind == kind)
    rows = (await conn.execute(query.order_by(contacts.c.id).limit(limit).offset(offset))).mappings().all()
    return [dict(row) for row in rows], int((await conn.execute(count)).scalar_one())


async def put_contact(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Create or replace a contact; True if it was created."""
    existing = await get_contact(conn, values["id"])
    if existing is None:
        await conn.execute(insert(contacts).values(**values))
        return True
    await conn.execute(update(contacts).where(contacts.c.id == values["id"]).values(**values))
    return False


async def set_preferences(conn: AsyncConnection, contact_id: str, values: dict[str, Any]) -> dict[str, Any] | None:
    """Change a contact's own preferences (channels, quiet hours); None if there is no such contact."""
    result = await conn.execute(update(contacts).where(contacts.c.id == contact_id).values(**values))
    return await get_contact(conn, contact_id) if result.rowcount else None


async def delete_contact(conn: AsyncConnection, contact_id: str) -> bool:
    result = await conn.execute(delete(contacts).where(contacts.c.id == contact_id))
    return bool(result.rowcount)


# Inbox and deliveries -----------------------------------------------------------------------------


def _insert_once(conn: AsyncConnection, table: Table) -> Any:
    """An INSERT that does nothing when the row (same id or same event, recipient, channel) exists."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


async def add_notification(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Store an inbox notification once; False if it was already there (a replayed event)."""
    result = await conn.execute(_insert_once(conn, notifications), values)
    return bool(result.rowcount)


async def plan_delivery(conn: AsyncConnection, values: dict[str, Any]) -> bool:
    """Plan an outside-channel delivery once; False if it was already planned (a replayed event)."""
    result = await conn.execute(_insert_once(conn, deliveries), values)
    return bool(result.rowcount)


async def add_notifications(conn: AsyncConnection, rows: list[dict[str, Any]]) -> set[str]:
    """Store inbox notifications once, in one statement; the ids of those that were new (the others
    were already there: a replayed event)."""
    if not rows:
        return set()
    stored = await conn.execute(_insert_once(conn, notifications).returning(notifications.c.id), rows)
    return {row.id for row in stored}


async def plan_deliveries(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Plan outside-channel deliveries once each, in one statement (a planned one stays as it is)."""
    if rows:
        await conn.execute(_insert_once(conn, deliveries), rows)


async def claim_due(conn: AsyncConnection, now: datetime, lease_until: datetime, limit: int) -> list[dict[str, Any]]:
    """Take up to `limit` pending deliveries whose time has come, for this worker until `lease_until`.

    On PostgreSQL, rows another replica is claiming are skipped (FOR UPDATE SKIP LOCKED); the lease
    keeps a claimed delivery from being sent again by another worker while it is in flight.
    """
    query = (
        select(deliveries)
        .where(deliveries.c.status == PENDING)
        .where(deliveries.c.next_attempt_at <= now)
        .where(or_(deliveries.c.claimed_until.is_(None), deliveries.c.claimed_until < now))
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = [dict(row) for row in (await conn.execute(query)).mappings().all()]
    if rows:
        await conn.execute(
            update(deliveries).where(deliveries.c.id.in_([row["id"] for row in rows])).values(claimed_until=lease_until)
        )
    return rows


async def finish_attempt(conn: AsyncConnection, delivery_id: str, values: dict[str, Any]) -> bool:
    """Record an attempt's outcome on a still-pending delivery; False if it was no longer pending."""
    result = await conn.execute(
        update(deliveries)
        .where(deliveries.c.id == delivery_id)
        .where(deliveries.c.status == PENDING)
        .values(claimed_until=None, **values)
    )
    return bool(result.rowcount)


async def list_deliveries(
    conn: AsyncConnection, *, status: str | None, proposal_id: str | None, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    query = select(deliveries)
    count = select(func.count()).select_from(deliveries)
    if status:
        query, count = query.where(deliveries.c.status == status), count.where(deliveries.c.status == status)
    if proposal_id:
        query = query.where(deliveries.c.proposal_id == proposal_id)
        count = count.where(deliveries.c.proposal_id == proposal_id)
    rows = (
        (
            await conn.execute(
                query.order_by(deliveries.c.created_at.desc(), deliveries.c.id).limit(limit).offset(offset)
            )
        )
        .mappings()
        .all()
    )
    return [dict(row) for row in rows], int((await conn.execute(count)).scalar_one())


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


async def mark_read(conn: AsyncConnection, recipient: str, notification_id: str, at: datetime) -> bool | None:
    """Mark read; None if the recipient has no such notification, False if it was already read."""
    row = (
        await conn.execute(
            select(notifications.c.read_at)
            .where(notifications.c.id == notification_id)
            .where(notifications.c.recipient == recipient)
        )
    ).first()
    if row is None:
        return None
    if row.read_at is not None:
        return False
    await conn.execute(update(notifications).where(notifications.c.id == notification_id).values(read_at=at))
    return True
