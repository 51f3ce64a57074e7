"""Audit's use cases: record what happened, verify the chain, export entries."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.audit import domain, store
from shared.envelope import Envelope
from shared.processor import Record


async def record_event(
    conn: AsyncConnection, envelope: Envelope, record: Record, key: bytes | None, *, defer: bool = False
) -> None:
    """One CloudEvent read from any topic becomes one chained entry (with `defer`, written by
    `store.flush` before the transaction commits)."""
    entry = domain.entry_from(envelope, topic=record.topic, partition=record.partition, offset=record.offset)
    await store.append(conn, {**entry, "recorded_at": datetime.now(UTC)}, key, defer=defer)


async def record_invalid(conn: AsyncConnection, record: Record, error: str, key: bytes | None) -> None:
    """A record that is not a CloudEvent becomes an `invalid-record` entry with its raw bytes."""
    now = datetime.now(UTC)
    entry = domain.invalid_record_entry(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=record.headers,
        error=error,
        received_at=now,
    )
    await store.append(conn, {**entry, "recorded_at": now}, key)


async def verify(
    engine: AsyncEngine, key: bytes | None, *, anchors: Sequence[domain.Anchor] = (), page_size: int = 1000
) -> dict[str, Any]:
    """Walk the whole chain up to its head as it was when the walk began (entries appended meanwhile
    are left for the next run; without a head, to the end) and report the first broken entry, or
    that all N entries hold. Given the anchors kept outside the database, also check that each
    anchored entry is still there with the hash anchored."""
    async with engine.connect() as conn:
        head = await store.head(conn)
    walk = domain.ChainWalk(key=key)
    until_seq = head.seq if head is not None else None
    async for page in store.pages(engine, store.EntryFilter(), page_size=page_size, until_seq=until_seq):
        if not walk.feed(page):
            break
    walk.close(head)
    if anchors:
        async with engine.connect() as conn:
            hashes = await store.hashes_at(conn, sorted({anchor.seq for anchor in anchors}))
        walk.check_anchors(anchors, hashes)
    return walk.report()


async def current_anchor(engine: AsyncEngine) -> domain.Anchor | None:
    """The chain head now, as an anchor to keep outside the database; None before the first entry."""
    async with engine.connect() as conn:
        head = await store.head(conn)
    return domain.Anchor(head.seq, head.hash, datetime.now(UTC)) if head is not None and head.seq else None


async def entries(engine: AsyncEngine, selection: store.EntryFilter) -> AsyncIterator[dict[str, Any]]:
    """Every matching entry in log order, read a page at a time."""
    async for page in store.pages(engine, selection):
        for entry in page:
            yield entry
