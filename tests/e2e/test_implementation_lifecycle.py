"""落实 to the end, through the services' own APIs as separate processes on real Kafka: a key proposal's
reply commits to two measures; once both are done the proposer is asked to evaluate the implementation,
judges it unsatisfied and reopens one measure; its unit settles it again and the proposer is satisfied.
The people are told (notify), the figures are the ones computed by hand (progress), and every step is
in the audit log."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.events import Role
from tests.e2e.conftest import Suite
from tests.e2e.test_lifecycle import eventually
from tests.lifecycle_driver import Walk

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

PROPOSAL = {
    "title": "关于加快全域土地综合整治落实的建议",
    "body": "全域土地综合整治已有规划, 建议加快资金落实和镇街试点, 并定期向社会公开进展。",
    "category": "经济建设",
    "first_proposer": {"id": "m-zhao", "name": "赵委员"},
    "suggestions": ["设立整治专项资金", "开展镇街试点"],
}
LEADER = "leader-cwfsz"


async def closed_key_proposal(
    http: httpx.AsyncClient, suite: Suite, member_id: str, proposal: dict[str, Any] = PROPOSAL
) -> dict[str, Any]:
    """Submitted by `member_id`, filed, key (supervised by the executive vice mayor), assigned to 市自然资源局
    with 市农业农村局, answered with two measures (one each), evaluated satisfied: closed, as progress shows it."""
    walk = Walk.of(http, suite, member=member_id)
    await walk.submit(proposal)
    await walk.file()
    await walk.suggested()
    await walk.post(
        "assignment", "/key-proposals", {"proposal_ids": [walk.pid], "supervising_leader": LEADER}, walk.committee, 201
    )
    confirmed = await walk.confirm()
    assert confirmed["lead_unit"] == "dg-zrzyj" and "dg-nyj" in confirmed["co_units"]
    await walk.progress(lambda p: p["stage"] == "assigned" and p["key"], "key, assigned")
    await walk.accept()

    reply = {
        "text": "经研究, 我局将设立整治专项资金, 并会同市农业农村局开展镇街试点。",
        "classification": "B",
        "adoptions": [{"number": 1, "adopted": True}, {"number": 2, "adopted": True}],
        "measures": [
            {"text": "设立整治专项资金", "owner_unit": "dg-zrzyj", "due": "2027-06-30"},
            {"text": "开展镇街试点", "owner_unit": "dg-nyj", "due": "2027-09-30"},
        ],
    }
    await walk.answer(reply)
    evaluated = await walk.evaluate()
    assert evaluated["stage"] == "closed", evaluated
    return evaluated


async def test_an_unsatisfied_implementation_evaluation_reopens_a_measure_until_the_proposer_is_satisfied(
    suite: Suite,
) -> None:
    member = suite.token(Role.MEMBER, "m-zhao")
    committee = suite.token(Role.COMMITTEE, "c-office")
    leader = suite.token(Role.LEADER, LEADER)
    lead = suite.token(Role.UNIT, "u-zrzyj", unit="dg-zrzyj")
    co = suite.token(Role.UNIT, "u-nyj", unit="dg-nyj")
    url = suite.urls
    progress = url["progress"]
    async with httpx.AsyncClient(timeout=10) as http:
        closed = await closed_key_proposal(http, suite, "m-zhao")
        pid = closed["id"]
        funds, pilot = (m["id"] for m in closed["measures"])

        too_early = await http.post(
            f"{progress}/proposals/{pid}/implementation-evaluations", json={"grade": "satisfied"}, headers=member
        )
        assert (
            too_early.status_code == 409 and too_early.json()["errors"][0]["rule"] == "implementation_evaluation_open"
        )
        done = await http.post(
            f"{progress}/proposals/{pid}/measures/{funds}", json={"status": "done", "note": "资金已拨付"}, headers=lead
        )
        assert done.status_code == 200, done.text
        done = await http.post(
            f"{progress}/proposals/{pid}/measures/{pilot}", json={"status": "done", "note": "试点已启动"}, headers=co
        )
        assert done.status_code == 200, done.text
        opened = done.json()
        assert opened["implemented_at"] is not None
        assert opened["implementation_evaluation"]["state"] == "open"
        assert opened["implementation_evaluation"]["round"] == 1
        assert [(s["kind"], s["signer_id"]) for s in opened["open_steps"]] == [("implementation_evaluation", "m-zhao")]

        # 不满意: the proposer must say what to reopen; then the pilot goes back to its unit.
        silent = await http.post(
            f"{progress}/proposals/{pid}/implementation-evaluations", json={"grade": "unsatisfied"}, headers=member
        )
        assert silent.status_code == 422 and silent.json()["errors"][0]["rule"] == "unsatisfied_names_measures", (
            silent.text
        )
        reopened = await http.post(
            f"{progress}/proposals/{pid}/implementation-evaluations",
            json={"grade": "unsatisfied", "comment": "试点只覆盖一个镇街", "reopen": [pilot]},
            headers=member,
        )
        assert reopened.status_code == 200, reopened.text
        body = reopened.json()
        assert body["implemented_at"] is None and body["implementation_evaluation"]["state"] == "reopened"
        measure = next(m for m in body["measures"] if m["id"] == pilot)
        assert (measure["status"], measure["reopened"], measure["note"]) == ("in_progress", 1, "试点只覆盖一个镇街")
        assert [(s["kind"], s["unit"]) for s in body["open_steps"]] == [("measure", "dg-nyj")]

        settled = await http.post(
            f"{progress}/proposals/{pid}/measures/{pilot}",
            json={"status": "done", "note": "已扩至五个镇街"},
            headers=co,
        )
        assert settled.json()["implementation_evaluation"] == {
            **settled.json()["implementation_evaluation"],
            "state": "open",
            "round": 2,
        }
        satisfied = await http.post(
            f"{progress}/proposals/{pid}/implementation-evaluations", json={"grade": "satisfied"}, headers=member
        )
        assert satisfied.status_code == 200, satisfied.text
        final = satisfied.json()
        assert final["implemented_at"] is not None and final["implementation_evaluation"]["state"] == "closed"
        assert [(e["round"], e["grade"]) for e in final["implementation_evaluations"]] == [
            (1, "unsatisfied"),
            (2, "satisfied"),
        ]
        assert final["open_steps"] == []

        # 通知: the proposer asked to evaluate (twice), the pilot's unit told to reopen, the leader told.
        async def inbox(headers: dict[str, str], title: str, count: int = 1) -> list[dict[str, Any]] | None:
            response = await http.get(f"{url['notify']}/inbox", headers=headers)
            # The broker's topics outlive a suite: keep to this suite's proposal.
            found = [item for item in response.json()["items"] if item["title"] == title and item["proposal_id"] == pid]
            return found if len(found) >= count else None

        asked = await eventually(lambda: inbox(member, "提案举措已落实, 请评价落实情况", 2), "two requests", suite)
        assert all(PROPOSAL["title"] in item["body"] for item in asked)
        [told] = await eventually(lambda: inbox(co, "举措需重新落实"), "the pilot's unit told", suite)
        assert "试点只覆盖一个镇街" in told["body"]
        assert await inbox(lead, "举措需重新落实") is None  # the funds were not reopened
        [supervised] = await eventually(lambda: inbox(leader, "提案者对落实情况不满意"), "the leader told", suite)
        assert "重新落实" in supervised["body"]

        # 办理统计: only this story's proposal has measures or implementation evaluations in this suite.
        stats = (await http.get(f"{progress}/stats", headers=committee)).json()
        overall = stats["overall"]
        # 落实率 1/1 (closed with measures: this one, implemented again); 举措按期 2/2 (done long before
        # their due dates, the pilot by its new one); 落实满意率 1/2 (round 1 不满意, round 2 满意).
        assert (overall["implemented_proposals"], overall["closed_with_measures"], overall["implementation_rate"]) == (
            1,
            1,
            1.0,
        )
        assert (overall["measures_on_time"], overall["measures_due"], overall["measure_on_time_rate"]) == (2, 2, 1.0)
        assert (
            overall["implementation_satisfied"],
            overall["implementation_evaluations"],
            overall["implementation_satisfaction_rate"],
        ) == (1, 2, 0.5)
        assert stats["per_unit"]["dg-zrzyj"]["implementation_satisfaction_rate"] == 0.5
        assert stats["per_category"]["经济建设"]["implementation_rate"] == 1.0

        async def audited() -> list[str] | None:
            response = await http.get(f"{url['audit']}/audit/proposals/{pid}", headers=committee)
            types = [entry["type"] for entry in response.json()["entries"]]
            return types if "proposalflow.implementation.evaluation-closed.v1" in types else None

        types = await eventually(audited, "the implementation story in the audit log", suite)
        assert types.count("proposalflow.implementation.evaluation-opened.v1") == 2
        assert types.count("proposalflow.implementation.evaluated.v1") == 2
        assert types.count("proposalflow.proposal.implemented.v1") == 2
        assert "proposalflow.measure.reopened.v1" in types
