"""The portal's pages and forms: one home page per role, the proposal page with its timeline and the
forms the caller's role may use there, the public replies, and the login.

A form posts here; the portal sends it on to the owning service's API with the person's token and
the form's Idempotency-Key, then redirects to the page (post/redirect/get) with a notice. When the
service refuses, the same page is shown again with the reason in Chinese and the person's input kept.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.portal import forms, labels
from services.portal.client import ApiError, Backend
from services.portal.settings import PortalSettings
from shared import statistics_export
from shared.auth import Principal, decode_token, issue_token
from shared.events import Role
from shared.http import Problem
from shared.policy import Policy, local_date
from shared.settings import CommonSettings
from shared.statistics import RATE_DEFINITIONS, UNIT_RULE

SESSION_COOKIE = "pf_session"
NOTICE_COOKIE = "pf_notice"
UNIT_CACHE_S = 600.0

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
templates.env.globals.update(
    stages=labels.STAGES,
    intake_statuses=labels.INTAKE_STATUSES,
    unit_responses=labels.UNIT_RESPONSES,
    word=labels.word,
    roles=labels.ROLES,
    forms=labels.FORMS,
    step_kinds=labels.STEP_KINDS,
    progress_kinds=labels.PROGRESS_KINDS,
    measure_statuses=labels.MEASURE_STATUSES,
    supervision_kinds=labels.SUPERVISION_KINDS,
    reply_statuses=labels.REPLY_STATUSES,
    assignment_statuses=labels.ASSIGNMENT_STATUSES,
    implementation_states=labels.IMPLEMENTATION_STATES,
    percent=labels.percent,
    Role=Role,
)


@dataclass
class Portal:
    """What every page needs: the APIs, the settings, the policy's words, and the unit names."""

    backend: Backend
    common: CommonSettings
    settings: PortalSettings
    policy: Policy
    dev_login: bool
    unit_names: dict[str, str] = field(default_factory=dict)
    leader_titles: dict[str, str] = field(default_factory=dict)
    catalog_loaded_at: float = 0.0

    async def refresh_catalogs(self, principal: Principal, token: str) -> None:
        """Unit names and leader titles, read with the caller's token when its role may list them;
        kept for a while so members and the public see names too once anyone has loaded them."""
        if time.monotonic() - self.catalog_loaded_at < UNIT_CACHE_S and self.unit_names:
            return
        if principal.role not in (Role.COMMITTEE, Role.DISPATCHER, Role.ADMIN, Role.UNIT, Role.LEADER):
            return
        try:
            units = await self.backend.get("assignment", "/units", token, {"limit": 200})
            self.unit_names = {unit["id"]: unit.get("short_name") or unit["name"] for unit in units["items"]}
            if principal.role != Role.UNIT:
                leaders = await self.backend.get("assignment", "/leaders", token, {"limit": 200})
                self.leader_titles = {leader["id"]: leader["title"] for leader in leaders["items"]}
        except ApiError:
            return
        self.catalog_loaded_at = time.monotonic()

    def unit(self, unit_id: str | None) -> str:
        return self.unit_names.get(unit_id or "", unit_id or "—")

    def leader(self, leader_id: str) -> str:
        return self.leader_titles.get(leader_id, leader_id)

    def grade_label(self, code: str) -> str:
        """评价等级 by the policy's label (满意, 基本满意, 不满意)."""
        return labels.word({grade.code: grade.label for grade in self.policy.evaluation_grades}, code)

    def reply_class_label(self, code: str) -> str:
        """答复分类 with the policy's label: "A 类 (已解决或采纳)"."""
        label = next((kind.label for kind in self.policy.reply_classes if kind.code == code), None)
        return f"{code} 类 ({label})" if label else labels.word({}, code)

    def names(self, handling: dict[str, Any] | None) -> labels.Names:
        """How a page names units, leaders, grades, classes and this proposal's measures."""
        measures = {m["id"]: m["text"] for m in (handling or {}).get("measures", [])}
        return labels.Names(
            unit=self.unit,
            leader=self.leader,
            grade=self.grade_label,
            reply_class=self.reply_class_label,
            measure=lambda measure_id: measures.get(measure_id, "—"),
        )

    def happened(self, handling: dict[str, Any] | None) -> list[tuple[dict[str, Any], str]]:
        """办理全过程: each timeline entry with its line in words."""
        names = self.names(handling)
        return [(entry, labels.timeline_line(entry, names)) for entry in (handling or {}).get("timeline", [])]


