"""Progress's unit of work: load dossiers, then save what the use case changed (state, timeline and the
events to publish) in the caller's transaction.

The transaction is the door's: over HTTP it also holds the `Idempotency-Key` answer, in a consumer the
inbox mark (shared/processor.py writes both on the same connection). Nothing is written before
`commit()`, so a use case refused half-way leaves the transaction as it found it; the door's transaction
commits it all, or nothing.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

import shared.unit_of_work
from services.progress import domain, mapping, store
from services.progress.domain import Dossier, Proposal
from shared import db
from shared.envelope import Envelope
from shared.errors import NotFound
from shared.events import Event
from shared.outbox import add_to_outbox
from shared.records import row_of

SERVICE = "progress"


@dataclass
class Snapshot:
    """A dossier as it was loaded, to save only what changed (its records are immutable: the dossier
    replaces one to change it, so the snapshot keeps the loaded ones as they are)."""

    proposal: Proposal | None
    records: dict[str, list[mapping.Record]] = field(default_factory=dict)
    with_records: bool = True


def _snapshot(dossier: Dossier, *, new: bool = False, with_records: bool = True) -> Snapshot:
    return Snapshot(
        None if new else dossier.proposal,
        {name: list(getattr(dossier, name)) for name in _RECORDS},
        with_records,
    )


class UnitOfWork(shared.unit_of_work.UnitOfWork):
    """What a use case needs of storage: dossiers in, dossiers and their events out, together."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Dossier, Snapshot]] = {}
        self._consumed: list[tuple[Envelope, Event]] = []

    async def get(self, proposal_id: str) -> Dossier:
        """The whole dossier (replies, co-opinions, evaluations, measures); NotFound if unknown."""
        dossier = await self._load(proposal_id, with_records=True)
        if dossier is None:
            raise NotFound(proposal_id)
        return dossier

    async def lifecycle(self, proposal_id: str) -> Dossier | None:
        """The proposal alone, for folding lifecycle events (they change none of its handling records)."""
        return await self._load(proposal_id, with_records=False)

    async def open_dossiers(self) -> list[Dossier]:
        """Every dossier with open steps: handled and not yet implemented."""
        found = await self._load_open()
        for dossier in found:
            self._seen[dossier.id] = (dossier, _snapshot(dossier))
        return found

    def add(self, dossier: Dossier) -> None:
        """A new dossier (a proposal's first event)."""
        self._seen[dossier.id] = (dossier, _snapshot(dossier, new=True))

    def consumed(self, envelope: Envelope, event: Event) -> None:
        """An event of another service, for the timeline."""
        self._consumed.append((envelope, event))

    async def published(self, event_id: str) -> bool:
        """Whether an event with this id is already on a timeline (or staged in this unit of work)."""
        staged = any(event_id == fixed for dossier, _ in self._seen.values() for _, fixed in dossier.events)
        return staged or await self._on_timeline(event_id)

    async def commit(self) -> None:
        """Save every changed dossier and its timeline, and stage its events in the outbox."""
        await self._save(list(self._seen.values()), self._consumed)
        for dossier, _ in self._seen.values():
            dossier.events.clear()
        self._seen = {dossier.id: (dossier, _snapshot(dossier)) for dossier, _ in self._seen.values()}
        self._consumed = []

    def rollback(self) -> None:
        """Forget what was not committed (the door's transaction rolls back what was written)."""
        self._seen = {}
        self._consumed = []

    async def _load(self, proposal_id: str, *, with_records: bool) -> Dossier | None:
        if proposal_id in self._seen:
            known, snapshot = self._seen[proposal_id]
            if snapshot.with_records or not with_records:
                return known
        dossier = await self._fetch(proposal_id, with_records=with_records)
        if dossier is not None:
            self._seen[proposal_id] = (dossier, _snapshot(dossier, with_records=with_records))
        return dossier

    @abstractmethod
    async def _fetch(self, proposal_id: str, *, with_records: bool) -> Dossier | None: ...

    @abstractmethod
    async def _load_open(self) -> list[Dossier]: ...

    @abstractmethod
    async def _on_timeline(self, event_id: str) -> bool: ...

    @abstractmethod
    async def _save(self, seen: list[tuple[Dossier, Snapshot]], consumed: list[tuple[Envelope, Event]]) -> None: ...


