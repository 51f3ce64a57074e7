"""Intake's HTTP routes: thin; the rules live in domain.py, the use cases in service.py, the JSON in views.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncConnection

from services.intake import mapping, service, store, views
from services.intake.responses import ProposalPage, ProposalView, SimilarProposals
from services.intake.service import Clock
from services.intake.unit_of_work import SqlUnitOfWork, UnitOfWork
from shared.auth import Principal, roles
from shared.commands import CommandRunner, NotFound
from shared.events import ProposalContent, Proposer, Role, SessionKind
from shared.http import MAX_OFFSET, Problem
from shared.policy import Policy, local_date
from shared.responses import documented
from shared.runtime import ServiceRuntime

IdempotencyKey = Annotated[str | None, Header(max_length=200)]

# Who may call what (tests/security/authz_matrix.yaml). A route takes its caller as one of these, so the
# role is checked before the request's parameters and body are validated (shared.auth.roles).
MemberCaller = Annotated[Principal, Depends(roles(Role.MEMBER))]
CommitteeCaller = Annotated[Principal, Depends(roles(Role.COMMITTEE))]
MemberOrCommitteeCaller = Annotated[Principal, Depends(roles(Role.MEMBER, Role.COMMITTEE))]


class ReviewDecision(BaseModel):
    """审查立案: the committee's decision on a submitted proposal."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["file", "not_file", "merge", "return"] = Field(
        description="file 立案 / not_file 不予立案 / merge 并案 / return 退回修改"
    )
    reason: str | None = Field(default=None, max_length=2000, description="The note the proposers read.")
    ground: str | None = Field(default=None, max_length=200, description="不予立案: one of the policy's grounds.")
    converted_to_opinion: bool = Field(default=False, description="不予立案, 转为意见建议 (社情民意)")
    into_proposal_id: str | None = Field(default=None, max_length=100, description="并案: the proposal to merge into.")


class DraftContent(BaseModel):
    """A draft (草稿) or a revision: any subset of the content, with the same limits; completeness is
    checked on submission."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=200)
    body: str | None = Field(default=None, max_length=50_000)
    category: str | None = Field(default=None, max_length=50)
    session_kind: SessionKind | None = None
    first_proposer: Proposer | None = None
    cosigners: list[Proposer] | None = Field(default=None, max_length=200)
    suggestions: list[Annotated[str, Field(max_length=5000)]] | None = Field(default=None, max_length=100)
    series_id: str | None = Field(default=None, max_length=100)

    @model_validator(mode="after")
    def _null_clears_only_the_series(self) -> DraftContent:
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None and name != "series_id")
        if nulls:
            raise ValueError(f"{', '.join(nulls)} cannot be null; leave a field out to keep what it holds")
        return self


Step = Callable[..., Awaitable[str]]
"""A signer's use case on a proposal that needs only who acts: `service.submit_existing`, `service.cosign`."""


