"""Two replicas of progress on one PostgreSQL database: a proposal's `proposal.filed` (on
`proposalflow.proposals`) and its `assignment.assigned` (on `proposalflow.assignments`) may be read by
two replicas' lifecycle consumers at the same moment, since a consumer group shares each topic's
partitions out separately. Each batch writes what it changed at its end; without a lock the one that
committed last wrote its stage over the other's, and the proposal stayed `filed` with a lead unit, so
every progress report of that unit was refused (seen in the bench with 2 and 3 replicas). The
lifecycle consumer's batch now locks its proposals' rows as it reads them (`prefetch_by_id(lock=True)`):
the second waits for the first to commit and folds its event into what the first wrote."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.progress import handlers, store
from services.progress.unit_of_work import SqlUnitOfWork, deferring_writes, write_deferred
from shared import db
from shared.db import create_engine
from shared.envelope import Envelope
from shared.events import ASSIGNMENTS, PROPOSALS, Event
from shared.migrate import upgrade_async
from shared.processor import EventProcessor, Record
from tests.fakes import RecordingPublisher
from tests.fakes import event_records as records
from tests.notify_fixtures import lifecycle


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_async("progress", postgres_url)
    engine = create_engine(postgres_url)
    yield engine
    await engine.dispose()


def replica(engine: AsyncEngine, handler: Any = handlers.on_lifecycle_event) -> EventProcessor:
    """A replica's lifecycle consumer, wired as services/progress/app.py wires it."""
    return EventProcessor(
        service="progress",
        consumer="progress",
        engine=engine,
        metadata=store.metadata,
        handler=handler,
        producer=RecordingPublisher(),  # type: ignore[arg-type]
        prepare=deferring_writes(handlers.prefetch_lifecycle),
        finish=write_deferred,
        base_delay=0.001,
        max_delay=0.01,
    )


async def test_two_replicas_folding_one_proposal_at_once_lose_neither_event(engine: AsyncEngine) -> None:
    events: list[Event] = [event for event, _ in lifecycle("r") if event.TOPIC in (PROPOSALS, ASSIGNMENTS)]
    up_to_review = events[: [e.TYPE for e in events].index("proposalflow.proposal.filed.v1")]
    filed = next(e for e in events if e.TYPE == "proposalflow.proposal.filed.v1")
    assigned = next(e for e in events if e.TYPE == "proposalflow.assignment.assigned.v1")
    before = replica(engine)
    for record in records(up_to_review):
        assert await before.process_batch([record]) == ["handled"]

    handled_filed = asyncio.Event()
    go_on = asyncio.Event()

    async def slow(conn: AsyncConnection, envelope: Envelope, record: Record) -> None:
        await handlers.on_lifecycle_event(conn, envelope, record)
        handled_filed.set()
        await go_on.wait()  # replica A's transaction is still open: its batch writes at its end

    replica_a, replica_b = replica(engine, slow), replica(engine)
    (filed_record,) = records([filed], first_offset=100)
    (assigned_record,) = records([assigned], first_offset=200)
    a = asyncio.create_task(replica_a.process_batch([filed_record]))
    await asyncio.wait_for(handled_filed.wait(), timeout=10)
    b = asyncio.create_task(replica_b.process_batch([assigned_record]))
    await asyncio.sleep(0.5)  # replica B reads the proposal while A holds it
    go_on.set()
    assert await asyncio.wait_for(a, timeout=10) == ["handled"]
    assert await asyncio.wait_for(b, timeout=10) == ["handled"]

    async with engine.connect() as conn:
        proposal = await store.get_proposal(conn, assigned.proposal_id)
    assert proposal is not None
    assert proposal["lead_unit"] is not None, "the assignment's lead unit was lost"
    assert proposal["stage"] == "assigned", f"the stage went back to {proposal['stage']!r}"
    assert proposal["filing_number"], "the filing's number was lost"


@pytest.mark.parametrize("loaded", ["a command's dossier", "an event's proposal", "the scheduler's pass"])
async def test_a_dossier_loaded_to_change_waits_for_another_transaction_changing_it(
    engine: AsyncEngine, loaded: str
) -> None:
    """A unit's report (its consumer, or the HTTP door), a lifecycle event and the scheduler's deadline pass
    over the same proposal, on one replica or two, each fold it in a transaction of their own. The unit
    of work locks the proposal as it loads it: the second load waits for the first transaction and reads
    what it wrote, instead of a state it would later write back over the first's change."""
    events: list[Event] = [event for event, _ in lifecycle("u") if event.TOPIC in (PROPOSALS, ASSIGNMENTS)]
    assigned = next(e for e in events if e.TYPE == "proposalflow.assignment.assigned.v1")
    folding = replica(engine)
    for record in records(events[: events.index(assigned) + 1]):
        assert await folding.process_batch([record]) == ["handled"]
    proposal_id = assigned.proposal_id

    async def load(conn: AsyncConnection) -> Any:
        uow = SqlUnitOfWork(conn)
        if loaded == "the scheduler's pass":
            return next(dossier for dossier in await uow.open_dossiers() if dossier.id == proposal_id)
        return await (uow.get(proposal_id) if loaded == "a command's dossier" else uow.lifecycle(proposal_id))

    loaded_second = asyncio.Event()
    seen: list[Any] = []

    async def second() -> None:
        async with engine.begin() as conn:
            seen.append(await load(conn))
            loaded_second.set()

    async with engine.begin() as first:
        assert (await load(first)).proposal.stage == "assigned"
        racing = asyncio.create_task(second())
        await asyncio.sleep(0.5)
        assert not loaded_second.is_set(), "the second load did not wait for the transaction holding the proposal"
        await db.update_by(first, store.proposals, proposal_id, {"stage": "handling"})
    await asyncio.wait_for(racing, timeout=10)
    assert seen[0].proposal.stage == "handling", "the second load read a state from before the first's change"
