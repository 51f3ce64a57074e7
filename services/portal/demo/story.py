"""The demo: a year of the city's proposals, and the story of a key proposal from submission to
implemented measures and the proposer's 落实评价, played through the services' public HTTP APIs (nothing
writes a database).

Every step is done by the person who would do it, with that person's token: the member submits,
the committee files and designates key proposals, the dispatcher assigns, units accept, report and
reply, the leader supervises, the member evaluates. Steps that wait for another service (routing
after filing, handling after assignment) poll that service until the event has arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any, TypeVar

import httpx

from services.portal.client import Backend
from services.portal.demo import data
from services.portal.labels import DEMO_USERS
from services.portal.settings import PortalSettings
from shared.auth import issue_token
from shared.events import Role
from shared.settings import CommonSettings

T = TypeVar("T")
NAMES = {"m-chen": "陈委员", "m-zhou": "周委员"}


class Demo:
    """Plays the demo against running services; `say` reports each step."""

    def __init__(
        self,
        settings: PortalSettings,
        common: CommonSettings,
        say: Callable[[str], None] = print,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.api = Backend(settings, transport)
        self.common = common
        self.say = say
        self.timeout_s = timeout_s
        self.tokens: dict[str, str] = {}

    def token(self, sub: str, role: Role, unit: str | None = None) -> str:
        key = f"{role}:{sub}:{unit}"
        if key not in self.tokens:
            name = NAMES.get(sub) or next((u.name for u in DEMO_USERS if u.sub == sub), sub)
            self.tokens[key] = issue_token(
                self.common, subject=sub, role=role, unit=unit, name=name, ttl=timedelta(hours=1)
            )
        return self.tokens[key]

    @property
    def committee(self) -> str:
        return self.token("c-office", Role.COMMITTEE)

    @property
    def dispatcher(self) -> str:
        return self.token("d-office", Role.DISPATCHER)

    def unit(self, unit: str) -> str:
        return self.token(f"u-{unit.removeprefix('dg-')}", Role.UNIT, unit)

    async def until(self, check: Callable[[], Awaitable[T | None]], what: str) -> T:
        """Poll `check` until it answers, or give up naming what never happened."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            with_answer = await check()
            if with_answer is not None:
                return with_answer
            if time.monotonic() > deadline:
                raise TimeoutError(f"demo: waited {self.timeout_s:.0f}s for {what}")
            await asyncio.sleep(0.3)

    async def handling(self, pid: str, *stages: str, key: bool = False) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            try:
                view = await self.api.get("progress", f"/proposals/{pid}", self.committee)
            except Exception:  # noqa: BLE001 - not there yet is the same as not ready
                return None
            return view if view["stage"] in stages and (view["key"] or not key) else None

        return await self.until(check, f"proposal {pid} to reach {'/'.join(stages)}")

    async def routed(self, pid: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            try:
                return await self.api.get("assignment", f"/assignments/{pid}", self.dispatcher)
            except Exception:  # noqa: BLE001
                return None

        return await self.until(check, f"a routing of {pid}")

    # One proposal's steps ---------------------------------------------------------------------------

    async def submit(self, member: str, content: dict[str, Any], series: str | None = None) -> str:
        body = {**content, "first_proposer": {"id": member, "name": NAMES[member]}}
        if series:
            body["series_id"] = series
        created = await self.api.post("intake", "/proposals", self.token(member, Role.MEMBER), body)
        return str(created["id"])

    async def file(self, pid: str) -> None:
        await self.api.post("intake", f"/proposals/{pid}/review", self.committee, {"decision": "file"})

    async def assign(self, pid: str, override: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.routed(pid)
        confirmed = await self.api.post("assignment", f"/assignments/{pid}/confirm", self.dispatcher, override or {})
        await self.handling(pid, "assigned", "handling")
        return confirmed

    async def accept(self, pid: str, assignment: dict[str, Any]) -> None:
        for unit in [assignment["lead_unit"], *assignment["co_units"], *assignment["split_units"]]:
            await self.api.post("assignment", f"/assignments/{pid}/accept", self.unit(unit), {})
        await self.handling(pid, "handling")

    async def reply(self, pid: str, unit: str, body: dict[str, Any], approve: bool = True) -> None:
        drafted = await self.api.post("progress", f"/proposals/{pid}/replies", self.unit(unit), body)
        if approve:
            reply_id = drafted["replies"][-1]["id"]
            review = {"decision": "approve"}
            await self.api.post("progress", f"/proposals/{pid}/replies/{reply_id}/review", self.committee, review)

    async def evaluate(self, pid: str, member: str, grade: str, comment: str = "") -> dict[str, Any]:
        body = {"handling_grade": "satisfied", "result_grade": grade, "comment": comment}
        return await self.api.post("progress", f"/proposals/{pid}/evaluations", self.token(member, Role.MEMBER), body)

    # The year ---------------------------------------------------------------------------------------

    async def year_proposal(self, item: data.YearProposal) -> None:
        body = f"{item.title.removeprefix('关于').removesuffix('的建议')}关系群众切身利益, 建议市有关部门研究落实。"
        pid = await self.submit(
            item.proposer,
            {"title": item.title, "body": body, "category": item.category, "suggestions": item.suggestions},
        )
        if item.outcome == "submitted":
            return
        if item.outcome == "not_filed":
            decision = {"decision": "not_file", "ground": "属于个人或少数人利益诉求", "reason": "转有关部门参考"}
            await self.api.post("intake", f"/proposals/{pid}/review", self.committee, decision)
            return
        await self.file(pid)
        assignment = await self.assign(pid)
        if item.outcome == "assigned":
            return
        await self.accept(pid, assignment)
        lead = assignment["lead_unit"]
        progress = {"kind": "phone", "on": date.today().isoformat(), "text": "与提案人电话沟通, 了解建议的具体考虑。"}
        await self.api.post("progress", f"/proposals/{pid}/progress", self.unit(lead), progress)
        for unit in assignment["co_units"]:
            opinion = {"text": "我单位同意主办单位的办理意见, 将配合做好相关工作。"}
            await self.api.post("progress", f"/proposals/{pid}/co-opinions", self.unit(unit), opinion)
        if item.outcome == "handling":
            return
        adopted = item.adopted or [True] * len(item.suggestions)
        reply = {
            "text": f"{NAMES[item.proposer]}: 您的提案收悉, 经认真研究, 现答复如下: 您提出的建议我们已逐条研究并落实。",
            "classification": item.classification,
            "adoptions": [{"number": n, "adopted": a} for n, a in enumerate(adopted, start=1)],
        }
        await self.reply(pid, lead, reply, approve=item.outcome != "reply_review")
        if item.outcome in ("reply_review", "answered"):
            return
        await self.evaluate(pid, item.proposer, item.grade)

    async def year(self) -> None:
        limit = asyncio.Semaphore(6)

        async def one(item: data.YearProposal) -> None:
            async with limit:
                await self.year_proposal(item)

        await asyncio.gather(*(one(item) for item in data.YEAR))
        self.say(f"本年度其他提案 {len(data.YEAR)} 件已载入 (立案、交办、办理、答复、评价各阶段都有)")

    # The story --------------------------------------------------------------------------------------

    async def land_story(self) -> str:
        """全域土地综合整治: filed, key, supervised, assigned to 市自然资源局 with three co-handlers,
        answered with ten measures, evaluated satisfied, its measures implemented over the year and the
        implementation evaluated (落实评价)."""
        say, today = self.say, date.today()
        pid = await self.submit("m-chen", data.LAND)
        say(f"陈委员提交《{data.LAND['title']}》")
        await self.file(pid)
        await self.routed(pid)
        leader = "leader-cwfsz"
        designation = {"proposal_ids": [pid], "supervising_leader": leader, "leading_leader": None}
        await self.api.post("assignment", "/key-proposals", self.committee, designation)
        say("提案委员会立案, 确定为重点提案, 由常务副市长督办")
        override = {"lead_unit": "dg-zrzyj", "co_units": ["dg-nyj", "dg-fgj", "dg-humen"], "form": "lead_co"}
        assignment = await self.assign(pid, override)
        say("市政府办公室交办: 市自然资源局主办, 市农业农村局、市发展和改革局、虎门镇会办")
        await self.accept(pid, assignment)
        await self.handling(pid, "handling", key=True)
        leader_token = self.token(leader, Role.LEADER)
        for kind, text in (
            ("meeting", "召开全域土地综合整治重点提案督办会, 要求主办会办单位倒排工期。"),
            ("visit", "赴虎门镇实地调研村镇工业园改造和高标准农田建设。"),
        ):
            visit = {"kind": kind, "on": today.isoformat(), "text": text}
            await self.api.post("progress", f"/proposals/{pid}/supervision", leader_token, visit)
        lead = self.unit("dg-zrzyj")
        research = {"kind": "research", "on": today.isoformat(), "text": "会同会办单位赴六个镇街开展专题调研。"}
        await self.api.post("progress", f"/proposals/{pid}/progress", lead, research)
        meeting = {"kind": "face_to_face", "on": today.isoformat(), "text": "与陈委员面商, 听取对整治规划的意见。"}
        await self.api.post("progress", f"/proposals/{pid}/progress", lead, meeting)
        for unit, text in data.LAND_CO_OPINIONS.items():
            await self.api.post("progress", f"/proposals/{pid}/co-opinions", self.unit(unit), {"text": text})
        say("常务副市长两次督办; 三个会办单位送达会办意见")
        measures = [
            {"text": text, "owner_unit": owner, "due": (today + timedelta(days=30 * months)).isoformat()}
            for text, owner, months in data.LAND_MEASURES
        ]
        adoptions = [{"number": n, "adopted": True} for n in range(1, len(data.LAND["suggestions"]) + 1)]
        body = {"text": data.LAND_REPLY, "classification": "A", "adoptions": adoptions, "measures": measures}
        await self.reply(pid, "dg-zrzyj", body)
        say("市自然资源局答复 (A 类, 建议全部采纳), 承诺十项举措; 提案委员会办复审查通过")
        closed = await self.evaluate(pid, "m-chen", "satisfied", "答复具体, 举措实在, 满意。")
        say("陈委员评价: 满意; 提案办结")
        for measure in closed["measures"][:4]:
            done = {"status": "done", "note": "已按期完成"}
            owner = self.unit(measure["owner_unit"])
            await self.api.post("progress", f"/proposals/{pid}/measures/{measure['id']}", owner, done)
        for measure in closed["measures"][4:7]:
            started = {"status": "in_progress", "note": "正在推进"}
            owner = self.unit(measure["owner_unit"])
            await self.api.post("progress", f"/proposals/{pid}/measures/{measure['id']}", owner, started)
        say("十项举措: 四项已完成, 三项推进中 (答复型转落实型, 持续跟踪)")
        await self.implementation(pid, closed["measures"])
        return pid

    async def implementation(self, pid: str, measures: list[dict[str, Any]]) -> None:
        """落实 to the end: the remaining measures are settled over the year (one dropped, with the reason),
        and 陈委员 evaluates what was implemented (落实评价)."""
        for measure in measures[4:]:
            owner = self.unit(measure["owner_unit"])
            if measure["text"] == data.LAND_DROPPED_MEASURE:
                change = {"status": "dropped", "note": data.LAND_DROPPED_REASON}
            else:
                change = {"status": "done", "note": "已完成, 经验收合格"}
            await self.api.post("progress", f"/proposals/{pid}/measures/{measure['id']}", owner, change)
        self.say("年内十项举措全部办结 (九项完成, 一项说明理由后取消): 提案已落实, 请陈委员评价落实情况")
        member = self.token("m-chen", Role.MEMBER)
        evaluation = {"grade": "satisfied", "comment": "规划、资金和试点均已落地, 对落实情况满意。"}
        await self.api.post("progress", f"/proposals/{pid}/implementation-evaluations", member, evaluation)
        self.say("陈委员落实评价: 满意")

    async def ai_series(self) -> list[str]:
        """人工智能赋能制造业: a series of three proposals, sixteen suggestions, twelve adopted."""
        pids = [await self.submit("m-zhou", content, series=data.AI_SERIES) for content in data.AI_PROPOSALS_CONTENT]
        for pid in pids:
            await self.file(pid)
        assignments = [await self.assign(pid) for pid in pids]
        for pid, assignment, item in zip(pids, assignments, data.AI_PROPOSALS, strict=True):
            await self.accept(pid, assignment)
            for unit in assignment["co_units"]:
                opinion = {"text": "市科学技术局将在人工智能关键技术攻关和中试平台建设方面予以支持。"}
                await self.api.post("progress", f"/proposals/{pid}/co-opinions", self.unit(unit), opinion)
            adoptions = [
                {"number": n, "adopted": adopted, "how": "已纳入行动方案" if adopted else "留作参考"}
                for n, adopted in enumerate(item["adopted"], start=1)
            ]
            body = {"text": data.AI_REPLY, "classification": item["classification"], "adoptions": adoptions}
            await self.reply(pid, assignment["lead_unit"], body)
            await self.evaluate(pid, "m-zhou", "satisfied" if item["classification"] == "A" else "basically_satisfied")
        suggestions = sum(len(item["suggestions"]) for item in data.AI_PROPOSALS)
        adopted = sum(sum(item["adopted"]) for item in data.AI_PROPOSALS)
        self.say(f"周委员人工智能赋能制造业系列提案 3 件: {suggestions} 条建议, 采纳 {adopted} 条")
        return pids

    async def already_loaded(self) -> bool:
        listed = await self.api.get("progress", "/proposals", self.committee, {"key": "true", "limit": 200})
        return any(item["title"] == data.LAND["title"] for item in listed["items"])

    async def play(self) -> None:
        try:
            units = await self.api.get("assignment", "/units", self.committee, {"limit": 200})
            self.say(f"承办单位 {len(units['items'])} 个 (来自交办服务的单位目录)")
            if await self.already_loaded():
                self.say("演示数据已载入过, 不再重复载入")
                return
            await asyncio.gather(self.land_story(), self.ai_series(), self.year())
            stats = await self.api.get("progress", "/stats", self.committee)
            overall = stats["overall"]
            self.say(
                f"本年度: 提交 {overall['submitted']} 件, 立案 {overall['filed']} 件, 办结 {overall['closed']} 件, "
                f"采纳建议 {overall['suggestions_adopted']}/{overall['suggestions']} 条"
            )
            self.say(
                f"落实: 落实率 {overall['implemented_proposals']}/{overall['closed_with_measures']} 件, "
                f"落实满意率 {overall['implementation_satisfied']}/{overall['implementation_evaluations']} 份"
            )
        finally:
            await self.api.close()


async def wait_for_services(settings: PortalSettings, timeout_s: float = 120.0) -> None:
    """The demo starts beside the services (make demo): wait until each answers /readyz."""
    urls = [settings.intake_url, settings.assignment_url, settings.progress_url]
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as http:
        for url in urls:
            while True:
                try:
                    if (await http.get(f"{url.rstrip('/')}/readyz")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"demo: {url} is not ready after {timeout_s:.0f}s")
                await asyncio.sleep(0.5)
