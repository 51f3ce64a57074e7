"""From submission to implemented measures, every step through the services' own APIs as separate
processes on real Kafka: the services agree on the events they exchange, not only on their own tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.events import Role
from tests.e2e.conftest import Suite
from tests.e2e.test_lifecycle import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

PROPOSAL = {
    "title": "关于推进全域土地综合整治的建议",
    "body": "我市土地利用碎片化问题突出, 建议统筹推进全域土地综合整治, 优化国土空间布局。",
    "category": "经济建设",
    "first_proposer": {"id": "m-wang", "name": "王委员"},
    "suggestions": ["编制全域土地综合整治规划", "设立专项资金"],
}
REPLY = {
    "text": "经研究, 我局已会同市农业农村局编制全域土地综合整治规划, 并将设立专项资金。",
    "classification": "A",
    "adoptions": [{"number": 1, "adopted": True, "how": "已编制规划"}, {"number": 2, "adopted": True}],
    "measures": [{"text": "设立整治专项资金", "owner_unit": "dg-zrzyj", "due": "2027-06-30"}],
}


async def test_a_proposal_is_answered_evaluated_closed_and_its_measures_implemented(suite: Suite) -> None:
    member = suite.token(Role.MEMBER, "m-wang")
    committee = suite.token(Role.COMMITTEE, "c-office")
    dispatcher = suite.token(Role.DISPATCHER, "d-office")
    lead = suite.token(Role.UNIT, "u-zrzyj", unit="dg-zrzyj")
    co = suite.token(Role.UNIT, "u-nyj", unit="dg-nyj")
    url = suite.urls
    async with httpx.AsyncClient(timeout=10) as http:
        created = await http.post(f"{url['intake']}/proposals", json=PROPOSAL, headers=member)
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        filed = await http.post(f"{url['intake']}/proposals/{pid}/review", json={"decision": "file"}, headers=committee)
        assert filed.status_code == 200, filed.text

        async def suggested() -> bool:
            response = await http.get(f"{url['assignment']}/assignments/{pid}", headers=dispatcher)
            return response.status_code == 200

        await eventually(suggested, "a routing suggestion", suite)
        confirmed = await http.post(f"{url['assignment']}/assignments/{pid}/confirm", json={}, headers=dispatcher)
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["lead_unit"] == "dg-zrzyj"

        async def progress_stage(*stages: str) -> dict[str, Any] | None:
            response = await http.get(f"{url['progress']}/proposals/{pid}", headers=committee)
            body = response.json() if response.status_code == 200 else None
            return body if body and body["stage"] in stages else None

        await eventually(lambda: progress_stage("assigned"), "the assignment in progress", suite)
        accepted = await http.post(f"{url['assignment']}/assignments/{pid}/accept", json={}, headers=lead)
        assert accepted.status_code == 200, accepted.text
        await eventually(lambda: progress_stage("handling"), "handling after the lead unit accepted", suite)

        opinion = await http.post(
            f"{url['progress']}/proposals/{pid}/co-opinions",
            json={"text": "建议将高标准农田建设纳入整治范围"},
            headers=co,
        )
        assert opinion.status_code == 200, opinion.text
        drafted = await http.post(f"{url['progress']}/proposals/{pid}/replies", json=REPLY, headers=lead)
        assert drafted.status_code == 200, drafted.text
        reply_id = drafted.json()["replies"][-1]["id"]
        approved = await http.post(
            f"{url['progress']}/proposals/{pid}/replies/{reply_id}/review",
            json={"decision": "approve"},
            headers=committee,
        )
        assert approved.status_code == 200, approved.text
        assert approved.json()["stage"] == "answered"

        evaluated = await http.post(
            f"{url['progress']}/proposals/{pid}/evaluations",
            json={"handling_grade": "satisfied", "result_grade": "satisfied"},
            headers=member,
        )
        assert evaluated.status_code == 200, evaluated.text
        assert evaluated.json()["stage"] == "closed"
        [measure] = evaluated.json()["measures"]
        done = await http.post(
            f"{url['progress']}/proposals/{pid}/measures/{measure['id']}",
            json={"status": "done", "note": "专项资金已设立"},
            headers=lead,
        )
        assert done.status_code == 200, done.text
        assert done.json()["implemented_at"] is not None

        # 办理统计: replies and evaluations exist only in this suite's progress (other tests' proposals on the
        # shared topics reach it at most assigned, due months ahead), so every reply-based rate is this story's.
        stats = (await http.get(f"{url['progress']}/stats", headers=committee)).json()
        overall = stats["overall"]
        assert (overall["replies_on_time"], overall["replies_due"], overall["on_time_reply_rate"]) == (1, 1, 1.0)
        assert (overall["suggestions_adopted"], overall["suggestions"]) == (2, 2)
        assert (overall["proposals_satisfied"], overall["proposals_evaluated"], overall["satisfaction_rate"]) == (
            1,
            1,
            1.0,
        )
        assert (overall["first_class_replies"], overall["replies_final"]) == (1, 1)
        assert stats["reply_classes"]["first"] == {"code": "A", "label": "已解决或采纳"}
        assert stats["per_unit"]["dg-zrzyj"]["replies_on_time"] == 1

        public = (await http.get(f"{url['progress']}/public/replies")).json()
        published = [item for item in public["items"] if item["title"] == PROPOSAL["title"]]
        assert published
        assert "m-wang" not in str(published) and "王委员" not in str(published)

        async def audited() -> list[str] | None:
            response = await http.get(f"{url['audit']}/audit/proposals/{pid}", headers=committee)
            types = [entry["type"] for entry in response.json()["entries"]]
            return types if "proposalflow.proposal.implemented.v1" in types else None

        types = await eventually(audited, "the whole story in the audit log", suite)
        for expected in (
            "proposalflow.proposal.submitted.v1",
            "proposalflow.assignment.assigned.v1",
            "proposalflow.assignment.accepted.v1",
            "proposalflow.handling.co-opinion-submitted.v1",
            "proposalflow.reply.approved.v1",
            "proposalflow.evaluation.submitted.v1",
            "proposalflow.proposal.closed.v1",
            "proposalflow.measure.updated.v1",
        ):
            assert expected in types, expected
        verified = (await http.get(f"{url['audit']}/audit/verify", headers=committee)).json()
        assert verified["ok"] is True, verified
