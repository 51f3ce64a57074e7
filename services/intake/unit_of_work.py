"""Intake's unit of work: load proposals with their signers, then save what a use case changed and stage
the events it caused, in the caller's transaction.

The transaction is the door's: over HTTP it also holds the `Idempotency-Key` answer, in the consumer of
`proposalflow.submissions` the inbox mark. Nothing is written before `commit()` (except the filing-number
counter, taken when the committee files, in that same transaction: on PostgreSQL with the proposal's load,
`expect_filing`, so a refused filing gives it back only because the door rolls back every refusal). A
proposal is saved only if its status is still the one it was loaded with (a compare-and-set): a
concurrent review, withdrawal or the cosign-window sweep that got there first makes `commit()` raise
StateConflict, and nothing is saved.
"""

from __future__ import annotations

from abc import abstractmethod
from datetime import date
from typing import Any

from sqlalchemy import and_, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection

import shared.unit_of_work
from services.intake import mapping, store
from services.intake.domain import CHANGED_MEANWHILE, Proposal, ProposalState, ProposalStatus, Signer
from shared.errors import NotFound, RuleViolation, StateConflict
from shared.events import Event
from shared.outbox import add_to_outbox
from shared.records import row_of

SERVICE = "intake"

Row = dict[str, Any]


class Snapshot:
    """A proposal as it was loaded (None for a new one), to save only what changed. Its state and
    signers are immutable (a change replaces them), so the snapshot keeps them as they were loaded."""

    def __init__(self, proposal: Proposal | None) -> None:
        self.state: ProposalState | None = None if proposal is None else proposal.state
        self.signers: list[Signer] = [] if proposal is None else list(proposal.signers)


class UnitOfWork(shared.unit_of_work.UnitOfWork):
    """What intake's use cases need of storage: proposals in, proposals and their events out, together."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Proposal, Snapshot]] = {}
        self._saved: dict[str, Proposal] = {}
        self._filing: tuple[str, int] | None = None
        """The proposal about to be filed and the year of its 案号 (`expect_filing`)."""
        self._sequences: dict[int, int] = {}
        """案号 sequences already taken with a load, by year, for `next_filing_sequence`."""

    async def find(self, proposal_id: str) -> Proposal | None:
        """The proposal with its signers, or None if there is none."""
        if proposal_id in self._seen:
            return self._seen[proposal_id][0]
        found = await self._fetch(proposal_id)
        if found is not None:
            self._seen[proposal_id] = (found, Snapshot(found))
        return found

    async def get(self, proposal_id: str) -> Proposal:
        found = await self.find(proposal_id)
        if found is None:
            raise NotFound(proposal_id)
        return found

    async def submitted(self, proposal_id: str) -> Proposal:
        """A proposal that has left its draft (the committee never sees drafts); NotFound otherwise."""
        found = await self.find(proposal_id)
        if found is None or found.status == ProposalStatus.DRAFT:
            raise NotFound(proposal_id)
        return found

    async def add(self, proposal: Proposal, *, drawn: bool = False) -> None:
        """A new proposal; its id must be new. `drawn`: the id was just drawn at random (a UUID4) by this
        service, not given by the caller, so no stored proposal can have it and none is looked for (a
        round trip less; the primary key would still refuse a duplicate)."""
        if proposal.id in self._seen or (not drawn and await self._exists(proposal.id)):
            raise RuleViolation("proposal_id_unique", f"a proposal with id {proposal.id!r} already exists")
        self._seen[proposal.id] = (proposal, Snapshot(None))

    async def awaiting_cosigners(self, due_before: date) -> list[Proposal]:
        """Joint proposals still awaiting cosigners whose window ended before `due_before`."""
        found = await self._fetch_awaiting(due_before)
        for proposal in found:
            self._seen.setdefault(proposal.id, (proposal, Snapshot(proposal)))
        return [self._seen[proposal.id][0] for proposal in found]

    async def merged_into(self, proposal_id: str) -> list[str]:
        """The ids of the proposals merged into this one (并案)."""
        return await self._merged_into(proposal_id)

    def expect_filing(self, proposal_id: str, year: int) -> None:
        """The committee is about to file this proposal (立案): a unit of work may take the year's 案号
        with the proposal's load (one round trip less on PostgreSQL). Taken in the door's transaction, it
        is given back with it if the review is refused (the door rolls back on any refusal)."""
        self._filing = (proposal_id, year)

    async def next_filing_sequence(self, year: int) -> int:
        """The next 案号 sequence of a year, taken in the door's transaction."""
        if year in self._sequences:
            return self._sequences.pop(year)
        return await self._next_sequence(year)

    async def commit(self) -> None:
        """Save every changed proposal (compare-and-set on its status) and stage its events in the outbox.
        StateConflict if a proposal changed meanwhile; then this unit of work forgets what it held."""
        events: list[Event] = []
        for proposal, snapshot in self._seen.values():
            if not await self._save(proposal, snapshot):
                guard = proposal.guard or "status_unchanged"
                self.rollback()
                raise StateConflict(guard, CHANGED_MEANWHILE)
            events += proposal.events
        if events:
            await self._publish(events)
        for proposal, _ in self._seen.values():
            proposal.events.clear()
            self._saved[proposal.id] = proposal
        self._seen = {key: (proposal, Snapshot(proposal)) for key, (proposal, _) in self._seen.items()}

    def saved(self, proposal_id: str) -> Proposal | None:
        """The proposal as a `commit()` of this unit of work saved it (in the door's transaction), or None.
        The door answers with it instead of reading back what it has just written."""
        return self._saved.get(proposal_id)

    def rollback(self) -> None:
        """Forget what was not committed (the door's transaction rolls back what was written)."""
        self._seen = {}

    @abstractmethod
    async def _fetch(self, proposal_id: str) -> Proposal | None: ...

    @abstractmethod
    async def _exists(self, proposal_id: str) -> bool: ...

    @abstractmethod
    async def _fetch_awaiting(self, due_before: date) -> list[Proposal]: ...

    @abstractmethod
    async def _merged_into(self, proposal_id: str) -> list[str]: ...

    @abstractmethod
    async def _next_sequence(self, year: int) -> int: ...

    @abstractmethod
    async def _save(self, proposal: Proposal, snapshot: Snapshot) -> bool:
        """Write what changed; False (and nothing written) if the stored status is no longer the loaded one."""

    @abstractmethod
    async def _publish(self, events: list[Event]) -> None: ...


