"""Notify's unit of work: load what notify knows of a proposal and its recipients' contacts, then save the
proposal's record, the planned notices and the events they cause, in the consumer's transaction.

The transaction is the consumer's (shared/processor.py writes the inbox mark on the same connection), so a
record, its notices and their events commit together with the mark, or not at all. Nothing is written
before `commit()`: an event that must wait (`NotReady`) leaves the transaction as it found it.

An inbox notice and a planned delivery are stored once per (event, recipient, channel): a redelivered or
replayed event stores nothing again, and its `notification.delivered` events are staged only for the
inbox notices that are new.

In the consumer (whose `prepare` calls :func:`defer_writes` and whose `finish` is :func:`write_deferred`)
a batch's writes wait for its end, where they go in a few statements: on PostgreSQL each statement is a
round trip (docs/performance.md, "The sixth round"). Reads in the batch see them all the same.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

import shared.unit_of_work
from services.notify import store
from services.notify.domain import Contact, ProposalView
from shared import db
from shared.events import Event
from shared.outbox import add_to_outbox

SERVICE = "notify"

Row = dict[str, Any]

NOT_YET_ATTEMPTED: Row = {
    "status": store.PENDING,
    "attempts": 0,
    "claimed_until": None,
    "last_error": None,
    "finished_at": None,
}
"""The retry state a planned delivery starts with (the delivery worker moves it on)."""


class UnitOfWork(shared.unit_of_work.UnitOfWork):
    """What notify's use case needs of storage: proposals and contacts in; proposals, notices and the
    events of the new inbox notices out, together."""

    def __init__(self) -> None:
        self.rollback()

    async def proposal(self, proposal_id: str) -> ProposalView | None:
        """What notify knows of the proposal (a new one added in this unit of work included), or None."""
        if proposal_id in self._proposals:
            return self._proposals[proposal_id][1]
        return await self._proposal(proposal_id)

    async def contacts(self, ids: Sequence[str]) -> dict[str, Contact]:
        """The directory's contacts of these recipients (those it has)."""
        return await self._contacts(list(ids))

    def add_proposal(self, view: ProposalView) -> None:
        """A proposal notify did not know (its submission)."""
        self._proposals[view.id] = (None, view)

    def save_proposal(self, before: ProposalView, after: ProposalView) -> None:
        """The proposal's record as an event changed it (`before`: as it was loaded)."""
        loaded = self._proposals.get(after.id, (before, before))[0]
        self._proposals[after.id] = (loaded, after)

    def plan(self, inbox: Sequence[Row], deliveries: Sequence[Row], delivered: Mapping[str, tuple[Event, str]]) -> None:
        """Inbox notifications and outside-channel deliveries (pending, not attempted yet) to store once;
        `delivered`, by notification id, the event (with its id) to stage if that inbox notification is new."""
        self._inbox += inbox
        self._deliveries += [{**delivery, **NOT_YET_ATTEMPTED} for delivery in deliveries]
        self._delivered.update(delivered)

    async def commit(self) -> None:
        """Save the proposals, store the notices, stage the events of the inbox notices that are new."""
        for before, after in self._proposals.values():
            if before is None:
                await self._insert_proposal(after)
            elif after != before:
                await self._update_proposal(before, after)
        new = await self._add_notifications(self._inbox)
        await self._plan_deliveries(self._deliveries)
        await self._publish([self._delivered[row["id"]] for row in self._inbox if row["id"] in new])
        self.rollback()

    def rollback(self) -> None:
        """Forget what was not committed (the consumer's transaction rolls back what was written)."""
        self._proposals: dict[str, tuple[ProposalView | None, ProposalView]] = {}
        self._inbox: list[Row] = []
        self._deliveries: list[Row] = []
        self._delivered: dict[str, tuple[Event, str]] = {}

    @abstractmethod
    async def _proposal(self, proposal_id: str) -> ProposalView | None: ...

    @abstractmethod
    async def _contacts(self, ids: list[str]) -> dict[str, Contact]: ...

    @abstractmethod
    async def _insert_proposal(self, view: ProposalView) -> None: ...

    @abstractmethod
    async def _update_proposal(self, before: ProposalView, after: ProposalView) -> None:
        """Write only what changed (a parked event re-run beside the consumer may update the same
        proposal at the same moment)."""

    @abstractmethod
    async def _add_notifications(self, rows: list[Row]) -> set[str]:
        """Store inbox notifications once; the ids of those that were new."""

    @abstractmethod
    async def _plan_deliveries(self, rows: list[Row]) -> None: ...

    @abstractmethod
    async def _publish(self, events: list[tuple[Event, str]]) -> None: ...


