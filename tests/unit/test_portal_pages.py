"""The portal's pages against fake services (httpx.MockTransport): each role sees its own page and
forms and not the others', forms reach the owning API with the person's token and an
Idempotency-Key, and an API's refusal is shown in Chinese on the form's page, never as a 500."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openpyxl import load_workbook

from services.portal.app import build
from services.portal.settings import PortalSettings
from shared import statistics_export
from shared.auth import issue_token
from shared.events import Role
from shared.settings import CommonSettings
from shared.statistics import RATE_DEFINITIONS, UNIT_RULE

SECRET = "portal-unit-test-secret-0123456789abcdef0123"
COMMON = CommonSettings(jwt_secret=SECRET)
SETTINGS = PortalSettings(
    intake_url="http://intake", assignment_url="http://assignment", progress_url="http://progress"
)

FIGURES = {
    "submitted": 10,
    "in_review": 0,
    "decided": 10,
    "accepted": 8,
    "filed": 8,
    "filing_rate": 0.8,
    "replies_due": 4,
    "replies_on_time": 4,
    "on_time_reply_rate": 1.0,
    "closed": 3,
    "closing_rate": 0.375,
    "proposals_evaluated": 3,
    "proposals_satisfied": 2,
    "satisfaction_rate": 0.6667,
    "evaluations": 3,
    "satisfied": 3,
    "evaluation_satisfaction_rate": 1.0,
    "suggestions": 16,
    "suggestions_adopted": 12,
    "suggestion_adoption_rate": 0.75,
    "replies_final": 4,
    "adopted_class_replies": 3,
    "adopted_class_rate": 0.75,
    "first_class_replies": 2,
    "first_class_rate": 0.5,
    "implemented": 1,
    "overdue": {},
}
EXPORT = {
    "year": "2026",
    "first_class": {"code": "A", "label": "已解决或采纳"},
    "figures": [
        {"scope": "全部", "key": "全部", "figures": {**FIGURES, "overdue_total": 0}},
        {"scope": "承办单位", "key": "dg-zrzyj", "figures": {**FIGURES, "overdue_total": 0}},
    ],
    "trace": [
        {
            "scope": "承办单位",
            "key": "dg-zrzyj",
            "rate": rate,
            "proposal_id": "p-land",
            "filing_number": "2026001",
            "title": "关于推进全域土地综合整治的建议",
            "kind": kind,
            "unit": "dg-zrzyj" if kind == "answer" else None,
            "round": 1 if kind != "proposal" else None,
            "subject": "m-chen" if kind == "evaluation" else None,
            "code": code,
            "due": None,
            "counted": True,
        }
        for rate, kind, code in (
            ("closing_rate", "proposal", "closed"),
            ("evaluation_satisfaction_rate", "evaluation", "basically_satisfied"),
            ("first_class_rate", "answer", "A"),
        )
    ],
}
SUMMARY = {
    "id": "p-land",
    "title": "关于推进全域土地综合整治的建议",
    "category": "经济建设",
    "stage": "handling",
    "filing_number": "2026001",
    "form": "lead_co",
    "lead_unit": "dg-zrzyj",
    "co_units": ["dg-nyj"],
    "key": True,
    "round": 1,
    "reply_due": "2026-09-01",
    "evaluation_due": None,
    "closed_at": None,
    "implemented_at": None,
    "overdue": False,
}


def detail(**changes: Any) -> dict[str, Any]:
    return {
        **SUMMARY,
        "suggestion_count": 2,
        "co_opinion_due": "2026-07-01",
        "leaders": ["leader-cwfsz"],
        "open_steps": [
            {"kind": "reply", "unit": "dg-zrzyj", "signer_id": None, "measure_id": None, "due": "2026-09-01"},
            {"kind": "co_opinion", "unit": "dg-nyj", "signer_id": None, "measure_id": None, "due": "2026-07-01"},
        ],
        "co_opinions": [],
        "replies": [],
        "evaluations": [],
        "measures": [],
        "timeline": [
            {
                "type": "proposalflow.proposal.filed.v1",
                "at": "2026-06-01T09:00:00+08:00",
                "actor": {"id": "c-office", "role": "committee", "unit": None},
                "summary": "立案, 案号 2026001",
                "event_id": "e-1",
            }
        ],
        **changes,
    }


class FakeServices:
    """Answers as the three services would; records what the portal sent."""

    def __init__(self) -> None:
        self.sent: list[httpx.Request] = []
        self.refusals: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.proposal = detail()

    def refuse(self, method: str, url: str, status: int, problem: dict[str, Any]) -> None:
        self.refusals[(method, url)] = (status, problem)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        key = (request.method, f"{request.url.host}{request.url.path}")
        if key in self.refusals:
            status, problem = self.refusals[key]
            return httpx.Response(status, json=problem, headers={"content-type": "application/problem+json"})
        answer = self.answer(request.method, request.url.host, request.url.path, request.url.params)
        if answer is None:
            return httpx.Response(404, json={"title": "Not found", "status": 404, "detail": "no such thing"})
        return httpx.Response(200, json=answer)

    def answer(self, method: str, host: str, path: str, params: httpx.QueryParams) -> dict[str, Any] | None:
        items: Callable[[list[Any]], dict[str, Any]] = lambda rows: {"items": rows, "total": len(rows)}  # noqa: E731
        if method == "POST":
            return {"id": "p-new", "title": "新提案", "status": "submitted", **self.proposal}
        routes: dict[tuple[str, str], dict[str, Any]] = {
            ("assignment", "/units"): items(
                [
                    {"id": "dg-zrzyj", "name": "东莞市自然资源局", "short_name": "市自然资源局"},
                    {"id": "dg-nyj", "name": "东莞市农业农村局", "short_name": "市农业农村局"},
                ]
            ),
            ("assignment", "/leaders"): items([{"id": "leader-cwfsz", "title": "常务副市长"}]),
            ("assignment", "/assignments"): items(
                [{"proposal_id": "p-land", "status": "assigned"}] if params.get("status") == "assigned" else []
            ),
            ("assignment", "/assignments/p-land"): {
                "proposal_id": "p-land",
                "status": "assigned",
                "form": "lead_co",
                "lead_unit": "dg-zrzyj",
                "co_units": ["dg-nyj"],
                "split_units": [],
                "reply_due": "2026-09-01",
                "dispute_until": "2026-06-08",
                "responses": [{"unit": "dg-nyj", "response": "accepted", "reason": None, "deemed": False}],
            },
            ("progress", "/stats"): {
                "as_of": "2026-06-10",
                "reply_classes": {"first": {"code": "A", "label": "已解决或采纳"}, "adopted": ["A", "B"]},
                "overall": FIGURES,
                "per_unit": {"dg-zrzyj": FIGURES},
                "per_year": {"2026": FIGURES},
                "per_category": {"经济建设": FIGURES},
                "overdue_by_unit": {},
                "key_proposals": [
                    {
                        "id": "p-land",
                        "title": SUMMARY["title"],
                        "filing_number": "2026001",
                        "stage": "handling",
                        "lead_unit": "dg-zrzyj",
                        "leaders": ["leader-cwfsz"],
                        "overdue": False,
                        "measures_total": 10,
                        "measures_done": 4,
                        "implemented": False,
                    }
                ],
            },
            ("progress", "/proposals"): items([SUMMARY]),
            ("progress", "/proposals/p-land"): self.proposal,
            ("progress", "/inbox"): items(
                [{"proposal_id": "p-land", "title": SUMMARY["title"], "kind": "reply", "due": "2026-09-01"}]
            ),
            ("progress", "/public/replies"): items([]),
            ("intake", "/proposals"): items([]),
            ("progress", "/stats/export"): EXPORT if params.get("year") == "2026" else None,
        }
        return routes.get((host, path))


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


def client(services: FakeServices, common: CommonSettings = COMMON, **settings: Any) -> httpx.AsyncClient:
    app = build(SETTINGS.model_copy(update=settings), common, transport=httpx.MockTransport(services))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal")


def login(http: httpx.AsyncClient, role: Role, sub: str, unit: str | None = None) -> str:
    token = issue_token(COMMON, subject=sub, role=role, unit=unit, name=sub)
    http.cookies.set("pf_session", token)
    return token


async def test_the_committee_sees_the_years_figures_charts_and_key_board_but_no_unit_forms(
    services: FakeServices,
) -> None:
    async with client(services) as http:
        login(http, Role.COMMITTEE, "c-office")
        page = (await http.get("/committee")).text
        proposal = (await http.get("/proposals/p-land")).text
    for shown in ("立案率", "80.0%", "按期办复率", "办结率", "37.5%", "满意率", "采纳率", "75.0%", "12 / 16"):
        assert shown in page
    assert "市自然资源局" in page and "常务副市长" in page and "4 / 10" in page
    # 满意率 both ways, labelled; the first class named from the policy; each card says its 口径.
    assert "满意率 (按件)" in page and "66.7%" in page and "满意率 (按份)" in page and "100.0%" in page
    assert "A 类 (已解决或采纳) 答复占比" in page and "2 / 4 件" in page
    for name in ("filing_rate", "on_time_reply_rate", "satisfaction_rate", "suggestion_adoption_rate"):
        assert f'title="{RATE_DEFINITIONS[name]}"' in page
    assert f'title="{UNIT_RULE}">各承办单位立案提案' in page  # 改办 and 分办: which unit a proposal counts for
    assert "办理全过程" in proposal and "立案, 案号 2026001" in proposal
    assert 'data-form="accept"' not in proposal and 'data-form="reply"' not in proposal
    assert 'data-form="supervision"' not in proposal and 'href="/unit"' not in proposal


async def test_the_committee_downloads_the_years_export_from_its_page_in_words(services: FakeServices) -> None:
    async with client(services) as http:
        token = login(http, Role.COMMITTEE, "c-office")
        page = (await http.get("/committee")).text
        workbook = await http.get("/committee/export/2026/figures.xlsx")
        trace = await http.get("/committee/export/2026/trace.csv")
        unknown = await http.get("/committee/export/2026/everything.zip")
        login(http, Role.UNIT, "u-zrzyj", unit="dg-zrzyj")
        refused = await http.get("/committee/export/2026/figures.xlsx")
    for link in ("figures.xlsx", "figures.csv", "trace.csv"):
        assert f'href="/committee/export/2026/{link}"' in page
    assert workbook.status_code == 200
    assert workbook.headers["content-type"] == statistics_export.XLSX_TYPE
    assert workbook.headers["content-disposition"] == 'attachment; filename="proposal-statistics-2026.xlsx"'
    rows = list(load_workbook(io.BytesIO(workbook.content))["统计"].iter_rows(values_only=True))
    assert [row[:3] for row in rows[1:]] == [("2026", "全部", "全部"), ("2026", "承办单位", "市自然资源局")]
    assert rows[1][rows[0].index("立案率")] == 0.8
    sent = [r for r in services.sent if r.url.path == "/stats/export"][-1]
    assert sent.url.params["year"] == "2026" and sent.headers["authorization"] == f"Bearer {token}"
    said = [line.split(",")[7] for line in trace.content.decode("utf-8-sig").splitlines()[1:]]
    assert said == ["提案 (已办结)", "m-chen 第 1 轮评价 (基本满意)", "市自然资源局 第 1 轮答复 (A 类 (已解决或采纳))"]
    assert unknown.status_code == 404 and "没有这个导出文件" in unknown.text
    assert refused.status_code == 403


async def test_a_lead_unit_may_sign_and_reply_but_a_co_unit_only_sends_its_co_opinion(services: FakeServices) -> None:
    async with client(services) as http:
        login(http, Role.UNIT, "u-zrzyj", unit="dg-zrzyj")
        home = (await http.get("/unit")).text
        lead_view = (await http.get("/proposals/p-land")).text
        login(http, Role.UNIT, "u-nyj", unit="dg-nyj")
        co_view = (await http.get("/proposals/p-land")).text
        committee_page = await http.get("/committee")
    assert "待签收 (1)" in home and "2026-09-01" in home
    assert 'data-form="accept"' in lead_view and 'data-form="reply"' in lead_view
    assert 'data-form="co-opinion"' not in lead_view
    assert 'data-form="co-opinion"' in co_view
    assert 'data-form="reply"' not in co_view and 'data-form="accept"' not in co_view  # already accepted
    assert committee_page.status_code == 403 and "此页面不对承办单位开放" in committee_page.text


async def test_a_form_reaches_the_owning_api_with_the_persons_token_and_its_idempotency_key(
    services: FakeServices,
) -> None:
    async with client(services) as http:
        token = login(http, Role.LEADER, "leader-cwfsz")
        answer = await http.post(
            "/proposals/p-land/supervision",
            data={
                "kind": "meeting",
                "on": "2026-06-10",
                "text": "召开专题督办会",
                "idempotency_key": "k-1",
                "back": "/leader",
            },
        )
        after = await http.get(answer.headers["location"])
    [sent] = [r for r in services.sent if r.method == "POST"]
    assert str(sent.url) == "http://progress/proposals/p-land/supervision"
    assert sent.headers["authorization"] == f"Bearer {token}" and sent.headers["idempotency-key"] == "k-1"
    assert json.loads(sent.content) == {"kind": "meeting", "on": "2026-06-10", "text": "召开专题督办会"}
    assert answer.status_code == 303 and answer.headers["location"] == "/leader"
    assert "督办情况已记录" in after.text


async def test_a_refused_submission_is_explained_in_chinese_and_keeps_what_was_typed(services: FakeServices) -> None:
    services.refuse(
        "POST",
        "intake/proposals",
        422,
        {
            "title": "Request refused",
            "status": 422,
            "detail": "unknown category",
            "errors": [{"rule": "category_known", "message": "unknown category"}],
        },
    )
    async with client(services) as http:
        login(http, Role.MEMBER, "m-chen")
        answer = await http.post(
            "/member/proposals",
            data={
                "title": "关于发展低空经济的建议",
                "category": "经济建设",
                "body": "正文" * 10,
                "suggestions": "一\n二",
            },
        )
    assert answer.status_code == 422
    assert "请选择有效的提案类别" in answer.text
    assert 'value="关于发展低空经济的建议"' in answer.text


async def test_an_unknown_refusal_names_its_kind_in_chinese_on_the_proposal_page(services: FakeServices) -> None:
    services.refuse(
        "POST", "progress/proposals/p-land/co-opinions", 409, {"title": "Conflict", "status": 409, "detail": "late"}
    )
    async with client(services) as http:
        login(http, Role.UNIT, "u-nyj", unit="dg-nyj")
        answer = await http.post("/proposals/p-land/co-opinion", data={"text": "同意"})
    assert answer.status_code == 422
    assert "当前状态下不能进行此操作" in answer.text and 'data-form="co-opinion"' in answer.text


async def test_a_role_cannot_use_another_roles_form(services: FakeServices) -> None:
    async with client(services) as http:
        login(http, Role.MEMBER, "m-chen")
        answer = await http.post("/proposals/p-land/supervision", data={"kind": "meeting", "text": "x"})
    assert answer.status_code == 403 and "此页面不对委员开放" in answer.text
    assert not [r for r in services.sent if r.method == "POST"]


async def test_without_a_session_a_page_sends_to_login_and_an_unreachable_service_is_a_message(
    services: FakeServices,
) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with client(services) as http:
        assert (await http.get("/member")).headers["location"] == "/login"
    app = build(SETTINGS, COMMON, transport=httpx.MockTransport(down))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://portal") as http:
        login(http, Role.MEMBER, "m-chen")
        page = await http.get("/member")
    assert page.status_code == 503 and "暂时无法连接提案受理服务" in page.text


async def test_the_development_login_is_offered_only_in_development(services: FakeServices) -> None:
    async with client(services, dev_login=True) as http:
        assert 'data-user="unit-zrzyj"' in (await http.get("/login")).text
        signed_in = await http.post("/login/dev", data={"user": "unit-zrzyj"})
    assert signed_in.headers["location"] == "/unit"
    cookie = signed_in.headers["set-cookie"]
    assert "pf_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
    async with client(services) as http:  # a real secret, and not asked for
        assert "data-user" not in (await http.get("/login")).text
        refused = await http.post("/login/dev", data={"user": "committee"})
        assert "pf_session" not in refused.headers.get("set-cookie", "")


async def test_a_pasted_token_signs_in_and_a_forged_one_is_refused(services: FakeServices) -> None:
    forged = issue_token(
        CommonSettings(jwt_secret="another-secret-0123456789abcdef0123456789"), subject="x", role=Role.COMMITTEE
    )
    async with client(services) as http:
        refused = await http.post("/login", data={"token": forged})
        good = await http.post("/login", data={"token": issue_token(COMMON, subject="c-office", role=Role.COMMITTEE)})
    assert refused.status_code == 401 and "令牌无效" in refused.text
    assert good.status_code == 303 and good.headers["location"] == "/committee"


async def test_the_public_page_needs_no_login_and_sends_no_token(services: FakeServices) -> None:
    async with client(services) as http:
        page = await http.get("/public")
    assert page.status_code == 200 and "暂无公开的答复" in page.text
    assert all("authorization" not in r.headers for r in services.sent)


async def test_the_leaders_page_shows_supervision_and_the_timeline_in_words_not_codes(services: FakeServices) -> None:
    """督办 (meeting, 2026-12-04) was shown as such: the kind, the units, the grades are put in words."""
    facts_of = {
        "proposalflow.supervision.recorded.v1": {"kind": "meeting", "on": "2026-12-04", "text": "召开专题督办会"},
        "proposalflow.handling.progress-reported.v1": {
            "unit": "dg-zrzyj",
            "kind": "research",
            "on": "2026-11-02",
            "text": "实地调研",
        },
        "proposalflow.reply.drafted.v1": {"unit": "dg-zrzyj", "classification": "A"},
        "proposalflow.evaluation.submitted.v1": {"handling_grade": "satisfied", "result_grade": "basically_satisfied"},
        "proposalflow.key-proposal.designated.v1": {"supervising_leader": "leader-cwfsz"},
    }
    services.proposal = detail(
        timeline=[
            {
                "type": kind,
                "at": "2026-12-04T10:00:00+08:00",
                "actor": {"id": "leader-cwfsz", "role": "leader", "unit": None},
                "summary": "(progress's own words)",
                "facts": facts,
                "event_id": f"e-{n}",
            }
            for n, (kind, facts) in enumerate(facts_of.items())
        ]
    )
    async with client(services) as http:
        login(http, Role.LEADER, "leader-cwfsz")
        leader = (await http.get("/leader")).text
        proposal = (await http.get("/proposals/p-land")).text

    assert "督办 (督办会议, 2026-12-04): 召开专题督办会" in leader
    assert "(meeting" not in leader
    assert "市自然资源局 办理进展 (调研, 2026-11-02): 实地调研" in proposal
    assert "市自然资源局 提交答复 (A 类 (已解决或采纳)), 待办复审查" in proposal
    assert "提案者评价: 办理态度 满意, 办理结果 基本满意" in proposal
    assert "列为重点提案, 督办领导 常务副市长" in proposal
    assert "(progress's own words)" not in proposal


async def test_the_portals_title_and_city_come_from_the_policy_file(services: FakeServices, tmp_path: Any) -> None:
    packaged = yaml.safe_load((Path(__file__).parents[2] / "shared" / "policies" / "dongguan.yaml").read_text("utf-8"))
    file = tmp_path / "jiangmen.yaml"
    file.write_text(yaml.safe_dump({**packaged, "city": "江门市"}, allow_unicode=True), encoding="utf-8")
    async with client(services, COMMON.model_copy(update={"policy_file": file})) as http:
        default_title = (await http.get("/public")).text
    file.write_text(
        yaml.safe_dump({**packaged, "city": "江门市", "title": "江门市政协提案工作平台"}, allow_unicode=True), "utf-8"
    )
    async with client(services, COMMON.model_copy(update={"policy_file": file})) as http:
        own_title = (await http.get("/public")).text
    assert "<title>答复公开 · 江门市政协提案办理平台</title>" in default_title
    assert "江门市政协提案工作平台</a>" in own_title and "江门市政协提案办理平台" not in own_title
    assert "东莞" not in default_title + own_title
