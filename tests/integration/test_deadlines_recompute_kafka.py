"""`proposalflow deadlines recompute` on the real broker: after 2027 is declared in the policy, the command
(run as the operator runs it, in its own process) moves the open proposals' deadlines through assignment's
and progress's outboxes; the running services' relays publish the deadline-changed events, which are read
back from Kafka, and progress folds assignment's change into its read model. The closed proposal gets
nothing. The proposals and the hand-counted dates: tests/calendar_fixtures.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from sqlalchemy import select

from services.progress import store as progress_store
from shared.db import create_engine
from shared.envelope import from_kafka
from shared.events import ASSIGNMENTS, HANDLING, PROPOSALS, UNIT_REPORTS
from shared.migrate import upgrade_async
from shared.policy import POLICY_ENV_VAR
from tests.calendar_fixtures import (
    DECLARED_YAML,
    P1,
    P2,
    P3,
    P4,
    P5,
    deadlines_of,
    handled_and_published,
    policy_text,
)
from tests.progress_fixtures import Clock

pytestmark = pytest.mark.kafka

CHANGED = {"proposalflow.assignment.deadlines-changed.v1", "proposalflow.handling.deadline-changed.v1"}


async def from_the_end(bootstrap: str, *groups: str) -> None:
    """Commit, for these new consumer groups, the end of every ProposalFlow topic on the broker: the services
    then read only what comes after, not the proposals earlier tests left on the shared test broker (which
    would be open proposals in this test's databases, counted by the recompute)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [topic for topic in await admin.list_topics() if topic.startswith("proposalflow.")]
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    partitions = [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]
    for group in groups:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await consumer.commit(dict(ends))
        finally:
            await consumer.stop()


async def test_recompute_publishes_the_moved_deadlines_and_progress_follows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str
) -> None:
    run = uuid.uuid4().hex[:8]
    assignment_url = f"sqlite+aiosqlite:///{tmp_path}/assignment.db"
    progress_url = f"sqlite+aiosqlite:///{tmp_path}/progress.db"
    await upgrade_async("assignment", assignment_url)
    await upgrade_async("progress", progress_url)
    assignment, progress = create_engine(assignment_url), create_engine(progress_url)
    try:
        # What was published then is long gone to the broker; only the recompute's events are new.
        await handled_and_published(assignment, progress)
    finally:
        await assignment.dispose()
        await progress.dispose()

    policy = tmp_path / "dongguan-2027.yaml"
    policy.write_text(policy_text(DECLARED_YAML), encoding="utf-8")
    env = {
        POLICY_ENV_VAR: str(policy),
        "PROPOSALFLOW_ASSIGNMENT_DATABASE_URL": assignment_url,
        "PROPOSALFLOW_PROGRESS_DATABASE_URL": progress_url,
        "PROPOSALFLOW_ASSIGNMENT_CONSUMER_GROUP": f"itest-calendar-assignment-{run}",
        "PROPOSALFLOW_PROGRESS_CONSUMER_GROUP": f"itest-calendar-progress-{run}",
        "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROPOSALFLOW_OUTBOX_POLL_INTERVAL_S": "0.1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    for topic in (PROPOSALS, ASSIGNMENTS, HANDLING, UNIT_REPORTS):
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(topic, 3, 1)])
    await admin.close()
    await from_the_end(
        kafka_bootstrap, env["PROPOSALFLOW_ASSIGNMENT_CONSUMER_GROUP"], env["PROPOSALFLOW_PROGRESS_CONSUMER_GROUP"]
    )

    from services.assignment.app import build as build_assignment
    from services.progress.app import build as build_progress

    clock = Clock(datetime(2027, 2, 4, 1, 0, tzinfo=UTC))
    assignment_runtime, _ = build_assignment(clock)
    progress_runtime, _ = build_progress(clock)
    await assignment_runtime.start()
    await progress_runtime.start()
    consumer = AIOKafkaConsumer(
        ASSIGNMENTS,
        HANDLING,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"itest-calendar-reader-{run}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    started = datetime.now(UTC)
    try:
        command = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "proposalflow.cli", "deadlines", "recompute"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert command.returncode == 0, command.stderr
        printed = command.stdout.splitlines()
        assert printed[-1].startswith("5 deadline(s) moved on 4 of 4 open proposal(s)")
        assert any(P1 in line and "reply_due" in line and "2027-02-12 → 2027-02-15" in line for line in printed)

        seen: dict[tuple[str, str], dict[str, Any]] = {}

        async def collect() -> None:
            async for record in consumer:
                envelope = from_kafka(record.value, record.headers)
                if envelope.type in CHANGED and envelope.time >= started:
                    seen[(envelope.type, envelope.subject or "")] = envelope.data
                    if len(seen) >= 4:
                        return

        await asyncio.wait_for(collect(), timeout=90)

        async def progress_follows() -> dict[str, dict[str, object]]:
            engine = create_engine(progress_url)
            try:
                while True:
                    async with engine.connect() as conn:
                        found = await deadlines_of_progress(conn)
                    if found[P1] == date(2027, 2, 15):
                        return found
                    await asyncio.sleep(0.2)
            finally:
                await engine.dispose()

        progress_dates = await asyncio.wait_for(progress_follows(), timeout=60)
    finally:
        await consumer.stop()
        await progress_runtime.stop()
        await assignment_runtime.stop()

    assert set(seen) == {
        ("proposalflow.assignment.deadlines-changed.v1", P1),
        ("proposalflow.assignment.deadlines-changed.v1", P2),
        ("proposalflow.handling.deadline-changed.v1", P3),
        ("proposalflow.handling.deadline-changed.v1", P4),
    }
    p1 = seen[("proposalflow.assignment.deadlines-changed.v1", P1)]
    assert (p1["previous_reply_due"], p1["reply_due"], p1["provisional_calendar"]) == (
        "2027-02-12",
        "2027-02-15",
        False,
    )
    assert p1["actor"] == {"id": "deadlines-recompute", "role": "system", "unit": None}
    p2 = seen[("proposalflow.assignment.deadlines-changed.v1", P2)]
    assert (p2["reply_due"], p2["dispute_until"], p2["previous_dispute_until"]) == (
        "2027-05-06",
        "2027-02-18",
        "2027-02-16",
    )
    p3 = seen[("proposalflow.handling.deadline-changed.v1", P3)]
    assert (p3["kind"], p3["previous_due"], p3["due"]) == ("evaluation", "2027-03-02", "2027-03-03")
    p4 = seen[("proposalflow.handling.deadline-changed.v1", P4)]
    assert (p4["kind"], p4["round"], p4["previous_due"], p4["due"]) == ("reply", 2, "2027-02-12", "2027-02-15")
    assert not any(subject == P5 for _, subject in seen)
    # Progress folded assignment's change (P1), its own changes (P3, P4); the closed P5 kept its dates.
    assert progress_dates[P1] == date(2027, 2, 15)

    assignment, progress = create_engine(assignment_url), create_engine(progress_url)
    try:
        stored = await deadlines_of(assignment, progress)
    finally:
        await assignment.dispose()
        await progress.dispose()
    assert stored[P3]["progress.evaluation_due"] == date(2027, 3, 3)
    assert stored[P4]["progress.reply_due"] == date(2027, 2, 15)
    assert stored[P5]["assignment.reply_due"] == date(2027, 2, 12)
    assert stored[P5]["stage"] == "closed"


async def deadlines_of_progress(conn: Any) -> dict[str, object]:
    table = progress_store.proposals
    rows = await conn.execute(select(table.c.id, table.c.reply_due))
    return {row.id: row.reply_due for row in rows}
