"""A batch of records in one transaction (EventProcessor.process_batch), on SQLite and PostgreSQL: the
outcomes are those of the records processed one at a time, whatever the batch holds."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select

from services.intake import store as intake_store
from shared.db import create_engine
from shared.envelope import Envelope
from shared.errors import NotReady
from shared.events import Actor, ProposalWithdrawn, Role
from shared.migrate import upgrade_async
from shared.outbox import add_to_outbox
from shared.processor import EventProcessor, Handler
from tests.fakes import FakeRecord, RecordingPublisher, record_of

ACTOR = Actor(id="m-1", role=Role.MEMBER)


@pytest.fixture
async def engine(db_url: str):
    await upgrade_async("intake", db_url)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


def envelope(subject: str, type_: str = ProposalWithdrawn.TYPE) -> Envelope:
    data = ProposalWithdrawn(proposal_id=subject, actor=ACTOR, reason="撤回").model_dump(mode="json")
    return Envelope(type=type_, source="/proposalflow/intake", subject=subject, data=data)


def processor(engine, handler, publisher: RecordingPublisher, consumer: str = "test", **kwargs) -> EventProcessor:
    return EventProcessor(
        service="intake",
        consumer=consumer,
        engine=engine,
        metadata=intake_store.metadata,
        handler=handler,
        producer=publisher,  # type: ignore[arg-type]
        base_delay=0.001,
        max_delay=0.01,
        **kwargs,
    )


async def inbox_size(engine) -> int:
    async with engine.connect() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(intake_store.metadata.tables["inbox"]))).scalar_one()
        )


async def test_a_batch_has_one_effect_per_event_even_with_a_copy_inside(engine) -> None:
    applied: list[str] = []

    async def handler(conn, env, record) -> None:
        applied.append(env.subject)

    events = [envelope(f"p-{n}") for n in range(5)]
    records = [record_of(e, offset=n) for n, e in enumerate(events)] + [record_of(events[2], offset=5)]
    worker = processor(engine, handler, RecordingPublisher())
    outcomes = await worker.process_batch(records)
    assert outcomes == ["handled"] * 5 + ["duplicate"]
    assert applied == [f"p-{n}" for n in range(5)]
    assert await inbox_size(engine) == 5
    assert await worker.process_batch(records[:2]) == ["duplicate", "duplicate"]


async def test_one_failing_record_leaves_the_rest_of_the_batch_handled_in_order(engine) -> None:
    applied: list[str] = []

    async def handler(conn, env, record) -> None:
        if env.subject == "p-bad":
            raise RuntimeError("bug in handler")
        applied.append(env.subject)

    publisher = RecordingPublisher()
    worker = processor(engine, handler, publisher, retry_attempts=2)
    subjects = ["p-1", "p-bad", "p-2"]
    records = [record_of(envelope(s), offset=n) for n, s in enumerate(subjects)]
    assert await worker.process_batch(records) == ["handled", "dead-lettered", "handled"]
    # The batch's transaction was rolled back, so p-1 was applied once more, one at a time, and committed once.
    assert applied[-2:] == ["p-1", "p-2"]
    assert await inbox_size(engine) == 2
    assert [sent.topic for sent in publisher.sent] == ["proposalflow.dlq.intake"]


async def test_an_early_event_in_a_batch_is_parked_and_runs_once_its_cause_is_in(engine) -> None:
    known: set[str] = set()
    applied: list[str] = []

    async def handler(conn, env, record) -> None:
        if env.type == "first":
            known.add(env.subject)
        elif env.subject not in known:
            raise NotReady("needs first")
        applied.append(env.type)

    worker = processor(engine, handler, RecordingPublisher())
    early: list[FakeRecord] = [
        record_of(envelope("p-1", "later"), topic="assignments"),
        record_of(envelope("p-2", "first"), topic="proposals"),
    ]
    assert await worker.process_batch(early) == ["parked", "handled"]
    # A later batch with p-1's cause, and another event of p-1 on the parked topic, which must queue behind.
    after = [
        record_of(envelope("p-1", "first"), topic="proposals", offset=1),
        record_of(envelope("p-1", "latest"), topic="assignments", offset=1),
    ]
    assert await worker.process_batch(after) == ["handled", "handled"]
    assert applied == ["first", "first", "later", "latest"]


async def test_a_parked_proposal_holds_back_its_own_records_not_the_rest_of_the_batch(engine) -> None:
    known: set[str] = set()
    applied: list[tuple[str, str]] = []
    transactions: list[int] = []

    async def handler(conn, env, record) -> None:
        if env.type == "first":
            known.add(env.subject)
        elif env.subject not in known:
            raise NotReady("needs first")
        applied.append((env.subject, env.type))

    async def prepare(conn, envelopes) -> None:
        transactions.append(len(envelopes))

    worker = processor(engine, handler, RecordingPublisher(), prepare=prepare)
    assert await worker.process_batch([record_of(envelope("p-1", "later"), topic="assignments")]) == ["parked"]
    transactions.clear()
    batch = [
        record_of(envelope("p-2", "first"), topic="proposals", offset=1),
        record_of(envelope("p-1", "latest"), topic="assignments", offset=1),
        record_of(envelope("p-3", "first"), topic="proposals", offset=2),
        record_of(envelope("p-2", "later"), topic="assignments", offset=2),
    ]
    assert await worker.process_batch(batch) == ["handled", "parked", "handled", "handled"]
    # p-2 and p-3 went together in one transaction; p-1's newer event queued behind its parked one.
    assert transactions[0] == 3
    assert applied == [("p-2", "first"), ("p-3", "first"), ("p-2", "later")]
    assert await worker.process_batch([record_of(envelope("p-1", "first"), topic="proposals", offset=3)]) == ["handled"]
    assert applied[3:] == [("p-1", "first"), ("p-1", "later"), ("p-1", "latest")]


async def test_the_relay_is_woken_after_a_batch_that_staged_events_and_only_then(engine) -> None:
    wakes: list[int] = []

    async def handler(conn, env, record) -> None:
        if env.type == "stages":
            event = ProposalWithdrawn(proposal_id=env.subject, actor=ACTOR, reason="撤回")
            await add_to_outbox(conn, intake_store.metadata, "intake", [event])

    worker = processor(engine, handler, RecordingPublisher(), after_commit=lambda: wakes.append(1))
    assert await worker.process_batch([record_of(envelope("p-1", "quiet"))]) == ["handled"]
    assert wakes == []
    assert await worker.process_batch([record_of(envelope("p-2", "stages"), offset=1)]) == ["handled"]
    assert wakes == [1]
    # One at a time too: the parked path wakes it only if the record staged something.
    assert await worker.process(record_of(envelope("p-3", "quiet"), offset=2)) == "handled"
    assert await worker.process(record_of(envelope("p-4", "stages"), offset=3)) == "handled"
    assert wakes == [1, 1]


def held_until_assigned() -> tuple[Handler, Handler, list[str]]:
    """Progress's two consumers in small: the lifecycle consumer's handler notes a proposal assigned, the unit
    commands' handler holds a command (NotReady) until then; the proposals whose commands were carried out."""
    assigned: set[str] = set()
    carried_out: list[str] = []

    async def lifecycle(conn, env, record) -> None:
        assigned.add(env.subject)

    async def unit_commands(conn, env, record) -> None:
        if env.subject not in assigned:
            raise NotReady("the proposal is not assigned yet")
        carried_out.append(env.subject)

    return lifecycle, unit_commands, carried_out