def changes_of(proposal: Proposal, snapshot: Snapshot) -> tuple[Row, list[Row], list[Row], list[str]]:
    """What to write: changed columns, signers added, signers changed, signer ids gone."""
    assert snapshot.state is not None
    before = row_of(snapshot.state)
    changed = {k: v for k, v in row_of(proposal.state).items() if before.get(k) != v}
    old = {s.signer_id: s for s in snapshot.signers}
    new = {s.signer_id: s for s in proposal.signers}
    added = [row_of(signer) for key, signer in new.items() if key not in old]
    updated = [row_of(signer) for key, signer in new.items() if key in old and old[key] != signer]
    gone = [key for key in old if key not in new]
    return changed, added, updated, gone


class SqlUnitOfWork(UnitOfWork):
    """Intake's tables, on the door's connection (its transaction is the one everything commits in)."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn
        self._none_merged: set[str] = set()
        """The proposals loaded with none merged into them (并案)."""

    async def _fetch(self, proposal_id: str) -> Proposal | None:
        year = None
        if self._filing is not None and self._filing[0] == proposal_id and self.conn.dialect.name == "postgresql":
            year = self._filing[1]  # the 案号 taken with the load (SQLite: in-process, taken on its own)
            self._filing = None
        found = await store.get_proposal_with_signers(self.conn, proposal_id, filing_year=year)
        if found is None:
            return None
        row, signers, merged_any, sequence = found
        if year is not None and sequence is not None:
            self._sequences[year] = sequence
        if not merged_any:
            self._none_merged.add(proposal_id)
        return mapping.proposal(row, signers)

    async def _exists(self, proposal_id: str) -> bool:
        return await store.get_proposal(self.conn, proposal_id) is not None

    async def _fetch_awaiting(self, due_before: date) -> list[Proposal]:
        rows = await store.awaiting_cosigners(self.conn, due_before=due_before)
        signers = await store.signers_of(self.conn, [row["id"] for row in rows]) if rows else {}
        return [mapping.proposal(row, signers[row["id"]]) for row in rows]

    async def _merged_into(self, proposal_id: str) -> list[str]:
        if proposal_id in self._none_merged:  # the load found none (in this transaction): no statement
            return []
        return await store.merged_into(self.conn, proposal_id)

    async def _next_sequence(self, year: int) -> int:
        return await store.next_filing_sequence(self.conn, year)

    async def _save(self, proposal: Proposal, snapshot: Snapshot) -> bool:
        conn = self.conn
        folded = conn.dialect.name == "postgresql"  # each statement a round trip: the writes folded
        if snapshot.state is None and folded and proposal.signers:
            await store.insert_proposal_with_signers(
                conn, row_of(proposal.state), [row_of(signer) for signer in proposal.signers]
            )
            return True
        if snapshot.state is None:
            await store.insert_proposal(conn, row_of(proposal.state))
            if proposal.signers:
                await conn.execute(insert(store.signers), [row_of(signer) for signer in proposal.signers])
            return True
        changed, added, updated, gone = changes_of(proposal, snapshot)
        if not (changed or added or updated or gone):
            return True
        # The compare-and-set: a concurrent review or sweep that moved the proposal wins, we write nothing.
        if folded and updated and not (added or gone):  # a cosign (联名确认): proposal and signer at once
            return await store.transition_with_signers(
                conn,
                proposal.id,
                snapshot.state.status,
                proposal.status,
                updated,
                **{k: v for k, v in changed.items() if k != "status"},
            )
        if not await store.transition(
            conn,
            proposal.id,
            snapshot.state.status,
            proposal.status,
            **{k: v for k, v in changed.items() if k != "status"},
        ):
            return False
        signers = store.signers
        if gone:
            await conn.execute(
                delete(signers).where(signers.c.proposal_id == proposal.id).where(signers.c.signer_id.in_(gone))
            )
        if added:
            await conn.execute(insert(signers), added)
        for row in updated:
            await conn.execute(
                update(signers)
                .where(and_(signers.c.proposal_id == proposal.id, signers.c.signer_id == row["signer_id"]))
                .values(is_first=row["is_first"], confirmed_at=row["confirmed_at"])
            )
        return True

    async def _publish(self, events: list[Event]) -> None:
        await add_to_outbox(self.conn, store.metadata, SERVICE, events)
