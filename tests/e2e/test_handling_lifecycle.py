"""From submission to implemented measures, every step through the services' own APIs as separate
processes on real Kafka: the services agree on the events they exchange, not only on their own tests."""

from __future__ import annotations

import httpx
import pytest

from shared.events import Role
from tests.e2e.conftest import Suite
from tests.lifecycle_driver import Walk

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
    committee = suite.token(Role.COMMITTEE, "c-office")
    url = suite.urls
    async with httpx.AsyncClient(timeout=10) as http:
        walk = Walk.of(http, suite)
        await walk.submit(PROPOSAL)
        await walk.file()
        confirmed = await walk.assign()
        assert confirmed["lead_unit"] == "dg-zrzyj"
        await walk.accept()
        await walk.co_opinion("建议将高标准农田建设纳入整治范围")
        approved = await walk.answer(REPLY)
        assert approved["stage"] == "answered"

        evaluated = await walk.evaluate()
        assert evaluated["stage"] == "closed"
        [measure] = evaluated["measures"]
        done = await walk.measure_done(measure["id"], "专项资金已设立")
        assert done["implemented_at"] is not None

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

        types = await walk.audited("proposalflow.proposal.implemented.v1")
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
        verified = await walk.verified()
        assert verified["ok"] is True, verified
