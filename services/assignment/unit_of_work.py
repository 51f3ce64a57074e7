"""Assignment's unit of work: load assignments (and the catalogs they are checked against), then save what
a use case changed and stage the events it caused, in the caller's transaction.

The transaction is the door's: over HTTP it also holds the `Idempotency-Key` answer, in the consumer of
`proposalflow.proposals` the inbox mark. Nothing is written before `commit()`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

import shared.unit_of_work
from services.assignment import mapping, store
from services.assignment.domain import Assignment, AssignmentState, UnitAnswer
from shared import db
from shared.errors import NotFound
from shared.events import Event
from shared.outbox import add_to_outbox
from shared.records import row_of

SERVICE = "assignment"

Row = dict[str, Any]


class UnitOfWork(shared.unit_of_work.UnitOfWork):
    """What assignment's use cases need of storage. Reads go straight to storage; writes wait for `commit`."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Assignment, AssignmentState | None, dict[str, UnitAnswer]]] = {}
        self._writes: list[tuple[str, tuple[Any, ...]]] = []
        self._events: list[tuple[Event, str | None]] = []

    def rollback(self) -> None:
        """Forget what was not committed (the door's transaction rolls back what was written)."""
        self._seen, self._writes, self._events = {}, [], []

    # Assignments (the aggregate) ---------------------------------------------------------------------

    async def find_current(self, proposal_id: str) -> Assignment | None:
        """The assignment in force (a reassignment supersedes the one before), or None."""
        for assignment, _, _ in self._seen.values():
            if assignment.proposal_id == proposal_id and assignment.status != "superseded":
                return assignment
        found = await self._current(proposal_id)
        if found is not None:
            self._track(found)
        return found

    async def current(self, proposal_id: str) -> Assignment:
        found = await self.find_current(proposal_id)
        if found is None:
            raise NotFound(proposal_id)
        return found

    async def lapsed(self, today: date) -> list[Assignment]:
        """Assignments still awaiting answers whose dispute window (异议期) has closed."""
        found = [assignment for assignment in await self._awaiting_answers() if assignment.window_closed(today)]
        for assignment in found:
            assignment.responses = await self._responses(assignment.id)
            self._track(assignment)
        return found

    def add(self, assignment: Assignment) -> None:
        self._seen[assignment.id] = (assignment, None, {})

    def _track(self, assignment: Assignment) -> None:
        # The state and answers are immutable (a change replaces them): the snapshot keeps them as loaded.
        self._seen[assignment.id] = (assignment, assignment.state, dict(assignment.responses))

    # Catalogs, proposals and key designations -------------------------------------------------------

    def put_proposal(self, proposal_id: str, values: Row, *, new: bool) -> None:
        self._writes.append(("put_proposal", (proposal_id, values, new)))

    def put_unit(self, row: Row, *, new: bool) -> None:
        self._writes.append(("put_unit", (row, new)))

    def delete_unit(self, unit_id: str) -> None:
        self._writes.append(("delete_unit", (unit_id,)))

    def put_leader(self, row: Row, *, new: bool) -> None:
        self._writes.append(("put_leader", (row, new)))

    def put_routing_rules(self, document: Row, updated_by: str, at: datetime, *, new: bool) -> None:
        self._writes.append(("put_routing_rules", (document, updated_by, at, new)))

    def designate_key(self, rows: Sequence[Row], events: Sequence[Event]) -> None:
        self._writes.append(("add_key_proposals", (list(rows),)))
        self._events += [(event, None) for event in events]

    async def commit(self) -> None:
        """Save the assignments and their answers, then the other writes, then stage every event."""
        events: list[tuple[Event, str | None]] = []
        tracked = list(self._seen.values())
        for assignment, loaded, responses in tracked:
            await self._save(assignment, loaded, responses)
            events += assignment.events
            assignment.events = []
        for name, args in self._writes:
            await getattr(self, f"_{name}")(*args)
        await self._publish([*events, *self._events])
        self._writes, self._events = [], []
        for assignment, _, _ in tracked:
            self._track(assignment)

    @abstractmethod
    async def units(self) -> dict[str, Row]: ...
    @abstractmethod
    async def leaders(self) -> dict[str, Row]: ...
    @abstractmethod
    async def routing_document(self) -> Row | None: ...
    @abstractmethod
    async def proposal(self, proposal_id: str) -> Row | None: ...
    @abstractmethod
    async def proposals_in(self, ids: Sequence[str]) -> dict[str, Row]: ...
    @abstractmethod
    async def proposals_of_series(self, series_id: str) -> list[Row]: ...
    @abstractmethod
    async def key_designated(self, proposal_ids: Sequence[str]) -> list[str]: ...
    @abstractmethod
    async def assignments_name(self, unit_id: str) -> bool: ...
    @abstractmethod
    async def learned_history(self) -> list[Row]: ...
    @abstractmethod
    async def _current(self, proposal_id: str) -> Assignment | None: ...
    @abstractmethod
    async def _awaiting_answers(self) -> list[Assignment]: ...
    @abstractmethod
    async def _responses(self, assignment_id: str) -> dict[str, UnitAnswer]: ...
    @abstractmethod
    async def _save(
        self, assignment: Assignment, loaded: AssignmentState | None, responses: dict[str, UnitAnswer]
    ) -> None: ...
    @abstractmethod
    async def _publish(self, events: list[tuple[Event, str | None]]) -> None: ...
    @abstractmethod
    async def _put_proposal(self, proposal_id: str, values: Row, new: bool) -> None: ...
    @abstractmethod
    async def _put_unit(self, row: Row, new: bool) -> None: ...
    @abstractmethod
    async def _delete_unit(self, unit_id: str) -> None: ...
    @abstractmethod
    async def _put_leader(self, row: Row, new: bool) -> None: ...
    @abstractmethod
    async def _put_routing_rules(self, document: Row, updated_by: str, at: datetime, new: bool) -> None: ...
    @abstractmethod
    async def _add_key_proposals(self, rows: list[Row]) -> None: ...


