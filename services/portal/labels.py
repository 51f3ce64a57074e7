"""The Chinese words the pages use for the services' codes, and the demo users of the development login.

Every code a page shows goes through here: a stage, a status, a kind, a grade or a class is never shown
as the code itself (tests/e2e/test_portal_words.py scans every demo page for one)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.events import Role

STAGES = {
    "submitted": "已提交",
    "filed": "已立案",
    "not_filed": "不予立案",
    "merged": "已并案",
    "withdrawn": "已撤案",
    "assigned": "已交办",
    "handling": "办理中",
    "reply_review": "办复审查",
    "answered": "已答复",
    "closed": "已办结",
}

INTAKE_STATUSES = {
    **STAGES,
    "draft": "草稿",
    "awaiting_cosigners": "联名确认中",
    "submitted": "审查中",
    "returned": "退回修改",
}
"""Where a proposal stands at intake, for what progress does not know yet."""

ROLES = {
    Role.MEMBER: "委员",
    Role.COMMITTEE: "提案委员会",
    Role.DISPATCHER: "交办机关",
    Role.UNIT: "承办单位",
    Role.LEADER: "督办领导",
    Role.PUBLIC: "公众",
    Role.ADMIN: "管理员",
    Role.SYSTEM: "外部系统",
}

FORMS = {"single": "单办", "lead_co": "主办+会办", "split": "分办"}

STEP_KINDS = {
    "reply": "答复",
    "co_opinion": "会办意见",
    "measure": "举措落实",
    "evaluation": "评价",
    "implementation_evaluation": "落实评价",
    "new_measure": "新举措",
}

PROGRESS_KINDS = {
    "face_to_face": "面商",
    "phone": "电话沟通",
    "written": "书面沟通",
    "meeting": "座谈会",
    "research": "调研",
    "other": "其他",
}

MEASURE_STATUSES = {"planned": "计划中", "in_progress": "推进中", "done": "已完成", "dropped": "已取消"}

SUPERVISION_KINDS = {"meeting": "督办会议", "visit": "实地督办", "instruction": "批示", "other": "其他"}

UNIT_RESPONSES = {"accepted": "已签收", "disputed": "提出异议", "upheld": "异议未获支持"}

CLOSE_REASONS = {"all_evaluated": "提案者均已评价", "evaluation_window_closed": "评价期满"}

IMPLEMENTATION_STATES = {
    "due": "待评价落实情况",
    "open": "落实评价中",
    "closed": "落实评价已结束",
    "reopened": "举措重新落实中",
}
"""落实评价: where the proposers' evaluation of what was implemented stands."""

CHANNELS = {"inbox": "站内消息", "webhook": "接口推送", "email": "电子邮件", "sms": "短信"}

REPLY_STATUSES = {"drafted": "待审查", "approved": "已通过", "returned": "已退回"}

ASSIGNMENT_STATUSES = {
    "suggested": "待确认交办",
    "assigned": "已交办(异议期内)",
    "disputed": "有异议",
    "accepted": "已签收",
    "superseded": "已改办",
}


@dataclass(frozen=True)
class DemoUser:
    """A person of the demo city, offered by the development login."""

    key: str
    sub: str
    role: Role
    name: str
    unit: str | None = None

    @property
    def description(self) -> str:
        return f"{ROLES[self.role]} · {self.name}"


# The demo story's people (services/portal/demo): the ids match the data it loads.
DEMO_USERS = (
    DemoUser("committee", "c-office", Role.COMMITTEE, "市政协提案委员会 李主任"),
    DemoUser("dispatcher", "d-office", Role.DISPATCHER, "市政府办公室 督查室"),
    DemoUser("unit-zrzyj", "u-zrzyj", Role.UNIT, "市自然资源局 提案办理专员", unit="dg-zrzyj"),
    DemoUser("unit-nyj", "u-nyj", Role.UNIT, "市农业农村局 提案办理专员", unit="dg-nyj"),
    DemoUser("unit-gxj", "u-gxj", Role.UNIT, "市工信局 提案办理专员", unit="dg-gxj"),
    DemoUser("leader", "leader-cwfsz", Role.LEADER, "常务副市长"),
    DemoUser("member", "m-chen", Role.MEMBER, "陈委员"),
    DemoUser("member-ai", "m-zhou", Role.MEMBER, "周委员"),
)


def demo_user(key: str) -> DemoUser | None:
    return next((user for user in DEMO_USERS if user.key == key), None)


def word(words: Mapping[str, str], code: str | None) -> str:
    """A code's word, or 未知 with the code for one this portal does not know yet (a newer service)."""
    if not code:
        return "—"
    return words.get(code) or f"未知({code})"


@dataclass(frozen=True)
class Names:
    """How a page names what the services refer to by id or code."""

    unit: Callable[[str | None], str]
    leader: Callable[[str], str]
    grade: Callable[[str], str]
    reply_class: Callable[[str], str]
    measure: Callable[[str], str]


def _unit(names: Names, value: Any) -> str:
    """A unit as events carry it: its id, or {id, name}; named by the catalog."""
    if isinstance(value, Mapping):
        return names.unit(value.get("id")) if value.get("id") else str(value.get("name", "—"))
    return names.unit(value)


def _units(names: Names, values: Any) -> str:
    return "、".join(_unit(names, value) for value in values or [])


def _who(names: Names, facts: Mapping[str, Any]) -> str:
    return _unit(names, facts["unit"]) if facts.get("unit") else str(facts.get("signer_id") or "")


