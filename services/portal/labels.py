"""The Chinese words the pages use for the services' codes, and the demo users of the development login."""

from __future__ import annotations

from dataclasses import dataclass

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


def percent(rate: float | None) -> str:
    """A rate of the statistics as a percentage, or a dash when nothing was counted yet."""
    return "—" if rate is None else f"{rate * 100:.1f}%"
