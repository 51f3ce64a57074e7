"""Audit's tables: the append-only, hash-chained log (审计日志) and its chain head.

No code path updates or deletes an entry; on PostgreSQL and SQLite a trigger refuses it (migration
0002). The one row of `audit_chain_head` is the lock every append takes, so the chain stays linear
with several replicas, and the record of how long the chain is, so a cut-off tail is detected.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Integer,
    Select,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.audit.domain import GENESIS_HASH, ChainTip, chain
from shared.db import BigId, UTCDateTime, add_plumbing_tables, new_metadata

metadata = new_metadata()
add_plumbing_tables(metadata)

entries = Table(
    "audit_entries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, nullable=False, unique=True),
    Column("prev_hash", String(64), nullable=False),
    Column("subject_seq", Integer, nullable=True),
    Column("subject_prev_hash", String(64), nullable=True),
    Column("hash", String(64), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("source", String(200), nullable=False),
    Column("type", String(200), nullable=False, index=True),
    Column("subject", String(200), nullable=True, index=True),
    Column("time", UTCDateTime(), nullable=False, index=True),
    Column("actor_id", String(200), nullable=True, index=True),
    Column("actor_role", String(30), nullable=True),
    Column("actor_unit", String(200), nullable=True, index=True),
    Column("correlation_id", String(200), nullable=True),
    Column("topic", String(200), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    UniqueConstraint("topic", "source", "event_id", name="uq_audit_entries_event"),
    UniqueConstraint("subject", "subject_seq", name="uq_audit_entries_subject_seq"),
)

chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("chain", String(20), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

LOG_CHAIN = "log"


_SELECT_HEAD = select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.chain == LOG_CHAIN)
_SELECT_HEAD_FOR_UPDATE = _SELECT_HEAD.with_for_update()
_SUBJECT_TIP = (
    select(entries.c.subject_seq, entries.c.hash)
    .where(entries.c.subject == bindparam("subject"))
    .order_by(entries.c.subject_seq.desc())
    .limit(1)
)
_INSERT_ENTRY = entries.insert()
_MOVE_HEAD = (
    update(chain_head)
    .where(chain_head.c.chain == LOG_CHAIN)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"), updated_at=bindparam("now"))
)


_OTHER = entries.alias("other")
_SUBJECT_TIPS = select(entries.c.subject, entries.c.subject_seq, entries.c.hash).where(
    entries.c.subject.in_(bindparam("subjects", expanding=True)),
    entries.c.subject_seq
    == select(func.max(_OTHER.c.subject_seq)).where(_OTHER.c.subject == entries.c.subject).scalar_subquery(),
)


@dataclass
class _Tips:
    """The tips this transaction has locked or written, and the entries it has linked but not yet
    inserted: a batch of records appends many entries in one transaction, reads each tip from the
    database once and inserts the entries together (:func:`flush`)."""

    transaction: object
    log: ChainTip
    subjects: dict[str, ChainTip | None] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)


async def _lock_head(conn: AsyncConnection) -> ChainTip:
    """The log's tip, locked until the transaction ends (`FOR UPDATE` on PostgreSQL; on SQLite the
    transaction's `BEGIN IMMEDIATE` already holds the only write lock)."""
    postgres = conn.dialect.name == "postgresql"
    row = (await conn.execute(_SELECT_HEAD_FOR_UPDATE if postgres else _SELECT_HEAD)).first()
    if row is None:
        values = {"chain": LOG_CHAIN, "seq": 0, "hash": GENESIS_HASH, "updated_at": datetime.now(UTC)}
        create: Any = (postgresql.insert if postgres else sqlite.insert)(chain_head).values(**values)
        await conn.execute(create.on_conflict_do_nothing())
        row = (await conn.execute(_SELECT_HEAD_FOR_UPDATE if postgres else _SELECT_HEAD)).one()
    return ChainTip(row.seq, row.hash)


def _transaction(conn: AsyncConnection) -> object:
    return conn.sync_connection.get_transaction() if conn.sync_connection is not None else None


async def _tips(conn: AsyncConnection) -> _Tips:
    """This transaction's tips: the log's is locked by the first append of the transaction."""
    transaction = _transaction(conn)
    tips = conn.info.get("audit_tips")
    if not isinstance(tips, _Tips) or transaction is None or tips.transaction is not transaction:
        engine = conn.engine.sync_engine
        if not event.contains(engine, "commit", _refuse_unflushed):
            event.listen(engine, "commit", _refuse_unflushed)
        tips = _Tips(transaction, await _lock_head(conn))
        conn.info["audit_tips"] = tips
    return tips


class UnflushedEntries(RuntimeError):
    """A transaction linked entries with `defer` and tried to commit without :func:`flush`."""


def _refuse_unflushed(conn: Connection) -> None:
    """A commit with deferred entries not yet written would lose them: refuse it (the transaction
    rolls back, nothing is half-written and the record is processed again)."""
    tips = conn.info.get("audit_tips")
    if isinstance(tips, _Tips) and tips.pending and tips.transaction is conn.get_transaction():
        raise UnflushedEntries(f"{len(tips.pending)} audit entries linked but not written: call store.flush")


