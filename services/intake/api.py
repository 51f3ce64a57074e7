"""Intake's HTTP routes: thin; the rules live in domain.py and the use cases in service.py."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.intake import service, store
from services.intake.domain import RuleViolation, StateConflict
from shared.auth import Caller, require_role
from shared.events import ProposalContent, Role
from shared.http import Problem, remember_idempotent, replay_idempotent, request_fingerprint
from shared.policy import Policy
from shared.runtime import ServiceRuntime


class ReviewDecision(BaseModel):
    """审查立案: the committee's decision on a submitted proposal."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["file", "not_file"]
    reason: str | None = Field(default=None, max_length=2000)
    converted_to_opinion: bool = Field(default=False, description="不予立案, 转为意见建议")


def _problem(exc: RuleViolation) -> Problem:
    status = 409 if isinstance(exc, StateConflict) else 422
    return Problem(
        status,
        "Request refused" if status == 422 else "Conflict",
        exc.message,
        errors=[{"rule": exc.rule, "message": exc.message}],
    )


def router(runtime: ServiceRuntime, policy: Policy) -> APIRouter:
    routes = APIRouter(prefix="/proposals", tags=["proposals"])

    @routes.post("", status_code=201, summary="Submit a proposal (提交提案)")
    async def submit_proposal(
        content: ProposalContent,
        request: Request,
        principal: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Any:
        require_role(principal, Role.MEMBER, Role.COMMITTEE)
        fingerprint = request_fingerprint(["submit", content.model_dump(mode="json")])
        async with runtime.transaction() as conn:
            replay = await replay_idempotent(conn, store.metadata, principal.id, idempotency_key, fingerprint)
            if replay is not None:
                return replay
            try:
                view = await service.submit(
                    conn, content, principal.as_actor(), policy, via="http", correlation_id=request.state.correlation_id
                )
            except RuleViolation as exc:
                raise _problem(exc) from exc
            await remember_idempotent(conn, store.metadata, principal.id, idempotency_key, fingerprint, 201, view)
        return JSONResponse(view, status_code=201, headers={"location": f"/proposals/{view['id']}"})

    @routes.get("", summary="List proposals: a member's own, or all for the committee")
    async def list_proposals(
        principal: Caller,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        require_role(principal, Role.MEMBER, Role.COMMITTEE)
        proposer = principal.id if principal.role == Role.MEMBER else None
        async with runtime.engine.connect() as conn:
            rows = await store.list_proposals(conn, proposer_id=proposer, status=status, limit=limit, offset=offset)
        return {"items": [service.proposal_view(row) for row in rows], "limit": limit, "offset": offset}

    @routes.get("/{proposal_id}", summary="One proposal")
    async def get_proposal(proposal_id: str, principal: Caller) -> dict[str, Any]:
        require_role(principal, Role.MEMBER, Role.COMMITTEE)
        async with runtime.engine.connect() as conn:
            row = await store.get_proposal(conn, proposal_id)
        signers = [] if row is None else [row["first_proposer_id"], *(c["id"] for c in row["cosigners"])]
        if row is None or (principal.role == Role.MEMBER and principal.id not in signers):
            raise Problem(404, "Not found", f"No proposal {proposal_id} that you may see.")
        return service.proposal_view(row)

    @routes.post("/{proposal_id}/review", summary="Review: file or refuse (审查立案)")
    async def review_proposal(
        proposal_id: str,
        decision: ReviewDecision,
        request: Request,
        principal: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> Any:
        require_role(principal, Role.COMMITTEE)
        fingerprint = request_fingerprint(["review", proposal_id, decision.model_dump(mode="json")])
        async with runtime.transaction() as conn:
            replay = await replay_idempotent(conn, store.metadata, principal.id, idempotency_key, fingerprint)
            if replay is not None:
                return replay
            try:
                view = await service.review(
                    conn,
                    proposal_id,
                    file=decision.decision == "file",
                    reason=decision.reason,
                    converted_to_opinion=decision.converted_to_opinion,
                    actor=principal.as_actor(),
                    correlation_id=request.state.correlation_id,
                )
            except service.NotFound as exc:
                raise Problem(404, "Not found", f"No proposal {proposal_id}.") from exc
            except RuleViolation as exc:
                raise _problem(exc) from exc
            await remember_idempotent(conn, store.metadata, principal.id, idempotency_key, fingerprint, 200, view)
        return view

    return routes
