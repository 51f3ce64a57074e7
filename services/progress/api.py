"""Progress's HTTP routes: thin; the rules live in domain.py, the use cases in service.py.

Units report, send 会办意见 and draft replies; the committee reviews replies (办复审查); signers
evaluate; units update measures; leaders record 督办. Everyone sees what they may of the read
model; the public sees published replies without personal data.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Literal, NamedTuple

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.progress import domain, export, mapping, service, stats, store, views
from services.progress.domain import Dossier, MeasureStatus, Occasion, Proposal, ReplyStatus
from services.progress.responses import ProposalDetail, ProposalSummaryPage, PublicReplyPage, UnitInbox
from services.progress.stats_schema import Statistics
from services.progress.unit_of_work import SqlUnitOfWork
from shared.auth import Principal, roles
from shared.commands import CommandRunner, NotFound
from shared.events import ProgressContent, ReplyContent, Role
from shared.http import MAX_OFFSET, Problem
from shared.policy import Policy, WorkingCalendar, local_date
from shared.responses import documented
from shared.runtime import ServiceRuntime
from shared.statistics_export import CSV_TYPE, XLSX_TYPE, ExportData, render

SEES_ALL = (Role.COMMITTEE, Role.DISPATCHER, Role.ADMIN)
# The proposal office's roles; the public reads /public/replies only, and `system` is a Kafka source.
READERS = (Role.MEMBER, Role.UNIT, Role.LEADER, *SEES_ALL)
Clock = Callable[[], datetime]
IdempotencyKey = Annotated[str | None, Header(max_length=200)]


class Post(NamedTuple):
    """A POST request and its `Idempotency-Key` (a retry under the same key gets the first answer)."""

    request: Request
    idempotency_key: str | None


def post(request: Request, idempotency_key: IdempotencyKey = None) -> Post:
    return Post(request, idempotency_key)


Posted = Annotated[Post, Depends(post)]


def file_response(media_type: str) -> dict[int | str, dict[str, Any]]:
    """An export's answer in the OpenAPI document: a file of `media_type`, as an attachment."""
    binary = {"type": "string", "format": "binary"}
    return {200: {"description": "The file, as an attachment.", "content": {media_type: {"schema": binary}}}}


ExportYear = Annotated[int | None, Query(ge=2000, le=2100, description="年度 (提交年份); left out: every year.")]

# Who may call what (tests/security/authz_matrix.yaml). A route takes its caller as one of these, so the
# role is checked before the request's parameters and body are validated (shared.auth.roles).
ProposalsReader = Annotated[Principal, Depends(roles(*READERS))]
StatsReader = Annotated[Principal, Depends(roles(Role.COMMITTEE, Role.DISPATCHER, Role.ADMIN, Role.LEADER))]
UnitCaller = Annotated[Principal, Depends(roles(Role.UNIT))]
CommitteeCaller = Annotated[Principal, Depends(roles(Role.COMMITTEE))]
MemberCaller = Annotated[Principal, Depends(roles(Role.MEMBER))]
LeaderCaller = Annotated[Principal, Depends(roles(Role.LEADER))]


class CoOpinion(BaseModel):
    """会办意见."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20_000)


class ReplyReview(BaseModel):
    """办复审查: approve the reply, or return it with the reason."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "return"]
    reason: str | None = Field(default=None, max_length=5000)
    public: bool | None = Field(default=None, description="Disclose it (答复公开); the policy decides when left out.")


class Evaluation(BaseModel):
    """评价: on the handling (办理态度) and on the result (办理结果), with the policy's grade codes."""

    model_config = ConfigDict(extra="forbid")

    handling_grade: str = Field(min_length=1, max_length=50)
    result_grade: str = Field(min_length=1, max_length=50)
    comment: str = Field(default="", max_length=5000)


class MeasureChange(BaseModel):
    """举措落实: the measure's new status; `note` says how, or why it was dropped."""

    model_config = ConfigDict(extra="forbid")

    status: MeasureStatus
    note: str = Field(default="", max_length=5000)


class ImplementationEvaluationBody(BaseModel):
    """落实评价: a grade on what was implemented (the policy's grade codes) and an optional comment. An
    unsatisfied first proposer names the measures to reopen (`reopen`) or asks for a new one (`new_measure`)."""

    model_config = ConfigDict(extra="forbid")

    grade: str = Field(min_length=1, max_length=50)
    comment: str = Field(default="", max_length=5000)
    reopen: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=100)
    new_measure: bool = False


