"""The services' HTTP APIs as the portal calls them: with the signed-in person's token, and with
the APIs' problem+json errors turned into a message a person reads in Chinese."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import httpx

from services.portal.settings import PortalSettings

Service = Literal["intake", "assignment", "progress"]

# What a refused request means, by the rule the service named (its `errors[].rule`).
RULE_MESSAGES = {
    "assignment_awaits_response": "该交办已不在签收期内, 无法签收或提出异议。",
    "unit_responds_once": "本单位已对该交办作出签收或异议, 不能重复操作。",
    "unit_acts_on_own_assignment": "该提案未交办给本单位。",
    "confirm_only_suggested": "该提案已交办, 无需再次确认。",
    "uphold_only_disputed": "该交办没有异议, 无需维持。",
    "co_opinion_once": "本单位已提交会办意见, 不能重复提交。",
    "evaluate_once": "您已评价过本轮答复。",
    "evaluation_window_open": "评价期已过或尚未开始。",
    "evaluator_is_signer": "只有提案人可以评价。",
    "grade_known": "请选择有效的评价等级。",
    "return_needs_reason": "退回答复时请填写退回理由。",
    "not_filed_needs_reason": "不予立案时请选择理由。",
    "review_only_submitted": "该提案已审查, 不能重复审查。",
    "review_only_drafted": "该答复已审查, 不能重复审查。",
    "key_designated_once": "该提案已是重点提案。",
    "key_proposal_filed": "只有已立案的提案才能确定为重点提案。",
    "category_known": "请选择有效的提案类别。",
    "content_complete": "提案内容不完整, 请补充标题、正文和建议。",
    "suggestion_not_empty": "建议不能为空。",
    "submitter_is_first_proposer": "第一提案人必须是提交人本人。",
    "measure_moves_forward": "举措状态只能向前推进。",
    "measure_dropped_with_reason": "取消举措时请说明理由。",
    "measure_due_in_future": "举措完成时限须晚于今天。",
}

STATUS_MESSAGES = {
    400: "请求格式有误",
    401: "登录已失效, 请重新登录",
    403: "您的角色无权进行此操作",
    404: "未找到, 或您无权查看",
    409: "当前状态下不能进行此操作",
    413: "提交的内容过大",
    422: "提交的内容未通过校验",
    429: "请求过于频繁, 请稍后再试",
}


class ApiError(Exception):
    """A service refused or could not answer; `message` is what the person reads."""

    def __init__(self, status: int, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def problem_message(status: int, body: Any) -> str:
    """A Chinese sentence for a problem+json answer: the rule's own message when the portal knows
    it, else what kind of refusal it was, with the service's detail for the specifics."""
    detail = body.get("detail", "") if isinstance(body, dict) else ""
    errors = body.get("errors", []) if isinstance(body, dict) else []
    for error in errors:
        rule = error.get("rule") if isinstance(error, dict) else None
        if rule in RULE_MESSAGES:
            return RULE_MESSAGES[rule]
    fields = [str(error["field"]) for error in errors if isinstance(error, dict) and error.get("field")]
    summary = STATUS_MESSAGES.get(status, f"服务返回错误 {status}")
    if fields:
        return f"{summary}: 请检查 {', '.join(fields)}。({detail})"
    return f"{summary}。({detail})" if detail else f"{summary}。"


class Backend:
    """One client per portal process; each call carries the caller's bearer token."""

    def __init__(self, settings: PortalSettings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.urls: dict[Service, str] = {
            "intake": settings.intake_url.rstrip("/"),
            "assignment": settings.assignment_url.rstrip("/"),
            "progress": settings.progress_url.rstrip("/"),
        }
        self.http = httpx.AsyncClient(timeout=settings.api_timeout_s, transport=transport)

    async def close(self) -> None:
        await self.http.aclose()

    async def get(
        self, service: Service, path: str, token: str | None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return await self._call("GET", service, path, token, params=params)

    async def post(
        self, service: Service, path: str, token: str, body: dict[str, Any], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """A change, sent once: the Idempotency-Key (the form's own, so a resubmitted form is one
        change) makes a retry after a lost answer safe."""
        headers = {"idempotency-key": idempotency_key or str(uuid.uuid4())}
        return await self._call("POST", service, path, token, json=body, headers=headers)

    async def _call(
        self,
        method: str,
        service: Service,
        path: str,
        token: str | None,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        all_headers = dict(headers or {})
        if token:
            all_headers["authorization"] = f"Bearer {token}"
        try:
            response = await self.http.request(
                method, f"{self.urls[service]}{path}", params=params, json=json, headers=all_headers
            )
        except httpx.HTTPError as exc:
            raise ApiError(503, f"暂时无法连接{SERVICE_NAMES[service]}服务, 请稍后再试。", str(exc)) from exc
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = {"detail": response.text[:200]}
            raise ApiError(response.status_code, problem_message(response.status_code, body), str(body))
        if response.status_code == 204 or not response.content:
            return {}
        answer: dict[str, Any] = response.json()
        return answer


SERVICE_NAMES: dict[Service, str] = {"intake": "提案受理", "assignment": "交办", "progress": "办理"}
