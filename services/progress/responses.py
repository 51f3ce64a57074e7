"""The response bodies of progress's HTTP API, as its OpenAPI document shows them (shared/responses.py).

They describe what `views.py` builds from the lifecycle read model. Units here are bare unit ids, as in
the progress events (a UnitRef's `id`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, Field

from services.progress.domain import MeasureStatus, ReplyStatus, Stage, StepKind
from shared.events import (
    CATEGORY,
    DEADLINE_KIND,
    EVALUATION_GRADE,
    REPLY_CLASS,
    UNIT_ID,
    AssignmentForm,
)


class ProposalSummary(BaseModel):
    """A proposal in a list: where it stands and whether anything is overdue (办理情况)."""

    id: str
    title: str
    category: str = Field(description=CATEGORY)
    stage: Stage = Field(description="办理阶段.")
    filing_number: str | None = Field(description="案号, once filed.")
    form: AssignmentForm | None = Field(description="交办形式, once assigned.")
    lead_unit: str | None = Field(description="主办 (or the only) unit, once assigned. " + UNIT_ID)
    co_units: list[str] = Field(description="会办 units (bare unit ids).")
    key: bool = Field(description="重点提案.")
    round: int = Field(description="1, or 2 after 重新办理.")
    reply_due: date | None
    evaluation_due: date | None
    closed_at: datetime | None = Field(description="办结.")
    implemented_at: datetime | None = Field(description="落实: every measure done or dropped.")
    overdue: bool = Field(description="A step of it is past its due date (逾期).")
    provisional_calendar: bool = Field(
        description="A due date still owed lies in a year whose official holiday calendar is not known yet "
        "(暂定): it may move when the year is declared."
    )


class ProposalSummaryPage(BaseModel):
    items: list[ProposalSummary]
    total: int
    limit: int
    offset: int


class OpenStep(BaseModel):
    """A step still owed (待办), with its due date."""

    kind: StepKind = Field(description=DEADLINE_KIND)
    unit: str | None = Field(description="The unit that owes it (bare unit id); null for an evaluation.")
    signer_id: str | None = Field(description="For an evaluation: the signer who owes it.")
    measure_id: str | None = Field(description="For a measure: which.")
    due: date
    overdue: bool
    provisional_calendar: bool = Field(description="The due date lies in a provisional calendar year (暂定).")
    carried_over: bool = Field(description="For a measure: due after its proposal's year (跨年度落实).")


class InboxItem(OpenStep):
    """A unit's open step on one proposal."""

    proposal_id: str
    title: str


class UnitInbox(BaseModel):
    """A unit's open work, soonest due first."""

    items: list[InboxItem]
    total: int
    limit: int
    offset: int


class CoOpinionView(BaseModel):
    unit: str = Field(description=UNIT_ID)
    text: str
    submitted_at: datetime | None


class AdoptionView(BaseModel):
    number: int
    adopted: bool
    how: str | None = None


class ReplyView(BaseModel):
    """答复 and where its review stands."""

    id: str
    unit: str = Field(description=UNIT_ID)
    round: int
    classification: str = Field(description=REPLY_CLASS)
    text: str
    adoptions: list[AdoptionView]
    status: ReplyStatus
    reply_due: date | None
    drafted_at: datetime | None
    reviewed_at: datetime | None
    review_reason: str | None
    public: bool = Field(description="答复公开.")


class EvaluationView(BaseModel):
    signer_id: str
    round: int
    handling_grade: str = Field(description="办理态度: " + EVALUATION_GRADE)
    result_grade: str = Field(description="办理结果: " + EVALUATION_GRADE)
    comment: str
    submitted_at: datetime | None


class MeasureView(BaseModel):
    """举措 and its status."""

    id: str
    reply_id: str
    text: str
    owner_unit: str = Field(description=UNIT_ID)
    due: date | None
    status: MeasureStatus
    note: str
    done_at: datetime | None = Field(description="When it was settled (done or dropped).")
    reopened: int = Field(description="How many times an unsatisfied 落实评价 reopened it.")
    promised_at: datetime | None = Field(description="When the reply that committed to it was approved.")
    carried_over: bool = Field(description="Due after its proposal's year (跨年度落实).")


class TimelineActor(BaseModel):
    id: str
    role: str
    unit: str | None = None


class TimelineEntry(BaseModel):
    """One event of the proposal's lifecycle, in the words a person reads (办理全过程)."""

    type: str = Field(description="The CloudEvents type of the event.")
    at: datetime
    actor: TimelineActor
    summary: str
    facts: dict[str, Any] = Field(description="The codes and ids the summary was written from.")
    event_id: str = Field(description="The CloudEvents id of the event.")


class ImplementationEvaluationState(BaseModel):
    """落实评价 on a proposal: where it stands, its round and due date, and a new measure owed."""

    state: str | None = Field(description="null before 落实; then due, open, closed or reopened.")
    round: int
    due: date | None
    new_measure_due: date | None = Field(description="When the lead unit owes the new measure asked for.")


class ImplementationEvaluationView(BaseModel):
    signer_id: str
    round: int
    grade: str = Field(description="落实评价: " + EVALUATION_GRADE)
    comment: str
    reopened_measures: list[str] = Field(description="The measures the evaluation reopened.")
    new_measure_requested: bool
    submitted_at: datetime | None


class ProposalDetail(ProposalSummary):
    """A proposal with its handling records and the full timeline (办理进度)."""

    suggestion_count: int | None
    co_opinion_due: date | None
    leaders: list[str] = Field(description="督办/领办 leaders of a key proposal.")
    open_steps: list[OpenStep]
    co_opinions: list[CoOpinionView]
    replies: list[ReplyView]
    evaluations: list[EvaluationView]
    measures: list[MeasureView]
    implementation_evaluation: ImplementationEvaluationState
    implementation_evaluations: list[ImplementationEvaluationView]
    timeline: list[TimelineEntry]


class PublicReply(BaseModel):
    """答复公开: a published reply, personal data removed."""

    proposal_id: str
    filing_number: str | None
    title: str
    category: str
    unit: str = Field(description=UNIT_ID)
    lead_unit: str | None
    co_units: list[str]
    classification: str = Field(description=REPLY_CLASS)
    text: str
    approved_on: date | None


class PublicReplyPage(BaseModel):
    items: list[PublicReply] = Field(description="Latest approved first.")
    total: int
    limit: int
    offset: int
