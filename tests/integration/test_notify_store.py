"""Notify's exactly-once planning and its delivery claims, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from services.notify import service, store
from services.notify.delivery import DeliveryWorker
from services.notify.rules import load_rules
from services.notify.settings import NotifySettings
from services.notify.unit_of_work import SqlUnitOfWork
from shared.db import create_engine
from shared.migrate import upgrade_async
from shared.outbox import envelope_for
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
                    await service.handle(SqlUnitOfWork(conn), envelope, event, NOTIFIER)
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


async def test_a_failed_sms_is_retried_after_the_quiet_hours_and_the_attempt_is_published(db_url: str) -> None:
    await upgrade_async("notify", db_url)
    engine = create_engine(db_url)
    settings = NotifySettings(sms_gateway_url="http://127.0.0.1:1/sms", delivery_base_delay_s=1, delivery_max_delay_s=2)
    now = datetime.now(UTC)
    local = now.astimezone(ZoneInfo(settings.timezone))
    quiet_start, quiet_end = (local - timedelta(hours=1)).time(), (local + timedelta(hours=2)).time()
    try:
        async with engine.begin() as conn:
            await store.put_contact(
                conn,
                {
                    "id": "m-3",
                    "name": "王五",
                    "kind": "member",
                    "email": None,
                    "phone": "13711112222",
                    "webhook_url": None,
                    "channels": None,
                    "quiet_start": quiet_start.strftime("%H:%M"),
                    "quiet_end": quiet_end.strftime("%H:%M"),
                    "updated_at": now,
                },
            )
            # Planned before the quiet hours began (say), so due now; the gateway is down.
            await store.plan_delivery(
                conn,
                {
                    "id": "d-sms",
                    "recipient": "m-3",
                    "channel": "sms",
                    "proposal_id": "p-1",
                    "cause_event_id": "e-1",
                    "cause_event_type": "proposalflow.proposal.filed.v1",
                    "title": "提案已立案",
                    "body": "您的提案已立案。",
                    "created_at": now,
                    "address": "13711112222",
                    "correlation_id": "c-1",
                    "link": "https://zxta.example/proposals/p-1",
                    "status": store.PENDING,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "claimed_until": None,
                    "last_error": None,
                    "finished_at": None,
                },
            )
        worker = DeliveryWorker(engine, settings, after_commit=lambda: None)
        assert await worker.send_due() == 1
        async with engine.connect() as conn:
            [row] = (await conn.execute(select(store.deliveries))).mappings().all()
            [published] = (await conn.execute(select(store.metadata.tables["outbox"]))).mappings().all()
        quiet_ends = datetime.combine(local.date(), quiet_end, tzinfo=local.tzinfo)
        if quiet_ends <= local:
            quiet_ends += timedelta(days=1)
        assert row["status"] == store.PENDING and row["attempts"] == 1
        assert row["next_attempt_at"] >= quiet_ends.replace(second=0, microsecond=0)
        assert "ConnectError" in row["last_error"]
        assert published["type"] == "proposalflow.notification.attempt-failed.v1"
    finally:
        await engine.dispose()
