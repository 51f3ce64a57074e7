"""Intake's HTTP door: what a member or the committee sees, including every kind of bad request.

The app runs in-process on SQLite (migrated with Alembic); no broker is needed, since accepted work
waits in the outbox, which these tests read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select

from services.intake import store
from services.intake.app import build
from shared.auth import issue_token
from shared.events import Role
from shared.migrate import upgrade_async
from shared.settings import CommonSettings

PROPOSAL = {
    "title": "关于推进全域土地综合整治的建议",
    "body": "我市土地利用碎片化, 建议统筹推进全域土地综合整治。",
    "category": "经济建设",
    "first_proposer": {"id": "m-1", "name": "张三"},
    "cosigners": [{"id": "m-2", "name": "李四"}],
    "suggestions": ["编制整治规划", "设立专项资金"],
}


def token(role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CommonSettings(), subject=sub, role=role, unit=unit)}"}


MEMBER = token(Role.MEMBER, "m-1")
COMMITTEE = token(Role.COMMITTEE, "c-1")


@pytest.fixture
async def client(tmp_path, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path}/intake.db"
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_DATABASE_URL", url)
    await upgrade_async("intake", url)
    runtime, app = build()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
        http.runtime = runtime  # type: ignore[attr-defined]
        yield http
    await runtime.engine.dispose()


async def outbox_types(client: httpx.AsyncClient) -> list[str]:
    runtime = client.runtime  # type: ignore[attr-defined]
    table = store.metadata.tables["outbox"]
    async with runtime.engine.connect() as conn:
        return list((await conn.execute(select(table.c.type).order_by(table.c.id))).scalars())


async def test_member_submits_and_committee_files_with_a_number(client: httpx.AsyncClient) -> None:
    created = await client.post("/proposals", json=PROPOSAL, headers=MEMBER)
    assert created.status_code == 201, created.text
    proposal = created.json()
    assert created.headers["location"] == f"/proposals/{proposal['id']}"
    assert proposal["status"] == "submitted"
    assert [s["number"] for s in proposal["suggestions"]] == [1, 2]

    filed = await client.post(f"/proposals/{proposal['id']}/review", json={"decision": "file"}, headers=COMMITTEE)
    assert filed.status_code == 200, filed.text
    assert filed.json()["status"] == "filed"
    assert filed.json()["filing_number"].endswith("-0001")
    assert await outbox_types(client) == ["proposalflow.proposal.submitted.v1", "proposalflow.proposal.filed.v1"]

    again = await client.post(f"/proposals/{proposal['id']}/review", json={"decision": "file"}, headers=COMMITTEE)
    assert again.status_code == 409
    assert "only a submitted proposal" in again.json()["detail"]


async def test_refusing_to_file_needs_a_reason(client: httpx.AsyncClient) -> None:
    proposal = (await client.post("/proposals", json=PROPOSAL, headers=MEMBER)).json()
    refused = await client.post(f"/proposals/{proposal['id']}/review", json={"decision": "not_file"}, headers=COMMITTEE)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["rule"] == "not_filed_needs_reason"


async def test_same_idempotency_key_gives_one_proposal_and_the_same_answer(client: httpx.AsyncClient) -> None:
    headers = {**MEMBER, "Idempotency-Key": "k-1"}
    first = await client.post("/proposals", json=PROPOSAL, headers=headers)
    second = await client.post("/proposals", json=PROPOSAL, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert await outbox_types(client) == ["proposalflow.proposal.submitted.v1"]
    reused = await client.post("/proposals", json={**PROPOSAL, "title": "另一件提案的标题"}, headers=headers)
    assert reused.status_code == 422
    assert "already used" in reused.json()["detail"]


@pytest.mark.parametrize(
    ("change", "status", "fragment"),
    [
        ({"suggestions": []}, 422, "suggestions"),
        ({"category": "体育"}, 422, "unknown category"),
        ({"title": "短"}, 422, "title"),
        ({"first_proposer": {"id": "m-9", "name": "王五"}}, 422, "first proposer"),
        ({"unexpected": 1}, 422, "unexpected"),
    ],
)
async def test_bad_proposals_are_refused_saying_what_is_wrong(
    client: httpx.AsyncClient, change: dict[str, object], status: int, fragment: str
) -> None:
    response = await client.post("/proposals", json={**PROPOSAL, **change}, headers=MEMBER)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert fragment in json.dumps(response.json(), ensure_ascii=False)
    assert await outbox_types(client) == []


async def test_malformed_json_wrong_type_and_oversized_bodies_are_refused(client: httpx.AsyncClient) -> None:
    malformed = await client.post(
        "/proposals", content=b"{not json", headers={**MEMBER, "content-type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["title"] == "Malformed JSON"
    wrong_type = await client.post("/proposals", content=b"title=x", headers={**MEMBER, "content-type": "text/plain"})
    assert wrong_type.status_code == 415
    huge = await client.post("/proposals", json={**PROPOSAL, "body": "字" * 2_000_000}, headers=MEMBER)
    assert huge.status_code == 413


async def test_authentication_and_roles_are_checked(client: httpx.AsyncClient) -> None:
    assert (await client.post("/proposals", json=PROPOSAL)).status_code == 401
    bad = await client.post("/proposals", json=PROPOSAL, headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    unit = token(Role.UNIT, "u-1", unit="dg-fgj")
    refused = await client.post("/proposals", json=PROPOSAL, headers=unit)
    assert refused.status_code == 403
    assert "member" in refused.json()["detail"]
    proposal = (await client.post("/proposals", json=PROPOSAL, headers=MEMBER)).json()
    assert (
        await client.post(f"/proposals/{proposal['id']}/review", json={"decision": "file"}, headers=MEMBER)
    ).status_code == 403
    stranger = token(Role.MEMBER, "m-7")
    assert (await client.get(f"/proposals/{proposal['id']}", headers=stranger)).status_code == 404
    cosigner = token(Role.MEMBER, "m-2")
    assert (await client.get(f"/proposals/{proposal['id']}", headers=cosigner)).status_code == 200