async def _subject_tip(conn: AsyncConnection, tips: _Tips, subject: str) -> ChainTip | None:
    if subject in tips.subjects:
        return tips.subjects[subject]
    row = (await conn.execute(_SUBJECT_TIP, {"subject": subject})).first()
    return ChainTip(row.subject_seq, row.hash) if row is not None else None


async def append(
    conn: AsyncConnection, entry: Mapping[str, Any], key: bytes | None, *, defer: bool = False
) -> dict[str, Any]:
    """Link the entry after the log's tip (and its proposal's tip) and store it; returns it linked.

    With `defer`, the entry is only linked: it and the moved head are written by :func:`flush`, which
    the caller must await before the transaction commits (the audit consumer's processor does, once
    per batch)."""
    tips = await _tips(conn)
    subject = entry.get("subject")
    subject_tip = await _subject_tip(conn, tips, subject) if subject is not None else None
    linked = chain(entry, log_tip=tips.log, subject_tip=subject_tip, key=key)
    tips.log = ChainTip(linked["seq"], linked["hash"])
    if subject is not None:
        tips.subjects[subject] = ChainTip(linked["subject_seq"], linked["hash"])
    tips.pending.append(linked)
    if not defer:
        await flush(conn)
    return linked


async def prefetch_subject_tips(conn: AsyncConnection, subjects: Iterable[str]) -> None:
    """Lock the log's tip and read the tips of these proposals in one query, for a batch of appends."""
    tips = await _tips(conn)
    wanted = sorted({subject for subject in subjects if subject not in tips.subjects})
    if not wanted:
        return
    found = {
        row.subject: ChainTip(row.subject_seq, row.hash)
        for row in await conn.execute(_SUBJECT_TIPS, {"subjects": wanted})
    }
    for subject in wanted:
        tips.subjects[subject] = found.get(subject)


async def flush(conn: AsyncConnection) -> None:
    """Insert the entries this transaction has linked with `defer` and move the chain head after them."""
    tips = conn.info.get("audit_tips")
    if not isinstance(tips, _Tips) or not tips.pending or tips.transaction is not _transaction(conn):
        # Nothing deferred in this transaction (what a rolled-back one deferred is gone with it).
        return
    pending, tips.pending = tips.pending, []
    await conn.execute(_INSERT_ENTRY, pending)
    await conn.execute(_MOVE_HEAD, {"new_seq": tips.log.seq, "new_hash": tips.log.hash, "now": datetime.now(UTC)})


async def head(conn: AsyncConnection) -> ChainTip | None:
    """The recorded end of the log, or None before the first entry."""
    row = (
        await conn.execute(select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.chain == LOG_CHAIN))
    ).first()
    return ChainTip(row.seq, row.hash) if row is not None else None


async def hashes_at(conn: AsyncConnection, seqs: list[int]) -> dict[int, str]:
    """The hash of the entry at each of these positions, for those that exist."""
    if not seqs:
        return {}
    rows = await conn.execute(select(entries.c.seq, entries.c.hash).where(entries.c.seq.in_(seqs)))
    return {int(row.seq): str(row.hash) for row in rows}


async def history(conn: AsyncConnection, subject: str) -> list[dict[str, Any]]:
    rows = (await conn.execute(select(entries).where(entries.c.subject == subject).order_by(entries.c.seq))).mappings()
    return [dict(row) for row in rows]


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """What a search or an export selects; every field narrows, None means any."""

    actor: str | None = None
    unit: str | None = None
    type: str | None = None
    subject: str | None = None
    topic: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.actor is not None:
            query = query.where(entries.c.actor_id == self.actor)
        if self.unit is not None:
            query = query.where(entries.c.actor_unit == self.unit)
        if self.type is not None:
            query = query.where(entries.c.type == self.type)
        if self.subject is not None:
            query = query.where(entries.c.subject == self.subject)
        if self.topic is not None:
            query = query.where(entries.c.topic == self.topic)
        if self.since is not None:
            query = query.where(entries.c.time >= self.since)
        if self.until is not None:
            query = query.where(entries.c.time < self.until)
        return query


async def search(
    conn: AsyncConnection, selection: EntryFilter, *, after_seq: int = 0, limit: int, until_seq: int | None = None
) -> list[dict[str, Any]]:
    """One page of matching entries in log order, after `after_seq` (keyset pagination)."""
    query = selection.apply(select(entries)).where(entries.c.seq > after_seq)
    if until_seq is not None:
        query = query.where(entries.c.seq <= until_seq)
    rows = (await conn.execute(query.order_by(entries.c.seq).limit(limit))).mappings()
    return [dict(row) for row in rows]


async def pages(
    engine: AsyncEngine, selection: EntryFilter, *, page_size: int = 500, until_seq: int | None = None
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every matching entry, a page at a time, each page read in its own short transaction, so a
    year of entries is never held in memory nor behind one long-lived lock."""
    after = 0
    while True:
        async with engine.connect() as conn:
            page = await search(conn, selection, after_seq=after, limit=page_size, until_seq=until_seq)
        if not page:
            return
        yield page
        after = page[-1]["seq"]
