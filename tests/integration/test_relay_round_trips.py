"""The relay's turn on PostgreSQL in three round trips, whatever the batch: `BEGIN` with the turn's lock,
the unsent rows, the mark with `COMMIT` (docs/performance.md, "The seventh round"). At a moderate rate a
proposal costs about ten turns, each a batch of one row, so a turn's round trips are paid per event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select

from services.intake import store as intake_store
from shared.db import create_engine
from shared.events import Actor, ProposalWithdrawn, Role
from shared.migrate import upgrade_async
from shared.outbox import add_to_outbox
from shared.relay import OutboxRelay
from tests.fakes import RecordingPublisher

ACTOR = Actor(id="m-1", role=Role.MEMBER)


@pytest.fixture
async def engine(postgres_url: str) -> AsyncIterator[Any]:
    await upgrade_async("intake", postgres_url)
    engine = create_engine(postgres_url)
    yield engine
    await engine.dispose()


class RoundTrips:
    """Counts the statements sent on asyncpg's connections (each call one round trip once its statement
    is prepared and cached)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        for name in ("execute", "executemany", "fetch", "fetchrow", "fetchval"):
            original = getattr(asyncpg.Connection, name)

            def counted(connection: Any, query: str, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                self.sent.append(query.split()[0].upper())
                return _original(connection, query, *args, **kwargs)

            monkeypatch.setattr(asyncpg.Connection, name, counted)


async def stage(engine: Any, *proposal_ids: str) -> None:
    async with engine.begin() as conn:
        await add_to_outbox(
            conn,
            intake_store.metadata,
            "intake",
            [ProposalWithdrawn(proposal_id=p, actor=ACTOR, reason="撤回") for p in proposal_ids],
        )


async def test_a_turn_is_three_round_trips_and_publishes_in_order(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = RecordingPublisher()
    relay = OutboxRelay(engine, intake_store.metadata, publisher)  # type: ignore[arg-type]
    await stage(engine, "p-0")
    assert await relay.publish_once() == 1  # the connection prepares its statements once
    trips = RoundTrips(monkeypatch)
    await stage(engine, "p-1", "p-2", "p-3")
    trips.sent.clear()
    assert await relay.publish_once() == 3
    assert trips.sent == ["BEGIN;", "SELECT", "UPDATE"]  # lock with BEGIN; mark with COMMIT
    trips.sent.clear()
    assert await relay.publish_once() == 0
    assert trips.sent == ["BEGIN;", "SELECT", "COMMIT"]
    assert [sent.key for sent in publisher.sent] == [b"p-0", b"p-1", b"p-2", b"p-3"]
    outbox = intake_store.metadata.tables["outbox"]
    async with engine.connect() as conn:
        marks = (await conn.execute(select(outbox.c.sent_at))).scalars().all()
    assert len(marks) == 4 and all(mark is not None for mark in marks)


async def test_a_turn_cut_short_leaves_its_rows_unsent_and_the_turn_free(engine: Any) -> None:
    await stage(engine, "p-1", "p-2")
    down = RecordingPublisher(down=True)
    with pytest.raises(Exception, match="broker down"):
        await OutboxRelay(engine, intake_store.metadata, down).publish_once()  # type: ignore[arg-type]
    # Another relay takes the turn at once (the first one's transaction is over) and sends both rows.
    up = RecordingPublisher()
    assert await OutboxRelay(engine, intake_store.metadata, up).publish_once() == 2  # type: ignore[arg-type]
    assert [sent.key for sent in up.sent] == [b"p-1", b"p-2"]
    async with engine.connect() as conn:
        in_transaction = (
            await conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE state = 'idle in transaction' AND datname = current_database()"
            )
        ).scalar()
    assert in_transaction == 0