@dataclass
class Notice:
    kind: str  # "ok" or "error"
    text: str


@dataclass
class Session:
    principal: Principal
    token: str


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def session_of(request: Request) -> Session | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return Session(decode_token(portal_of(request).common, token), token)
    except Problem:
        return None


class LoginRequired(Exception):
    """No valid session: the person is sent to the login page."""


def require_session(request: Request, *roles: Role) -> Session:
    session = session_of(request)
    if session is None:
        raise LoginRequired
    if roles and session.principal.role not in roles:
        raise ApiError(403, forbidden_message(session.principal.role))
    return session


def forbidden_message(role: Role) -> str:
    return f"此页面不对{labels.ROLES[role]}开放。"


def render(
    request: Request,
    template: str,
    session: Session | None,
    context: dict[str, Any],
    notice: Notice | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    portal = portal_of(request)
    flashed = _take_notice(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "user": session.principal if session else None,
            "notice": notice or flashed,
            "unit_name": portal.unit,
            "leader_title": portal.leader,
            "policy": portal.policy,
            "new_key": lambda: uuid.uuid4().hex,
            "today": local_date(datetime.now(UTC), portal.policy.timezone).isoformat(),
            "grade": portal.grade_label,
            "reply_class": portal.reply_class_label,
            "happened": portal.happened,
            **context,
        },
        status_code=status_code,
    )
    if flashed is not None:
        response.delete_cookie(NOTICE_COOKIE)
    return response