async def test_a_record_parked_by_one_consumer_goes_once_another_consumer_handles_its_cause(engine) -> None:
    """Progress's unit commands wait for the proposal's assignment, which its lifecycle consumer reads: the
    held command goes as soon as that consumer commits the assignment, not at the next sweep."""
    lifecycle, unit_commands, carried_out = held_until_assigned()
    commands = processor(engine, unit_commands, RecordingPublisher())
    other = processor(
        engine, lifecycle, RecordingPublisher(), consumer="test-lifecycle", after_handled=commands.rerun_soon
    )
    report = record_of(envelope("p-1", "report"), topic="unit-reports")
    assert await commands.process_batch([report]) == ["parked"]
    # A proposal nobody parked anything of starts no re-run.
    assert await other.process_batch([record_of(envelope("p-2", "assigned"), topic="assignments")]) == ["handled"]
    assert carried_out == []
    assert await other.process_batch([record_of(envelope("p-1", "assigned"), topic="assignments")]) == ["handled"]
    # The handler runs inside the re-run's transaction: wait for the re-run itself, not only for the
    # handler's side effect, before looking at what it committed.
    await asyncio.wait_for(commands.reruns_finished(), timeout=5)
    assert carried_out == ["p-1"]
    async with engine.connect() as conn:
        parked = intake_store.metadata.tables["parked_events"]
        assert (await conn.execute(select(func.count()).select_from(parked))).scalar_one() == 0


