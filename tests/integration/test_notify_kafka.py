"""Notify on the real broker, with real channels: a local HTTP receiver (webhooks and the SMS gateway)
and a local SMTP server (aiosmtpd). The notify app runs in-process (its real consumer, delivery
worker, outbox relay and producer); lifecycle events go in on their topics as the other services
would write them, and what comes out is read from the inbox, the receivers and
`proposalflow.notifications`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.header import decode_header, make_header
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiosmtpd.controller import Controller
from sqlalchemy import delete, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.notify import domain, store
from services.notify.app import build
from services.notify.delivery import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER
from services.notify.settings import NotifySettings
from shared.auth import issue_token
from shared.envelope import Envelope, from_kafka, to_kafka
from shared.events import ASSIGNMENTS, HANDLING, NOTIFICATIONS, PROPOSALS, Event, Role
from shared.migrate import upgrade_async
from shared.outbox import envelope_for
from shared.runtime import ServiceRuntime
from shared.settings import CommonSettings
from shared.topics import create_topics
from tests.notify_fixtures import lifecycle, submitted
from tests.procs import free_port

pytestmark = pytest.mark.kafka

SECRET = "itest-webhook-secret"
WRITER = {PROPOSALS: "intake", ASSIGNMENTS: "assignment", HANDLING: "progress"}
MAX_ATTEMPTS = 3
LAST_SEEN: dict[str, Any] = {}
"""What `settled` saw last, for the message of a timeout."""


@dataclass
class Receiver:
    """A real HTTP endpoint: webhooks at /hooks/<name> (`broken` answers 500, `gone` 410) and an SMS
    gateway at /sms."""

    port: int
    hooks: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    sms: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def app(self) -> Starlette:
        async def hook(request: Request) -> JSONResponse:
            name = request.path_params["name"]
            self.hooks.append((name, dict(request.headers), await request.body()))
            status = {"broken": 500, "gone": 410}.get(name, 200)
            return JSONResponse({"ok": status == 200}, status_code=status)

        async def sms(request: Request) -> JSONResponse:
            self.sms.append(await request.json())
            return JSONResponse({"queued": True})

        return Starlette(routes=[Route("/hooks/{name}", hook, methods=["POST"]), Route("/sms", sms, methods=["POST"])])


class Mailbox:
    """aiosmtpd handler: keeps every message it is given."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], str, str]] = []

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content)
        subject = str(make_header(decode_header(message["Subject"])))
        body = message.get_payload(decode=True).decode()
        self.messages.append((message[DELIVERY_HEADER], list(envelope.rcpt_tos), subject, body))
        return "250 OK"


@dataclass
class Harness:
    runtime: ServiceRuntime
    http: httpx.AsyncClient
    receiver: Receiver
    mailbox: Mailbox
    bootstrap: str


