"""The audit log on SQLite and on PostgreSQL: append-only, idempotent, linear under concurrent
writers, and a change made directly in the database is named by verify, entry for entry.

The broker is a recording stand-in here; tests/integration/test_audit_kafka.py uses the real one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from services.audit import service, store
from services.audit.anchors import anchor_head, read_anchors
from services.audit.domain import INVALID_RECORD
from services.audit.handlers import AuditProcessor, occurrence_key, recorder
from services.audit.unit_of_work import SqlLog, SqlUnitOfWork
from shared.db import create_engine
from shared.envelope import Envelope
from shared.events import Actor, ProposalWithdrawn, Role
from shared.migrate import upgrade_async
from tests.fakes import FakeRecord, RecordingPublisher, record_of

KEY = b"audit-test-key"


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_async("audit", db_url)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


def auditor(engine: AsyncEngine, publisher: RecordingPublisher | None = None) -> AuditProcessor:
    return AuditProcessor(
        key=KEY,
        service="audit",
        consumer="audit",
        engine=engine,
        metadata=store.metadata,
        handler=recorder(KEY),
        producer=publisher or RecordingPublisher(),  # type: ignore[arg-type]
        dedupe_key=occurrence_key,
        base_delay=0.001,
        max_delay=0.01,
    )


def withdrawn(proposal_id: str) -> Envelope:
    event = ProposalWithdrawn(proposal_id=proposal_id, actor=Actor(id="m-1", role=Role.MEMBER), reason="撤回")
    return Envelope(
        type=event.TYPE, source="/proposalflow/intake", subject=proposal_id, data=event.model_dump(mode="json")
    )


async def audit_events(engine: AsyncEngine, subjects: list[str]) -> None:
    worker = auditor(engine)
    for offset, subject in enumerate(subjects):
        assert await worker.process(record_of(withdrawn(subject), topic="proposalflow.proposals", offset=offset)) == (
            "handled"
        )


async def count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return len((await conn.execute(select(store.entries.c.id))).all())


async def tamper(engine: AsyncEngine, *statements: str) -> None:
    """What someone with write access to the database could do: switch the guard off and edit."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
            for statement in statements:
                await conn.execute(text(statement))
            await conn.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))
        else:
            await conn.execute(text("DROP TRIGGER audit_entries_no_update"))
            await conn.execute(text("DROP TRIGGER audit_entries_no_delete"))
            for statement in statements:
                await conn.execute(text(statement))


async def test_the_database_refuses_to_update_or_delete_an_entry(engine: AsyncEngine) -> None:
    await audit_events(engine, ["p-1"])
    for statement in ("UPDATE audit_entries SET actor_id = 'x'", "DELETE FROM audit_entries"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text(statement))
    assert await count(engine) == 1


async def test_a_redelivered_event_adds_nothing(engine: AsyncEngine) -> None:
    worker = auditor(engine)
    event = withdrawn("p-1")
    assert await worker.process(record_of(event, topic="proposalflow.proposals", offset=0)) == "handled"
    assert await worker.process(record_of(event, topic="proposalflow.proposals", offset=0)) == "duplicate"
    assert await worker.process(record_of(event, topic="proposalflow.proposals", offset=7)) == "duplicate"
    # The same event dead-lettered by another service is a fact of its own.
    assert await worker.process(record_of(event, topic="proposalflow.dlq.progress", offset=0)) == "handled"
    assert await count(engine) == 2
    assert (await service.verify(SqlLog(engine), KEY))["checked"] == 2


async def test_a_record_that_is_not_a_cloudevent_is_recorded_once_with_its_bytes(engine: AsyncEngine) -> None:
    publisher = RecordingPublisher()
    worker = auditor(engine, publisher)
    garbage = FakeRecord("proposalflow.submissions", 2, 9, b"k", b"{not json", [("content-type", b"application/json")])
    assert await worker.process(garbage) == "handled"
    assert await worker.process(garbage) == "duplicate"
    assert publisher.sent == []  # recorded, not dead-lettered
    async with engine.connect() as conn:
        rows = (await conn.execute(select(store.entries))).mappings().all()
    assert [(row["type"], row["event_id"]) for row in rows] == [(INVALID_RECORD, "kafka:proposalflow.submissions/2/9")]
    assert "no CloudEvents headers" in rows[0]["payload"]["error"]
    assert (await service.verify(SqlLog(engine), KEY))["ok"] is True


