"""Order per proposal with several outbox relays (DESIGN.md §3: the key is the proposal id, so a proposal's
events stay in order within their topic), through a `kill -9` of one relay in the middle of a batch.

Three relay processes publish intake's outbox to a topic of the test's own on the real broker, while this
process commits events of twenty proposals to the outbox, one proposal after another in small
transactions (on SQLite from another process than the relays, as a service replica would). One relay is
built to die in the middle of a batch: its records reach the broker, it never marks them sent, and it
is killed with SIGKILL holding its turn. The others carry on, and publish its unmarked rows again.

Then the topic is read back from the broker, and for every proposal (key) the test checks:
- **never backwards:** taken in the order the topic holds them, each event's *first* appearance comes
  after the first appearance of every event committed before it (outbox id order, which is commit order
  here: one writer commits one proposal's events one transaction after another);
- **nothing missing:** every committed event is on the topic;
- **nothing doubled but the crash's:** an event appears again only if it was in the killed relay's
  unmarked batch (at least once: published, not marked, published again), and at least one did, so the
  crash in the middle of a batch really happened. The consumers' inbox drops such a copy by its event id
  (`test_storage.py::test_a_duplicate_delivery_has_one_effect`); what a consumer applies is therefore
  the first appearances, in the order checked above.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import func, select

from services.intake import store as intake_store
from shared.db import create_engine
from shared.events import Actor, ProposalWithdrawn, Role
from shared.migrate import upgrade_async
from shared.outbox import add_to_outbox
from tests.conftest import fresh_postgres_database
from tests.procs import ROOT, stop_service

pytestmark = [pytest.mark.reliability, pytest.mark.kafka, pytest.mark.postgres, pytest.mark.timeout(300)]

RELAYS = 3
PROPOSALS = [f"p-order-{n:02d}" for n in range(20)]
BATCH = 50
STALL_AFTER = 120
"""The killed relay's acknowledgements stop after this many records: the rest of its batch is in flight."""
PARTITIONS = 6
ACTOR = Actor(id="m-order", role=Role.MEMBER)


@contextlib.asynccontextmanager
async def database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "postgres":
        async with fresh_postgres_database() as url:
            yield url
    else:
        yield f"sqlite+aiosqlite:///{tmp_path}/intake.db"


@contextlib.contextmanager
def relays(url: str, bootstrap: str, marker: Path, logs: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    processes = []
    try:
        for number in range(RELAYS):
            stall = ["--stall-after", str(STALL_AFTER), "--marker", str(marker)] if number == 0 else []
            log = (logs / f"relay-{number}.log").open("ab")
            processes.append(
                subprocess.Popen(
                    [
                        *(sys.executable, "-m", "tests.reliability.relay_process", "--database-url", url),
                        *("--bootstrap", bootstrap, "--batch-size", str(BATCH), *stall),
                    ],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        yield processes
    finally:
        for process in processes:
            stop_service(process, kill=True)


async def read_back(bootstrap: str, topic: str) -> list[tuple[str, str]]:
    """Every record of the topic as (key, event id), partition by partition, in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        found: list[tuple[str, str]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    event_id = dict(record.headers)["ce_id"].decode()
                    found.append((record.key.decode(), event_id))
        return found
    finally:
        await consumer.stop()


@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
async def test_three_relays_and_a_kill_9_keep_every_proposal_in_order(
    backend: str, tmp_path: Path, kafka_bootstrap: str
) -> None:
    topic = f"test.relay-order.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()
    marker = tmp_path / "stalled"
    async with database(backend, tmp_path) as url:
        await upgrade_async("intake", url)
        engine = create_engine(url)
        outbox = intake_store.metadata.tables["outbox"]
        rng = random.Random(17)
        try:
            with relays(url, kafka_bootstrap, marker, tmp_path) as processes:
                killed_at = None
                started = time.monotonic()
                # Commit events until the stalled relay has been killed and a while after.
                while killed_at is None or time.monotonic() - killed_at < 3:
                    assert time.monotonic() - started < 120, "the stalling relay never stalled"
                    async with engine.begin() as conn:
                        for proposal in rng.sample(PROPOSALS, 3):
                            events = [ProposalWithdrawn(proposal_id=proposal, actor=ACTOR, reason="撤回")]
                            await add_to_outbox(conn, intake_store.metadata, "intake", events * 2, topic=topic)
                    if killed_at is None and marker.exists():
                        stop_service(processes[0], kill=True)
                        killed_at = time.monotonic()
                    await asyncio.sleep(0.005)
                # The survivors publish everything, the killed relay's unmarked rows too.
                deadline = time.monotonic() + 60
                while True:
                    waiting = select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
                    async with engine.connect() as conn:
                        unsent = (await conn.execute(waiting)).scalar_one()
                    if unsent == 0:
                        break
                    assert time.monotonic() < deadline, f"{unsent} rows never published"
                    await asyncio.sleep(0.2)
                assert all(process.poll() is None for process in processes[1:]), "a surviving relay died"
            async with engine.connect() as conn:
                committed = (await conn.execute(select(outbox.c.event_id, outbox.c.key, outbox.c.id))).all()
        finally:
            await engine.dispose()

    sequence = {row.event_id: int(row.id) for row in committed}
    expected: dict[str, list[int]] = defaultdict(list)
    for row in sorted(committed, key=lambda row: int(row.id)):
        expected[row.key].append(int(row.id))
    on_topic = await read_back(kafka_bootstrap, topic)
    appearances: dict[str, list[int]] = defaultdict(list)
    for key, event_id in on_topic:
        appearances[key].append(sequence[event_id])

    backwards, doubled = [], Counter[int]()
    for key, ids in appearances.items():
        first: list[int] = []
        seen: set[int] = set()
        for row_id in ids:
            if row_id in seen:
                doubled[row_id] += 1
                continue
            seen.add(row_id)
            if first and row_id < first[-1]:
                backwards.append((key, first[-1], row_id))
            first.append(row_id)
    missing = {key: sorted(set(ids) - set(appearances[key])) for key, ids in expected.items()}
    missing = {key: ids for key, ids in missing.items() if ids}
    print(
        f"\n{backend}: {len(committed)} events of {len(expected)} proposals, {len(on_topic)} records on the topic, "
        f"{sum(doubled.values())} published again after the kill, {len(backwards)} out of order"
    )
    assert not backwards, f"events published out of order (key, after, came): {backwards[:10]}"
    assert not missing, f"events never published: {missing}"
    # Only the killed relay's unmarked batch is published twice, and it was: the crash hit mid-batch.
    assert 0 < len(doubled) <= BATCH, f"{len(doubled)} events published more than once"
    assert max(doubled.values()) == 1