class Withdrawal(BaseModel):
    """撤案: why the first proposer withdraws."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=2000)


def router(runtime: ServiceRuntime, policy: Policy, clock: Clock) -> APIRouter:
    routes = APIRouter(prefix="/proposals", tags=["proposals"])

    commands = CommandRunner(runtime.transaction, store.metadata)

    async def view(conn: AsyncConnection, proposal_id: str) -> dict[str, Any]:
        """The proposal as the command left it, read back in the command's transaction."""
        row = await store.get_proposal(conn, proposal_id)
        if row is None:
            raise NotFound(proposal_id)
        return views.proposal_view(row, await store.get_signers(conn, proposal_id))

    def missing(exc: NotFound) -> str:
        return f"No proposal {exc} that you may see."

    def created(view: dict[str, Any]) -> dict[str, str]:
        return {"location": f"/proposals/{view['id']}"}

    async def act(
        request: Request,
        principal: Principal,
        key: str | None,
        body: BaseModel | dict[str, Any] | None,
        use_case: Callable[[UnitOfWork], Awaitable[str]],
        *,
        status: int = 200,
    ) -> Any:
        """One write on the door's transaction, once per Idempotency-Key `key`; the answer is the proposal
        as the use case left it (a new one: 201, named by `Location`)."""

        async def action(conn: AsyncConnection) -> dict[str, Any]:
            uow = SqlUnitOfWork(conn)
            proposal_id = await use_case(uow)
            saved = uow.saved(proposal_id)
            if saved is None:  # nothing committed by this use case: read it
                return await view(conn, proposal_id)
            return views.proposal_view(*mapping.rows(saved))  # as saved: no statement to read it back

        location = created if status == 201 else None
        return await commands.once(
            request, principal, key, body, action, missing=missing, status=status, headers=location
        )

    async def step(request: Request, principal: Principal, key: str | None, proposal_id: str, use_case: Step) -> Any:
        """A signer's step on a proposal that takes no body (submit a draft, cosign)."""
        actor, correlation_id = principal.as_actor(), request.state.correlation_id

        def taken(uow: UnitOfWork) -> Awaitable[str]:
            return use_case(uow, proposal_id, actor, policy, correlation_id=correlation_id, now=clock())

        return await act(request, principal, key, None, taken)

    @routes.post(
        "",
        status_code=201,
        summary="Submit a proposal (提交提案)",
        **documented(ProposalView, "The proposal as submitted; `Location` names it.", status=201),
    )
    async def submit_proposal(
        content: ProposalContent,
        request: Request,
        principal: MemberOrCommitteeCaller,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:
        actor, correlation_id = principal.as_actor(), request.state.correlation_id

        def submitted(uow: UnitOfWork) -> Awaitable[str]:
            return service.submit(uow, content, actor, policy, via="http", correlation_id=correlation_id, now=clock())

        return await act(request, principal, idempotency_key, content, submitted, status=201)

    @routes.post(
        "/drafts",
        status_code=201,
        summary="Save a draft (保存草稿)",
        **documented(ProposalView, "The draft as saved; `Location` names it.", status=201),
    )
    async def create_draft(
        draft: DraftContent, request: Request, principal: MemberCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:
        changes = draft.model_dump(mode="json", exclude_unset=True)
        if "first_proposer" not in changes:
            changes["first_proposer"] = {"id": principal.id, "name": principal.name or principal.id}
        actor = principal.as_actor()
        return await act(
            request,
            principal,
            idempotency_key,
            changes,
            lambda uow: service.create_draft(uow, changes, actor, now=clock()),
            status=201,
        )

    @routes.patch(
        "/{proposal_id}",
        summary="Edit a draft or a returned proposal (修改)",
        **documented(ProposalView, "The proposal as edited."),
    )
    async def edit_proposal(proposal_id: str, draft: DraftContent, request: Request, principal: MemberCaller) -> Any:
        changes = draft.model_dump(mode="json", exclude_unset=True)
        actor = principal.as_actor()
        return await act(
            request, principal, None, changes, lambda uow: service.edit(uow, proposal_id, changes, actor, now=clock())
        )

    @routes.post(
        "/{proposal_id}/submit",
        summary="Submit a draft, or resubmit a returned proposal",
        **documented(ProposalView, "The proposal as submitted."),
    )
    async def submit_draft(
        proposal_id: str, request: Request, principal: MemberCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:
        return await step(request, principal, idempotency_key, proposal_id, service.submit_existing)

    @routes.post(
        "/{proposal_id}/cosign",
        summary="Confirm as a cosigner (联名确认)",
        **documented(ProposalView, "The proposal with your confirmation."),
    )
    async def cosign_proposal(
        proposal_id: str, request: Request, principal: MemberCaller, idempotency_key: IdempotencyKey = None
    ) -> Any:
        return await step(request, principal, idempotency_key, proposal_id, service.cosign)

    @routes.post(
        "/{proposal_id}/withdraw",
        summary="Withdraw before filing (撤案)",
        **documented(ProposalView, "The proposal, withdrawn."),
    )
    async def withdraw_proposal(
        proposal_id: str,
        withdrawal: Withdrawal,
        request: Request,
        principal: MemberCaller,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:
        actor, correlation_id = principal.as_actor(), request.state.correlation_id

        def withdrawn(uow: UnitOfWork) -> Awaitable[str]:
            return service.withdraw(
                uow, proposal_id, actor, reason=withdrawal.reason, correlation_id=correlation_id, now=clock()
            )

        return await act(request, principal, idempotency_key, withdrawal, withdrawn)

    @routes.get(
        "",
        summary="List proposals: a member's own, or all for the committee",
        **documented(ProposalPage, "One page of proposals."),
    )
    async def list_proposals(
        principal: MemberOrCommitteeCaller,
        status: str | None = None,
        series_id: Annotated[str | None, Query(max_length=100, description="Only this series (系列提案).")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        signer = principal.id if principal.role == Role.MEMBER else None
        async with runtime.engine.connect() as conn:
            rows = await store.list_proposals(
                conn, signer_id=signer, status=status, series_id=series_id, limit=limit, offset=offset
            )
            signers = await store.signers_of(conn, [row["id"] for row in rows])
        items = [views.proposal_view(row, signers[row["id"]]) for row in rows]
        return {"items": items, "limit": limit, "offset": offset}

    @routes.get("/{proposal_id}", summary="One proposal", **documented(ProposalView, "The proposal."))
    async def get_proposal(proposal_id: str, principal: MemberOrCommitteeCaller) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            row = await store.get_proposal(conn, proposal_id)
            signers = await store.get_signers(conn, proposal_id) if row is not None else []
        if row is None or not views.may_see(principal.as_actor(), row, signers):
            raise Problem(404, "Not found", f"No proposal {proposal_id} that you may see.")
        return views.proposal_view(row, signers)

    @routes.get(
        "/{proposal_id}/similar",
        summary="Similar filed proposals of the same year (相似提案, for 并案)",
        **documented(SimilarProposals, "The most similar filed proposals, best first."),
    )
    async def similar_proposals(
        proposal_id: str, principal: CommitteeCaller, limit: Annotated[int, Query(ge=1, le=50)] = 5
    ) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            row = await store.get_proposal(conn, proposal_id)
            if row is None or row["status"] == "draft":
                raise Problem(404, "Not found", f"No proposal {proposal_id}.")
            year = local_date(row["submitted_at"] or row["created_at"], policy.timezone).year
            filed = await store.filed_in_year(conn, year)
        return {"items": views.similar_view(row, filed, limit=limit), "limit": limit}

    @routes.post(
        "/{proposal_id}/review",
        summary="Review: file, refuse, merge or return (审查立案)",
        **documented(ProposalView, "The proposal after the decision."),
    )
    async def review_proposal(
        proposal_id: str,
        decision: ReviewDecision,
        request: Request,
        principal: CommitteeCaller,
        idempotency_key: IdempotencyKey = None,
    ) -> Any:
        actor, correlation_id = principal.as_actor(), request.state.correlation_id
        return await act(
            request,
            principal,
            idempotency_key,
            decision,
            lambda uow: service.review(
                uow,
                proposal_id,
                decision=decision.decision,
                reason=decision.reason,
                ground=decision.ground,
                converted_to_opinion=decision.converted_to_opinion,
                into_proposal_id=decision.into_proposal_id,
                actor=actor,
                policy=policy,
                correlation_id=correlation_id,
                now=clock(),
            ),
        )

    return routes
