"""代码表: every code an integrator sends or reads, in one document: the policy's own (提案分类, 不予立案理由,
答复分类, 评价等级) and the contract's fixed ones (办理进展方式, 督办方式, 举措状态, 待办事项, 交办形式…).

Served by progress as `GET /policy/codes` (public, no token: it is the city's published rules, no
personal data and no secret) and written to `docs/policy-codes.md` from the default policy by
`proposalflow schemas export`. The event schemas' fields that take a code point here.

Why progress serves it: progress applies most of these codes (reply classes, evaluation grades,
progress, supervision and measure kinds, deadline kinds) and is the read side an integrator already
queries (the lifecycle read model); every service reads the same policy file, so its answer is the
policy the whole suite runs with.
"""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter
from pydantic import BaseModel, Field

from shared import events
from shared.policy import Policy

CODES_PATH = "/policy/codes"
SEE_CODES = f"GET {CODES_PATH} on the progress service, or docs/policy-codes.md"
"""What an event field that takes a code says about where the codes are listed."""


class Code(BaseModel):
    """One code and its label, as a person reads it."""

    code: str
    label: str


class ReplyClassCode(Code):
    counts_as_adopted: bool = Field(description="A reply of this class counts as adopted (采纳) in statistics.")


class EvaluationGradeCode(Code):
    counts_as_satisfied: bool = Field(description="Counts toward 满意率 (satisfied + basically satisfied).")
    triggers_rehandling: bool = Field(description="From the first proposer, sends the proposal to 重新办理.")


class PolicyCodes(BaseModel):
    """The codes the events and the APIs use, for the policy the services run with."""

    city: str
    categories: list[str] = Field(description="提案分类: the `category` of a proposal.")
    not_filed_grounds: list[str] = Field(description="不予立案理由: the `ground` of proposal.not-filed.")
    reply_classes: list[ReplyClassCode] = Field(description="答复分类: a reply's `classification`.")
    evaluation_grades: list[EvaluationGradeCode] = Field(
        description="评价等级: an evaluation's `handling_grade` (办理态度) and `result_grade` (办理结果)."
    )
    progress_kinds: list[Code] = Field(description="办理进展方式: the `kind` of a progress report.")
    supervision_kinds: list[Code] = Field(description="督办方式: the `kind` of supervision.recorded.")
    measure_statuses: list[Code] = Field(description="举措状态: the `status` of measure.updated.")
    deadline_kinds: list[Code] = Field(description="待办事项: the `kind` of deadline.approaching and deadline.overdue.")
    assignment_forms: list[Code] = Field(description="交办形式: the `form` of an assignment.")
    session_kinds: list[Code] = Field(description="提案类型: the `session_kind` of a proposal.")
    proposer_kinds: list[Code] = Field(description="提案者: the `kind` of a proposer.")
    roles: list[Code] = Field(description="角色: an actor's `role`.")
    periods: dict[str, str] = Field(description="期限: the policy's periods (办复期限, 异议期, 评价期…), as written.")


PROGRESS_KINDS = {
    "face_to_face": "面商",
    "phone": "电话沟通",
    "written": "书面沟通",
    "meeting": "座谈会",
    "research": "调研",
    "other": "其他",
}
SUPERVISION_KINDS = {"meeting": "督办会议", "visit": "实地督办", "instruction": "批示", "other": "其他"}
MEASURE_STATUSES = {"planned": "计划中", "in_progress": "推进中", "done": "已完成", "dropped": "已取消"}
DEADLINE_KINDS = {
    "reply": "答复",
    "co_opinion": "会办意见",
    "evaluation": "评价",
    "measure": "举措落实",
    "implementation_evaluation": "落实评价",
    "new_measure": "新举措",
}
ASSIGNMENT_FORMS = {"single": "单办", "lead_co": "主办+会办", "split": "分办"}
SESSION_KINDS = {"plenary": "大会提案", "interim": "平时提案"}
PROPOSER_KINDS = {
    "member": "委员",
    "party": "党派",
    "peoples_organisation": "人民团体",
    "sector": "界别",
    "special_committee": "专门委员会",
    "member_group": "委员小组",
}
ROLES = {
    "member": "委员 / 提案者",
    "committee": "提案委员会",
    "dispatcher": "交办机关",
    "unit": "承办单位",
    "leader": "督办领导",
    "public": "公众",
    "system": "外部系统",
    "admin": "管理员",
}

