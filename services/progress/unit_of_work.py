"""Progress's unit of work: load dossiers, then save what the use case changed (state, timeline and the
events to publish) in the caller's transaction.

The transaction is the door's: over HTTP it also holds the `Idempotency-Key` answer, in a consumer the
inbox mark (shared/processor.py writes both on the same connection). Nothing is written before
`commit()`, so a use case refused half-way leaves the transaction as it found it; the door's transaction
commits it all, or nothing.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

import shared.unit_of_work
from services.progress import domain, store
from services.progress.domain import Dossier
from shared import db
from shared.envelope import Envelope
from shared.errors import NotFound
from shared.events import Event
from shared.outbox import add_to_outbox

SERVICE = "progress"


@dataclass
class Snapshot:
    """A dossier as it was loaded, to save only what changed."""

    proposal: dict[str, Any] | None
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    with_records: bool = True


def _snapshot(dossier: Dossier, *, new: bool = False, with_records: bool = True) -> Snapshot:
    return Snapshot(
        None if new else copy.deepcopy(dossier.proposal),
        {name: copy.deepcopy(getattr(dossier, name)) for name in _RECORDS},
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


class SqlUnitOfWork(UnitOfWork):
    """Progress's tables, on the door's connection (its transaction is the one everything commits in)."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    async def _fetch(self, proposal_id: str, *, with_records: bool) -> Dossier | None:
        if with_records:
            return await store.load_dossier(self.conn, proposal_id)
        row = await store.get_proposal(self.conn, proposal_id)
        return Dossier(row) if row is not None else None

    async def _load_open(self) -> list[Dossier]:
        return await store.load_dossiers(self.conn, await store.open_proposal_ids(self.conn))

    async def _on_timeline(self, event_id: str) -> bool:
        return await store.timeline_has(self.conn, event_id)

    async def _save(self, seen: list[tuple[Dossier, Snapshot]], consumed: list[tuple[Envelope, Event]]) -> None:
        conn = self.conn
        for dossier, snapshot in seen:
            if snapshot.proposal is None:
                await db.insert_rows(conn, store.proposals, dossier.proposal)
            else:
                changed = {k: v for k, v in dossier.proposal.items() if snapshot.proposal.get(k) != v}
                if changed:
                    await db.update_by(conn, store.proposals, dossier.id, changed)
            if snapshot.with_records:
                for name in _RECORDS:
                    await _save_records(
                        conn, store.metadata.tables[name], _KEYS[name], snapshot.records[name], getattr(dossier, name)
                    )
        own = [item for dossier, _ in seen for item in dossier.events]
        envelopes = await add_to_outbox(conn, store.metadata, SERVICE, [(e, i) if i else e for e, i in own])
        entries = [*consumed, *zip(envelopes, (event for event, _ in own), strict=True)]
        if entries:
            await db.insert_rows(conn, store.timeline, [timeline_row(envelope, event) for envelope, event in entries])


async def _save_records(
    conn: AsyncConnection, table: Table, key: tuple[str, ...], before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> None:
    """Insert the new rows, update the changed ones, delete the ones gone (a returned reply's measures)."""
    old = {tuple(row[k] for k in key): row for row in before}
    new = {tuple(row[k] for k in key): row for row in after}
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
