"""The HTTP APIs document their response bodies, and the documents are true: real answers of the proposal
reads, submissions, the inboxes and the audit history, after real work, validate against the schema each
service's OpenAPI names for them, and carry no field the schema leaves out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from services.audit.app import build as build_audit
from services.audit.handlers import AuditProcessor
from services.intake.app import build as build_intake
from services.notify import service as notify_service
from services.notify.app import build as build_notify
from services.notify.rules import load_rules
from services.notify.settings import NotifySettings
from services.notify.unit_of_work import SqlUnitOfWork as NotifyUnitOfWork
from services.progress.app import build as build_progress
from shared.auth import issue_token
from shared.envelope import Envelope
from shared.events import Event, Role
from shared.migrate import upgrade_async
from shared.outbox import envelope_for
from shared.settings import CommonSettings
from tests.fakes import record_of
from tests.notify_fixtures import lifecycle as notify_lifecycle
from tests.progress_fixtures import Clock, feed
from tests.progress_fixtures import lifecycle as progress_lifecycle


def token(role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CommonSettings(), subject=sub, role=role, unit=unit)}"}


class Documented:
    """One service's app with its OpenAPI document: calls a route and checks the answer against it."""

    def __init__(self, http: httpx.AsyncClient, spec: dict[str, Any]) -> None:
        self.http = http
        self.spec = spec
        self.checked: set[str] = set()

    async def call(self, method: str, template: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        response = await self.http.request(method, path, headers=headers, **kwargs)
        assert response.status_code in (200, 201), response.text
        responses = self.spec["paths"][template][method.lower()]["responses"]
        schema = responses[str(response.status_code)]["content"]["application/json"]["schema"]
        assert "$ref" in schema, f"{method} {template} documents no response model: {schema}"
        body = response.json()
        jsonschema.Draft202012Validator(
            {**schema, "components": self.spec["components"]}, format_checker=jsonschema.FormatChecker()
        ).validate(body)
        extra = undocumented(body, schema, self.spec["components"]["schemas"], "")
        assert not extra, f"{method} {template} answers fields its schema does not document: {extra}"
        self.checked.add(f"{method} {template}")
        return body


def undocumented(value: Any, schema: dict[str, Any], schemas: dict[str, Any], where: str) -> list[str]:
    """Fields of the answer that its schema does not name (an object's free-form `dict` is not walked)."""
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[-1]]
    if "anyOf" in schema:
        branches = [b for b in schema["anyOf"] if b.get("type") != "null"]
        return undocumented(value, branches[0], schemas, where) if value is not None and branches else []
    if isinstance(value, dict) and "properties" in schema:
        found = [f"{where}.{key}" for key in value if key not in schema["properties"]]
        for key, inner in value.items():
            if key in schema["properties"]:
                found += undocumented(inner, schema["properties"][key], schemas, f"{where}.{key}")
        return found
    if isinstance(value, list) and "items" in schema:
        return [field for item in value for field in undocumented(item, schema["items"], schemas, f"{where}[]")]
    return []


@pytest.fixture
async def intake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Documented]:
    url = f"sqlite+aiosqlite:///{tmp_path}/intake.db"
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_DATABASE_URL", url)
    await upgrade_async("intake", url)
    runtime, app = build_intake(clock=lambda: datetime(2026, 3, 20, 2, tzinfo=UTC))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
        yield Documented(http, app.openapi())
    await runtime.engine.dispose()


async def test_intake_answers_as_documented(intake: Documented) -> None:
    member, committee = token(Role.MEMBER, "m-1"), token(Role.COMMITTEE, "c-1")
    content = {
        "title": "关于推进全域土地综合整治的建议",
        "body": "我市土地利用碎片化, 建议统筹推进全域土地综合整治。",
        "category": "经济建设",
        "first_proposer": {"id": "m-1", "name": "张三"},
        "suggestions": ["编制整治规划", "设立专项资金"],
    }
    submitted = await intake.call("POST", "/proposals", "/proposals", member, json=content)
    proposal = submitted["id"]
    await intake.call("POST", "/proposals/drafts", "/proposals/drafts", member, json={"title": "草稿"})
    await intake.call("GET", "/proposals", "/proposals", member)
    await intake.call("GET", "/proposals/{proposal_id}", f"/proposals/{proposal}", member)
    filed = await intake.call(
        "POST", "/proposals/{proposal_id}/review", f"/proposals/{proposal}/review", committee, json={"decision": "file"}
    )
    assert filed["filing_number"]
    await intake.call("GET", "/proposals/{proposal_id}/similar", f"/proposals/{proposal}/similar", committee)
    await intake.call("GET", "/proposals", "/proposals", committee)


