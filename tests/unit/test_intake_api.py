"""Intake's HTTP door: what a member or the committee sees, including every kind of bad request.

The app runs in-process on SQLite (migrated with Alembic); no broker is needed, since accepted work
waits in the outbox, which these tests read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services.intake import service, store
from services.intake.app import build
from services.intake.domain import ProposalStatus
from services.intake.unit_of_work import SqlUnitOfWork
from shared.auth import issue_token
from shared.errors import StateConflict
from shared.events import Actor, Role
from shared.migrate import upgrade_async
from shared.outbox import limit_outbox_records, outbox_record_limit
from shared.policy import load_policy
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
COSIGNER = token(Role.MEMBER, "m-2")
STRANGER = token(Role.MEMBER, "m-7")
COMMITTEE = token(Role.COMMITTEE, "c-1")
UNIT = token(Role.UNIT, "u-1", unit="dg-fgj")
SOLO = {**PROPOSAL, "cosigners": []}
COMMITTEE_ACTOR = Actor(id="c-1", role=Role.COMMITTEE)


class FakeClock:
    """The time the app sees; tests move it instead of waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # Monday 10:00 in Dongguan

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(tmp_path, monkeypatch, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path}/intake.db"
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_DATABASE_URL", url)
    await upgrade_async("intake", url)
    runtime, app = build(clock=clock)
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


