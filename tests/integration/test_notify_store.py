"""Notify's exactly-once planning and its delivery claims, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from services.notify import service, store
from services.notify.rules import load_rules
from services.notify.settings import NotifySettings
from shared.db import create_engine
from shared.messaging import envelope_for
from shared.migrate import upgrade_async
from tests.notify_fixtures import lifecycle

SETTINGS = NotifySettings(smtp_host="127.0.0.1")
NOTIFIER = service.Notifier(rules=load_rules(SETTINGS.rules_path), settings=SETTINGS)
WRITER = {"proposalflow.proposals": "intake", "proposalflow.assignments": "assignment"}


async def count(conn, table) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def test_a_replayed_event_plans_and_tells_nothing_new(db_url: str) -> None:
    await upgrade_async("notify", db_url)
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await store.put_contact(
                conn,
                {
                    "id": "m-1",
                    "name": "张三",
                    "kind": "member",
                    "email": "zhangsan@example.com",
                    "phone": None,
                    "webhook_url": "https://oa.example/hook",
                    "channels": None,
                    "quiet_start": None,
                    "quiet_end": None,
                    "updated_at": datetime.now(UTC),
                },
            )
        envelopes = [(event, envelope_for(event, WRITER[event.TOPIC])) for event, _ in lifecycle()[:5]]
        # Handled twice, bypassing the consumer's inbox: as after a replay from a reset consumer group.
        for _ in range(2):
            for event, envelope in envelopes:
                async with engine.begin() as conn:
                    await service.handle(conn, envelope, event, NOTIFIER)
        async with engine.connect() as conn:
            assert await count(conn, store.notifications) == 8  # cosign ×2, filed ×2, assigned ×4
            assert await count(conn, store.deliveries) == 4  # m-1: filed and assigned, email and webhook
            assert await count(conn, store.metadata.tables["outbox"]) == 8

        # Two workers claiming at once never take the same delivery.
        now = datetime.now(UTC)

        async def claim() -> list[str]:
            async with engine.begin() as conn:
                return [row["id"] for row in await store.claim_due(conn, now, now + timedelta(minutes=1), 3)]

        first, second = await asyncio.gather(claim(), claim())
        assert not set(first) & set(second)
        assert len(set(first) | set(second)) == 4
        async with engine.begin() as conn:
            assert await store.claim_due(conn, now, now + timedelta(minutes=1), 10) == []  # all leased
            done = first[0] if first else second[0]
            assert await store.finish_attempt(conn, done, {"status": store.DELIVERED, "attempts": 1})
            assert not await store.finish_attempt(conn, done, {"status": store.DELIVERED, "attempts": 2})
    finally:
        await engine.dispose()