@pytest.fixture
async def progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Documented]:
    url = f"sqlite+aiosqlite:///{tmp_path}/progress.db"
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_DATABASE_URL", url)
    await upgrade_async("progress", url)
    runtime, app = build_progress(Clock(datetime(2026, 3, 20, 2, tzinfo=UTC)))
    await feed(runtime, progress_lifecycle("p-0001", key_leader="l-1"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://progress") as http:
        yield Documented(http, app.openapi())
    await runtime.engine.dispose()


async def test_progress_answers_as_documented(progress: Documented) -> None:
    lead, co = token(Role.UNIT, "u-1", unit="dg-zrzyj"), token(Role.UNIT, "u-2", unit="dg-czj")
    committee, first = token(Role.COMMITTEE, "c-1"), token(Role.MEMBER, "m-1")
    on = "/proposals/{proposal_id}"
    await progress.call("GET", "/inbox", "/inbox", lead)
    step = f"{on}/progress"
    body = {"kind": "face_to_face", "on": "2026-03-18", "text": "与提案者面商"}
    await progress.call("POST", step, "/proposals/p-0001/progress", lead, json=body)
    await progress.call("POST", f"{on}/co-opinions", "/proposals/p-0001/co-opinions", co, json={"text": "同意"})
    reply = {
        "text": "经研究, 我局已编制全域土地综合整治规划。",
        "classification": "A",
        "adoptions": [{"number": 1, "adopted": True, "how": "已编制规划"}, {"number": 2, "adopted": False}],
        "measures": [{"text": "设立整治专项资金", "owner_unit": "dg-czj", "due": "2026-12-31"}],
    }
    drafted = await progress.call("POST", f"{on}/replies", "/proposals/p-0001/replies", lead, json=reply)
    reply_id = drafted["replies"][0]["id"]
    review = f"{on}/replies/{{reply_id}}/review"
    approve = {"decision": "approve"}
    await progress.call("POST", review, f"/proposals/p-0001/replies/{reply_id}/review", committee, json=approve)
    grades = {"handling_grade": "satisfied", "result_grade": "satisfied", "comment": "满意"}
    evaluated = await progress.call("POST", f"{on}/evaluations", "/proposals/p-0001/evaluations", first, json=grades)
    assert evaluated["evaluations"] and evaluated["measures"] and evaluated["timeline"]
    await progress.call("GET", "/inbox", "/inbox", co)
    await progress.call("GET", "/proposals", "/proposals", committee)
    detail = await progress.call("GET", on, "/proposals/p-0001", committee)
    assert detail["replies"] and detail["co_opinions"] and detail["open_steps"]
    await progress.call("GET", "/public/replies", "/public/replies", {})


async def test_notify_inbox_answers_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/notify.db"
    monkeypatch.setenv("PROPOSALFLOW_NOTIFY_DATABASE_URL", url)
    await upgrade_async("notify", url)
    settings = NotifySettings(smtp_host="127.0.0.1", sms_gateway_url="http://127.0.0.1:9/sms")
    runtime, app = build_notify(settings)
    notifier = notify_service.Notifier(rules=load_rules(settings.rules_path), settings=settings)
    writers = {"proposalflow.proposals": "intake", "proposalflow.assignments": "assignment"}
    happened: list[Event] = [event for event, _ in notify_lifecycle()[:5]]
    for event in happened:
        async with runtime.transaction() as conn:
            await notify_service.handle(
                NotifyUnitOfWork(conn), envelope_for(event, writers[event.TOPIC]), event, notifier
            )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://notify") as http:
        documented = Documented(http, app.openapi())
        inbox = await documented.call("GET", "/inbox", "/inbox", token(Role.MEMBER, "m-1"))
        assert inbox["items"], "the member has notices to read"
    await runtime.engine.dispose()


async def test_audit_history_answers_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/audit.db"
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_AUDIT_HMAC_KEY", "schema-test-key")
    await upgrade_async("audit", url)
    runtime, app = build_audit()
    processor = runtime.processors[0]
    assert isinstance(processor, AuditProcessor)
    for offset, ce_type in enumerate(["proposalflow.proposal.submitted.v1", "proposalflow.proposal.filed.v1"]):
        envelope = Envelope(
            type=ce_type,
            source="/proposalflow/intake",
            subject="p-1",
            data={"proposal_id": "p-1", "actor": {"id": "m-1", "role": "member"}},
            extensions={"correlationid": "cmd-1"},
        )
        assert await processor.process(record_of(envelope, topic="proposalflow.proposals", offset=offset)) == "handled"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit") as http:
        documented = Documented(http, app.openapi())
        committee = token(Role.COMMITTEE, "c-1")
        history = await documented.call("GET", "/audit/proposals/{proposal_id}", "/audit/proposals/p-1", committee)
        assert [entry["correlation_id"] for entry in history["entries"]] == ["cmd-1", "cmd-1"]
        await documented.call("GET", "/audit/entries", "/audit/entries", committee, params={"limit": 1})
    await runtime.engine.dispose()
