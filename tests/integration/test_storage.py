"""Storage on SQLite and on PostgreSQL: migrations, outbox, inbox, parking, idempotency, numbering.

Every test here runs twice, once per database (the `db_url` fixture); the broker is a recording
stand-in, so these tests are about what the database keeps.
"""

from __future__ import annotations

import asyncio
import importlib
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from services.intake import store as intake_store
from shared.db import create_engine
from shared.envelope import Envelope
from shared.errors import NotReady
from shared.events import Actor, ProposalWithdrawn, Role
from shared.migrate import upgrade_async
from shared.observability import METRICS
from shared.outbox import add_to_outbox
from shared.processor import EventProcessor
from shared.relay import OutboxRelay
from shared.settings import SERVICES
from tests.fakes import RecordingPublisher, record_of

ACTOR = Actor(id="m-1", role=Role.MEMBER)


@pytest.mark.parametrize("service", SERVICES)
async def test_migrations_build_exactly_the_declared_schema(db_url: str, service: str) -> None:
    await upgrade_async(service, db_url)
    metadata = importlib.import_module(f"services.{service}.store").metadata
    engine = create_engine(db_url)
    async with engine.connect() as conn:
        diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))
    await engine.dispose()
    assert diff == [], f"{service}: migrations and tables differ: {diff}"


@pytest.fixture
async def engine(db_url: str):
    await upgrade_async("intake", db_url)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


def withdrawn(proposal_id: str) -> ProposalWithdrawn:
    return ProposalWithdrawn(proposal_id=proposal_id, actor=ACTOR, reason="撤回")


async def test_outbox_keeps_events_through_a_broker_outage_then_publishes_them_in_order(engine) -> None:
    async with engine.begin() as conn:
        await add_to_outbox(conn, intake_store.metadata, "intake", [withdrawn("p-1"), withdrawn("p-2")])
    publisher = RecordingPublisher(down=True)
    relay = OutboxRelay(engine, intake_store.metadata, publisher)  # type: ignore[arg-type]
    with pytest.raises(Exception, match="broker down"):
        await relay.publish_once()
    assert await relay.backlog() == 2
    publisher.down = False
    assert await relay.publish_once() == 2
    assert await relay.backlog() == 0
    assert [sent.key for sent in publisher.sent] == [b"p-1", b"p-2"]
    assert all(dict(sent.headers)["ce_type"] == ProposalWithdrawn.TYPE.encode() for sent in publisher.sent)
    assert await relay.publish_once() == 0


async def test_a_fixed_event_id_is_staged_once(engine) -> None:
    for _ in range(2):
        async with engine.begin() as conn:
            await add_to_outbox(conn, intake_store.metadata, "intake", [(withdrawn("p-1"), "deadline-p-1-2026-06-01")])
    relay = OutboxRelay(engine, intake_store.metadata, RecordingPublisher())  # type: ignore[arg-type]
    assert await relay.backlog() == 1


async def test_two_relays_publish_each_row_once(engine) -> None:
    async with engine.begin() as conn:
        await add_to_outbox(conn, intake_store.metadata, "intake", [withdrawn(f"p-{n}") for n in range(300)])
    publisher = RecordingPublisher()
    relays = [OutboxRelay(engine, intake_store.metadata, publisher, batch_size=25) for _ in range(2)]  # type: ignore[arg-type]

    async def drain(relay: OutboxRelay) -> None:
        while await relay.publish_once():
            await asyncio.sleep(0)

    await asyncio.gather(*(drain(relay) for relay in relays))
    keys = [sent.key for sent in publisher.sent]
    assert len(keys) == 300
    assert len(set(keys)) == 300


def processor(engine, handler, publisher: RecordingPublisher, **kwargs) -> EventProcessor:
    return EventProcessor(
        service="intake",
        consumer="test",
        engine=engine,
        metadata=intake_store.metadata,
        handler=handler,
        producer=publisher,
        base_delay=0.001,
        max_delay=0.01,
        **kwargs,
    )  # type: ignore[arg-type]


def envelope(subject: str, type_: str = ProposalWithdrawn.TYPE) -> Envelope:
    return Envelope(
        type=type_, source="/proposalflow/intake", subject=subject, data=withdrawn(subject).model_dump(mode="json")
    )


async def test_a_duplicate_delivery_has_one_effect(engine) -> None:
    effects: list[str] = []

    async def handler(conn, env, record) -> None:
        effects.append(env.id)

    worker = processor(engine, handler, RecordingPublisher())
    event = envelope("p-1")
    assert await worker.process(record_of(event)) == "handled"
    assert await worker.process(record_of(event, offset=1)) == "duplicate"
    assert effects == [event.id]


