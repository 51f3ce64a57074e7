"""Notify's HTTP door: the inbox of each kind of recipient, the contacts directory and the delivery
log, with every role refused that should be. The app runs in-process on SQLite; events are handed
to the use case directly (the broker path is in tests/integration/test_notify_kafka.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.notify import service
from services.notify.app import build
from services.notify.rules import load_rules
from services.notify.settings import NotifySettings
from services.notify.unit_of_work import SqlUnitOfWork
from shared.auth import issue_token
from shared.events import Event, Role
from shared.migrate import upgrade_async
from shared.outbox import envelope_for
from shared.settings import CommonSettings
from tests.notify_fixtures import lifecycle


def token(role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CommonSettings(), subject=sub, role=role, unit=unit)}"}


ADMIN = token(Role.ADMIN, "admin-1")
MEMBER = token(Role.MEMBER, "m-1")
COSIGNER = token(Role.MEMBER, "m-2")
LEAD_UNIT = token(Role.UNIT, "u-1", unit="dg-zrj")
COMMITTEE = token(Role.COMMITTEE, "c-1")
DISPATCHER = token(Role.DISPATCHER, "d-1")
PUBLIC = token(Role.PUBLIC, "anyone")
SETTINGS = NotifySettings(smtp_host="127.0.0.1", sms_gateway_url="http://127.0.0.1:9/sms")
WRITER = {"proposalflow.proposals": "intake", "proposalflow.assignments": "assignment"}


@pytest.fixture
async def client(tmp_path, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path}/notify.db"
    monkeypatch.setenv("PROPOSALFLOW_NOTIFY_DATABASE_URL", url)
    await upgrade_async("notify", url)
    runtime, app = build(SETTINGS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify") as http:
        http.runtime = runtime  # type: ignore[attr-defined]
        yield http
    await runtime.engine.dispose()


async def happen(client: httpx.AsyncClient, events: list[Event]) -> None:
    runtime = client.runtime  # type: ignore[attr-defined]
    notifier = service.Notifier(rules=load_rules(SETTINGS.rules_path), settings=SETTINGS)
    for event in events:
        async with runtime.transaction() as conn:
            await service.handle(SqlUnitOfWork(conn), envelope_for(event, WRITER[event.TOPIC]), event, notifier)


async def assigned_proposal(client: httpx.AsyncClient) -> None:
    """Submitted, cosign requested, review, filed, assigned: the first five events of the lifecycle."""
    await happen(client, [event for event, _ in lifecycle()[:5]])


async def test_each_recipient_reads_only_their_own_inbox_with_the_unread_count(client: httpx.AsyncClient) -> None:
    await assigned_proposal(client)
    mine = (await client.get("/inbox", headers=MEMBER)).json()
    assert [item["title"] for item in mine["items"]] == ["提案已交办", "提案已立案"]  # newest first
    assert mine["unread"] == 2
    unit = (await client.get("/inbox", headers=LEAD_UNIT)).json()
    assert [item["title"] for item in unit["items"]] == ["新交办提案"]
    assert "2026年6月1日" in unit["items"][0]["body"]
    assert (await client.get("/inbox", headers=COMMITTEE)).json()["items"] == []
    assert (await client.get("/inbox", headers=PUBLIC)).status_code == 403
    assert (await client.get("/inbox", headers=token(Role.UNIT, "u-9"))).status_code == 403


async def test_marking_read_lowers_the_unread_count_and_only_for_the_reader(client: httpx.AsyncClient) -> None:
    await assigned_proposal(client)
    first = (await client.get("/inbox", headers=MEMBER)).json()["items"][0]
    assert (await client.post(f"/inbox/{first['id']}/read", headers=COSIGNER)).status_code == 404
    assert (await client.post(f"/inbox/{first['id']}/read", headers=MEMBER)).status_code == 204
    assert (await client.post(f"/inbox/{first['id']}/read", headers=MEMBER)).status_code == 204
    after = (await client.get("/inbox", headers=MEMBER)).json()
    assert after["unread"] == 1
    unread = (await client.get("/inbox", params={"unread": True}, headers=MEMBER)).json()["items"]
    assert first["id"] not in {item["id"] for item in unread}
    assert (await client.get("/inbox", params={"limit": 0}, headers=MEMBER)).status_code == 422


async def test_a_disputed_assignment_reaches_the_dispatchers_inbox(client: httpx.AsyncClient) -> None:
    await happen(client, [event for event, _ in lifecycle()[:6]])
    items = (await client.get("/inbox", headers=DISPATCHER)).json()["items"]
    assert [item["title"] for item in items] == ["交办异议待处理"]
    assert "不属于本单位职责" in items[0]["body"]


async def test_the_unit_a_reassignment_removes_reads_it_once_in_its_inbox(client: httpx.AsyncClient) -> None:
    """改办: notify knows the units from the assignment it read before, so the one left with no part
    finds the notice in its inbox, once even when the reassignment is delivered twice."""
    moved = [event for event, _ in lifecycle() if event.proposal_id.endswith("-moved")][:4]
    assert moved[-1].TYPE == "proposalflow.assignment.reassigned.v1"
    await happen(client, moved[:3])
    runtime = client.runtime  # type: ignore[attr-defined]
    notifier = service.Notifier(rules=load_rules(SETTINGS.rules_path), settings=SETTINGS)
    reassigned = envelope_for(moved[3], WRITER[moved[3].TOPIC])
    for _delivery in range(2):  # at-least-once: the same record twice
        async with runtime.transaction() as conn:
            await service.handle(SqlUnitOfWork(conn), reassigned, moved[3], notifier)
    removed = (await client.get("/inbox", headers=token(Role.UNIT, "u-2", unit="dg-nyj"))).json()["items"]
    assert [item["title"] for item in removed] == ["提案已改由他单位办理", "新会办提案"]
    assert "东莞市交通运输局 主办" in removed[0]["body"] and "贵单位不再承办" in removed[0]["body"]
    new_lead = (await client.get("/inbox", headers=token(Role.UNIT, "u-3", unit="dg-jtj"))).json()["items"]
    assert [item["title"] for item in new_lead] == ["新交办提案"]


CONTACT = {
    "name": "张三",
    "kind": "member",
    "email": "zhangsan@example.com",
    "phone": "13812345678",
    "webhook_url": "https://oa.example.gov.cn/hooks/zhang",
    "channels": ["email", "webhook"],
    "quiet_hours": {"start": "22:00", "end": "07:00"},
}


async def test_admins_manage_the_contacts_directory(client: httpx.AsyncClient) -> None:
    created = await client.put("/contacts/m-1", json=CONTACT, headers=ADMIN)
    assert created.status_code == 201
    assert created.json()["quiet_hours"] == {"start": "22:00", "end": "07:00"}
    replaced = await client.put("/contacts/m-1", json={**CONTACT, "phone": None}, headers=ADMIN)
    assert replaced.status_code == 200
    assert (await client.get("/contacts/m-1", headers=ADMIN)).json()["phone"] is None
    unit = {"name": "东莞市自然资源局", "kind": "unit", "email": "zrj@dg.gov.cn"}
    assert (await client.put("/contacts/unit:dg-zrj", json=unit, headers=ADMIN)).status_code == 201
    listed = (await client.get("/contacts", params={"kind": "unit"}, headers=ADMIN)).json()
    assert [item["id"] for item in listed["items"]] == ["unit:dg-zrj"] and listed["total"] == 1
    assert (await client.delete("/contacts/m-1", headers=ADMIN)).status_code == 204
    assert (await client.get("/contacts/m-1", headers=ADMIN)).status_code == 404
    assert (await client.delete("/contacts/m-1", headers=ADMIN)).status_code == 404


@pytest.mark.parametrize(
    ("contact_id", "body", "named"),
    [
        ("dg-zrj", {"name": "自然资源局", "kind": "unit"}, "unit:<unit id>"),
        ("leaders", {"name": "x", "kind": "group"}, "committee"),
        ("unit:dg-zrj", {"name": "x", "kind": "member"}, "names a unit"),
        ("m-1", {**CONTACT, "email": "not-an-address"}, "email"),
        ("m-1", {**CONTACT, "phone": "call me"}, "phone"),
        ("m-1", {**CONTACT, "channels": ["fax"]}, "channels"),
        ("m-1", {**CONTACT, "quiet_hours": {"start": "22:00", "end": "22:00"}}, "different times"),
        ("m-1", {**CONTACT, "nickname": "老张"}, "nickname"),
    ],
)
async def test_a_bad_contact_is_refused_saying_what_is_wrong(
    client: httpx.AsyncClient, contact_id: str, body: dict[str, object], named: str
) -> None:
    refused = await client.put(f"/contacts/{contact_id}", json=body, headers=ADMIN)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert named in refused.text


@pytest.mark.parametrize("caller", [MEMBER, LEAD_UNIT, COMMITTEE, DISPATCHER, PUBLIC])
async def test_only_admins_see_contacts_and_deliveries(client: httpx.AsyncClient, caller: dict[str, str]) -> None:
    assert (await client.get("/contacts", headers=caller)).status_code == 403
    assert (await client.get("/contacts/m-1", headers=caller)).status_code == 403
    assert (await client.put("/contacts/m-1", json=CONTACT, headers=caller)).status_code == 403
    assert (await client.delete("/contacts/m-1", headers=caller)).status_code == 403
    assert (await client.get("/deliveries", headers=caller)).status_code == 403


async def test_contacts_and_preferences_decide_the_planned_deliveries(client: httpx.AsyncClient) -> None:
    assert (await client.put("/contacts/m-1", json=CONTACT, headers=ADMIN)).status_code == 201
    await assigned_proposal(client)
    planned = (await client.get("/deliveries", params={"limit": 200}, headers=ADMIN)).json()
    # m-1 wants email and webhook only; nobody else is in the directory.
    assert {(item["recipient"], item["channel"]) for item in planned["items"]} == {
        ("m-1", "email"),
        ("m-1", "webhook"),
    }
    assert planned["total"] == 4  # filed and assigned, on two channels each
    assert all(item["status"] == "pending" and "address" not in item for item in planned["items"])
    assert (await client.get("/deliveries", params={"status": "failed"}, headers=ADMIN)).json()["items"] == []
    assert (await client.get("/inbox", headers={"Authorization": "Bearer nope"})).status_code == 401


async def test_a_member_sets_their_own_channels_and_quiet_hours_and_the_next_notices_follow_them(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.put("/contacts/m-1", json={**CONTACT, "channels": None}, headers=ADMIN)).status_code == 201
    mine = await client.get("/preferences", headers=MEMBER)
    assert mine.status_code == 200
    assert mine.json()["addresses"] == {"email": True, "sms": True, "webhook": True}
    assert "zhangsan@example.com" not in mine.text  # addresses are the directory's, not echoed back
    changed = await client.put(
        "/preferences", json={"channels": ["sms"], "quiet_hours": {"start": "21:30", "end": "08:00"}}, headers=MEMBER
    )
    assert changed.status_code == 200 and changed.json()["channels"] == ["sms"]
    assert (await client.get("/contacts/m-1", headers=ADMIN)).json()["quiet_hours"] == {
        "start": "21:30",
        "end": "08:00",
    }
    await assigned_proposal(client)
    planned = (await client.get("/deliveries", params={"limit": 200}, headers=ADMIN)).json()
    assert {(item["recipient"], item["channel"]) for item in planned["items"]} == {("m-1", "sms")}


async def test_preferences_need_a_directory_entry_and_a_signed_in_caller(client: httpx.AsyncClient) -> None:
    missing = await client.get("/preferences", headers=COSIGNER)
    assert missing.status_code == 404 and "ask an admin" in missing.json()["detail"]
    assert (await client.put("/preferences", json={"channels": None}, headers=COSIGNER)).status_code == 404
    assert (await client.get("/preferences", headers=PUBLIC)).status_code == 403
    assert (await client.get("/preferences")).status_code == 401
    refused = await client.put("/preferences", json={"channels": ["fax"]}, headers=MEMBER)
    assert refused.status_code == 422 and "channels" in refused.text
    # A unit user sets their unit's entry, not a personal one.
    unit = {"name": "东莞市自然资源局", "kind": "unit", "email": "zrj@dg.gov.cn"}
    assert (await client.put("/contacts/unit:dg-zrj", json=unit, headers=ADMIN)).status_code == 201
    assert (await client.get("/preferences", headers=LEAD_UNIT)).json()["id"] == "unit:dg-zrj"