_RECORDS = ("replies", "co_opinions", "evaluations", "measures", "implementation_evaluations")
_KEYS: dict[str, tuple[str, ...]] = {
    "replies": ("id",),
    "co_opinions": ("proposal_id", "unit"),
    "evaluations": ("proposal_id", "round", "signer_id"),
    "measures": ("id",),
    "implementation_evaluations": ("proposal_id", "round", "signer_id"),
}


def timeline_row(envelope: Envelope, event: Event) -> dict[str, Any]:
    return {
        "proposal_id": event.proposal_id,
        "event_id": envelope.id,
        "type": envelope.type,
        "at": envelope.time,
        "actor": event.actor.model_dump(mode="json"),
        "summary": domain.summary(event),
        "data": domain.timeline_data(event),
    }


@dataclass
class DeferredWrites:
    """A consumer batch's writes to the proposals and the timeline, kept until the batch's `finish`
    (:func:`write_deferred`) makes them in a few statements: on PostgreSQL each statement is a round trip,
    and one record a proposal update and a timeline row (docs/performance.md, "The fifth round")."""

    inserted: dict[str, dict[str, Any]] = field(default_factory=dict)
    """New proposals, by id, as they stand after the batch's events."""
    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The columns the batch changed, by proposal id."""
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Changed proposals as they stand now, for a later record of the batch about the same proposal."""
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.inserted or self.changed or self.timeline)


_DEFERRED = "progress.deferred-writes"

Prepare = Callable[[AsyncConnection, Sequence[Envelope]], Awaitable[None]]


def deferring_writes(prepare: Prepare) -> Prepare:
    """A consumer's `prepare` that also has its transaction's proposal and timeline writes wait for
    :func:`write_deferred`, which must then be the consumer's `finish` (shared/processor.py calls both in
    every transaction that handles a record)."""

    async def prepare_batch(conn: AsyncConnection, envelopes: Sequence[Envelope]) -> None:
        db.transaction_state(conn, _DEFERRED, DeferredWrites)
        await prepare(conn, envelopes)

    return prepare_batch


async def write_deferred(conn: AsyncConnection) -> None:
    """The consumer's `finish`: the batch's new proposals in one insert, its changed ones in one update
    per set of changed columns, its timeline rows in one insert."""
    deferred: DeferredWrites | None = db.transaction_state(conn, _DEFERRED)
    if deferred is not None:
        await _write(conn, deferred)
        db.end_transaction_state(conn, _DEFERRED)


async def _write(conn: AsyncConnection, deferred: DeferredWrites) -> None:
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in deferred.inserted.values():
        by_columns.setdefault(tuple(row), []).append(row)
    for rows in by_columns.values():
        await db.insert_rows(conn, store.proposals, rows)
    await db.update_rows(conn, store.proposals, deferred.changed)
    if deferred.timeline:
        await db.insert_rows(conn, store.timeline, deferred.timeline)
    deferred.inserted, deferred.changed, deferred.rows, deferred.timeline = {}, {}, {}, []


