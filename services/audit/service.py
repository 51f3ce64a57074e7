"""Audit's use cases: record what happened, verify the chain, take the anchor of its head.

Recording reads as the other services' use cases do: the door decodes the record, the domain decides
what the entry says (domain.py: who did what to which proposal, where it was read) and how it links to
the chain, the unit of work saves it (`uow.commit()`, in the consumer's transaction). Verifying walks
the log as the unit of work's `Log` reads it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.audit import domain
from services.audit.unit_of_work import Log, UnitOfWork
from shared.envelope import Envelope
from shared.processor import Record


async def record_event(uow: UnitOfWork, envelope: Envelope, record: Record) -> None:
    """One CloudEvent read from any topic becomes one chained entry."""
    entry = domain.entry_from(envelope, topic=record.topic, partition=record.partition, offset=record.offset)
    async with uow:
        await uow.append({**entry, "recorded_at": datetime.now(UTC)})
        await uow.commit()


async def record_invalid(uow: UnitOfWork, record: Record, error: str) -> None:
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
    async with uow:
        await uow.append({**entry, "recorded_at": now})
        await uow.commit()


async def verify(
    log: Log, key: bytes | None, *, anchors: Sequence[domain.Anchor] = (), page_size: int = 1000
) -> dict[str, Any]:
    """Walk the whole chain up to its head as it was when the walk began (entries appended meanwhile
    are left for the next run; without a head, to the end) and report the first broken entry, or
    that all N entries hold. Given the anchors kept outside the database, also check that each
    anchored entry is still there with the hash anchored."""
    head = await log.head()
    walk = domain.ChainWalk(key=key)
    until_seq = head.seq if head is not None else None
    async for page in log.pages(page_size=page_size, until_seq=until_seq):
        if not walk.feed(page):
            break
    walk.close(head)
    if anchors:
        hashes = await log.hashes_at(sorted({anchor.seq for anchor in anchors}))
        walk.check_anchors(anchors, hashes)
    return walk.report()


async def current_anchor(log: Log) -> domain.Anchor | None:
    """The chain head now, as an anchor to keep outside the database; None before the first entry."""
    head = await log.head()
    return domain.Anchor(head.seq, head.hash, datetime.now(UTC)) if head is not None and head.seq else None