class SqlUnitOfWork(UnitOfWork):
    """Notify's tables (store.py), on the consumer's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    async def commit(self) -> None:
        deferred: DeferredWrites | None = db.transaction_state(self.conn, _DEFERRED)
        if deferred is None:
            await super().commit()
            return
        for before, after in self._proposals.values():
            deferred.hold(before, after)
        deferred.inbox += self._inbox
        deferred.deliveries += self._deliveries
        deferred.delivered.update(self._delivered)
        self.rollback()

    async def _proposal(self, proposal_id: str) -> ProposalView | None:
        deferred: DeferredWrites | None = db.transaction_state(self.conn, _DEFERRED)
        held = deferred.proposal(proposal_id) if deferred is not None else None
        return held or await store.get_proposal(self.conn, proposal_id)

    async def _contacts(self, ids: list[str]) -> dict[str, Contact]:
        return await store.contacts_by_id(self.conn, ids)

    async def _insert_proposal(self, view: ProposalView) -> None:
        await store.insert_proposal(self.conn, view)

    async def _update_proposal(self, before: ProposalView, after: ProposalView) -> None:
        await store.save_proposal(self.conn, before, after)

    async def _add_notifications(self, rows: list[Row]) -> set[str]:
        return await store.add_notifications(self.conn, rows)

    async def _plan_deliveries(self, rows: list[Row]) -> None:
        await store.plan_deliveries(self.conn, rows)

    async def _publish(self, events: list[tuple[Event, str]]) -> None:
        await add_to_outbox(self.conn, store.metadata, SERVICE, events)


@dataclass
class DeferredWrites:
    """A consumer batch's writes, kept until the batch's `finish` (:func:`write_deferred`): its new
    proposals, its changed ones (as first loaded, and as they stand now), its inbox notifications,
    deliveries and the delivered events of the inbox notifications, in the order of the batch's events."""

    inserted: dict[str, ProposalView] = field(default_factory=dict)
    loaded: dict[str, ProposalView] = field(default_factory=dict)
    current: dict[str, ProposalView] = field(default_factory=dict)
    inbox: list[Row] = field(default_factory=list)
    deliveries: list[Row] = field(default_factory=list)
    delivered: dict[str, tuple[Event, str]] = field(default_factory=dict)

    def proposal(self, proposal_id: str) -> ProposalView | None:
        """The proposal as the batch left it, if the batch wrote it."""
        return self.inserted.get(proposal_id) or self.current.get(proposal_id)

    def hold(self, before: ProposalView | None, after: ProposalView) -> None:
        if before is None or after.id in self.inserted:
            self.inserted[after.id] = after
        elif after != before:
            self.loaded.setdefault(after.id, before)
            self.current[after.id] = after


_DEFERRED = "notify.deferred-writes"


def defer_writes(conn: AsyncConnection) -> None:
    """Have this transaction's unit-of-work writes wait for :func:`write_deferred` (the consumer's
    `prepare` calls it; its `finish` must then be :func:`write_deferred`)."""
    db.transaction_state(conn, _DEFERRED, DeferredWrites)


async def write_deferred(conn: AsyncConnection) -> None:
    """The batch's new proposals in one insert, its changed ones in one update per set of changed
    columns, its inbox notifications in one insert, its deliveries in another, and the delivered events
    of the new inbox notifications in one outbox insert."""
    deferred: DeferredWrites | None = db.transaction_state(conn, _DEFERRED)
    if deferred is None:
        return
    db.end_transaction_state(conn, _DEFERRED)
    await store.insert_proposals(conn, list(deferred.inserted.values()))
    await store.save_proposals(
        conn, [(deferred.loaded[proposal_id], after) for proposal_id, after in deferred.current.items()]
    )
    new = await store.add_notifications(conn, deferred.inbox)
    await store.plan_deliveries(conn, deferred.deliveries)
    staged = dict.fromkeys(row["id"] for row in deferred.inbox if row["id"] in new)
    await add_to_outbox(conn, store.metadata, SERVICE, [deferred.delivered[row_id] for row_id in staged])
