"""Progress's HTTP door: every route and role, on SQLite, with an injected clock; no broker needed
(published events wait in the outbox, which these tests read)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from services.progress import store
from services.progress.app import build
from shared.auth import issue_token
from shared.events import Role
from shared.migrate import upgrade_async
from shared.settings import CommonSettings
from tests.progress_fixtures import Clock, feed, lifecycle


def token(role: Role, sub: str, unit: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(CommonSettings(), subject=sub, role=role, unit=unit)}"}


LEAD = token(Role.UNIT, "u-1", unit="dg-zrzyj")
CO = token(Role.UNIT, "u-2", unit="dg-czj")
STRANGER_UNIT = token(Role.UNIT, "u-9", unit="dg-jtj")
COMMITTEE = token(Role.COMMITTEE, "c-1")
FIRST = token(Role.MEMBER, "m-1")
COSIGNER = token(Role.MEMBER, "m-2")
OTHER_MEMBER = token(Role.MEMBER, "m-7")
LEADER = token(Role.LEADER, "l-1")
OTHER_LEADER = token(Role.LEADER, "l-2")

REPLY = {
    "text": "经研究, 我局已编制全域土地综合整治规划, 联系电话 13800138000, 邮箱 office@zrzyj.dg.gov.cn。",
    "classification": "A",
    "adoptions": [{"number": 1, "adopted": True, "how": "已编制规划"}, {"number": 2, "adopted": False}],
    "measures": [{"text": "设立整治专项资金", "owner_unit": "dg-czj", "due": "2026-12-31"}],
}


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 20, 2, tzinfo=UTC))


@pytest.fixture
async def client(tmp_path, monkeypatch, clock: Clock) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path}/progress.db"
    monkeypatch.setenv("PROPOSALFLOW_PROGRESS_DATABASE_URL", url)
    await upgrade_async("progress", url)
    runtime, app = build(clock)
    await feed(runtime, lifecycle("p-0001", key_leader="l-1"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://progress") as http:
        http.runtime = runtime  # type: ignore[attr-defined]
        yield http
    await runtime.engine.dispose()


async def published(client: httpx.AsyncClient) -> list[str]:
    table = store.metadata.tables["outbox"]
    async with client.runtime.engine.connect() as conn:  # type: ignore[attr-defined]
        return list((await conn.execute(select(table.c.type).order_by(table.c.id))).scalars())


async def post(
    client: httpx.AsyncClient, path: str, body: dict[str, object], headers: dict[str, str]
) -> httpx.Response:
    return await client.post(f"/proposals/p-0001{path}", json=body, headers=headers)


async def test_from_assignment_to_implementation_with_one_rehandling(client: httpx.AsyncClient, clock: Clock) -> None:
    reported = await post(
        client, "/progress", {"kind": "face_to_face", "on": "2026-03-18", "text": "与提案者面商"}, LEAD
    )
    assert reported.status_code == 200, reported.text
    assert reported.json()["stage"] == "handling"

    opinion = await post(client, "/co-opinions", {"text": "建议由市财政统筹专项资金"}, CO)
    assert opinion.status_code == 200, opinion.text
    again = await post(client, "/co-opinions", {"text": "再补充一点"}, CO)
    assert again.status_code == 409
    assert again.json()["errors"][0]["rule"] == "co_opinion_once"

    drafted = await post(client, "/replies", REPLY, LEAD)
    assert drafted.status_code == 200, drafted.text
    view = drafted.json()
    assert view["stage"] == "reply_review"
    reply_id = view["replies"][0]["id"]
    assert [m["owner_unit"] for m in view["measures"]] == ["dg-czj"]

    no_reason = await post(client, f"/replies/{reply_id}/review", {"decision": "return"}, COMMITTEE)
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["rule"] == "return_needs_reason"
    returned = await post(
        client, f"/replies/{reply_id}/review", {"decision": "return", "reason": "请补充资金安排"}, COMMITTEE
    )
    assert returned.json()["stage"] == "handling"
    assert returned.json()["measures"] == []

    reply_id = (await post(client, "/replies", REPLY, LEAD)).json()["replies"][-1]["id"]
    approved = await post(client, f"/replies/{reply_id}/review", {"decision": "approve"}, COMMITTEE)
    assert approved.json()["stage"] == "answered"
    # 评价期: Friday 2026-03-20 + 15 working days; Monday 04-06 is off for 清明, so 04-13, not 04-10.
    assert approved.json()["evaluation_due"] == "2026-04-13"

    clock.now = datetime(2026, 3, 25, 2, tzinfo=UTC)
    unsatisfied = {"handling_grade": "satisfied", "result_grade": "unsatisfied", "comment": "资金未落实"}
    rehandled = await post(client, "/evaluations", unsatisfied, FIRST)
    assert rehandled.status_code == 200, rehandled.text
    # 重新办理: 2026-03-25 + 1 month = 2026-04-25 (a Saturday) → Monday 2026-04-27.
    assert (rehandled.json()["stage"], rehandled.json()["round"]) == ("handling", 2)
    assert rehandled.json()["reply_due"] == "2026-04-27"
    late = await post(client, "/evaluations", {"handling_grade": "satisfied", "result_grade": "satisfied"}, COSIGNER)
    assert late.status_code == 409  # round 1 is over: the second reply is what the cosigner evaluates

    second = (await post(client, "/replies", REPLY, LEAD)).json()["replies"][-1]
    assert second["round"] == 2
    await post(client, f"/replies/{second['id']}/review", {"decision": "approve"}, COMMITTEE)
    await post(client, "/evaluations", {"handling_grade": "satisfied", "result_grade": "basically_satisfied"}, FIRST)
    closed = await post(client, "/evaluations", {"handling_grade": "satisfied", "result_grade": "satisfied"}, COSIGNER)
    assert closed.json()["stage"] == "closed"

    # Both approved replies committed to a measure: one done and one dropped (with its reason) = 落实.
    first_measure, second_measure = (m["id"] for m in closed.json()["measures"])
    without_reason = await post(client, f"/measures/{second_measure}", {"status": "dropped"}, LEAD)
    assert without_reason.json()["errors"][0]["rule"] == "measure_dropped_with_reason"
    dropped = await post(client, f"/measures/{second_measure}", {"status": "dropped", "note": "已并入首项"}, LEAD)
    assert dropped.json()["implemented_at"] is None
    await post(client, f"/measures/{first_measure}", {"status": "in_progress"}, CO)
    done = await post(client, f"/measures/{first_measure}", {"status": "done", "note": "资金已拨付"}, CO)
    assert done.json()["implemented_at"] is not None
    measure_id = first_measure
    backwards = await post(client, f"/measures/{measure_id}", {"status": "in_progress"}, CO)
    assert backwards.status_code == 409

    types = await published(client)
    assert types.count("proposalflow.reply.drafted.v1") == 3
    assert "proposalflow.handling.rehandling-started.v1" in types
    assert types[-3:-1] == ["proposalflow.measure.updated.v1", "proposalflow.proposal.implemented.v1"]
    assert types[-1] == "proposalflow.implementation.evaluation-opened.v1"  # 落实 asks for the 落实评价
    timeline = [entry["type"] for entry in done.json()["timeline"]]
    assert timeline[:3] == [
        "proposalflow.proposal.submitted.v1",
        "proposalflow.proposal.filed.v1",
        "proposalflow.assignment.assigned.v1",
    ]
    assert "proposalflow.proposal.closed.v1" in timeline
    # Each entry carries the codes it was written from, for readers to put in their words; nothing
    # personal beyond the summary (the proposal's body and signers stay out).
    facts = {entry["type"]: entry["facts"] for entry in done.json()["timeline"]}
    assert facts["proposalflow.measure.updated.v1"]["status"] == "done"
    assert set(facts["proposalflow.evaluation.submitted.v1"]) >= {"handling_grade", "result_grade"}
    assert not {"body", "first_proposer", "cosigners", "comment"} & set(facts["proposalflow.proposal.submitted.v1"])
    assert not {"comment"} & set(facts["proposalflow.evaluation.submitted.v1"])

    public = await client.get("/public/replies")
    assert public.status_code == 200
    items = public.json()["items"]
    assert {item["classification"] for item in items} == {"A"}
    text = json.dumps(public.json(), ensure_ascii=False)
    assert "13800138000" not in text and "office@" not in text and "m-1" not in text
    assert "[电话已隐去]" in items[0]["text"]


async def test_roles_are_checked_on_every_route(client: httpx.AsyncClient) -> None:
    assert (await client.get("/proposals/p-0001")).status_code == 401
    assert (
        await post(client, "/progress", {"kind": "phone", "on": "2026-03-18", "text": "x"}, FIRST)
    ).status_code == 403
    assert (
        await post(client, "/progress", {"kind": "phone", "on": "2026-03-18", "text": "x"}, STRANGER_UNIT)
    ).status_code == 404
    assert (await post(client, "/replies", REPLY, COMMITTEE)).status_code == 403
    not_lead = await post(client, "/replies", REPLY, CO)
    assert not_lead.json()["errors"][0]["rule"] == "reply_by_lead_unit"
    reply_id = (await post(client, "/replies", REPLY, LEAD)).json()["replies"][0]["id"]
    assert (await post(client, f"/replies/{reply_id}/review", {"decision": "approve"}, LEAD)).status_code == 403
    assert (await post(client, "/replies/nope/review", {"decision": "approve"}, COMMITTEE)).status_code == 404
    early = await post(client, "/evaluations", {"handling_grade": "satisfied", "result_grade": "satisfied"}, FIRST)
    assert early.json()["errors"][0]["rule"] == "evaluate_answered"
    stranger = await post(
        client, "/evaluations", {"handling_grade": "satisfied", "result_grade": "satisfied"}, OTHER_MEMBER
    )
    assert stranger.status_code == 404
    assert (await post(client, "/evaluations", {"handling_grade": "x", "result_grade": "y"}, LEAD)).status_code == 403
    supervision = {"kind": "visit", "on": "2026-03-19", "text": "实地调研整治项目"}
    assert (await post(client, "/supervision", supervision, LEADER)).status_code == 200
    assert (await post(client, "/supervision", supervision, OTHER_LEADER)).status_code == 404
    assert (await post(client, "/supervision", supervision, COMMITTEE)).status_code == 403
    assert (await client.get("/stats", headers=LEAD)).status_code == 403
    # A leader's figures are those of the key proposals it supervises, and nobody else's.
    assert [row["id"] for row in (await client.get("/stats", headers=LEADER)).json()["key_proposals"]] == ["p-0001"]
    others = (await client.get("/stats", headers=OTHER_LEADER)).json()
    assert (others["key_proposals"], others["overall"]["submitted"]) == ([], 0)
    assert (await client.get("/inbox", headers=FIRST)).status_code == 403
    assert (await client.get("/proposals/p-0001", headers=LEADER)).status_code == 200
    assert (await client.get("/proposals/p-0001", headers=OTHER_MEMBER)).status_code == 404
    assert (await client.get("/proposals/p-0001", headers=COSIGNER)).status_code == 200


async def test_bad_bodies_are_refused_saying_what_is_wrong(client: httpx.AsyncClient) -> None:
    unknown_class = await post(client, "/replies", {**REPLY, "classification": "Z"}, LEAD)
    assert unknown_class.status_code == 422
    assert "A, B, C" in unknown_class.json()["detail"]
    missing = await post(client, "/replies", {**REPLY, "adoptions": [{"number": 1, "adopted": True}]}, LEAD)
    assert missing.json()["errors"][0]["rule"] == "adoption_for_every_suggestion"
    past = {**REPLY, "measures": [{"text": "m", "owner_unit": "dg-czj", "due": "2025-01-01"}]}
    assert (await post(client, "/replies", past, LEAD)).json()["errors"][0]["rule"] == "measure_due_in_future"
    bad_kind = await post(client, "/progress", {"kind": "dinner", "on": "2026-03-18", "text": "x"}, LEAD)
    assert bad_kind.status_code == 422
    assert bad_kind.headers["content-type"] == "application/problem+json"
    assert await published(client) == []


async def test_an_idempotency_key_gives_one_effect_and_the_same_answer(client: httpx.AsyncClient) -> None:
    headers = {**LEAD, "Idempotency-Key": "k-1"}
    body = {"kind": "meeting", "on": "2026-03-18", "text": "召开座谈会"}
    first = await post(client, "/progress", body, headers)
    second = await post(client, "/progress", body, headers)
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert await published(client) == ["proposalflow.handling.progress-reported.v1"]


async def test_lists_inbox_and_stats(client: httpx.AsyncClient, clock: Clock) -> None:
    await feed(client.runtime, lifecycle("p-0002", category="社会建设", lead="dg-czj", co=()))  # type: ignore[attr-defined]
    await feed(client.runtime, lifecycle("p-0003", filed=False))  # type: ignore[attr-defined]
    everything = (await client.get("/proposals", headers=COMMITTEE)).json()
    assert everything["total"] == 3
    by_unit = (await client.get("/proposals?unit=dg-czj&limit=1", headers=COMMITTEE)).json()
    assert (by_unit["total"], len(by_unit["items"])) == (2, 1)
    assert (await client.get("/proposals?category=社会建设", headers=COMMITTEE)).json()["items"][0]["id"] == "p-0002"
    assert (await client.get("/proposals?key=true", headers=COMMITTEE)).json()["total"] == 1
    assert (await client.get("/proposals?year=2025", headers=COMMITTEE)).json()["total"] == 0
    assert (await client.get("/proposals?stage=submitted", headers=COMMITTEE)).json()["total"] == 1
    assert (await client.get("/proposals", headers=CO)).json()["total"] == 2
    assert (await client.get("/proposals", headers=OTHER_MEMBER)).json()["total"] == 0

    inbox = (await client.get("/inbox", headers=CO)).json()["items"]
    assert [(item["proposal_id"], item["kind"]) for item in inbox] == [("p-0001", "co_opinion"), ("p-0002", "reply")]

    clock.now = datetime(2026, 4, 7, 2, tzinfo=UTC)  # past the co-opinion due date, 2026-04-03
    assert [p["id"] for p in (await client.get("/proposals?overdue=true", headers=COMMITTEE)).json()["items"]] == [
        "p-0001"
    ]
    figures = (await client.get("/stats", headers=COMMITTEE)).json()
    # 立案率: p-0001 and p-0002 filed; p-0003 is still in review (审查中), so it has no outcome to count yet.
    assert figures["overall"]["filing_rate"] == 1.0
    assert (figures["overall"]["accepted"], figures["overall"]["decided"], figures["overall"]["in_review"]) == (2, 2, 1)
    assert figures["overdue_by_unit"] == {"dg-czj": 1}
    assert [row["id"] for row in figures["key_proposals"]] == ["p-0001"]