async def test_a_record_another_replica_parked_goes_once_this_replica_handles_its_cause(postgres_url: str) -> None:
    """Two replicas: replica B's unit-command consumer holds a command whose assignment replica A's lifecycle
    consumer then commits. A's look after its commit finds B's parked record (replicas share a PostgreSQL
    database; SQLite is one process, the test above) and A's own unit-command consumer re-runs it at once,
    not at B's next sweep."""
    await upgrade_async("intake", postgres_url)
    engine = create_engine(postgres_url)
    lifecycle, unit_commands, carried_out = held_until_assigned()
    commands_b = processor(engine, unit_commands, RecordingPublisher(), consumer="test-commands")
    commands_a = processor(engine, unit_commands, RecordingPublisher(), consumer="test-commands")
    lifecycle_a = processor(engine, lifecycle, RecordingPublisher(), consumer="test-lifecycle")
    for each in (commands_a, lifecycle_a):
        each.look_after([commands_a, lifecycle_a])
    report = record_of(envelope("p-1", "report"), topic="unit-reports")
    assert await commands_b.process_batch([report]) == ["parked"]
    assert await lifecycle_a.process_batch([record_of(envelope("p-1", "assigned"), topic="assignments")]) == ["handled"]
    await asyncio.wait_for(commands_a.reruns_finished(), timeout=5)
    assert carried_out == ["p-1"], "replica A should have carried out the command replica B held"
    async with engine.connect() as conn:
        parked = intake_store.metadata.tables["parked_events"]
        assert (await conn.execute(select(func.count()).select_from(parked))).scalar_one() == 0
    await engine.dispose()


async def test_a_background_rerun_cut_short_by_a_stop_leaves_its_record_parked_for_the_next_start(engine) -> None:
    """A service stopping while a held command is being re-run: the re-run is cancelled and awaited before
    the engine goes, and the record stays parked (nothing half done), for the start-up sweep."""
    assigned = asyncio.Event()
    rerunning = asyncio.Event()

    async def slow_commands(conn, env, record) -> None:
        if not assigned.is_set():
            raise NotReady("the proposal is not assigned yet")
        rerunning.set()
        await asyncio.sleep(30)  # a re-run still at work when the stop comes

    commands = processor(engine, slow_commands, RecordingPublisher())
    report = record_of(envelope("p-1", "report"), topic="unit-reports")
    assert await commands.process_batch([report]) == ["parked"]
    assigned.set()
    commands.rerun_soon(["p-1"])
    await asyncio.wait_for(rerunning.wait(), timeout=5)
    await asyncio.wait_for(commands.stop_reruns(), timeout=5)
    async with engine.connect() as conn:
        parked = intake_store.metadata.tables["parked_events"]
        assert (await conn.execute(select(func.count()).select_from(parked))).scalar_one() == 1