def timeline_line(entry: Mapping[str, Any], names: Names) -> str:
    """One line of 办理全过程 in words, from the entry's type and facts; progress's own summary for a
    type this portal does not know, or an entry without facts (a progress older than the portal)."""
    if "facts" not in entry:
        return str(entry.get("summary", ""))
    facts: Mapping[str, Any] = entry["facts"] or {}
    kind = str(entry.get("type", "")).removeprefix("proposalflow.").rsplit(".v", 1)[0]
    match kind:
        case "proposal.submitted":
            return f"提案已提交: {facts.get('title', '')}"
        case "proposal.filed":
            return f"已立案, 案号 {facts.get('filing_number', '—')}"
        case "proposal.not-filed":
            return f"不予立案: {facts.get('reason', '')}"
        case "proposal.withdrawn":
            return "提案已撤回"
        case "assignment.suggested":
            return f"交办建议: 主办 {_unit(names, facts.get('lead_unit'))}"
        case "assignment.assigned" | "assignment.reassigned":
            verb = "已交办" if kind == "assignment.assigned" else "改办"
            co = _units(names, facts.get("co_units"))
            split = _units(names, facts.get("split_units"))
            return (
                f"{verb} ({word(FORMS, facts.get('form'))}): 主办 {_unit(names, facts.get('lead_unit'))}"
                + (f", 会办 {co}" if co else "")
                + (f", 分办 {split}" if split else "")
                + f", 办复期限 {facts.get('reply_due', '—')}"
                + (f" ({facts['reason']})" if facts.get("reason") else "")
            )
        case "assignment.accepted":
            return f"{_unit(names, facts.get('unit'))} 已签收"
        case "assignment.disputed":
            return f"{_unit(names, facts.get('unit'))} 提出异议: {facts.get('reason', '')}"
        case "key-proposal.designated":
            return f"列为重点提案, 督办领导 {names.leader(str(facts.get('supervising_leader', '')))}"
        case "handling.progress-reported":
            return (
                f"{_unit(names, facts.get('unit'))} 办理进展 ({word(PROGRESS_KINDS, facts.get('kind'))}, "
                f"{facts.get('on', '')}): {facts.get('text', '')}"
            )
        case "handling.co-opinion-submitted":
            return f"{_unit(names, facts.get('unit'))} 提交会办意见"
        case "reply.drafted":
            reply_class = names.reply_class(str(facts.get("classification", "")))
            return f"{_unit(names, facts.get('unit'))} 提交答复 ({reply_class}), 待办复审查"
        case "reply.approved":
            due = facts.get("evaluation_due")
            return "答复经办复审查通过, 已送提案者" + (f", 评价期至 {due}" if due else "")
        case "reply.returned":
            return f"答复被退回: {facts.get('reason', '')}"
        case "evaluation.submitted":
            return (
                f"提案者评价: 办理态度 {names.grade(str(facts.get('handling_grade', '')))}, "
                f"办理结果 {names.grade(str(facts.get('result_grade', '')))}"
            )
        case "handling.rehandling-started":
            return f"重新办理 (第 {facts.get('round', '')} 轮), 办复期限 {facts.get('reply_due', '—')}"
        case "proposal.closed":
            reason = facts.get("reason")
            return "办结" + (f" ({word(CLOSE_REASONS, reason)})" if reason else "")
        case "measure.updated":
            note = f" ({facts['note']})" if facts.get("note") else ""
            return (
                f"举措「{names.measure(str(facts.get('measure_id', '')))}」: "
                f"{word(MEASURE_STATUSES, facts.get('status'))}{note}"
            )
        case "proposal.implemented":
            return "全部举措已落实"
        case "supervision.recorded":
            return (
                f"督办 ({word(SUPERVISION_KINDS, facts.get('kind'))}, {facts.get('on', '')}): {facts.get('text', '')}"
            )
        case "implementation.evaluation-opened":
            due = facts.get("evaluation_due", "—")
            return f"请提案者评价落实情况 (第 {facts.get('round', '')} 轮), 落实评价期至 {due}"
        case "implementation.evaluated":
            reopened = [names.measure(str(m)) for m in facts.get("reopened_measures") or []]
            return (
                f"提案者落实评价: {names.grade(str(facts.get('grade', '')))}"
                + (f", 重新落实举措「{'」「'.join(reopened)}」" if reopened else "")
                + (", 要求提出新举措" if facts.get("new_measure_requested") else "")
            )
        case "implementation.evaluation-closed":
            reason = facts.get("reason")
            return (
                f"落实评价结束 (第 {facts.get('round', '')} 轮): {facts.get('satisfied', 0)} / "
                f"{facts.get('evaluations', 0)} 份满意" + (f", {word(CLOSE_REASONS, reason)}" if reason else "")
            )
        case "measure.reopened":
            return (
                f"举措「{names.measure(str(facts.get('measure_id', '')))}」重新落实, "
                f"{_unit(names, facts.get('unit'))} 应于 {facts.get('due', '')} 前完成"
            )
        case "measure.requested":
            return f"请 {_unit(names, facts.get('unit'))} 于 {facts.get('due', '')} 前提出新举措"
        case "measure.added":
            return f"{_unit(names, facts.get('unit'))} 承诺新举措"
        case "deadline.approaching":
            return (
                f"到期预警: {word(STEP_KINDS, facts.get('kind'))} · {_who(names, facts)} 于 {facts.get('due', '')} 到期"
            )
        case "deadline.overdue":
            return (
                f"逾期: {word(STEP_KINDS, facts.get('kind'))} · {_who(names, facts)} 应于 {facts.get('due', '')} 完成"
            )
    return str(entry.get("summary", ""))


def percent(rate: float | None) -> str:
    """A rate of the statistics as a percentage, or a dash when nothing was counted yet."""
    return "—" if rate is None else f"{rate * 100:.1f}%"