class SqlUnitOfWork(UnitOfWork):
    """Assignment's tables, on the door's connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        super().__init__()
        self.conn = conn

    async def units(self) -> dict[str, Row]:
        return await store.unit_catalog(self.conn)

    async def leaders(self) -> dict[str, Row]:
        return await store.leader_catalog(self.conn)

    async def routing_document(self) -> Row | None:
        return await store.routing_document(self.conn)

    async def proposal(self, proposal_id: str) -> Row | None:
        return await store.get_proposal(self.conn, proposal_id)

    async def proposals_in(self, ids: Sequence[str]) -> dict[str, Row]:
        return await store.proposals_in(self.conn, ids)

    async def proposals_of_series(self, series_id: str) -> list[Row]:
        return await store.proposals_of_series(self.conn, series_id)

    async def key_designated(self, proposal_ids: Sequence[str]) -> list[str]:
        table = store.key_proposals
        query = select(table.c.proposal_id).where(table.c.proposal_id.in_(list(proposal_ids)))
        return list((await self.conn.execute(query)).scalars().all())

    async def assignments_name(self, unit_id: str) -> bool:
        rows = (await self.conn.execute(select(store.assignments))).mappings()
        return any(unit_id in [r["lead_unit"], *r["co_units"], *(r["split_units"] or [])] for r in rows)

    async def learned_history(self) -> list[Row]:
        return await store.learned_history(self.conn)

    async def _current(self, proposal_id: str) -> Assignment | None:
        row = await store.current_assignment(self.conn, proposal_id)
        if row is None:
            return None
        answers = mapping.unit_answers(await store.responses_of(self.conn, row["id"]))
        return Assignment(mapping.assignment_state(row), answers)

    async def _awaiting_answers(self) -> list[Assignment]:
        return [Assignment(mapping.assignment_state(row)) for row in await store.awaiting_answers(self.conn)]

    async def _responses(self, assignment_id: str) -> dict[str, UnitAnswer]:
        return mapping.unit_answers(await store.responses_of(self.conn, assignment_id))

    async def _save(
        self, assignment: Assignment, loaded: AssignmentState | None, responses: dict[str, UnitAnswer]
    ) -> None:
        conn, table = self.conn, store.assignments
        row = row_of(assignment.state)
        if loaded is None:
            await db.insert_rows(conn, table, row)
        elif assignment.state != loaded:
            before = row_of(loaded)
            changed = {k: v for k, v in row.items() if before.get(k) != v}
            if changed:
                await db.update_by(conn, table, assignment.id, changed)
        answers = store.unit_responses
        for unit, answer in assignment.responses.items():
            if unit not in responses:
                await conn.execute(insert(answers).values(**row_of(answer)))
            elif responses[unit] != answer:
                old, new = row_of(responses[unit]), row_of(answer)
                changed = {k: v for k, v in new.items() if old.get(k) != v}
                match = and_(answers.c.assignment_id == assignment.id, answers.c.unit == unit)
                await conn.execute(update(answers).where(match).values(**changed))

    async def _publish(self, events: list[tuple[Event, str | None]]) -> None:
        await add_to_outbox(self.conn, store.metadata, SERVICE, [(e, i) if i else e for e, i in events])

    async def _put_proposal(self, proposal_id: str, values: Row, new: bool) -> None:
        if new:
            await db.insert_rows(self.conn, store.proposals, {"id": proposal_id, **values})
        else:
            await db.update_by(self.conn, store.proposals, proposal_id, values)

    async def _put_unit(self, row: Row, new: bool) -> None:
        if new:
            await self.conn.execute(insert(store.units).values(**row))
        else:
            await db.update_by(self.conn, store.units, row["id"], row)

    async def _delete_unit(self, unit_id: str) -> None:
        await self.conn.execute(delete(store.units).where(store.units.c.id == unit_id))

    async def _put_leader(self, row: Row, new: bool) -> None:
        if new:
            await self.conn.execute(insert(store.leaders).values(**row))
        else:
            await db.update_by(self.conn, store.leaders, row["id"], row)

    async def _put_routing_rules(self, document: Row, updated_by: str, at: datetime, new: bool) -> None:
        values = {"document": document, "updated_at": at, "updated_by": updated_by}
        if new:
            await self.conn.execute(insert(store.routing_config).values(id=1, **values))
        else:
            await db.update_by(self.conn, store.routing_config, 1, values)

    async def _add_key_proposals(self, rows: list[Row]) -> None:
        await self.conn.execute(insert(store.key_proposals), rows)
