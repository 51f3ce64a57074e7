"""An event too large to publish is refused where it is staged: `add_to_outbox` measures its record as the
producer will and raises `EventTooLarge` before anything is stored; over HTTP that is a 413 problem, in a
consumer's handler a dead letter. (The relay's side, rows the broker refuses anyway, is in
tests/integration/test_outbox_failures.py.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import add_plumbing_tables, create_all, create_engine, new_metadata
from shared.envelope import Envelope, to_kafka
from shared.errors import PermanentError
from shared.events import Actor, ProposalWithdrawn, Role
from shared.http import too_large
from shared.outbox import EventTooLarge, add_to_outbox, limit_outbox_records, outbox_record_limit
from shared.processor import EventProcessor
from shared.producer import DEFAULT_MAX_REQUEST_SIZE, record_size
from shared.relay import OutboxRelay
from shared.settings import CommonSettings
from tests.fakes import RecordingPublisher, record_of

ACTOR = Actor(id="m-1", role=Role.MEMBER)


def withdrawn(proposal_id: str, reason: str = "撤回") -> ProposalWithdrawn:
    return ProposalWithdrawn(proposal_id=proposal_id, actor=ACTOR, reason=reason)


@pytest.fixture
def metadata() -> MetaData:
    metadata = new_metadata()
    add_plumbing_tables(metadata)
    Table("effects", metadata, Column("id", String(100), primary_key=True))
    return metadata


@pytest.fixture
async def engine(sqlite_url: str, metadata: MetaData) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(sqlite_url)
    await create_all(engine, metadata)
    yield engine
    await engine.dispose()


async def stored(engine: AsyncEngine, metadata: MetaData) -> list[dict[str, Any]]:
    table = metadata.tables["outbox"]
    async with engine.connect() as conn:
        return [dict(row) for row in (await conn.execute(select(table).order_by(table.c.id))).mappings()]


def size_of(row: dict[str, Any]) -> int:
    """A stored row's record as the relay will send it, measured as the producer measures it."""
    headers = [(name, value.encode()) for name, value in json.loads(row["headers"])]
    return record_size(row["key"].encode(), row["payload"], headers)


async def test_an_event_at_the_limit_is_staged_and_one_byte_more_is_refused_before_anything_is_stored(
    engine: AsyncEngine, metadata: MetaData
) -> None:
    event = withdrawn("p-1", "字" * 30_000)
    async with engine.begin() as conn:
        await add_to_outbox(conn, metadata, "intake", [(event, "e-1")])
    [row] = await stored(engine, metadata)
    exact = size_of(row)
    assert exact > 90_000  # 3 bytes a character, plus the envelope

    limit_outbox_records(metadata, exact)
    async with engine.begin() as conn:  # an id of the same length: the same size
        await add_to_outbox(conn, metadata, "intake", [(event, "e-2")])

    limit_outbox_records(metadata, exact - 1)
    with pytest.raises(EventTooLarge) as refused:
        async with engine.begin() as conn:
            await conn.execute(metadata.tables["effects"].insert().values(id="state change"))
            await add_to_outbox(conn, metadata, "intake", [(withdrawn("p-1"), "e-small"), (event, "e-3")])
    assert isinstance(refused.value, PermanentError)
    assert (refused.value.event_type, refused.value.proposal_id) == (ProposalWithdrawn.TYPE, "p-1")
    assert (refused.value.size, refused.value.limit) == (exact, exact - 1)
    message = str(refused.value)
    assert ProposalWithdrawn.TYPE in message and f"{exact} bytes" in message and f"{exact - 1} bytes" in message
    # The whole transaction rolled back: the state change, and the small event staged with it.
    assert [row["event_id"] for row in await stored(engine, metadata)] == ["e-1", "e-2"]
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(metadata.tables["effects"]))).scalar() == 0


def test_the_limit_is_the_relays_producers_and_by_default_the_settings_default(metadata: MetaData) -> None:
    assert DEFAULT_MAX_REQUEST_SIZE == CommonSettings.model_fields["kafka_max_request_size"].default
    assert outbox_record_limit(metadata) == DEFAULT_MAX_REQUEST_SIZE
    OutboxRelay(None, metadata, RecordingPublisher(max_request_size=70_000))  # type: ignore[arg-type]
    assert outbox_record_limit(metadata) == 70_000


async def test_what_passes_the_check_passes_the_producer(engine: AsyncEngine, metadata: MetaData) -> None:
    """The relay sends a row exactly as it was measured, so a row staged at the limit is never refused by
    the producer (the fake refuses as aiokafka does, by the same measure)."""
    event = withdrawn("p-1", "字" * 30_000)
    async with engine.begin() as conn:
        await add_to_outbox(conn, metadata, "intake", [(event, "e-1")])
    [row] = await stored(engine, metadata)
    publisher = RecordingPublisher(max_request_size=size_of(row))
    relay = OutboxRelay(engine, metadata, publisher)  # type: ignore[arg-type]
    assert await relay.publish_once() == 1
    [sent] = publisher.sent
    assert record_size(sent.key, sent.value, sent.headers) == size_of(row)


def test_the_http_problem_says_how_much_to_cut_in_chinese_characters() -> None:
    problem = too_large(EventTooLarge("proposalflow.proposal.submitted.v1", "p-1", 70_000, 65_536))
    assert (problem.status, problem.title) == (413, "Content too large")
    assert "proposalflow.proposal.submitted.v1 event of 70000 bytes" in problem.detail
    assert "at most 65536 bytes" in problem.detail
    assert "Nothing was saved" in problem.detail
    assert "4464 bytes (about 1488 Chinese characters" in problem.detail


async def test_a_handler_that_stages_an_event_too_large_dead_letters_its_record(
    engine: AsyncEngine, metadata: MetaData
) -> None:
    limit_outbox_records(metadata, 65_536)

    async def handler(conn: Any, envelope: Envelope, _record: Any) -> None:
        await conn.execute(metadata.tables["effects"].insert().values(id=envelope.id))
        await add_to_outbox(conn, metadata, "intake", [withdrawn(envelope.subject or "", "字" * 30_000)])

    publisher = RecordingPublisher()
    worker = EventProcessor(
        service="intake",
        consumer="intake",
        engine=engine,
        metadata=metadata,
        handler=handler,
        producer=publisher,  # type: ignore[arg-type]
        base_delay=0.001,
        max_delay=0.01,
    )
    incoming = Envelope(
        type=ProposalWithdrawn.TYPE,
        source="/proposalflow/intake",
        subject="p-1",
        data=withdrawn("p-1").model_dump(mode="json"),
    )
    assert await worker.process(record_of(incoming)) == "dead-lettered"
    [letter] = publisher.sent
    assert letter.topic == "proposalflow.dlq.intake"
    assert dict(letter.headers)["x-dlq-error"].startswith(b"EventTooLarge: event proposalflow.proposal.withdrawn.v1")
    assert (letter.key, letter.value) == to_kafka(incoming)[:2]
    assert await stored(engine, metadata) == []