class SqlUnitOfWork(UnitOfWork):
    """Progress's tables, on the door's connection (its transaction is the one everything commits in).
    In a consumer whose `prepare` is :func:`deferring_writes`, the proposal and timeline writes wait for
    the batch's `finish`; reads see them all the same."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    def _deferred(self) -> DeferredWrites | None:
        deferred: DeferredWrites | None = db.transaction_state(self.conn, _DEFERRED)
        return deferred

    async def _fetch(self, proposal_id: str, *, with_records: bool) -> Dossier | None:
        deferred = self._deferred()
        if deferred is not None:
            if not with_records and proposal_id in deferred.rows:
                return mapping.dossier(deferred.rows[proposal_id])
            if proposal_id in deferred.inserted or proposal_id in deferred.rows:
                # Read back from the database (a new row gets its server defaults there).
                await _write(self.conn, deferred)
        # Locked until the door's transaction ends: another consumer or replica folding the same proposal
        # waits, and then reads what this one wrote (store.load_dossiers).
        if with_records:
            return await store.load_dossier(self.conn, proposal_id, lock=True)
        row = await store.get_proposal(self.conn, proposal_id, lock=True)
        return mapping.dossier(row) if row is not None else None

    async def _load_open(self) -> list[Dossier]:
        deferred = self._deferred()
        if deferred:
            await _write(self.conn, deferred)
        # Locked too (in id order, as a batch locks its own): a pass and a consumer changing one proposal
        # at once would write back each other's stale state.
        return await store.load_dossiers(self.conn, await store.open_proposal_ids(self.conn), lock=True)

    async def _on_timeline(self, event_id: str) -> bool:
        deferred = self._deferred()
        if deferred is not None and any(row["event_id"] == event_id for row in deferred.timeline):
            return True
        return await store.timeline_has(self.conn, event_id)

    async def _save(self, seen: list[tuple[Dossier, Snapshot]], consumed: list[tuple[Envelope, Event]]) -> None:
        conn = self.conn
        deferred = self._deferred()
        store.forget_dossiers(conn, [dossier.id for dossier, _ in seen])
        for dossier, snapshot in seen:
            row = row_of(dossier.proposal)
            if snapshot.proposal is None:
                if deferred is not None:
                    deferred.inserted[dossier.id] = row
                else:
                    await db.insert_rows(conn, store.proposals, row)
            elif dossier.proposal != snapshot.proposal:
                before = row_of(snapshot.proposal)
                changed = {k: v for k, v in row.items() if before.get(k) != v}
                if changed and deferred is not None:
                    deferred.changed.setdefault(dossier.id, {}).update(changed)
                    deferred.rows[dossier.id] = row
                elif changed:
                    await db.update_by(conn, store.proposals, dossier.id, changed)
            if snapshot.with_records:
                for name in _RECORDS:
                    await _save_records(
                        conn, store.metadata.tables[name], _KEYS[name], snapshot.records[name], getattr(dossier, name)
                    )
        own = [item for dossier, _ in seen for item in dossier.events]
        envelopes = await add_to_outbox(conn, store.metadata, SERVICE, [(e, i) if i else e for e, i in own])
        entries = [*consumed, *zip(envelopes, (event for event, _ in own), strict=True)]
        rows = [timeline_row(envelope, event) for envelope, event in entries]
        if rows and deferred is not None:
            deferred.timeline.extend(rows)
        elif rows:
            await db.insert_rows(conn, store.timeline, rows)


async def _save_records(
    conn: AsyncConnection, table: Table, key: tuple[str, ...], before: list[mapping.Record], after: list[mapping.Record]
) -> None:
    """Insert the new rows, update the changed ones, delete the ones gone (a returned reply's measures)."""
    if before == after:
        return
    old = {tuple(row[k] for k in key): row for row in map(row_of, before)}
    new = {tuple(row[k] for k in key): row for row in map(row_of, after)}
    columns = set(table.c.keys())
    added = [{k: v for k, v in row.items() if k in columns} for ident, row in new.items() if ident not in old]
    if added:
        await conn.execute(insert(table), added)
    for ident, row in new.items():
        if ident in old:
            changed = {k: v for k, v in row.items() if k in columns and old[ident].get(k) != v}
            if changed:
                await conn.execute(update(table).where(_match(table, key, ident)).values(**changed))
    for ident in old.keys() - new.keys():
        await conn.execute(table.delete().where(_match(table, key, ident)))


def _match(table: Table, key: tuple[str, ...], ident: tuple[Any, ...]) -> Any:
    return and_(*(table.c[column] == value for column, value in zip(key, ident, strict=True)))