CONTRACT_CODES: dict[str, tuple[dict[str, str], tuple[Any, ...]]] = {
    "progress_kinds": (PROGRESS_KINDS, get_args(events.ReportProgress.model_fields["kind"].annotation)),
    "supervision_kinds": (SUPERVISION_KINDS, get_args(events.SupervisionRecorded.model_fields["kind"].annotation)),
    "measure_statuses": (MEASURE_STATUSES, get_args(events.MeasureUpdated.model_fields["status"].annotation)),
    "assignment_forms": (ASSIGNMENT_FORMS, tuple(events.AssignmentForm)),
    "session_kinds": (SESSION_KINDS, tuple(events.SessionKind)),
    "proposer_kinds": (PROPOSER_KINDS, tuple(events.ProposerKind)),
    "roles": (ROLES, tuple(events.Role)),
}
"""The fixed codes with their labels, and the values the event models allow (a test keeps them equal)."""


def _codes(labels: dict[str, str]) -> list[Code]:
    return [Code(code=code, label=label) for code, label in labels.items()]


def policy_codes(policy: Policy) -> PolicyCodes:
    """The code tables of one policy."""
    periods = {
        name: str(getattr(policy, name).model_dump())
        for name in (
            "reply_deadline",
            "co_opinion_deadline",
            "dispute_window",
            "evaluation_window",
            "cosign_window",
            "warning_lead_time",
            "rehandling_deadline",
        )
    }
    return PolicyCodes(
        city=policy.city,
        categories=list(policy.categories),
        not_filed_grounds=list(policy.not_filed_grounds),
        reply_classes=[ReplyClassCode(**c.model_dump()) for c in policy.reply_classes],
        evaluation_grades=[EvaluationGradeCode(**g.model_dump()) for g in policy.evaluation_grades],
        progress_kinds=_codes(PROGRESS_KINDS),
        supervision_kinds=_codes(SUPERVISION_KINDS),
        measure_statuses=_codes(MEASURE_STATUSES),
        deadline_kinds=_codes(DEADLINE_KINDS),
        assignment_forms=_codes(ASSIGNMENT_FORMS),
        session_kinds=_codes(SESSION_KINDS),
        proposer_kinds=_codes(PROPOSER_KINDS),
        roles=_codes(ROLES),
        periods=periods,
    )


def codes_router(policy: Policy) -> APIRouter:
    """`GET /policy/codes`: public, the same answer for everyone."""
    routes = APIRouter(tags=["policy"])
    codes = policy_codes(policy)

    @routes.get(CODES_PATH, response_model=PolicyCodes, summary="The codes of the policy in force (代码表)")
    async def get_codes() -> PolicyCodes:
        return codes

    return routes


def codes_markdown(policy: Policy) -> str:
    """docs/policy-codes.md: the code tables of the default policy."""
    codes = policy_codes(policy)
    lines = [
        "# Policy codes (代码表)",
        "",
        "Generated from the default policy (`shared/policies/dongguan.yaml`) and the event models by",
        "`proposalflow schemas export`; do not edit by hand. A city that runs another policy file has other",
        f"categories, reply classes or grades: ask its progress service, `GET {CODES_PATH}` (public, no token),",
        "which answers these same tables for the policy in force.",
        "",
        f"City: {codes.city}.",
        "",
    ]
    for name, field in PolicyCodes.model_fields.items():
        value = getattr(codes, name)
        if name == "city":
            continue
        lines += [f"## `{name}`", "", field.description or "", ""]
        if name in ("categories", "not_filed_grounds"):
            lines += [f"- `{item}`" for item in value]
        elif name == "periods":
            lines += ["| period | value |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in value.items()]
        else:
            extra = [k for k in type(value[0]).model_fields if k not in ("code", "label")]
            lines += ["| code | label |" + "".join(f" {k} |" for k in extra), "|---|---|" + "---|" * len(extra)]
            for item in value:
                cells = "".join(f" {'yes' if getattr(item, k) else 'no'} |" for k in extra)
                lines.append(f"| `{item.code}` | {item.label} |{cells}")
        lines.append("")
    return "\n".join(lines)
