"""The portal's 落实 pages: the 落实率 / 举措按期完成率 / 落实满意率 cards on the committee's and the leader's
pages, the proposer's 落实评价 form with the measures to reopen, and the unit's 新举措 form."""

from __future__ import annotations

import json
from typing import Any

import httpx

from shared.events import Role
from shared.statistics import RATE_DEFINITIONS
from tests.unit.test_portal_pages import FIGURES, FakeServices, client, detail, login

IMPLEMENTATION = {
    "closed_with_measures": 4,
    "implemented_proposals": 3,
    "implementation_rate": 0.75,
    "measures_due": 10,
    "measures_on_time": 8,
    "measure_on_time_rate": 0.8,
    "implementation_evaluations": 3,
    "implementation_satisfied": 2,
    "implementation_satisfaction_rate": 0.6667,
}
MEASURES = [
    {"id": "r1-m1", "reply_id": "r1", "text": "设立整治专项资金", "owner_unit": "dg-zrzyj", "due": "2027-06-30",
     "status": "done", "note": "", "done_at": "2026-11-02T09:00:00+08:00", "reopened": 0,
     "promised_at": "2026-05-10T09:00:00+08:00", "carried_over": True},
    {"id": "r1-m2", "reply_id": "r1", "text": "开展镇街试点", "owner_unit": "dg-nyj", "due": "2027-01-30",
     "status": "in_progress", "note": "试点只覆盖一个镇街", "done_at": None, "reopened": 1,
     "promised_at": "2026-05-10T09:00:00+08:00", "carried_over": True},
]  # fmt: skip


class WithImplementation(FakeServices):
    """The fake services, with 落实 figures in the statistics."""

    def answer(self, method: str, host: str, path: str, params: httpx.QueryParams) -> dict[str, Any] | None:
        found = super().answer(method, host, path, params)
        if (host, path) == ("progress", "/stats") and found is not None:
            figures = {**FIGURES, **IMPLEMENTATION}
            found = {**found, "overall": figures, "per_year": {"2026": figures}}
        return found


async def test_the_committee_and_the_leader_see_the_implementation_figures_with_their_definitions() -> None:
    services = WithImplementation()
    async with client(services) as http:
        login(http, Role.COMMITTEE, "c-office")
        committee = (await http.get("/committee")).text
        login(http, Role.LEADER, "leader-cwfsz")
        leader = (await http.get("/leader")).text
    for page in (committee, leader):
        assert "落实率" in page and "75.0%" in page and "3 / 4 件有举措的办结提案" in page
        assert "举措按期完成率" in page and "80.0%" in page and "8 / 10 项到期举措" in page
        assert "落实满意率" in page and "66.7%" in page and "2 / 3 份落实评价" in page
        for name in ("implementation_rate", "measure_on_time_rate", "implementation_satisfaction_rate"):
            assert f'title="{RATE_DEFINITIONS[name]}"' in page
    asked = [r for r in services.sent if r.url.path == "/stats"]
    assert asked and all(r.headers["authorization"].startswith("Bearer ") for r in asked)


async def test_the_proposer_evaluates_the_implementation_and_names_the_measure_to_reopen() -> None:
    services = WithImplementation()
    services.proposal = detail(
        stage="closed",
        measures=MEASURES,
        open_steps=[
            {
                "kind": "implementation_evaluation",
                "unit": "dg-zrzyj",
                "signer_id": "m-chen",
                "measure_id": None,
                "due": "2026-12-24",
            },
        ],
        implementation_evaluation={"state": "open", "round": 1, "due": "2026-12-24", "new_measure_due": None},
        implementation_evaluations=[],
    )
    async with client(services) as http:
        login(http, Role.MEMBER, "m-chen")
        page = (await http.get("/proposals/p-land")).text
        assert 'data-form="implementation-evaluation"' in page and "落实评价中 · 第 1 轮" in page
        assert 'name="reopen_r1-m2"' in page and "开展镇街试点" in page
        # 跨年度落实: the measures carried into next year, when each was promised and done.
        assert "跨年度" in page and "承诺于 2026-05-10 · 完成于 2026-11-02" in page and "重新落实" in page
        sent = await http.post(
            "/proposals/p-land/implementation-evaluation",
            data={
                "grade": "unsatisfied",
                "comment": "试点只覆盖一个镇街",
                "reopen_r1-m2": "on",
                "idempotency_key": "k-1",
            },
        )
    assert sent.status_code == 303
    [request] = [r for r in services.sent if r.method == "POST"]
    assert request.url.path == "/proposals/p-land/implementation-evaluations"
    assert json.loads(request.content) == {
        "grade": "unsatisfied",
        "comment": "试点只覆盖一个镇街",
        "reopen": ["r1-m2"],
        "new_measure": False,
    }
    assert request.headers["idempotency-key"] == "k-1"


async def test_only_the_proposer_owing_an_evaluation_gets_the_form_and_the_unit_asked_gets_the_new_measure_form() -> (
    None
):
    services = WithImplementation()
    services.proposal = detail(
        stage="closed",
        measures=MEASURES,
        open_steps=[
            {"kind": "new_measure", "unit": "dg-zrzyj", "signer_id": None, "measure_id": None, "due": "2027-01-04"}
        ],
        implementation_evaluation={"state": "reopened", "round": 1, "due": None, "new_measure_due": "2027-01-04"},
        implementation_evaluations=[
            {
                "signer_id": "m-chen",
                "round": 1,
                "grade": "unsatisfied",
                "comment": "",
                "reopened_measures": [],
                "new_measure_requested": True,
                "submitted_at": "2026-12-04T09:00:00+00:00",
            },
        ],
    )
    async with client(services) as http:
        login(http, Role.MEMBER, "m-chen")
        member = (await http.get("/proposals/p-land")).text
        login(http, Role.UNIT, "u-zrzyj", unit="dg-zrzyj")
        unit = (await http.get("/proposals/p-land")).text
        sent = await http.post(
            "/proposals/p-land/new-measure",
            data={"text": "增设督查专班", "due": "2027-01-04", "idempotency_key": "k-2"},
        )
    assert 'data-form="implementation-evaluation"' not in member
    assert "落实评价 (第 1 轮): 不满意 · 要求提出新举措" in member and "举措重新落实中" in member
    assert 'data-form="new-measure"' in unit and "2027-01-04 前提出新的落实举措" in unit
    assert sent.status_code == 303
    [request] = [r for r in services.sent if r.method == "POST"]
    assert request.url.path == "/proposals/p-land/measures"
    assert json.loads(request.content) == {"text": "增设督查专班", "due": "2027-01-04"}