def _take_notice(request: Request) -> Notice | None:
    raw = request.cookies.get(NOTICE_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(unquote(raw))
        return Notice(kind="ok" if data.get("kind") == "ok" else "error", text=str(data["text"])[:500])
    except (ValueError, KeyError, TypeError):
        return None


def redirect(path: str, notice: Notice | None = None) -> RedirectResponse:
    """Post/redirect/get: the notice rides in a short-lived cookie, never in the URL (where anyone
    could write a link that shows a page with words of their choosing)."""
    response = RedirectResponse(path, status_code=303)
    if notice is not None:
        payload = quote(json.dumps({"kind": notice.kind, "text": notice.text}, ensure_ascii=False))
        response.set_cookie(NOTICE_COOKIE, payload, max_age=60, httponly=True, samesite="lax")
    return response


async def form_of(request: Request) -> dict[str, str]:
    """An HTML form's fields (application/x-www-form-urlencoded), each field's last value."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[-1] for name, values in parse_qs(body, keep_blank_values=True).items()}


HOME_PAGES = {
    Role.COMMITTEE: "/committee",
    Role.DISPATCHER: "/dispatcher",
    Role.UNIT: "/unit",
    Role.LEADER: "/leader",
    Role.MEMBER: "/member",
    Role.ADMIN: "/committee",
}


def home_of(role: Role) -> str:
    return HOME_PAGES.get(role, "/public")


def guarded(
    page: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """A page whose missing login sends the person to the login page, and whose API refusal is
    shown as a page (in Chinese), never as a server error."""

    async def run(request: Request) -> Response:
        try:
            return await page(request)
        except LoginRequired:
            return redirect("/login", Notice("error", "请先登录。"))
        except ApiError as exc:
            if exc.status == 401:
                response = redirect("/login", Notice("error", exc.message))
                response.delete_cookie(SESSION_COOKIE)
                return response
            return render(request, "error.html", session_of(request), {"message": exc.message}, status_code=exc.status)

    run.__name__ = page.__name__
    run.__doc__ = page.__doc__
    return run


# Login ---------------------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
async def index(request: Request) -> Response:
    session = session_of(request)
    return redirect(home_of(session.principal.role) if session else "/login")


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request) -> Response:
    portal = portal_of(request)
    users = labels.DEMO_USERS if portal.dev_login else ()
    return render(request, "login.html", session_of(request), {"demo_users": users})


def _signed_in(portal: Portal, principal: Principal, token: str, expires: datetime | None) -> Response:
    response = redirect(home_of(principal.role), Notice("ok", f"已登录: {principal.name or principal.id}"))
    max_age = int((expires - datetime.now(UTC)).total_seconds()) if expires else None
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=portal.settings.secure_cookie,
    )
    return response


@router.post("/login")
async def login_with_token(request: Request) -> Response:
    """Sign in with a token issued elsewhere (the identity provider, or `proposalflow token`)."""
    portal = portal_of(request)
    token = (await form_of(request)).get("token", "").strip()
    try:
        principal = decode_token(portal.common, token)
    except Problem as exc:
        notice = Notice("error", f"令牌无效: {exc.detail}")
        users = labels.DEMO_USERS if portal.dev_login else ()
        return render(request, "login.html", None, {"demo_users": users}, notice=notice, status_code=401)
    return _signed_in(portal, principal, token, None)


@router.post("/login/dev")
async def login_as_demo_user(request: Request) -> Response:
    portal = portal_of(request)
    user = labels.demo_user((await form_of(request)).get("user", ""))
    if not portal.dev_login or user is None:
        return redirect("/login", Notice("error", "开发登录未启用。"))
    ttl = timedelta(hours=8)
    token = issue_token(portal.common, subject=user.sub, role=user.role, unit=user.unit, name=user.name, ttl=ttl)
    principal = Principal(id=user.sub, role=user.role, unit=user.unit, name=user.name)
    return _signed_in(portal, principal, token, datetime.now(UTC) + ttl)


@router.post("/logout")
async def logout(request: Request) -> Response:
    response = redirect("/login", Notice("ok", "已退出登录。"))
    response.delete_cookie(SESSION_COOKIE)
    return response


# Committee (提案委员会) ------------------------------------------------------------------------------


def _bars(groups: dict[str, dict[str, Any]], name: Callable[[str], str], value: str) -> list[dict[str, Any]]:
    """Rows of a bar chart: the count, its share of the largest, and the group's rates."""
    largest = max((figures[value] for figures in groups.values()), default=0) or 1
    rows = [
        {
            "key": key,
            "name": name(key),
            "count": figures[value],
            "width": round(100 * figures[value] / largest),
            "closing_rate": figures["closing_rate"],
            "satisfaction_rate": figures["satisfaction_rate"],
            "on_time_reply_rate": figures["on_time_reply_rate"],
        }
        for key, figures in groups.items()
    ]
    return sorted(rows, key=lambda row: -int(row["count"]))


@router.get("/committee", response_class=HTMLResponse)
@guarded
async def committee_home(request: Request) -> Response:
    """提案委员会: the year's figures, charts per unit and category, overdue work, key proposals, the
    review queue, and every proposal's page."""
    session = require_session(request, Role.COMMITTEE, Role.ADMIN)
    portal = portal_of(request)
    api, token = portal.backend, session.token
    await portal.refresh_catalogs(session.principal, token)
    stats = await api.get("progress", "/stats", token)
    year = stats["as_of"][:4]
    figures = stats["per_year"].get(year, stats["overall"])
    context = {
        "year": year,
        "figures": figures,
        "definitions": RATE_DEFINITIONS,
        "unit_rule": UNIT_RULE,
        "first_class": stats["reply_classes"]["first"],
        "unit_bars": _bars(stats["per_unit"], portal.unit, "filed"),
        "category_bars": _bars(stats["per_category"], str, "filed"),
        "overdue": (await api.get("progress", "/proposals", token, {"overdue": "true", "limit": 200}))["items"],
        "overdue_by_unit": stats["overdue_by_unit"],
        "key_board": stats["key_proposals"],
        "to_file": (await api.get("intake", "/proposals", token, {"status": "submitted", "limit": 200}))["items"],
        "to_approve": (await api.get("progress", "/proposals", token, {"stage": "reply_review", "limit": 200}))[
            "items"
        ],
        "recent": (await api.get("progress", "/proposals", token, {"limit": 200}))["items"],
    }
    return render(request, "committee.html", session, context)


@dataclass(frozen=True)
class ExportWords:
    """统计导出 in the portal's words: unit names, stage words, the policy's grade and class labels."""

    portal: Portal

    def unit(self, unit_id: str) -> str:
        return self.portal.unit(unit_id)

    def stage(self, code: str) -> str:
        return labels.word(labels.STAGES, code)

    def grade(self, code: str) -> str:
        return self.portal.grade_label(code)

    def reply_class(self, code: str) -> str:
        return self.portal.reply_class_label(code)


@router.get("/committee/export/{year}/{name}")
@guarded
async def committee_export(request: Request) -> Response:
    """统计导出: the year's figures (CSV, XLSX) or the proposals behind them (CSV), from progress's data, with
    units, stages, grades and classes in words."""
    session = require_session(request, Role.COMMITTEE, Role.ADMIN)
    portal = portal_of(request)
    name, year = request.path_params["name"], request.path_params["year"]
    if name not in statistics_export.EXPORT_FILES or not year.isdigit():
        raise ApiError(404, "没有这个导出文件。")
    await portal.refresh_catalogs(session.principal, session.token)
    data: Any = await portal.backend.get("progress", "/stats/export", session.token, {"year": year})
    content, media_type, filename = statistics_export.render(data, name, ExportWords(portal))
    return Response(
        content, media_type=media_type, headers={"content-disposition": f'attachment; filename="{filename}"'}
    )


# Dispatcher (交办机关) ------------------------------------------------------------------------------


@router.get("/dispatcher", response_class=HTMLResponse)
@guarded
async def dispatcher_home(request: Request) -> Response:
    """交办机关: routings awaiting confirmation, and disputed assignments."""
    session = require_session(request, Role.DISPATCHER)
    portal = portal_of(request)
    await portal.refresh_catalogs(session.principal, session.token)
    suggested = await portal.backend.get("assignment", "/assignments", session.token, {"status": "suggested"})
    disputed = await portal.backend.get("assignment", "/assignments", session.token, {"status": "disputed"})
    return render(request, "dispatcher.html", session, {"suggested": suggested["items"], "disputed": disputed["items"]})


# Unit (承办单位) ------------------------------------------------------------------------------------


@router.get("/unit", response_class=HTMLResponse)
@guarded
async def unit_home(request: Request) -> Response:
    """承办单位: assignments to sign for, the open work with its deadlines, and the unit's proposals."""
    session = require_session(request, Role.UNIT)
    portal = portal_of(request)
    api, token, unit = portal.backend, session.token, session.principal.unit
    await portal.refresh_catalogs(session.principal, token)
    to_sign = []
    for item in (await api.get("assignment", "/assignments", token, {"status": "assigned", "limit": 200}))["items"]:
        full = await api.get("assignment", f"/assignments/{item['proposal_id']}", token)
        if unit not in {response["unit"] for response in full["responses"]}:
            to_sign.append(full)
    inbox = await api.get("progress", "/inbox", token, {"limit": 200})
    mine = await api.get("progress", "/proposals", token, {"limit": 200})
    return render(
        request, "unit.html", session, {"to_sign": to_sign, "inbox": inbox["items"], "proposals": mine["items"]}
    )


# Leader (督办领导) ----------------------------------------------------------------------------------


@router.get("/leader", response_class=HTMLResponse)
@guarded
async def leader_home(request: Request) -> Response:
    """督办领导: the key proposals it supervises, their progress and measures, and the 督办 form."""
    session = require_session(request, Role.LEADER)
    portal = portal_of(request)
    api, token = portal.backend, session.token
    await portal.refresh_catalogs(session.principal, token)
    listed = await api.get("progress", "/proposals", token, {"key": "true", "limit": 200})
    proposals = [await api.get("progress", f"/proposals/{item['id']}", token) for item in listed["items"]]
    # 落实率 and 落实满意率 of the key proposals this leader supervises (progress counts only those for it).
    stats = await _optional(api.get("progress", "/stats", token))
    figures = None
    if stats is not None:
        figures = stats["per_year"].get(stats["as_of"][:4], stats["overall"])
    context = {"proposals": proposals, "values": {}, "figures": figures, "definitions": RATE_DEFINITIONS}
    return render(request, "leader.html", session, context)


# Member (委员) -------------------------------------------------------------------------------------


async def _member_page(
    request: Request, session: Session, notice: Notice | None = None, values: dict[str, str] | None = None
) -> Response:
    api, token = portal_of(request).backend, session.token
    own = (await api.get("intake", "/proposals", token, {"limit": 200}))["items"]
    handling = {item["id"]: item for item in (await api.get("progress", "/proposals", token, {"limit": 200}))["items"]}
    context = {"own": own, "handling": handling, "values": values or {}}
    return render(request, "member.html", session, context, notice, status_code=422 if notice else 200)


@router.get("/member", response_class=HTMLResponse)
@guarded
async def member_home(request: Request) -> Response:
    """委员: own proposals and where each stands, the submission form; evaluation is on the proposal page."""
    return await _member_page(request, require_session(request, Role.MEMBER))


@router.post("/member/proposals")
@guarded
async def submit_proposal(request: Request) -> Response:
    """提交提案 → intake."""
    session = require_session(request, Role.MEMBER)
    form = await form_of(request)
    suggestions = [line.strip() for line in form.get("suggestions", "").splitlines() if line.strip()]
    body: dict[str, Any] = {
        "title": form.get("title", "").strip(),
        "body": form.get("body", "").strip(),
        "category": form.get("category", ""),
        "first_proposer": {"id": session.principal.id, "name": session.principal.name or session.principal.id},
        "suggestions": suggestions,
    }
    try:
        created = await portal_of(request).backend.post(
            "intake", "/proposals", session.token, body, idempotency_key=form.get("idempotency_key")
        )
    except ApiError as exc:
        return await _member_page(request, session, Notice("error", exc.message), form)
    return redirect("/member", Notice("ok", f"提案《{created['title']}》已提交, 等待审查立案。"))


# Public (公众) -------------------------------------------------------------------------------------


@router.get("/public", response_class=HTMLResponse)
@guarded
async def public_replies(request: Request) -> Response:
    """答复公开: published replies, personal data removed by progress; no login needed."""
    replies = await portal_of(request).backend.get("progress", "/public/replies", None, {"limit": 200})
    return render(request, "public.html", session_of(request), {"replies": replies["items"]})


# One proposal: its page and its forms --------------------------------------------------------------


async def _optional(call: Awaitable[dict[str, Any]]) -> dict[str, Any] | None:
    """What a service knows of the proposal, or None where it knows nothing yet (or not for this role)."""
    try:
        return await call
    except ApiError as exc:
        if exc.status in (403, 404):
            return None
        raise


async def _proposal_page(
    request: Request,
    session: Session,
    proposal_id: str,
    notice: Notice | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    portal = portal_of(request)
    api, token, role = portal.backend, session.token, session.principal.role
    await portal.refresh_catalogs(session.principal, token)
    handling = await _optional(api.get("progress", f"/proposals/{proposal_id}", token))
    content = None
    if role in (Role.MEMBER, Role.COMMITTEE):
        content = await _optional(api.get("intake", f"/proposals/{proposal_id}", token))
    assignment = None
    if role in (Role.COMMITTEE, Role.DISPATCHER, Role.UNIT, Role.ADMIN):
        assignment = await _optional(api.get("assignment", f"/assignments/{proposal_id}", token))
    if handling is None and content is None:
        raise ApiError(404, f"未找到提案 {proposal_id}, 或您无权查看。")
    me = session.principal
    steps = (handling or {}).get("open_steps", [])
    mine = {step["kind"] for step in steps if step["unit"] == me.unit and me.role == Role.UNIT}
    units = [handling["lead_unit"], *handling["co_units"]] if handling and handling["lead_unit"] else []
    leaders = []
    if role == Role.COMMITTEE and handling and not handling["key"] and handling["stage"] not in ("closed",):
        leaders = sorted(portal.leader_titles.items())
    can = {
        "review": role == Role.COMMITTEE and content is not None and content["status"] == "submitted",
        "designate_key": bool(leaders) and content is not None and content["status"] == "filed",
        "review_reply": role == Role.COMMITTEE,
        "confirm": role == Role.DISPATCHER and assignment is not None and assignment["status"] == "suggested",
        "sign": role == Role.UNIT
        and assignment is not None
        and assignment["status"] == "assigned"
        and me.unit in [assignment["lead_unit"], *assignment["co_units"], *assignment["split_units"]]
        and me.unit not in {response["unit"] for response in assignment["responses"]},
        "report_progress": role == Role.UNIT
        and handling is not None
        and handling["stage"] in ("assigned", "handling")
        and me.unit in units,
        "co_opinion": "co_opinion" in mine,
        "reply": "reply" in mine,
        "supervise": role == Role.LEADER and handling is not None,
        "evaluate": role == Role.MEMBER
        and any(step["kind"] == "evaluation" and step["signer_id"] == me.id for step in steps),
        "evaluate_implementation": role == Role.MEMBER
        and any(step["kind"] == "implementation_evaluation" and step["signer_id"] == me.id for step in steps),
        "add_measure": "new_measure" in mine,
    }
    my_measures = [
        m
        for m in (handling or {}).get("measures", [])
        if role == Role.UNIT and m["owner_unit"] == me.unit and m["status"] in ("planned", "in_progress")
    ]
    context = {
        "proposal_id": proposal_id,
        "handling": handling,
        "content": content,
        "assignment": assignment,
        "can": can,
        "leaders": leaders,
        "my_measures": my_measures,
        "unit_choices": sorted(portal.unit_names.items()),
        "values": values or {},
    }
    return render(request, "proposal.html", session, context, notice, status_code=422 if notice else 200)


@router.get("/find", include_in_schema=False)
async def find_proposal(request: Request, pid: str = "") -> Response:
    """The committee's "view any proposal" box: its page by id."""
    return redirect(f"/proposals/{quote(pid.strip(), safe='')}" if pid.strip() else "/")


@router.get("/proposals/{proposal_id}", response_class=HTMLResponse)
@guarded
async def proposal_page(request: Request) -> Response:
    """A proposal: content, assignment, handling records, measures, and the full timeline (办理全过程)."""
    session = require_session(request)
    return await _proposal_page(request, session, request.path_params["proposal_id"])


@router.post("/proposals/{proposal_id}/{name}")
@guarded
async def proposal_action(request: Request) -> Response:
    """Every form about one proposal, by its name (services/portal/forms.py), for the roles that may use it."""
    proposal_id, name = request.path_params["proposal_id"], request.path_params["name"]
    if name not in forms.ACTIONS:
        raise ApiError(404, "没有这个操作。")
    roles, act = forms.ACTIONS[name]
    session = require_session(request, *roles)
    form = await form_of(request)
    try:
        done = await act(portal_of(request).backend, session.principal, session.token, proposal_id, form)
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await _proposal_page(request, session, proposal_id, Notice("error", exc.message), form)
    # A form shown on a home page (the leader's 督办) returns there; only known pages, never a URL.
    back = form.get("back", "")
    return redirect(back if back in HOME_PAGES.values() else f"/proposals/{proposal_id}", Notice("ok", done))
