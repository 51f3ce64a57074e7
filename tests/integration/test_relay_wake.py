"""A commit that wakes the outbox relay while it publishes a batch is published by the next batch, not at
the next poll (shared/relay.py `OutboxRelay.run`), on SQLite and PostgreSQL. Before, the relay cleared its
wake-up after the batch, and such a row waited for the poll interval: up to 0.5 s of latency per hop by
default, and for ever with the hour-long interval below."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.intake import store as intake_store
from shared.db import create_engine
from shared.events import Actor, ProposalWithdrawn, Role
from shared.migrate import upgrade_async
from shared.outbox import add_to_outbox
from shared.relay import OutboxRelay
from tests.fakes import RecordingPublisher

ACTOR = Actor(id="m-1", role=Role.MEMBER)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    await upgrade_async("intake", db_url)
    engine = create_engine(db_url)
    yield engine
    await engine.dispose()


async def stage(engine: AsyncEngine, proposal_id: str) -> None:
    async with engine.begin() as conn:
        event = ProposalWithdrawn(proposal_id=proposal_id, actor=ACTOR, reason="撤回")
        await add_to_outbox(conn, intake_store.metadata, "intake", [event])


class CommitDuringFirstBatch(RecordingPublisher):
    """Acknowledges the first batch's row only once another row is committed and the relay woken for it."""

    relay: OutboxRelay | None = None
    engine: AsyncEngine | None = None

    async def send(self, topic: str, *, value: Any, key: Any, headers: Any) -> asyncio.Future[Any]:
        sent = await super().send(topic, value=value, key=key, headers=headers)
        if len(self.sent) > 1 or self.relay is None or self.engine is None:
            return sent
        acknowledged: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        relay, engine = self.relay, self.engine

        async def commit_then_acknowledge() -> None:
            await stage(engine, "p-2")
            relay.wake()
            acknowledged.set_result(None)

        self.committing = asyncio.create_task(commit_then_acknowledge())
        return acknowledged


async def test_a_commit_during_a_batch_is_published_without_waiting_for_the_poll(engine) -> None:
    publisher = CommitDuringFirstBatch()
    relay = OutboxRelay(engine, intake_store.metadata, publisher, poll_interval=3600, service="intake")  # type: ignore[arg-type]
    publisher.relay, publisher.engine = relay, engine
    await stage(engine, "p-1")
    relaying = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(60):  # only a bound on a hang: the poll is an hour away
            while len(publisher.sent) < 2:
                await asyncio.sleep(0.02)
    finally:
        relay.stop()
        await relaying
    assert [sent.key for sent in publisher.sent] == [b"p-1", b"p-2"]
