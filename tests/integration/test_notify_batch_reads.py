"""Notify's consumer reads a batch's contacts in one statement (services/notify/handlers.py `prepare`), on
SQLite and PostgreSQL: the same deliveries are planned as one record at a time, and every recipient the
rules name over a whole lifecycle was among those read ahead."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notify import handlers, service, store
from services.notify.rules import load_rules
from services.notify.settings import NotifySettings
from shared.db import create_engine
from shared.migrate import upgrade_async
from shared.processor import EventProcessor
from tests.fakes import RecordingPublisher
from tests.fakes import event_records as records
from tests.notify_fixtures import lifecycle

SETTINGS = NotifySettings(smtp_host="127.0.0.1")
NOTIFIER = service.Notifier(rules=load_rules(SETTINGS.rules_path), settings=SETTINGS)
PEOPLE = ("m-1", "m-2", "m-3", "l-1", "committee", "unit:dg-zrj", "unit:dg-nyj", "unit:dg-jtj")


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_async("notify", db_url)
    engine = create_engine(db_url)
    async with engine.begin() as conn:
        for person in PEOPLE:
            values = {"name": person, "kind": "unit" if person.startswith("unit:") else "member"}
            await store.put_contact(
                conn,
                {
                    "id": person,
                    **values,
                    "email": f"{person.replace(':', '-')}@example.com",
                    "phone": None,
                    "webhook_url": f"https://oa.example/{person}",
                    "channels": None,
                    "quiet_start": None,
                    "quiet_end": None,
                    "updated_at": datetime.now(UTC),
                },
            )
    yield engine
    await engine.dispose()


def consumer(engine: AsyncEngine) -> EventProcessor:
    return EventProcessor(
        service="notify",
        consumer="notify",
        engine=engine,
        metadata=store.metadata,
        handler=handlers.on_event(NOTIFIER),
        producer=RecordingPublisher(),  # type: ignore[arg-type]
        base_delay=0.001,
        max_delay=0.01,
    )


async def planned(engine: AsyncEngine, prefix: str) -> Counter[tuple[str, str, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(store.deliveries))).mappings().all()
    return Counter(
        (row["recipient"], row["channel"], row["cause_event_type"])
        for row in rows
        if row["proposal_id"].startswith(f"{prefix}-")
    )


async def test_a_batch_reads_its_contacts_once_and_plans_what_one_at_a_time_plans(engine) -> None:
    reads: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM contacts" in statement:
            reads.append(statement)

    processor = consumer(engine)
    for n, record in enumerate(records([e for e, _ in lifecycle("one")], 0)):
        assert await processor.process_batch([record]) == ["handled"], n

    # Four lifecycles side by side, a batch taking the next event of each, as a consumer's batch across
    # partitions does.
    walks = [[e for e, _ in lifecycle(f"b{n}")] for n in range(4)]
    event.listen(engine.sync_engine, "before_cursor_execute", before)
    batches = 0
    for step in range(len(walks[0])):
        outcomes = await processor.process_batch(records([walk[step] for walk in walks], 1000 + 10 * step))
        assert outcomes == ["handled"] * 4, step
        batches += 1
    assert len(reads) <= batches, "at most one contacts statement per batch: every recipient was read ahead"

    one = await planned(engine, "one")
    assert sum(one.values()) > 0
    for n in range(4):
        assert await planned(engine, f"b{n}") == one


async def stored(engine: AsyncEngine, prefix: str) -> dict[str, object]:
    """What notify stored for one lifecycle, with the prefix taken out of every id: its proposals, its
    inbox notifications and deliveries, and its outbox events in the order they were staged."""

    def plain(value: object) -> object:
        return str(value).replace(f"{prefix}-", "")

    async with engine.connect() as conn:
        proposals = (await conn.execute(select(store.proposals))).mappings().all()
        notifications = (await conn.execute(select(store.notifications))).mappings().all()
        outbox = store.metadata.tables["outbox"]
        staged = (await conn.execute(select(outbox).order_by(outbox.c.id))).mappings().all()
    mine = f"{prefix}-"
    return {
        "proposals": sorted(
            (plain(row["id"]), row["filing_number"], plain(row["lead_unit"]), plain(row["co_units"]))
            for row in proposals
            if row["id"].startswith(mine)
        ),
        "inbox": Counter(
            (plain(row["proposal_id"]), row["recipient"], row["cause_event_type"], row["title"])
            for row in notifications
            if row["proposal_id"].startswith(mine)
        ),
        "deliveries": await planned(engine, prefix),
        "outbox": [(plain(row["key"]), row["type"]) for row in staged if (row["key"] or "").startswith(mine)],
    }


async def test_a_batch_writes_at_its_end_what_one_record_at_a_time_writes(engine) -> None:
    """The consumer's writes wait for the batch's end (`finish`): a proposal's whole lifecycle in one
    batch, each event reading what the ones before it left, and four lifecycles side by side store the
    same proposals, notices, deliveries and delivered events as one record at a time, with one insert
    of notifications and one of outbox rows per batch."""
    inserts: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith("INSERT INTO notifications") or statement.startswith("INSERT INTO outbox"):
            inserts.append(statement.split()[2])

    processor = consumer(engine)
    for n, record in enumerate(records([e for e, _ in lifecycle("one")], 0)):
        assert await processor.process_batch([record]) == ["handled"], n
    one = await stored(engine, "one")
    assert one["outbox"] and one["inbox"] and one["deliveries"]

    whole = [e for e, _ in lifecycle("whole")]
    assert await processor.process_batch(records(whole, 500)) == ["handled"] * len(whole)
    assert await stored(engine, "whole") == one

    walks = [[e for e, _ in lifecycle(f"side{n}")] for n in range(4)]
    event.listen(engine.sync_engine, "before_cursor_execute", before)
    batches = 0
    for step in range(len(walks[0])):
        assert (
            await processor.process_batch(records([walk[step] for walk in walks], 1000 + 10 * step)) == ["handled"] * 4
        )
        batches += 1
    assert inserts.count("notifications") <= batches and inserts.count("outbox") <= batches
    for n in range(4):
        assert await stored(engine, f"side{n}") == one