async def test_a_failing_handler_rolls_back_then_dead_letters_and_the_inbox_does_not_claim_it(engine) -> None:
    attempts = 0

    async def handler(conn, env, record) -> None:
        nonlocal attempts
        attempts += 1
        await add_to_outbox(conn, intake_store.metadata, "intake", [withdrawn("should-not-survive")])
        raise RuntimeError("bug in handler")

    publisher = RecordingPublisher()
    worker = processor(engine, handler, publisher, retry_attempts=3)
    event = envelope("p-1")
    assert await worker.process(record_of(event)) == "dead-lettered"
    assert attempts == 3
    assert [sent.topic for sent in publisher.sent] == ["proposalflow.dlq.intake"]
    assert b"bug in handler" in dict(publisher.sent[0].headers)["x-dlq-error"]
    relay = OutboxRelay(engine, intake_store.metadata, RecordingPublisher())  # type: ignore[arg-type]
    assert await relay.backlog() == 0
    async with engine.connect() as conn:
        inbox = (await conn.execute(select(intake_store.metadata.tables["inbox"]))).all()
    assert inbox == []


async def test_an_event_that_arrives_early_waits_then_runs_in_order(engine) -> None:
    known: set[str] = set()
    applied: list[str] = []

    async def handler(conn, env, record) -> None:
        if env.type == "first":
            known.add(env.subject)
        elif env.subject not in known:
            raise NotReady("needs first")
        applied.append(f"{record.topic}:{env.type}")

    worker = processor(engine, handler, RecordingPublisher())
    later_a = envelope("p-1", "later-a")
    later_b = envelope("p-1", "later-b")
    assert await worker.process(record_of(later_a, topic="assignments")) == "parked"
    # Behind a parked event of the same proposal on the same topic, the next one waits too.
    assert await worker.process(record_of(later_b, topic="assignments", offset=1)) == "parked"
    assert await worker.process(record_of(envelope("p-1", "first"), topic="proposals")) == "handled"
    assert applied == ["proposals:first", "assignments:later-a", "assignments:later-b"]
    async with engine.connect() as conn:
        assert (await conn.execute(select(intake_store.metadata.tables["parked_events"]))).all() == []


async def test_filing_numbers_stay_unique_under_concurrent_reviews(engine) -> None:
    async def take() -> int:
        async with engine.begin() as conn:
            return await intake_store.next_filing_sequence(conn, 2026)

    numbers = await asyncio.gather(*(take() for _ in range(20)))
    assert sorted(numbers) == list(range(1, 21))


async def test_inbox_record_and_effect_commit_together(engine) -> None:
    """A crash inside the transaction (simulated by an exception after the effect) leaves neither."""
    table = intake_store.proposals

    async def handler(conn, env, record) -> None:
        await conn.execute(
            table.insert().values(
                id=env.subject,
                title="t",
                body="b",
                category="c",
                session_kind="interim",
                first_proposer_id="m",
                first_proposer={},
                cosigners=[],
                suggestions=[],
                status="submitted",
                submitted_by={},
                submitted_via="test",
                submitted_at=datetime.now(UTC),
            )
        )
        raise RuntimeError("crash after the effect")

    worker = processor(engine, handler, RecordingPublisher(), retry_attempts=1)
    assert await worker.process(record_of(envelope("p-crash"))) == "dead-lettered"
    async with engine.connect() as conn:
        assert (await conn.execute(select(table.c.id))).all() == []


async def test_an_operator_sees_the_relay_s_turns_and_how_many_found_rows(engine) -> None:
    # Rows per turn (published / turns with some) is what tells an operator whether a turn's fixed cost is shared.
    turns = METRICS.relay_turns.labels("intake-turns", "some")
    empty = METRICS.relay_turns.labels("intake-turns", "none")
    some_before, none_before = turns._value.get(), empty._value.get()
    async with engine.begin() as conn:
        await add_to_outbox(conn, intake_store.metadata, "intake", [withdrawn("p-1"), withdrawn("p-2")])
    relay = OutboxRelay(engine, intake_store.metadata, RecordingPublisher(), service="intake-turns")  # type: ignore[arg-type]
    assert await relay.publish_once() == 2
    assert await relay.publish_once() == 0
    assert (turns._value.get(), empty._value.get()) == (some_before + 1, none_before + 1)
