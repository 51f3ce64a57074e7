"""The forms of the proposal page, each sent to the API of the service that owns the change.

An action turns the HTML form's fields into the API's JSON body, posts it with the form's own
Idempotency-Key (a form sent twice is one change), and returns the notice the person reads. The
roles listed with each action are those the service itself admits; the page shows a form only to them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from services.portal.client import ApiError, Backend
from shared.auth import Principal
from shared.events import Role

Action = Callable[[Backend, Principal, str, str, dict[str, str]], Awaitable[str]]
ACTIONS: dict[str, tuple[tuple[Role, ...], Action]] = {}


def action(name: str, *roles: Role) -> Callable[[Action], Action]:
    def register(function: Action) -> Action:
        ACTIONS[name] = (roles, function)
        return function

    return register


def _key(form: dict[str, str]) -> str | None:
    return form.get("idempotency_key") or None


def _text(form: dict[str, str], name: str) -> str:
    return form.get(name, "").strip()


def _required(form: dict[str, str], name: str, label: str) -> str:
    value = _text(form, name)
    if not value:
        raise ApiError(422, f"请填写{label}。")
    return value


@action("review", Role.COMMITTEE)
async def review(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """审查立案 → intake."""
    decision = form.get("decision", "")
    body: dict[str, Any] = {"decision": decision, "reason": _text(form, "reason") or None}
    if decision == "not_file":
        body["ground"] = _text(form, "ground") or None
    answer = await api.post("intake", f"/proposals/{pid}/review", token, body, idempotency_key=_key(form))
    if answer["status"] == "filed":
        return f"已立案, 案号 {answer['filing_number']}。"
    return "审查意见已保存。"


@action("designate-key", Role.COMMITTEE)
async def designate_key(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """重点提案 → assignment."""
    body = {"proposal_ids": [pid], "supervising_leader": _required(form, "leader", "督办领导")}
    await api.post("assignment", "/key-proposals", token, body, idempotency_key=_key(form))
    return "已确定为重点提案。"


@action("review-reply", Role.COMMITTEE)
async def review_reply(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """办复审查 → progress."""
    reply_id = _required(form, "reply_id", "答复")
    body = {"decision": form.get("decision", ""), "reason": _text(form, "reason") or None}
    path = f"/proposals/{pid}/replies/{reply_id}/review"
    await api.post("progress", path, token, body, idempotency_key=_key(form))
    return "答复已审查通过, 已送达提案人。" if body["decision"] == "approve" else "答复已退回承办单位。"


@action("confirm", Role.DISPATCHER)
async def confirm(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """交办 (as suggested) → assignment."""
    await api.post("assignment", f"/assignments/{pid}/confirm", token, {}, idempotency_key=_key(form))
    return "已交办。"


@action("accept", Role.UNIT)
async def accept(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """签收 → assignment."""
    await api.post("assignment", f"/assignments/{pid}/accept", token, {}, idempotency_key=_key(form))
    return "已签收。"


@action("dispute", Role.UNIT)
async def dispute(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """异议 → assignment."""
    body = {"reason": _required(form, "reason", "异议理由")}
    await api.post("assignment", f"/assignments/{pid}/dispute", token, body, idempotency_key=_key(form))
    return "异议已提交交办机关。"


@action("progress", Role.UNIT)
async def report_progress(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """办理进展 → progress."""
    body = {
        "kind": form.get("kind", "other"),
        "on": _text(form, "on") or date.today().isoformat(),
        "text": _required(form, "text", "进展情况"),
    }
    await api.post("progress", f"/proposals/{pid}/progress", token, body, idempotency_key=_key(form))
    return "办理进展已记录。"


@action("co-opinion", Role.UNIT)
async def co_opinion(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """会办意见 → progress."""
    body = {"text": _required(form, "text", "会办意见")}
    await api.post("progress", f"/proposals/{pid}/co-opinions", token, body, idempotency_key=_key(form))
    return "会办意见已送主办单位。"


@action("reply", Role.UNIT)
async def reply(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """答复 (for 办复审查) → progress: a line per suggestion says whether it was adopted; each filled
    measure row is a commitment (举措) with its owner unit and due date."""
    count = int(form.get("suggestion_count") or 0)
    adoptions = [
        {"number": n, "adopted": form.get(f"adopted_{n}") == "on", "how": _text(form, f"how_{n}")}
        for n in range(1, count + 1)
    ]
    measures = [
        {
            "text": _text(form, f"measure_{i}"),
            "owner_unit": _text(form, f"measure_unit_{i}"),
            "due": _text(form, f"measure_due_{i}"),
        }
        for i in range(1, 4)
        if _text(form, f"measure_{i}")
    ]
    body = {
        "text": _required(form, "text", "答复正文"),
        "classification": form.get("classification", ""),
        "adoptions": adoptions,
        "measures": measures,
    }
    await api.post("progress", f"/proposals/{pid}/replies", token, body, idempotency_key=_key(form))
    return "答复已提交, 等待提案委员会办复审查。"


@action("measure", Role.UNIT)
async def update_measure(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """举措落实 → progress."""
    measure_id = _required(form, "measure_id", "举措")
    body = {"status": form.get("status", ""), "note": _text(form, "note")}
    await api.post("progress", f"/proposals/{pid}/measures/{measure_id}", token, body, idempotency_key=_key(form))
    return "举措落实情况已更新。"


@action("supervision", Role.LEADER)
async def supervise(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """督办 → progress."""
    body = {
        "kind": form.get("kind", "other"),
        "on": _text(form, "on") or date.today().isoformat(),
        "text": _required(form, "text", "督办内容"),
    }
    await api.post("progress", f"/proposals/{pid}/supervision", token, body, idempotency_key=_key(form))
    return "督办情况已记录。"


@action("evaluation", Role.MEMBER)
async def evaluate(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """评价 → progress."""
    body = {
        "handling_grade": form.get("handling_grade", ""),
        "result_grade": form.get("result_grade", ""),
        "comment": _text(form, "comment"),
    }
    await api.post("progress", f"/proposals/{pid}/evaluations", token, body, idempotency_key=_key(form))
    return "评价已提交, 感谢您的意见。"


@action("implementation-evaluation", Role.MEMBER)
async def evaluate_implementation(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """落实评价 → progress: the grade, a comment, and (unsatisfied) the ticked measures to reopen or a new one."""
    body = {
        "grade": form.get("grade", ""),
        "comment": _text(form, "comment"),
        "reopen": [
            name.removeprefix("reopen_") for name, value in form.items() if name.startswith("reopen_") and value
        ],
        "new_measure": form.get("new_measure") == "on",
    }
    await api.post("progress", f"/proposals/{pid}/implementation-evaluations", token, body, idempotency_key=_key(form))
    return "落实评价已提交, 感谢您的意见。"


@action("new-measure", Role.UNIT)
async def add_measure(api: Backend, _: Principal, token: str, pid: str, form: dict[str, str]) -> str:
    """新举措 (asked for by a 落实评价) → progress."""
    body = {"text": _required(form, "text", "举措内容"), "due": _required(form, "due", "完成时限")}
    await api.post("progress", f"/proposals/{pid}/measures", token, body, idempotency_key=_key(form))
    return "新举措已提交。"