@pytest.fixture
async def harness(tmp_path, monkeypatch, kafka_bootstrap: str) -> AsyncIterator[Harness]:
    receiver = Receiver(free_port())
    server = uvicorn.Server(uvicorn.Config(receiver.app(), host="127.0.0.1", port=receiver.port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    mailbox = Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    url = f"sqlite+aiosqlite:///{tmp_path}/notify.db"
    for name, value in {
        "PROPOSALFLOW_NOTIFY_DATABASE_URL": url,
        "PROPOSALFLOW_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PROPOSALFLOW_NOTIFY_CONSUMER_GROUP": f"notify-itest-{uuid.uuid4().hex[:8]}",
        "PROPOSALFLOW_OUTBOX_POLL_INTERVAL_S": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    settings = NotifySettings(
        public_base_url="https://zxta.example.gov.cn",
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        sms_gateway_url=receiver.url("/sms"),
        webhook_secret=SECRET,
        delivery_poll_interval_s=0.1,
        parked_sweep_interval_s=0.5,
        delivery_timeout_s=5,
        delivery_max_attempts=MAX_ATTEMPTS,
        delivery_base_delay_s=0.05,
        delivery_max_delay_s=0.2,
    )
    await create_topics(CommonSettings(kafka_bootstrap_servers=kafka_bootstrap), 3, 1)
    await upgrade_async("notify", url)
    runtime, app = build(settings)
    await runtime.start()
    deadline = asyncio.get_running_loop().time() + 60
    while (await runtime.readiness()).get("broker") != "ok":
        assert asyncio.get_running_loop().time() < deadline, "notify did not connect to Kafka"
        await asyncio.sleep(0.2)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify") as http:
            yield Harness(runtime, http, receiver, mailbox, kafka_bootstrap)
    finally:
        await runtime.stop()
        smtp.stop()
        server.should_exit = True
        await serving


def token(role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CommonSettings(), subject=sub, role=role, unit=unit)}"}


ADMIN = token(Role.ADMIN, "admin-1")


async def add_contacts(harness: Harness, quiet_from: datetime) -> None:
    local = quiet_from.astimezone(ZoneInfo("Asia/Shanghai"))
    quiet = {
        "start": (local - timedelta(hours=1)).strftime("%H:%M"),
        "end": (local + timedelta(hours=2)).strftime("%H:%M"),
    }
    contacts = {
        "m-1": {
            "name": "张三",
            "kind": "member",
            "email": "zhangsan@example.com",
            "phone": "13812345678",
            "webhook_url": harness.receiver.url("/hooks/m-1"),
        },
        "m-2": {
            "name": "李四",
            "kind": "member",
            "email": "lisi@example.com",
            "phone": "13900000000",
            "channels": ["email"],
        },
        "m-3": {"name": "王五", "kind": "member", "phone": "13711112222", "quiet_hours": quiet},
        "unit:dg-zrj": {
            "name": "东莞市自然资源局",
            "kind": "unit",
            "webhook_url": harness.receiver.url("/hooks/broken"),
        },
        "committee": {"name": "提案委员会", "kind": "group", "webhook_url": harness.receiver.url("/hooks/committee")},
        "l-1": {"name": "督办领导", "kind": "leader", "webhook_url": harness.receiver.url("/hooks/gone")},
    }
    for contact_id, body in contacts.items():
        response = await harness.http.put(f"/contacts/{contact_id}", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text


def envelope_of(event: Event) -> Envelope:
    return envelope_for(event, WRITER[event.TOPIC])


async def publish(bootstrap: str, envelopes: list[tuple[str, Envelope]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, envelope in envelopes:
            key, value, headers = to_kafka(envelope)
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 150) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}; last seen {LAST_SEEN}"
        await asyncio.sleep(0.2)


async def rows(harness: Harness, table: Any, proposals: set[str]) -> list[dict[str, Any]]:
    async with harness.runtime.engine.connect() as conn:
        result = await conn.execute(select(table).where(table.c.proposal_id.in_(proposals)))
        return [dict(row) for row in result.mappings()]


async def settled(harness: Harness, proposals: set[str], inbox_count: int, quiet: str | None = None) -> bool:
    """Every inbox notice is in, and every delivery has gone or failed (but those to `quiet`, whose
    quiet hours hold their SMS back)."""
    inbox = await rows(harness, store.notifications, proposals)
    deliveries = await rows(harness, store.deliveries, proposals)
    waiting = [d for d in deliveries if d["status"] == store.PENDING and d["recipient"] != quiet]
    LAST_SEEN.update(inbox=len(inbox), expected=inbox_count, pending=[(d["recipient"], d["channel"]) for d in waiting])
    return len(inbox) == inbox_count and bool(deliveries) and not waiting


async def notification_events(bootstrap: str, proposals: set[str], count: int) -> list[Envelope]:
    consumer = AIOKafkaConsumer(
        NOTIFICATIONS,
        bootstrap_servers=bootstrap,
        group_id=f"itest-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    envelope = from_kafka(record.value, record.headers)
                    if envelope.subject in proposals:
                        found.append(envelope)
        # Anything more than `count` would be a duplicate: read on briefly to catch it.
        for records in (await consumer.getmany(timeout_ms=1000)).values():
            found.extend(e for e in (from_kafka(r.value, r.headers) for r in records) if e.subject in proposals)
    finally:
        await consumer.stop()
    return found


async def test_every_default_rule_reaches_its_people_once_over_real_channels(harness: Harness) -> None:
    prefix = f"it-{uuid.uuid4().hex[:6]}"
    scenario = lifecycle(prefix)
    proposals = {event.proposal_id for event, _ in scenario}
    expected = Counter(pair for _event, told in scenario for pair in told)
    await add_contacts(harness, datetime.now(UTC))
    envelopes = [(event.TOPIC, envelope_of(event)) for event, _ in scenario]
    await publish(harness.bootstrap, envelopes)

    await eventually(
        lambda: settled(harness, proposals, sum(expected.values()), quiet="m-3"), "every notice to be handled"
    )

    # 站内消息: exactly the expected (recipient, title) pairs, once each.
    inbox = await rows(harness, store.notifications, proposals)
    assert Counter((row["recipient"], row["title"]) for row in inbox) == expected
    committee = await harness.http.get("/inbox", params={"limit": 200}, headers=token(Role.COMMITTEE, "c-9"))
    assert {item["title"] for item in committee.json()["items"] if item["proposal_id"] in proposals} == {
        title for who, title in expected if who == "committee"
    }

    # What reached the outside world about these proposals (earlier runs' events are replayed too).
    deliveries = await rows(harness, store.deliveries, proposals)
    ours = {d["id"] for d in deliveries}
    hooks = [
        (name, headers, body)
        for name, headers, body in harness.receiver.hooks
        if headers["x-proposalflow-delivery"] in ours
    ]
    mails = [(rcpts, subject, body) for did, rcpts, subject, body in harness.mailbox.messages if did in ours]
    texts = [message for message in harness.receiver.sms if message["id"] in ours]
    # Every default rule but 办结 (inbox only) also goes by webhook and email.
    outside = Counter(who for (who, title), n in expected.items() for _ in range(n) if title != "提案已办结")

    # Webhook: one signed POST per notice of m-1 and of the committee.
    by_name = Counter(name for name, _headers, _body in hooks)
    assert by_name["m-1"] == outside["m-1"]
    assert by_name["committee"] == outside["committee"]
    for name, headers, body in hooks:
        assert headers["x-proposalflow-signature"] == domain.webhook_signature(
            SECRET, headers["x-proposalflow-timestamp"], body
        ), name
        assert {DELIVERY_HEADER.lower(), TIMESTAMP_HEADER.lower(), SIGNATURE_HEADER.lower()} <= set(headers)
    first = json.loads(next(body for name, _h, body in hooks if name == "m-1"))
    assert first["link"] == f"https://zxta.example.gov.cn/proposals/{first['proposal_id']}"

    # Email over SMTP to m-1 and m-2.
    mailed = Counter(rcpt for rcpts, _subject, _body in mails for rcpt in rcpts)
    assert mailed == {"zhangsan@example.com": outside["m-1"], "lisi@example.com": outside["m-2"]}
    # Two proposals are filed; mails arrive in any order, so find each by its title.
    filed_mails = {body for _rcpts, subject, body in mails if subject == "提案已立案"}
    assert any("案号 2026-0001" in body and "关于推进全域土地综合整治的建议" in body for body in filed_mails)
    assert any("案号 2026-0002" in body and "关于优化道路交通的建议" in body for body in filed_mails)

    # SMS through the gateway: m-2 turned SMS off; m-3 is in quiet hours, so theirs waits.
    assert {message["to"] for message in texts} == {"13812345678"}
    waiting = [d for d in deliveries if d["recipient"] == "m-3"]
    assert waiting and all(d["status"] == store.PENDING and d["next_attempt_at"] > datetime.now(UTC) for d in waiting)

    # The failing webhook: tried MAX_ATTEMPTS times, then failed; the others went through meanwhile.
    broken = [d for d in deliveries if d["recipient"] == "unit:dg-zrj" and d["channel"] == "webhook"]
    assert broken and all(d["status"] == store.FAILED and d["attempts"] == MAX_ATTEMPTS for d in broken)
    tries = Counter(headers["x-proposalflow-delivery"] for name, headers, _ in hooks if name == "broken")
    assert tries == {d["id"]: MAX_ATTEMPTS for d in broken}
    # An endpoint that answers 410 Gone will not get better: failed after one attempt.
    gone = [d for d in deliveries if d["recipient"] == "l-1"]
    assert gone and all(d["status"] == store.FAILED and d["attempts"] == 1 for d in gone)
    delivered = [d for d in deliveries if d["status"] == store.DELIVERED]
    assert {d["channel"] for d in delivered} == {"webhook", "email", "sms"}

    # Every attempt's outcome is on proposalflow.notifications, once: each retried failure as it
    # happened, then the final failure.
    retried_attempts = sum(d["attempts"] - 1 for d in broken)
    outcomes = len(inbox) + len(delivered) + len(broken) + len(gone) + retried_attempts
    published = await notification_events(harness.bootstrap, proposals, outcomes)
    assert len(published) == outcomes
    retried = [e for e in published if e.type == "proposalflow.notification.attempt-failed.v1"]
    assert Counter(e.data["notification_id"] for e in retried) == {d["id"]: MAX_ATTEMPTS - 1 for d in broken}
    assert all("HTTP 500" in e.data["error"] and e.data["retry_at"] for e in retried)
    failed = [e for e in published if e.type == "proposalflow.notification.failed.v1"]
    assert {e.data["notification_id"] for e in failed} == {d["id"] for d in broken + gone}
    by_id = {e.data["notification_id"]: e.data for e in failed}
    assert all("HTTP 500" in by_id[d["id"]]["error"] and by_id[d["id"]]["attempts"] == MAX_ATTEMPTS for d in broken)
    assert all("HTTP 410" in by_id[d["id"]]["error"] and by_id[d["id"]]["attempts"] == 1 for d in gone)


async def test_redelivered_and_replayed_events_tell_nobody_again(harness: Harness) -> None:
    prefix = f"it-{uuid.uuid4().hex[:6]}"
    scenario = lifecycle(prefix)[:6]  # submitted … assigned: notices on every channel
    proposals = {event.proposal_id for event, _ in scenario}
    expected = Counter(pair for _event, told in scenario for pair in told)
    await add_contacts(harness, datetime.now(UTC) - timedelta(hours=12))
    envelopes = [(event.TOPIC, envelope_of(event)) for event, _ in scenario]
    await publish(harness.bootstrap, envelopes)
    await eventually(lambda: settled(harness, proposals, sum(expected.values())), "the first delivery")
    before_inbox = await rows(harness, store.notifications, proposals)
    before_deliveries = await rows(harness, store.deliveries, proposals)
    ours = {d["id"] for d in before_deliveries}

    def sent() -> tuple[int, int, int]:
        return (
            sum(headers["x-proposalflow-delivery"] in ours for _name, headers, _body in harness.receiver.hooks),
            sum(did in ours for did, *_rest in harness.mailbox.messages),
            sum(message["id"] in ours for message in harness.receiver.sms),
        )

    before_sent = sent()
    assert all(before_sent)

    # Redelivered as is, then replayed after the consumer's memory of them is gone (a reset group,
    # a restored backup): the planned deliveries' own ids must still stop them. A new proposal
    # behind them marks when they have all been handled.
    await publish(harness.bootstrap, envelopes)
    inbox_table = store.metadata.tables["inbox"]
    async with harness.runtime.engine.begin() as conn:
        await conn.execute(delete(inbox_table))
    marker = submitted(f"{prefix}-marker", "关于排在重放之后的建议", [])
    await publish(harness.bootstrap, [*envelopes, (marker.TOPIC, envelope_of(marker))])

    async def marker_seen() -> bool:
        async with harness.runtime.engine.connect() as conn:
            return await store.get_proposal(conn, marker.proposal_id) is not None

    await eventually(marker_seen, "the marker behind the replay")
    assert await rows(harness, store.notifications, proposals) == before_inbox
    assert await rows(harness, store.deliveries, proposals) == before_deliveries
    assert sent() == before_sent
