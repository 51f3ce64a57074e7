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
