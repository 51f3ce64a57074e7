"""Progress's lifecycle consumer writes a batch's proposals and timeline rows together, at the batch's end
(services/progress/unit_of_work.py `deferring_writes`, `write_deferred`), on SQLite and PostgreSQL: the
read model and timeline come out exactly as one record at a time, in fewer statements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.progress import handlers, store
from services.progress.unit_of_work import deferring_writes, write_deferred
from shared.db import create_engine
from shared.envelope import Envelope
from shared.events import ASSIGNMENTS, PROPOSALS, UNIT_REPORTS, Event, ProgressReported, ReportProgress
from shared.migrate import upgrade_async
from shared.policy import load_policy
from shared.processor import EventProcessor
from tests.fakes import RecordingPublisher, record_of
from tests.fakes import event_records as records
from tests.notify_fixtures import lifecycle
from tests.progress_fixtures import Clock
from tests.progress_fixtures import lifecycle as progress_lifecycle


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_async("progress", db_url)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


def processor(engine: AsyncEngine, *, batched: bool) -> EventProcessor:
    """The lifecycle consumer as services/progress/app.py wires it (`batched`), or without the deferral."""
    return EventProcessor(
        service="progress",
        consumer="progress",
        engine=engine,
        metadata=store.metadata,
        handler=handlers.on_lifecycle_event,
        producer=RecordingPublisher(),  # type: ignore[arg-type]
        prepare=deferring_writes(handlers.prefetch_lifecycle) if batched else handlers.prefetch_lifecycle,
        finish=write_deferred if batched else None,
        base_delay=0.001,
        max_delay=0.01,
    )


def walk(prefix: str) -> list[Event]:
    """A proposal's lifecycle and a few short ones, the events progress reads."""
    return [event for event, _ in lifecycle(prefix) if event.TOPIC in (PROPOSALS, ASSIGNMENTS)]


async def stored(engine: AsyncEngine, prefix: str) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """The proposals and timeline rows of one walk, with its prefix taken out (to compare two walks)."""

    def plain(value: Any) -> Any:
        return repr(value).replace(f"{prefix}-", "x-")

    async with engine.connect() as conn:
        proposals = (await conn.execute(select(store.proposals).order_by(store.proposals.c.id))).mappings().all()
        timeline = (await conn.execute(select(store.timeline).order_by(store.timeline.c.id))).mappings().all()
    # `updated_at` is when each event was sent, which differs from one walk to the other.
    mine = [
        {k: plain(v) for k, v in row.items() if k != "updated_at"}
        for row in proposals
        if row["id"].startswith(f"{prefix}-")
    ]
    steps = [
        (plain(row["proposal_id"]), row["type"], plain(row["summary"]), plain(row["data"]))
        for row in timeline
        if row["proposal_id"].startswith(f"{prefix}-")
    ]
    return mine, steps


async def test_a_batch_leaves_the_read_model_and_timeline_one_record_at_a_time_leaves(engine) -> None:
    one_at_a_time = processor(engine, batched=False)
    for record in records(walk("a")):
        assert await one_at_a_time.process_batch([record]) == ["handled"]
    # Batches of records in a row: proposals submitted and read again in one batch, and one changed by
    # several records of a batch, each after what the one before changed (assigned, disputed, …, then a
    # deadlines change, which holds only for a proposal already assigned).
    batched = processor(engine, batched=True)
    walked = records(walk("b"), first_offset=1000)
    for start, end in ((0, 1), (1, 4), (4, 9), (9, 13), (13, 17), (17, len(walked))):
        assert set(await batched.process_batch(walked[start:end])) == {"handled"}

    proposals_a, timeline_a = await stored(engine, "a")
    proposals_b, timeline_b = await stored(engine, "b")
    assert proposals_b == proposals_a
    assert sorted(timeline_b) == sorted(timeline_a)
    assert len(timeline_b) == len(walked)


