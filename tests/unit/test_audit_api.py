"""Audit's HTTP routes, for the committee and admins: a proposal's history, search with keyset
pages, streamed exports that parse back to the stored entries, and verify. Every other role is
refused. The app runs in-process on SQLite (migrated with Alembic); entries are fed through the
audit consumer's processor, the broker replaced by a recording stand-in."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from services.audit import export, store
from services.audit.app import build
from services.audit.handlers import AuditProcessor
from shared.auth import issue_token
from shared.envelope import Envelope
from shared.events import Role
from shared.migrate import upgrade_async
from shared.settings import CommonSettings
from tests.fakes import FakeRecord, record_of


def token(role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CommonSettings(), subject=sub, role=role, unit=unit)}"}


COMMITTEE = token(Role.COMMITTEE, "c-1")
ADMIN = token(Role.ADMIN, "a-1")
ROUTES = ["/audit/proposals/p-1", "/audit/entries", "/audit/export", "/audit/verify"]

# (proposal, actor id, role, unit, type, event time)
EVENTS = [
    ("p-1", "m-1", "member", None, "proposalflow.proposal.submitted.v1", "2026-03-01T09:00:00+08:00"),
    ("p-1", "c-1", "committee", None, "proposalflow.proposal.filed.v1", "2026-03-02T09:00:00+08:00"),
    ("p-2", "m-2", "member", None, "proposalflow.proposal.submitted.v1", "2026-03-03T09:00:00+08:00"),
    ("p-1", "u-1", "unit", "dg-zrzyj", "proposalflow.handling.progress-reported.v1", "2026-04-01T09:00:00+08:00"),
    ("p-2", "u-2", "unit", "dg-jyj", "proposalflow.handling.progress-reported.v1", "2026-04-02T09:00:00+08:00"),
]


@pytest.fixture
async def client(tmp_path, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path}/audit.db"
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_HMAC_KEY", "api-test-key")
    await upgrade_async("audit", url)
    runtime, app = build()
    processor = runtime.processors[0]
    assert isinstance(processor, AuditProcessor)
    for offset, (subject, actor, role, unit, type_, time) in enumerate(EVENTS):
        envelope = Envelope(
            type=type_,
            source="/proposalflow/test",
            subject=subject,
            time=datetime.fromisoformat(time),
            data={"proposal_id": subject, "actor": {"id": actor, "role": role, "unit": unit}, "note": "备注"},
        )
        assert await processor.process(record_of(envelope, topic="proposalflow.proposals", offset=offset)) == "handled"
    garbage = FakeRecord("proposalflow.unit-reports", 0, 0, None, b"\x00\xff", [("content-type", b"text/plain")])
    assert await processor.process(garbage) == "handled"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://audit") as http:
        http.runtime = runtime  # type: ignore[attr-defined]
        yield http
    await runtime.engine.dispose()


async def stored(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    async with client.runtime.engine.connect() as conn:  # type: ignore[attr-defined]
        return await store.search(conn, store.EntryFilter(), limit=1000)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("role", [Role.MEMBER, Role.UNIT, Role.DISPATCHER, Role.LEADER, Role.PUBLIC, Role.SYSTEM])
async def test_only_the_committee_and_admins_read_the_log(client: httpx.AsyncClient, route: str, role: Role) -> None:
    refused = await client.get(route, headers=token(role, "x", unit="dg-zrzyj" if role == Role.UNIT else None))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "committee, admin" in refused.json()["detail"]


@pytest.mark.parametrize("route", ROUTES)
async def test_the_log_needs_a_token_and_opens_to_committee_and_admin(client: httpx.AsyncClient, route: str) -> None:
    assert (await client.get(route)).status_code == 401
    assert (await client.get(route, headers=COMMITTEE)).status_code == 200
    assert (await client.get(route, headers=ADMIN)).status_code == 200


async def test_a_proposals_history_is_ordered_with_its_actors(client: httpx.AsyncClient) -> None:
    body = (await client.get("/audit/proposals/p-1", headers=COMMITTEE)).json()
    entries = body["entries"]
    assert [entry["actor"]["id"] for entry in entries] == ["m-1", "c-1", "u-1"]
    assert entries[2]["actor"] == {"id": "u-1", "role": "unit", "unit": "dg-zrzyj"}
    assert [entry["subject_seq"] for entry in entries] == [1, 2, 3]
    assert entries[1]["subject_prev_hash"] == entries[0]["hash"]
    assert entries[0]["time"] == "2026-03-01T01:00:00.000000Z"
    assert (await client.get("/audit/proposals/nobody", headers=COMMITTEE)).json()["entries"] == []


@pytest.mark.parametrize(
    ("params", "actors"),
    [
        ({"actor": "m-2"}, ["m-2"]),
        ({"unit": "dg-jyj"}, ["u-2"]),
        ({"type": "proposalflow.proposal.submitted.v1"}, ["m-1", "m-2"]),
        ({"subject": "p-2"}, ["m-2", "u-2"]),
        ({"from": "2026-03-02T09:00:00+08:00", "to": "2026-04-01T09:00:00+08:00"}, ["c-1", "m-2"]),
        ({"type": "invalid-record"}, [None]),
        ({"topic": "proposalflow.unit-reports"}, [None]),
    ],
)
async def test_search_by_actor_unit_type_proposal_topic_and_time(
    client: httpx.AsyncClient, params: dict[str, str], actors: list[str | None]
) -> None:
    response = await client.get("/audit/entries", params=params, headers=COMMITTEE)
    assert response.status_code == 200, response.text
    assert [item["actor"]["id"] for item in response.json()["items"]] == actors


async def test_search_pages_cover_every_entry_once_in_log_order(client: httpx.AsyncClient) -> None:
    seen: list[int] = []
    cursor: int | None = 0
    while cursor is not None:
        page = (await client.get("/audit/entries", params={"limit": 2, "cursor": cursor}, headers=COMMITTEE)).json()
        assert len(page["items"]) <= 2
        seen += [item["seq"] for item in page["items"]]
        cursor = page["next_cursor"]
    assert seen == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"from": "2026-04-01T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "`from` must be before `to`"),
        ({"from": "2026-04-01T00:00:00"}, "needs a timezone"),
        ({"limit": 0}, "limit"),
        ({"cursor": "abc"}, "cursor"),
    ],
)
async def test_a_bad_search_says_what_to_fix(client: httpx.AsyncClient, params: dict[str, Any], detail: str) -> None:
    response = await client.get("/audit/entries", params=params, headers=COMMITTEE)
    assert response.status_code == 422
    assert detail in response.json()["detail"]


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    """An exported row back in the stored types."""
    typed = dict(row)
    for name in ("time", "recorded_at"):
        typed[name] = datetime.fromisoformat(typed[name])
    return typed


async def test_a_json_lines_export_parses_back_to_the_stored_entries(client: httpx.AsyncClient) -> None:
    response = await client.get("/audit/export", params={"format": "jsonl"}, headers=COMMITTEE)
    assert response.headers["content-type"].startswith("application/x-ndjson")
    parsed = [_typed(json.loads(line)) for line in response.text.splitlines()]
    assert parsed == [{name: entry[name] for name in export.FIELDS} for entry in await stored(client)]


async def test_a_csv_export_parses_back_to_the_stored_entries(client: httpx.AsyncClient) -> None:
    response = await client.get("/audit/export", params={"format": "csv"}, headers=ADMIN)
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="audit.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
    parsed = []
    for row in rows:
        typed: dict[str, Any] = {name: (value if value != "" else None) for name, value in row.items()}
        for name in ("id", "seq", "subject_seq", "partition", "offset"):
            typed[name] = int(typed[name]) if typed[name] is not None else None
        typed["payload"] = json.loads(typed["payload"])
        parsed.append(_typed(typed))
    assert parsed == [{name: entry[name] for name in export.FIELDS} for entry in await stored(client)]


async def test_an_export_takes_the_search_filters(client: httpx.AsyncClient) -> None:
    response = await client.get("/audit/export", params={"subject": "p-2"}, headers=COMMITTEE)
    assert [json.loads(line)["actor_id"] for line in response.text.splitlines()] == ["m-2", "u-2"]
    refused = await client.get("/audit/export", params={"format": "xml"}, headers=COMMITTEE)
    assert refused.status_code == 422


async def test_export_reads_the_log_a_page_at_a_time(client: httpx.AsyncClient) -> None:
    engine = client.runtime.engine  # type: ignore[attr-defined]
    pages = [[entry["seq"] for entry in page] async for page in store.pages(engine, store.EntryFilter(), page_size=4)]
    assert pages == [[1, 2, 3, 4], [5, 6]]


async def test_verify_reports_that_all_entries_hold_with_the_key(client: httpx.AsyncClient) -> None:
    report = (await client.get("/audit/verify", headers=COMMITTEE)).json()
    assert report["ok"] is True
    assert report["checked"] == 6
    assert report["hmac"] is True
    assert report["head"]["hash"] == (await stored(client))[-1]["hash"]


async def test_the_log_shows_which_outside_system_each_command_and_its_effects_came_through(
    client: httpx.AsyncClient,
) -> None:
    """An inbound command is known by the topic it was read from (only its system's Kafka user may write
    it), whatever its payload claims; the event it caused by the `actor.via` the door stamped on it."""
    processor = client.runtime.processors[0]  # type: ignore[attr-defined]
    topic = "proposalflow.unit-reports.oa-zrzyj"
    claims = {"id": "u-1", "role": "unit", "unit": "dg-zrzyj", "via": "proposalflow.unit-reports.oa-other"}
    command = Envelope(
        type="proposalflow.unit-report.progress-submitted.v1",
        source="/oa/dg-zrzyj",
        subject="p-3",
        data={"proposal_id": "p-3", "actor": claims},
    )
    caused = Envelope(
        type="proposalflow.handling.progress-reported.v1",
        source="/proposalflow/progress",
        subject="p-3",
        data={"proposal_id": "p-3", "actor": {**claims, "via": topic}},
    )
    assert await processor.process(record_of(command, topic=topic, offset=0)) == "handled"
    assert await processor.process(record_of(caused, topic="proposalflow.handling", offset=0)) == "handled"
    entries = (await client.get("/audit/proposals/p-3", headers=COMMITTEE)).json()["entries"]
    assert [(entry["topic"], entry["actor"]["via"]) for entry in entries] == [
        (topic, topic),
        ("proposalflow.handling", topic),
    ]
    by_system = (await client.get("/audit/entries", params={"topic": topic}, headers=COMMITTEE)).json()["items"]
    assert [entry["event_id"] for entry in by_system] == [command.id]