async def test_an_intact_log_verifies_and_needs_its_key(engine: AsyncEngine) -> None:
    await audit_events(engine, ["p-1", "p-2", "p-1"])
    report = await service.verify(SqlLog(engine), KEY)
    assert report["ok"] is True and report["checked"] == 3 and report["hmac"] is True
    assert (await service.verify(SqlLog(engine), None))["broken"]["seq"] == 1


REORDER = (
    "UPDATE audit_entries SET seq = -3 WHERE seq = 3",
    "UPDATE audit_entries SET seq = 3 WHERE seq = 4",
    "UPDATE audit_entries SET seq = 4 WHERE seq = -3",
)


@pytest.mark.parametrize(
    ("statements", "broken_seq", "named_entry", "why"),
    [
        (('UPDATE audit_entries SET payload = \'{"reason": "改过"}\' WHERE seq = 3',), 3, 3, "does not match"),
        (("UPDATE audit_entries SET time = time, payload = payload WHERE seq = 2",), None, None, ""),
        (("DELETE FROM audit_entries WHERE seq = 2",), 2, None, "entry 2 is missing"),
        (("DELETE FROM audit_entries WHERE seq = 5",), 5, None, "chain head records 5 entries"),
        (REORDER, 3, 4, "does not match its hash"),
        (("DELETE FROM audit_chain_head",), 5, None, "chain head is missing"),
    ],
    ids=["altered", "rewritten-unchanged", "deleted", "tail-cut", "reordered", "head-deleted"],
)
async def test_verify_names_exactly_the_entry_changed_in_the_database(
    engine: AsyncEngine, statements: tuple[str, ...], broken_seq: int | None, named_entry: int | None, why: str
) -> None:
    await audit_events(engine, ["p-1", "p-2", "p-1", "p-2", "p-1"])
    async with engine.connect() as conn:
        event_ids = dict((await conn.execute(select(store.entries.c.seq, store.entries.c.event_id))).all())
    await tamper(engine, *statements)
    report = await service.verify(SqlLog(engine), KEY)
    if broken_seq is None:
        assert (report["ok"], report["checked"]) == (True, 5)
        return
    assert report["ok"] is False
    # Entries before the broken one hold; a missing head is found only after the walk.
    assert report["checked"] == (5 if why == "chain head is missing" else broken_seq - 1)
    assert report["broken"]["seq"] == broken_seq
    assert why in report["broken"]["reason"]
    assert report["broken"]["event_id"] == (event_ids[named_entry] if named_entry else None)


async def test_two_writers_keep_one_linear_chain(engine: AsyncEngine, db_url: str) -> None:
    """Two replicas appending at once: every entry gets its own position and links to the one before."""
    other = create_engine(db_url)
    try:
        workers = [auditor(engine), auditor(other)]
        records = [record_of(withdrawn(f"p-{n % 3}"), topic="proposalflow.proposals", offset=n) for n in range(30)]
        await asyncio.gather(*(workers[n % 2].process(record) for n, record in enumerate(records)))
    finally:
        await other.dispose()
    report = await service.verify(SqlLog(engine), KEY)
    assert report["ok"] is True, report
    assert report["checked"] == 30


async def test_entries_recorded_before_the_chain_are_chained_by_the_migration(db_url: str) -> None:
    await upgrade_async("audit", db_url, "0001")
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            for n, subject in enumerate(["p-1", "p-2", "p-1"]):
                await conn.execute(
                    text(
                        "INSERT INTO audit_entries (event_id, source, type, subject, time, topic, partition, "
                        "\"offset\", payload, recorded_at) VALUES (:id, '/proposalflow/intake', 't', :subject, "
                        ":time, 'proposalflow.proposals', 0, :n, '{}', :time)"
                    ),
                    {"id": f"old-{n}", "subject": subject, "n": n, "time": datetime(2026, 1, 1, n, tzinfo=UTC)},
                )
        await upgrade_async("audit", db_url)
        report = await service.verify(SqlLog(engine), None)
        assert (report["ok"], report["checked"]) == (True, 3)
        await audit_events(engine, ["p-1"])
        async with engine.connect() as conn:
            newest = (await store.history(conn, "p-1"))[-1]
        assert (newest["seq"], newest["subject_seq"]) == (4, 3)
    finally:
        await engine.dispose()