async def test_a_batch_writes_its_timeline_in_one_statement(engine) -> None:
    inserts: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith(("INSERT INTO TIMELINE", "UPDATE PROPOSALS")):
            inserts.append(statement.split()[0].upper())

    batched = processor(engine, batched=True)
    walks = [walk(f"p{n}") for n in range(5)]
    await batched.process_batch(records([w[0] for w in walks]))  # five proposals submitted
    event.listen(engine.sync_engine, "before_cursor_execute", before)
    outcomes = await batched.process_batch(records([w[1] for w in walks], first_offset=10))  # and co-signing asked
    assert outcomes == ["handled"] * 5
    assert inserts.count("INSERT") == 1, "five timeline rows, one statement"
    assert inserts.count("UPDATE") == 1, "five proposals changed alike, one statement"
    async with engine.connect() as conn:
        rows = (await conn.execute(select(store.timeline.c.proposal_id))).scalars().all()
    assert sorted(rows) == sorted([f"p{n}-main" for n in range(5)] * 2)


async def test_a_batch_rolled_back_for_one_record_leaves_nothing_of_its_writes_behind(engine) -> None:
    batched = processor(engine, batched=True)
    first, second = walk("ok"), walk("early")
    await batched.process_batch(records([first[0]]))
    # `early`'s proposal was never submitted here: its event waits (parked), the batch goes one at a time.
    outcomes = await batched.process_batch(records([first[1], second[1], first[2], first[3]], first_offset=10))
    assert outcomes == ["handled", "parked", "handled", "handled"]
    async with engine.connect() as conn:
        timeline = (await conn.execute(select(store.timeline.c.proposal_id))).scalars().all()
        stage = (
            await conn.execute(select(store.proposals.c.stage).where(store.proposals.c.id == "ok-main"))
        ).scalar_one()
    assert sorted(timeline) == ["ok-main"] * 4, "each record's row once, the parked one's none"
    assert stage == "filed"


OA = "/oa/dg-zrzyj"


def unit_report(proposal_id: str, tag: str) -> Envelope:
    """A lead unit's 办理进展 report on the unit door."""
    data = {
        "actor": {"id": "u-1", "role": "unit", "unit": "dg-zrzyj"},
        "proposal_id": proposal_id,
        "unit": "dg-zrzyj",
        "kind": "research",
        "on": "2026-03-18",
        "text": f"赴镇街调研整治项目（{tag}）",
    }
    return Envelope(id=f"cmd-{proposal_id}-{tag}", type=ReportProgress.TYPE, source=OA, subject=proposal_id, data=data)


async def test_a_batch_of_unit_reports_reads_its_dossiers_once_and_leaves_what_one_at_a_time_leaves(engine) -> None:
    """The unit-report consumer reads its batch's dossiers in one statement per table (`prepare`:
    handlers.prefetch_unit_reports); a proposal reported twice in the batch reads its dossier again for
    the second report, with what the first wrote."""
    lifecycles = processor(engine, batched=True)
    offset = 0
    for prefix in ("one", "bat"):
        for n in range(3):
            events = progress_lifecycle(f"{prefix}{n}-000{n + 1}")
            assert await lifecycles.process_batch(records(events, offset)) == ["handled"] * len(events)
            offset += len(events)
    reports = EventProcessor(
        service="progress",
        consumer="progress-unit-reports",
        engine=engine,
        metadata=store.metadata,
        handler=handlers.unit_report_handler(load_policy(), [OA], Clock(datetime(2026, 3, 20, 2, tzinfo=UTC))),
        producer=RecordingPublisher(),  # type: ignore[arg-type]
        prepare=handlers.prefetch_unit_reports,
        base_delay=0.001,
        max_delay=0.01,
    )
    for n in range(3):
        for tag in ("a", "b") if n == 0 else ("a",):
            record = record_of(unit_report(f"one{n}-000{n + 1}", tag), UNIT_REPORTS, offset)
            assert await reports.process_batch([record]) == ["handled"]
            offset += 1

    reads: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM replies" in statement:
            reads.append(statement)

    batch = [unit_report(f"bat{n}-000{n + 1}", "a") for n in range(3)] + [unit_report("bat0-0001", "b")]
    event.listen(engine.sync_engine, "before_cursor_execute", before)
    outcomes = await reports.process_batch([record_of(e, UNIT_REPORTS, offset + i) for i, e in enumerate(batch)])
    event.remove(engine.sync_engine, "before_cursor_execute", before)
    assert outcomes == ["handled"] * 4
    assert len(reads) == 2, "one read ahead for the batch, one for the proposal's second report"
    for n in range(3):
        one, bat = await stored(engine, f"one{n}"), await stored(engine, f"bat{n}")
        assert bat == one
        assert any(step[1] == ProgressReported.TYPE for step in one[1])