async def outbox(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    runtime = client.runtime  # type: ignore[attr-defined]
    table = store.metadata.tables["outbox"]
    async with runtime.engine.connect() as conn:
        return [json.loads(p) for p in (await conn.execute(select(table.c.payload).order_by(table.c.id))).scalars()]


async def test_member_submits_cosigner_confirms_and_committee_files_with_a_number(client: httpx.AsyncClient) -> None:
    created = await client.post("/proposals", json=PROPOSAL, headers=MEMBER)
    assert created.status_code == 201, created.text
    proposal = created.json()
    assert created.headers["location"] == f"/proposals/{proposal['id']}"
    assert proposal["status"] == "awaiting_cosigners"
    assert proposal["cosign_due"] == "2026-03-09"  # 5 working days after Monday 2 March
    assert [s["number"] for s in proposal["suggestions"]] == [1, 2]
    early = await client.post(f"/proposals/{proposal['id']}/review", json={"decision": "file"}, headers=COMMITTEE)
    assert early.status_code == 409

    cosigned = await client.post(f"/proposals/{proposal['id']}/cosign", headers=token(Role.MEMBER, "m-2"))
    assert cosigned.status_code == 200, cosigned.text
    assert cosigned.json()["status"] == "submitted"
    assert cosigned.json()["confirmed_cosigners"] == ["m-2"]

    filed = await client.post(f"/proposals/{proposal['id']}/review", json={"decision": "file"}, headers=COMMITTEE)
    assert filed.status_code == 200, filed.text
    assert filed.json()["status"] == "filed"
    assert filed.json()["filing_number"] == "2026-0001"
    assert await outbox_types(client) == [
        "proposalflow.proposal.submitted.v1",
        "proposalflow.proposal.cosign-requested.v1",
        "proposalflow.proposal.cosigned.v1",
        "proposalflow.proposal.review-started.v1",
        "proposalflow.proposal.filed.v1",
    ]
    filed_event = (await outbox(client))[-1]
    assert filed_event["cosigners"] == [{"id": "m-2", "name": "李四", "kind": "member"}]

    again = await client.post(f"/proposals/{proposal['id']}/review", json={"decision": "file"}, headers=COMMITTEE)
    assert again.status_code == 409
    assert "only a submitted proposal" in again.json()["detail"]


async def test_refusing_to_file_needs_a_reason(client: httpx.AsyncClient) -> None:
    proposal = (await client.post("/proposals", json=SOLO, headers=MEMBER)).json()
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
    assert await outbox_types(client) == [
        "proposalflow.proposal.submitted.v1",
        "proposalflow.proposal.cosign-requested.v1",
    ]
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


async def test_a_proposal_whose_event_would_be_too_large_to_publish_is_refused_and_nothing_is_stored(
    tmp_path, monkeypatch, clock: FakeClock
) -> None:
    """The body is under the HTTP limit, but the `submitted` event it makes is over the producer's
    `max_request_size` (set low here): stored, the event could never be published and would hold back
    every later event of the service. 413, and the proposal, its event and the idempotency key are not
    stored."""
    url = f"sqlite+aiosqlite:///{tmp_path}/intake.db"
    monkeypatch.setenv("PROPOSALFLOW_INTAKE_DATABASE_URL", url)
    monkeypatch.setenv("PROPOSALFLOW_KAFKA_MAX_REQUEST_SIZE", "65536")
    await upgrade_async("intake", url)
    default_limit = outbox_record_limit(store.metadata)
    runtime, app = build(clock=clock)
    try:
        assert outbox_record_limit(store.metadata) == 65_536
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as http:
            http.runtime = runtime  # type: ignore[attr-defined]
            long = {**SOLO, "body": "字" * 50_000}  # 150,000 bytes in UTF-8: within the schema's 50,000 characters
            assert len(json.dumps(long).encode()) < CommonSettings().http_max_body_bytes
            refused = await http.post("/proposals", json=long, headers={**MEMBER, "Idempotency-Key": "k-long"})
            assert refused.status_code == 413, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            problem = refused.json()
            assert (problem["status"], problem["title"]) == (413, "Content too large")
            assert "proposalflow.proposal.submitted.v1 event of" in problem["detail"]
            assert "at most 65536 bytes" in problem["detail"]
            assert "Chinese characters" in problem["detail"]
            assert await outbox_types(http) == []
            async with runtime.engine.connect() as conn:
                for table in ("proposals", "idempotency_keys"):
                    assert (
                        await conn.execute(select(func.count()).select_from(store.metadata.tables[table]))
                    ).scalar() == 0

            # A proposal of ordinary length goes through under the same limit.
            accepted = await http.post("/proposals", json=SOLO, headers=MEMBER)
            assert accepted.status_code == 201, accepted.text
            assert await outbox_types(http) == ["proposalflow.proposal.submitted.v1"]
    finally:
        await runtime.engine.dispose()
        limit_outbox_records(store.metadata, default_limit)


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


async def submit(client: httpx.AsyncClient, content: dict[str, Any] = SOLO, headers: dict[str, str] = MEMBER) -> str:
    response = await client.post("/proposals", json=content, headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def review(client: httpx.AsyncClient, proposal_id: str, **decision: Any) -> httpx.Response:
    return await client.post(f"/proposals/{proposal_id}/review", json=decision, headers=COMMITTEE)


async def sweep(client: httpx.AsyncClient, clock: FakeClock) -> list[str]:
    runtime = client.runtime  # type: ignore[attr-defined]
    async with runtime.transaction() as conn:
        return await service.close_cosign_windows(SqlUnitOfWork(conn), load_policy(), now=clock())


async def test_cosign_refusals_name_the_rule(client: httpx.AsyncClient) -> None:
    proposal_id = await submit(
        client, {**PROPOSAL, "cosigners": [*PROPOSAL["cosigners"], {"id": "m-3", "name": "王五"}]}
    )  # type: ignore[list-item]
    assert (await client.post(f"/proposals/{proposal_id}/cosign", headers=STRANGER)).status_code == 404
    as_first = await client.post(f"/proposals/{proposal_id}/cosign", headers=MEMBER)
    assert as_first.status_code == 422
    assert as_first.json()["errors"][0]["rule"] == "cosigner_named"
    assert (await client.post(f"/proposals/{proposal_id}/cosign", headers=COMMITTEE)).status_code == 403
    assert (await client.post(f"/proposals/{proposal_id}/cosign", headers=COSIGNER)).status_code == 200
    twice = await client.post(f"/proposals/{proposal_id}/cosign", headers=COSIGNER)
    assert twice.status_code == 409
    assert twice.json()["errors"][0]["rule"] == "cosign_once"
    solo = await submit(client)
    not_joint = await client.post(f"/proposals/{solo}/cosign", headers=MEMBER)
    assert not_joint.json()["errors"][0]["rule"] == "cosign_only_while_awaiting"


async def test_the_cosign_window_closes_and_the_proposal_goes_to_review_with_who_confirmed(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    three = {**PROPOSAL, "cosigners": [*PROPOSAL["cosigners"], {"id": "m-3", "name": "王五"}]}  # type: ignore[list-item]
    proposal_id = await submit(client, three)
    assert (await client.post(f"/proposals/{proposal_id}/cosign", headers=COSIGNER)).status_code == 200
    clock.now = datetime(2026, 3, 9, 15, 0, tzinfo=UTC)  # 23:00 on the due date in Dongguan: still open
    assert await sweep(client, clock) == []
    clock.now += timedelta(hours=1)  # midnight: the window has closed
    late = await client.post(f"/proposals/{proposal_id}/cosign", headers=token(Role.MEMBER, "m-3"))
    assert late.status_code == 409
    assert late.json()["errors"][0]["rule"] == "cosign_window_open"
    assert await sweep(client, clock) == [proposal_id]
    assert await sweep(client, clock) == []
    proposal = (await client.get(f"/proposals/{proposal_id}", headers=COMMITTEE)).json()
    assert proposal["status"] == "submitted"
    assert proposal["confirmed_cosigners"] == ["m-2"]
    started = (await outbox(client))[-1]
    assert started["trigger"] == "cosign_window_closed"
    assert [c["id"] for c in started["confirmed_cosigners"]] == ["m-2"]
    assert [c["id"] for c in started["unconfirmed_cosigners"]] == ["m-3"]


async def test_a_review_overtaken_by_a_concurrent_withdrawal_saves_nothing(client: httpx.AsyncClient) -> None:
    """The unit of work saves a proposal only if its status is still the one it loaded (compare-and-set):
    a review decided on a proposal withdrawn meanwhile is refused, and neither its state nor its event
    is written."""
    proposal_id = await submit(client, SOLO)
    runtime = client.runtime  # type: ignore[attr-defined]
    async with runtime.transaction() as conn:
        uow = SqlUnitOfWork(conn)
        async with uow:
            proposal = await uow.submitted(proposal_id)
            await store.transition(conn, proposal_id, ProposalStatus.SUBMITTED, ProposalStatus.WITHDRAWN)
            proposal.return_for_revision(COMMITTEE_ACTOR, reason="请补充", correlation_id=None, now=datetime.now(UTC))
            with pytest.raises(StateConflict) as overtaken:
                await uow.commit()
    assert overtaken.value.rule == "review_only_submitted"
    stored = (await client.get(f"/proposals/{proposal_id}", headers=COMMITTEE)).json()
    assert (stored["status"], stored["return_reason"]) == ("withdrawn", None)
    assert await outbox_types(client) == ["proposalflow.proposal.submitted.v1"]


async def test_a_draft_is_private_until_submitted_and_complete(client: httpx.AsyncClient) -> None:
    created = await client.post("/proposals/drafts", json={"title": "关于垃圾分类的建议"}, headers=MEMBER)
    assert created.status_code == 201, created.text
    draft = created.json()
    assert draft["status"] == "draft"
    assert draft["first_proposer"]["id"] == "m-1"
    assert (await client.get(f"/proposals/{draft['id']}", headers=COMMITTEE)).status_code == 404
    assert (await client.get("/proposals", headers=COMMITTEE)).json()["items"] == []
    assert [p["id"] for p in (await client.get("/proposals", headers=MEMBER)).json()["items"]] == [draft["id"]]

    incomplete = await client.post(f"/proposals/{draft['id']}/submit", headers=MEMBER)
    assert incomplete.status_code == 422
    assert incomplete.json()["errors"][0]["rule"] == "content_complete"
    assert "body" in incomplete.json()["detail"]

    assert (
        await client.patch(f"/proposals/{draft['id']}", json={"body": "x" * 20}, headers=STRANGER)
    ).status_code == 404
    assert (
        await client.patch(f"/proposals/{draft['id']}", json={"body": "x" * 20}, headers=COMMITTEE)
    ).status_code == 403
    edited = await client.patch(
        f"/proposals/{draft['id']}",
        json={"body": SOLO["body"], "category": "生态文明建设", "suggestions": ["推行定时定点投放"]},
        headers=MEMBER,
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["suggestions"] == [{"number": 1, "text": "推行定时定点投放"}]
    assert await outbox_types(client) == []

    submitted = await client.post(f"/proposals/{draft['id']}/submit", headers=MEMBER)
    assert submitted.status_code == 200, submitted.text
    assert submitted.json()["status"] == "submitted"
    assert await outbox_types(client) == ["proposalflow.proposal.submitted.v1"]
    too_late = await client.patch(f"/proposals/{draft['id']}", json={"title": "改一个标题吧"}, headers=MEMBER)
    assert too_late.status_code == 409
    assert too_late.json()["errors"][0]["rule"] == "edit_only_draft_or_returned"
    again = await client.post(f"/proposals/{draft['id']}/submit", headers=MEMBER)
    assert again.json()["errors"][0]["rule"] == "submit_only_draft_or_returned"


async def test_a_draft_cannot_name_someone_else_as_first_proposer(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/proposals/drafts", json={"first_proposer": {"id": "m-9", "name": "王五"}}, headers=MEMBER
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["rule"] == "submitter_is_first_proposer"
    assert (await client.post("/proposals/drafts", json={}, headers=COMMITTEE)).status_code == 403


async def test_withdrawal_only_before_filing_and_only_by_the_first_proposer(client: httpx.AsyncClient) -> None:
    draft = (await client.post("/proposals/drafts", json={"title": "草稿标题一"}, headers=MEMBER)).json()
    withdrawn_draft = await client.post(f"/proposals/{draft['id']}/withdraw", json={}, headers=MEMBER)
    assert withdrawn_draft.json()["status"] == "withdrawn"
    assert await outbox_types(client) == []  # nobody outside intake ever heard of the draft

    joint = await submit(client, PROPOSAL)
    by_cosigner = await client.post(f"/proposals/{joint}/withdraw", json={}, headers=COSIGNER)
    assert by_cosigner.status_code == 422
    assert by_cosigner.json()["errors"][0]["rule"] == "only_the_first_proposer"
    assert (await client.post(f"/proposals/{joint}/withdraw", json={}, headers=COMMITTEE)).status_code == 403
    withdrawn = await client.post(f"/proposals/{joint}/withdraw", json={"reason": "情况已变化"}, headers=MEMBER)
    assert withdrawn.json()["status"] == "withdrawn"
    assert (await outbox(client))[-1]["reason"] == "情况已变化"

    filed = await submit(client)
    assert (await review(client, filed, decision="file")).status_code == 200
    refused = await client.post(f"/proposals/{filed}/withdraw", json={}, headers=MEMBER)
    assert refused.status_code == 409
    assert refused.json()["errors"][0]["rule"] == "withdraw_only_before_filing"


async def test_not_filed_needs_a_configured_ground_and_keeps_the_content_as_an_opinion(
    client: httpx.AsyncClient,
) -> None:
    proposal_id = await submit(client)
    unknown = await review(client, proposal_id, decision="not_file", reason="不属于职能", ground="看心情")
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["rule"] == "not_filed_ground_known"
    assert "不属于政协职能范围" in unknown.json()["detail"]
    refused = await review(
        client,
        proposal_id,
        decision="not_file",
        reason="建议转有关部门参考",
        ground="属于个人或少数人利益诉求",
        converted_to_opinion=True,
    )
    assert refused.status_code == 200, refused.text
    body = refused.json()
    assert (body["status"], body["not_filed_ground"], body["converted_to_opinion"]) == (
        "not_filed",
        "属于个人或少数人利益诉求",
        True,
    )
    assert body["body"] == SOLO["body"]
    event = (await outbox(client))[-1]
    assert (event["ground"], event["converted_to_opinion"], event["actor"]["id"]) == (
        "属于个人或少数人利益诉求",
        True,
        "c-1",
    )


async def test_returned_for_revision_then_edited_and_resubmitted(client: httpx.AsyncClient) -> None:
    proposal_id = await submit(client, PROPOSAL)
    await client.post(f"/proposals/{proposal_id}/cosign", headers=COSIGNER)
    no_reason = await review(client, proposal_id, decision="return")
    assert no_reason.json()["errors"][0]["rule"] == "return_needs_reason"
    returned = await review(client, proposal_id, decision="return", reason="请补充数据支撑")
    assert returned.json()["status"] == "returned"
    assert returned.json()["return_reason"] == "请补充数据支撑"

    signers = await client.patch(f"/proposals/{proposal_id}", json={"cosigners": []}, headers=MEMBER)
    assert signers.json()["errors"][0]["rule"] == "signers_fixed_after_submission"
    revised = await client.patch(
        f"/proposals/{proposal_id}",
        json={"suggestions": ["编制整治规划", "设立专项资金", "建立考核机制"]},
        headers=MEMBER,
    )
    assert revised.status_code == 200
    resubmitted = await client.post(f"/proposals/{proposal_id}/submit", headers=MEMBER)
    assert resubmitted.json()["status"] == "submitted"
    *_, returned_event, resubmitted_event, started = await outbox(client)
    assert returned_event["reason"] == "请补充数据支撑"
    assert len(resubmitted_event["suggestions"]) == 3
    assert started["trigger"] == "resubmitted"
    assert [c["id"] for c in started["confirmed_cosigners"]] == ["m-2"]
    assert (await review(client, proposal_id, decision="file")).json()["status"] == "filed"


async def test_merge_into_another_proposal(client: httpx.AsyncClient) -> None:
    target = await submit(client)
    assert (await review(client, target, decision="file")).status_code == 200
    other = await submit(client, {**SOLO, "first_proposer": {"id": "m-5", "name": "赵六"}}, COMMITTEE)
    itself = await review(client, other, decision="merge", into_proposal_id=other)
    assert itself.json()["errors"][0]["rule"] == "merge_into_another"
    missing = await review(client, other, decision="merge")
    assert missing.json()["errors"][0]["rule"] == "merge_needs_target"
    unknown = await review(client, other, decision="merge", into_proposal_id="nope")
    assert unknown.json()["errors"][0]["rule"] == "merge_target_exists"
    refused = await submit(client)
    await review(client, refused, decision="not_file", reason="已有结论", ground="已有结论或正在处理")
    closed = await review(client, other, decision="merge", into_proposal_id=refused)
    assert closed.status_code == 409
    assert closed.json()["errors"][0]["rule"] == "merge_target_open"

    merged = await review(client, other, decision="merge", into_proposal_id=target, reason="内容相近")
    assert merged.status_code == 200, merged.text
    assert (merged.json()["status"], merged.json()["merged_into"]) == ("merged", target)
    event = (await outbox(client))[-1]
    assert event["into_proposal_id"] == target
    assert event["into_filing_number"] == "2026-0001"
    assert event["first_proposer"]["id"] == "m-5"  # notify tells the merged proposer
    member_view = await client.get(f"/proposals/{other}", headers=token(Role.MEMBER, "m-5"))
    assert member_view.json()["status"] == "merged"


async def test_similar_filed_proposals_rank_the_related_one_first(client: httpx.AsyncClient) -> None:
    related = await submit(
        client,
        {
            **SOLO,
            "title": "关于加强全域土地综合整治的建议",
            "body": "土地碎片化制约发展, 建议推进全域土地综合整治和耕地保护。",
            "suggestions": ["编制全域土地综合整治规划"],
        },
    )
    unrelated = await submit(
        client,
        {
            **SOLO,
            "title": "关于发展职业教育的建议",
            "body": "职业院校招生难, 建议深化产教融合, 提升职业教育质量。",
            "category": "社会建设",
            "suggestions": ["建设产教融合实训基地"],
        },
    )
    for proposal_id in (related, unrelated):
        await review(client, proposal_id, decision="file")
    in_review = await submit(client)
    response = await client.get(f"/proposals/{in_review}/similar", params={"limit": 5}, headers=COMMITTEE)
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert items[0]["id"] == related
    assert items[0]["filing_number"] == "2026-0001"
    assert all(item["id"] != in_review for item in items)
    assert [item["score"] for item in items] == sorted((item["score"] for item in items), reverse=True)
    assert (await client.get(f"/proposals/{in_review}/similar", headers=MEMBER)).status_code == 403
    assert (await client.get("/proposals/nope/similar", headers=COMMITTEE)).status_code == 404


async def test_members_list_only_their_own_proposals_and_lists_paginate(client: httpx.AsyncClient) -> None:
    joint = await submit(client, PROPOSAL)
    other = await submit(client, {**SOLO, "first_proposer": {"id": "m-5", "name": "赵六"}}, COMMITTEE)
    assert [p["id"] for p in (await client.get("/proposals", headers=COSIGNER)).json()["items"]] == [joint]
    assert [p["id"] for p in (await client.get("/proposals", headers=STRANGER)).json()["items"]] == []
    everything = (await client.get("/proposals", headers=COMMITTEE)).json()["items"]
    assert {p["id"] for p in everything} == {joint, other}
    page = (await client.get("/proposals", params={"limit": 1, "offset": 1}, headers=COMMITTEE)).json()
    assert len(page["items"]) == 1
    assert (page["limit"], page["offset"]) == (1, 1)
    assert (await client.get("/proposals", headers=UNIT)).status_code == 403
    assert (await client.get(f"/proposals/{joint}", headers=UNIT)).status_code == 403
    awaiting = (await client.get("/proposals", params={"status": "awaiting_cosigners"}, headers=COMMITTEE)).json()
    assert [p["id"] for p in awaiting["items"]] == [joint]


async def test_the_proposals_of_a_series_are_listed_together(client: httpx.AsyncClient) -> None:
    """系列提案: one member's proposals on one theme, listed by their series id."""
    series = [
        await submit(client, {**SOLO, "title": f"关于人工智能赋能制造业的建议之{n}", "series_id": "ai-mfg"})
        for n in "一二三"
    ]
    await submit(client, SOLO)
    listed = (await client.get("/proposals", params={"series_id": "ai-mfg"}, headers=COMMITTEE)).json()["items"]
    assert {p["id"] for p in listed} == set(series)
    assert {
        p["id"]
        for p in (await client.get("/proposals", params={"series_id": "ai-mfg"}, headers=MEMBER)).json()["items"]
    } == set(series)
    assert (await client.get("/proposals", params={"series_id": "ai-mfg"}, headers=STRANGER)).json()["items"] == []


async def test_every_write_route_refuses_roles_that_may_not_use_it(client: httpx.AsyncClient) -> None:
    proposal_id = await submit(client)
    for method, path, body in [
        ("POST", "/proposals/drafts", {}),
        ("PATCH", f"/proposals/{proposal_id}", {}),
        ("POST", f"/proposals/{proposal_id}/submit", None),
        ("POST", f"/proposals/{proposal_id}/cosign", None),
        ("POST", f"/proposals/{proposal_id}/withdraw", {}),
        ("POST", f"/proposals/{proposal_id}/review", {"decision": "file"}),
        ("GET", f"/proposals/{proposal_id}/similar", None),
    ]:
        response = await client.request(method, path, json=body, headers=UNIT)
        assert response.status_code == 403, (method, path)
        assert (await client.request(method, path, json=body)).status_code == 401, (method, path)