async def test_a_cut_off_tail_with_the_head_set_back_is_caught_only_by_the_anchors(
    engine: AsyncEngine, tmp_path
) -> None:
    """Someone with the database and the HMAC key deletes the newest entries and sets the head
    back: the chain still holds, but the head anchored outside the database before is gone."""
    await audit_events(engine, ["p-1", "p-2", "p-1", "p-2", "p-1"])
    anchor_file = tmp_path / "anchors.jsonl"
    first = await anchor_head(engine, anchor_file)
    assert first is not None and first.seq == 5
    assert await anchor_head(engine, anchor_file) is None  # the head did not move: nothing new
    async with engine.connect() as conn:
        third = (await conn.execute(select(store.entries.c.hash).where(store.entries.c.seq == 3))).scalar_one()
    await tamper(
        engine,
        "DELETE FROM audit_entries WHERE seq > 3",
        f"UPDATE audit_chain_head SET seq = 3, hash = '{third}'",
    )
    assert (await service.verify(SqlLog(engine), KEY))["ok"] is True  # the chain alone cannot tell
    report = await service.verify(SqlLog(engine), KEY, anchors=read_anchors(anchor_file))
    assert report["ok"] is False and report["broken"]["seq"] == 5
    assert "cut off" in report["broken"]["reason"]


async def test_anchors_of_an_intact_log_hold_and_follow_the_head(engine: AsyncEngine, tmp_path) -> None:
    anchor_file = tmp_path / "anchors.jsonl"
    assert await anchor_head(engine, anchor_file) is None  # an empty log has nothing to anchor
    await audit_events(engine, ["p-1", "p-2"])
    await anchor_head(engine, anchor_file)
    await audit_events(engine, ["p-3"])
    await anchor_head(engine, anchor_file)
    anchors = read_anchors(anchor_file)
    assert [anchor.seq for anchor in anchors] == [2, 3]
    report = await service.verify(SqlLog(engine), KEY, anchors=anchors)
    assert report["ok"] is True and report["anchors_checked"] == 2


async def test_batches_from_two_replicas_make_one_chain_and_one_chain_per_proposal(
    engine: AsyncEngine, db_url: str
) -> None:
    """A batch links its entries in one transaction (tips read once, entries written together); batches
    of two replicas interleave, and the log and every proposal's own chain still hold."""
    other = create_engine(db_url)
    try:
        workers = [auditor(engine), auditor(other)]
        batches = [
            [
                record_of(withdrawn(f"p-{(b * 7 + n) % 4}"), topic="proposalflow.proposals", offset=b * 10 + n)
                for n in range(10)
            ]
            for b in range(6)
        ]
        outcomes = await asyncio.gather(*(workers[b % 2].process_batch(batch) for b, batch in enumerate(batches)))
    finally:
        await other.dispose()
    assert outcomes == [["handled"] * 10] * 6
    report = await service.verify(SqlLog(engine), KEY)
    assert (report["ok"], report["checked"]) == (True, 60), report
    async with engine.connect() as conn:
        rows = (await conn.execute(select(store.entries.c.subject, store.entries.c.subject_seq))).all()
        head = await store.head(conn)
    per_proposal: dict[str, list[int]] = {}
    for subject, subject_seq in rows:
        per_proposal.setdefault(subject, []).append(subject_seq)
    assert {s: sorted(seqs) for s, seqs in per_proposal.items()} == {
        s: list(range(1, len(seqs) + 1)) for s, seqs in per_proposal.items()
    }
    assert head is not None and head.seq == 60


async def test_entries_linked_but_never_written_cannot_be_committed(engine: AsyncEngine) -> None:
    """A deferred append must be flushed: a commit without it is refused, so no entry is half-kept."""
    with pytest.raises(store.UnflushedEntries):
        async with engine.begin() as conn:
            await service.record_event(
                SqlUnitOfWork(conn, KEY, defer=True),
                withdrawn("p-1"),
                record_of(withdrawn("p-1"), topic="proposalflow.proposals"),
            )
    assert await count(engine) == 0
    # What the refused transaction linked is gone with it; the next appends start from the real head.
    await audit_events(engine, ["p-1", "p-2"])
    report = await service.verify(SqlLog(engine), KEY)
    assert (report["ok"], report["checked"]) == (True, 2), report