class NewMeasure(BaseModel):
    """新举措: the measure the lead unit commits to after a 落实评价 asked for one."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=5000)
    due: date


class Supervision(BaseModel):
    """督办: a leader's meeting, visit or instruction."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["meeting", "visit", "instruction", "other"]
    on: date
    text: str = Field(min_length=1, max_length=20_000)


def may_see(principal: Principal, proposal: Proposal) -> bool:
    """Committee, dispatcher and admin see all; a member its own; a unit what it handles;
    a leader the key proposals it supervises."""
    if principal.role in SEES_ALL:
        return True
    if principal.role == Role.MEMBER:
        return principal.id in proposal.signers
    if principal.role == Role.UNIT:
        return principal.unit is not None and principal.unit in proposal.handling_units
    if principal.role == Role.LEADER:
        return proposal.is_key and principal.id in proposal.leaders
    return False


def router(runtime: ServiceRuntime, policy: Policy, clock: Clock) -> APIRouter:
    routes = APIRouter(tags=["progress"])
    calendar = WorkingCalendar.from_policy(policy)

    def today() -> date:
        return local_date(clock(), policy.timezone)

    commands = CommandRunner(runtime.transaction, store.metadata)
    answers_proposal = documented(ProposalDetail, "The proposal as it now stands.")

    async def act(post: Post, principal: Principal, body: BaseModel | None, step: domain.HandlingStep) -> Any:
        """One POST on a proposal the caller may see: the step, taken by the caller now under the policy;
        the answer is the proposal as it now stands."""
        proposal_id = step.proposal_id

        async def visible_then(conn: AsyncConnection) -> dict[str, Any]:
            proposal = await store.get_proposal(conn, proposal_id)
            if proposal is None or not may_see(principal, mapping.proposal(proposal)):
                raise Problem(404, "Not found", f"No proposal {proposal_id} that you may see.")
            occasion = Occasion(principal.as_actor(), post.request.state.correlation_id, clock(), policy, calendar)
            await service.carry_out(SqlUnitOfWork(conn), step, occasion)
            return await _view(conn, proposal_id)

        def missing(exc: NotFound) -> str:
            return f"No {exc.args[0]} on proposal {proposal_id}."

        return await commands.once(post.request, principal, post.idempotency_key, body, visible_then, missing=missing)

    async def _view(conn: AsyncConnection, proposal_id: str) -> dict[str, Any]:
        dossier = await store.load_dossier(conn, proposal_id)
        assert dossier is not None
        return views.proposal_view(
            dossier, await store.get_timeline(conn, proposal_id), today(), calendar, policy.timezone
        )

    @routes.get(
        "/proposals",
        summary="Proposals you may see, filtered (办理情况一览)",
        **documented(ProposalSummaryPage, "One page of proposals."),
    )
    async def list_proposals(
        principal: ProposalsReader,
        stage: str | None = None,
        unit: str | None = None,
        year: int | None = None,
        category: str | None = None,
        key: bool | None = None,
        overdue: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            dossiers = await store.load_dossiers(conn)
        now = today()

        def wanted(d: Dossier) -> bool:
            p = d.proposal
            return (
                may_see(principal, p)
                and (stage is None or p.stage == stage)
                and (unit is None or unit in p.handling_units)
                and (year is None or stats.year_of(d, policy) == str(year))
                and (category is None or p.category == category)
                and (key is None or p.is_key == key)
                and (overdue is None or domain.is_overdue(d, now) == overdue)
            )

        found = [d for d in dossiers if wanted(d)]
        return {
            "items": [views.summary_view(d, now, calendar) for d in found[offset : offset + limit]],
            "total": len(found),
            "limit": limit,
            "offset": offset,
        }

    @routes.get(
        "/proposals/{proposal_id}",
        summary="Where a proposal stands, with its timeline (办理进度)",
        **documented(ProposalDetail, "The proposal, its handling records and its timeline."),
    )
    async def get_proposal(proposal_id: str, principal: ProposalsReader) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            row = await store.get_proposal(conn, proposal_id)
            if row is None or not may_see(principal, mapping.proposal(row)):
                raise Problem(404, "Not found", f"No proposal {proposal_id} that you may see.")
            return await _view(conn, proposal_id)

    @routes.get(
        "/inbox",
        summary="A unit's open work: replies, 会办意见 and measures it owes (待办)",
        **documented(UnitInbox, "One page of the unit's open steps, soonest due first."),
    )
    async def unit_inbox(
        principal: UnitCaller,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            dossiers = await store.load_dossiers(conn, await store.open_proposal_ids(conn))
        now = today()
        items = [
            {"proposal_id": d.id, "title": d.proposal.title, **step}
            for d in dossiers
            for step in views.open_steps(d, now, calendar, policy.timezone)
            if step["unit"] == principal.unit and step["kind"] not in domain.SIGNER_STEPS
        ]
        items.sort(key=lambda item: (item["due"], item["proposal_id"]))
        return {"items": items[offset : offset + limit], "total": len(items), "limit": limit, "offset": offset}

    @routes.post("/proposals/{proposal_id}/progress", summary="Report progress (办理进展)", **answers_proposal)
    async def report_progress(proposal_id: str, content: ProgressContent, principal: UnitCaller, post: Posted) -> Any:
        return await act(post, principal, content, domain.ReportProgress(proposal_id, principal.unit, content))

    @routes.post(
        "/proposals/{proposal_id}/co-opinions", summary="Send the co-handling opinion (会办意见)", **answers_proposal
    )
    async def submit_co_opinion(proposal_id: str, body: CoOpinion, principal: UnitCaller, post: Posted) -> Any:
        return await act(post, principal, body, domain.SubmitCoOpinion(proposal_id, principal.unit, body.text))

    @routes.post("/proposals/{proposal_id}/replies", summary="Draft the reply for review (答复)", **answers_proposal)
    async def draft_reply(proposal_id: str, content: ReplyContent, principal: UnitCaller, post: Posted) -> Any:
        return await act(post, principal, content, domain.DraftReply(proposal_id, principal.unit, content))

    @routes.post(
        "/proposals/{proposal_id}/replies/{reply_id}/review", summary="Review a reply (办复审查)", **answers_proposal
    )
    async def review_reply(
        proposal_id: str, reply_id: str, body: ReplyReview, principal: CommitteeCaller, post: Posted
    ) -> Any:
        step = domain.ReviewReply(
            proposal_id, reply_id, approve=body.decision == "approve", reason=body.reason, public=body.public
        )
        return await act(post, principal, body, step)

    @routes.post("/proposals/{proposal_id}/evaluations", summary="Evaluate the reply (评价)", **answers_proposal)
    async def evaluate(proposal_id: str, body: Evaluation, principal: MemberCaller, post: Posted) -> Any:
        step = domain.Evaluate(
            proposal_id, handling_grade=body.handling_grade, result_grade=body.result_grade, comment=body.comment
        )
        return await act(post, principal, body, step)

    @routes.post(
        "/proposals/{proposal_id}/measures/{measure_id}", summary="Update a measure (举措落实)", **answers_proposal
    )
    async def update_measure(
        proposal_id: str, measure_id: str, body: MeasureChange, principal: UnitCaller, post: Posted
    ) -> Any:
        step = domain.UpdateMeasure(proposal_id, measure_id, principal.unit, status=body.status, note=body.note)
        return await act(post, principal, body, step)

    @routes.post(
        "/proposals/{proposal_id}/implementation-evaluations", summary="Evaluate the implementation (落实评价)"
    )
    async def evaluate_implementation(
        proposal_id: str, body: ImplementationEvaluationBody, principal: MemberCaller, post: Posted
    ) -> Any:
        step = domain.EvaluateImplementation(
            proposal_id, body.grade, body.comment, reopen=body.reopen, new_measure=body.new_measure
        )
        return await act(post, principal, body, step)

    @routes.post("/proposals/{proposal_id}/measures", summary="Commit to a requested new measure (新举措)")
    async def add_measure(proposal_id: str, body: NewMeasure, principal: UnitCaller, post: Posted) -> Any:
        step = domain.AddMeasure(proposal_id, principal.unit, text=body.text, due=body.due)
        return await act(post, principal, body, step)

    @routes.post("/proposals/{proposal_id}/supervision", summary="Record supervision (督办)", **answers_proposal)
    async def record_supervision(proposal_id: str, body: Supervision, principal: LeaderCaller, post: Posted) -> Any:
        step = domain.RecordSupervision(proposal_id, kind=body.kind, on=body.on, text=body.text)
        return await act(post, principal, body, step)

    @routes.get(
        "/stats",
        summary="Statistics (办理统计): rates per unit, year and category; key proposals",
        description=(
            "Every rate's definition (口径) is in its schema description and in docs/statistics.md. "
            "A leader (督办领导) gets the figures of the key proposals it supervises or leads only."
        ),
        response_model=Statistics,
    )
    async def statistics(principal: StatsReader) -> dict[str, Any]:
        return stats.statistics(await counted_dossiers(principal), today(), policy)

    async def counted_dossiers(principal: Principal) -> list[Dossier]:
        """The dossiers a reader's figures count: all of them, or a leader's (督办领导) key proposals only."""
        async with runtime.engine.connect() as conn:
            dossiers = await store.load_dossiers(conn)
        if principal.role == Role.LEADER:
            dossiers = [d for d in dossiers if may_see(principal, d.proposal)]
        return dossiers

    async def year_export(principal: Principal, year: int | None) -> ExportData:
        dossiers = await counted_dossiers(principal)
        return export.build(dossiers, today(), policy, None if year is None else str(year))

    async def download(principal: Principal, name: str, year: int | None) -> Response:
        """The file as an attachment named after what it is and its year (`proposal-statistics-2026.csv`)."""
        data = await year_export(principal, year)
        content, media_type, filename = render(data, name, export.PolicyWords(policy))
        disposition = f'attachment; filename="{filename}"'
        return Response(content, media_type=media_type, headers={"content-disposition": disposition})

    @routes.get(
        "/stats/export",
        summary="统计导出 as data: the year's figures per unit and category, and the items behind each figure",
        description="What the CSV and XLSX files hold, with ids and codes (the portal renders it with words): "
        "`figures` per group (全部, 承办单位, 类别), `trace` (明细) one item per thing a rate's denominator counts, "
        "`counted` when its numerator counts it too. docs/statistics.md.",
    )
    async def export_data(principal: StatsReader, year: ExportYear = None) -> dict[str, Any]:
        return dict(await year_export(principal, year))

    @routes.get(
        "/stats/export.csv",
        summary="统计表 as CSV: the year's figures overall, per unit and per category",
        description="UTF-8 with a byte order mark. Rates as fractions (empty while the denominator is 0); "
        "the definitions are in docs/statistics.md and the XLSX's 口径 sheet.",
        response_class=Response,
        responses=file_response(CSV_TYPE),
    )
    async def export_figures_csv(principal: StatsReader, year: ExportYear = None) -> Response:
        return await download(principal, "figures.csv", year)

    @routes.get(
        "/stats/trace.csv",
        summary="统计明细 as CSV: the items behind every figure (which proposals each rate counts)",
        description="One row per item a rate's denominator counts (proposal, reply owed, evaluation, suggestion, "
        "final answer), per row of the figures; 计入分子 says whether the numerator counts it too.",
        response_class=Response,
        responses=file_response(CSV_TYPE),
    )
    async def export_trace_csv(principal: StatsReader, year: ExportYear = None) -> Response:
        return await download(principal, "trace.csv", year)

    @routes.get(
        "/stats/export.xlsx",
        summary="统计表 as XLSX: sheets 统计 (figures), 明细 (the items behind them) and 口径 (definitions)",
        response_class=Response,
        responses=file_response(XLSX_TYPE),
    )
    async def export_workbook(principal: StatsReader, year: ExportYear = None) -> Response:
        return await download(principal, "figures.xlsx", year)

    @routes.get(
        "/public/replies",
        summary="Published replies, personal data removed (答复公开); no login",
        **documented(PublicReplyPage, "One page of published replies."),
    )
    async def public_replies(
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        async with runtime.engine.connect() as conn:
            dossiers = await store.load_dossiers(conn, await store.proposals_with_public_replies(conn))
        items = [
            views.public_reply_view(d, r)
            for d in dossiers
            for r in d.replies
            if r.public and r.status == ReplyStatus.APPROVED
        ]
        items.sort(key=lambda item: (item["approved_on"] or "", item["proposal_id"]), reverse=True)
        return {"items": items[offset : offset + limit], "total": len(items), "limit": limit, "offset": offset}

    return routes
